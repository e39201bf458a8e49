"""Hub loading with a mocked huggingface_hub.snapshot_download (no network in tests): revision
passed through, only the files the loader reads requested, every hub failure one clear line,
HF_HUB_OFFLINE honoured."""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatchcase
from pathlib import Path

import huggingface_hub
import huggingface_hub.errors as hf_errors
import pytest
import torch
from safetensors.torch import load_file, save_file

from indicf5_fast.cli import main as cli_main
from indicf5_fast.errors import (
    CheckpointError,
    HubAccessError,
    HubError,
    HubNotFoundError,
    HubOfflineError,
    HubRevisionError,
)
from indicf5_fast.model.checkpoint import load_checkpoint, resolve_model, split_state

REPO = "ai4bharat/IndicF5"
LAYOUT = ("config.json", "model.safetensors", "checkpoints/vocab.txt", "prompts/demo.wav", "prompts/demo.txt")
# What a real repo holds beside the files the loader needs (README, code, nested weights).
EXTRA_FILES = (
    "README.md",
    "model.py",
    "old/model_1.safetensors",
    "ckpts/model_last.pt",
    "sub/pytorch_model.bin",
)


def _response(status: int):
    """A response object of the HTTP client huggingface_hub was built on (httpx or httpx2)."""
    client = __import__(hf_errors.HfHubHTTPError.__mro__[1].__module__.split(".")[0])
    return client.Response(status, request=client.Request("GET", f"https://huggingface.co/api/models/{REPO}"))


def _selected(name: str, allow: list[str], ignore: list[str]) -> bool:
    """huggingface_hub's own filtering rule (fnmatch on the repo path)."""
    return any(fnmatchcase(name, p) for p in allow) and not any(fnmatchcase(name, p) for p in ignore)


class FakeHub:
    """Stands in for snapshot_download: copies the selected files of `repo` into a snapshot dir
    (as the real cache does) and records every call."""

    def __init__(self, repo: Path, snapshot: Path, error: BaseException | None = None) -> None:
        self.repo, self.snapshot, self.error = repo, snapshot, error
        self.calls: list[dict] = []

    def __call__(self, repo_id: str, **kwargs) -> str:
        self.calls.append({"repo_id": repo_id, **kwargs})
        if self.error is not None:
            raise self.error
        for f in self.repo.rglob("*"):
            rel = f.relative_to(self.repo).as_posix()
            if f.is_file() and _selected(rel, kwargs["allow_patterns"], kwargs.get("ignore_patterns") or []):
                (self.snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, self.snapshot / rel)
        return str(self.snapshot)

    def fetched(self) -> set[str]:
        return {f.relative_to(self.snapshot).as_posix() for f in self.snapshot.rglob("*") if f.is_file()}


@pytest.fixture
def hub_repo(tiny_ckpt, tmp_path) -> Path:
    """IndicF5's hub layout (from the tiny checkpoint, whose dir other tests add ONNX exports to)
    plus files the loader never reads."""
    repo = tmp_path / "repo"
    for name in LAYOUT:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_ckpt / name, repo / name)
    for name in EXTRA_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(b"not needed")
    return repo


def _install(monkeypatch, hub_repo: Path, tmp_path: Path, error: BaseException | None = None) -> FakeHub:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = FakeHub(hub_repo, tmp_path / "snapshot", error)
    fake.snapshot.mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    return fake


def test_revision_and_patterns_passed_and_only_needed_files_fetched(hub_repo, tmp_path, monkeypatch):
    fake = _install(monkeypatch, hub_repo, tmp_path)
    ck = load_checkpoint(REPO, revision="b0a3c1d")
    assert [c["revision"] for c in fake.calls] == ["b0a3c1d"]
    call = fake.calls[0]
    assert call["repo_id"] == REPO and call["local_files_only"] is False
    assert {"config.json", "checkpoints/vocab.txt", "prompts/*"} <= set(call["allow_patterns"])
    assert fake.fetched() == set(LAYOUT)  # README, code and nested weights are never fetched
    assert ck.dit_args.vocab_size > 500 and Path(ck.source) == fake.snapshot


def test_default_revision_is_none(hub_repo, tmp_path, monkeypatch):
    fake = _install(monkeypatch, hub_repo, tmp_path)
    assert resolve_model(REPO) == fake.snapshot
    assert fake.calls[0]["revision"] is None


def test_pt_weights_and_custom_vocab_fetched_in_a_second_call(hub_repo, tmp_path, monkeypatch):
    """The loader prefers .safetensors: .pt files (often large training states) and a vocab at a
    path config.json names are only asked for when needed."""
    torch.save(load_file(str(hub_repo / "model.safetensors")), hub_repo / "model.pt")
    (hub_repo / "model.safetensors").unlink()
    config = json.loads((hub_repo / "config.json").read_text())
    config["vocab_path"] = "tok/my_vocab.txt"
    (hub_repo / "config.json").write_text(json.dumps(config))
    (hub_repo / "tok").mkdir()
    shutil.move(hub_repo / "checkpoints" / "vocab.txt", hub_repo / "tok" / "my_vocab.txt")
    fake = _install(monkeypatch, hub_repo, tmp_path)
    ck = load_checkpoint(REPO, revision="v1.0")
    assert len(fake.calls) == 2 and all(c["revision"] == "v1.0" for c in fake.calls)
    assert "*.pt" not in fake.calls[0]["allow_patterns"]
    assert set(fake.calls[1]["allow_patterns"]) == {"tok/my_vocab.txt", "*.pt"}
    assert "ckpts/model_last.pt" not in fake.fetched()  # nested weights are never read
    assert ck.vocab_path == fake.snapshot / "tok" / "my_vocab.txt"


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (
            lambda: hf_errors.GatedRepoError("Access restricted.\nx", response=_response(403)),
            HubAccessError,
            ["gated", "accept its terms", f"huggingface.co/{REPO}", "huggingface-cli login", "HF_TOKEN"],
        ),
        (
            lambda: hf_errors.RepositoryNotFoundError(
                "401 Client Error.\nRepository Not Found", response=_response(401)
            ),
            HubNotFoundError,
            ["not found", "check the id", "HF_TOKEN"],
        ),
        (
            lambda: hf_errors.RevisionNotFoundError("Revision Not Found.\nx", response=_response(404)),
            HubRevisionError,
            ["no revision 'nope'", "--revision"],
        ),
        (
            lambda: hf_errors.HfHubHTTPError("403 Forbidden.\nx", response=_response(403)),
            HubAccessError,
            ["HTTP 403", "accept the model's terms", "huggingface-cli login", "HF_TOKEN"],
        ),
        (
            lambda: hf_errors.HfHubHTTPError("401 Unauthorized.\nx", response=_response(401)),
            HubAccessError,
            ["HTTP 401", "HF_TOKEN"],
        ),
        (
            lambda: hf_errors.LocalEntryNotFoundError("Cannot find the requested files.\nconnection"),
            HubOfflineError,
            ["could not reach the model hub", "local cache", "revision 'nope'"],
        ),
        (
            lambda: hf_errors.HfHubHTTPError("500 Server Error.\nx", response=_response(500)),
            HubError,
            ["could not download", "500 Server Error"],
        ),
    ],
    ids=["gated", "not-found-401", "bad-revision", "403", "401", "no-network", "other"],
)
def test_hub_errors_become_one_line(hub_repo, tmp_path, monkeypatch, capsys, error, kind, words):
    exc = error()
    _install(monkeypatch, hub_repo, tmp_path, exc)
    with pytest.raises(kind) as info:
        load_checkpoint(REPO, revision="nope")
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, CheckpointError)
    for w in words:
        assert w in msg, (w, msg)
    # The CLI shows it as one `error:` line, exit 2, no traceback.
    ref = str(hub_repo / "prompts" / "demo.wav")
    argv = [
        "synth",
        "--model",
        REPO,
        "--text",
        "x",
        "--ref-audio",
        ref,
        "--ref-text",
        "x",
        "--out",
        str(tmp_path / "o.wav"),
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_uses_cache_only(hub_repo, tmp_path, monkeypatch, value):
    fake = _install(monkeypatch, hub_repo, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    load_checkpoint(REPO)
    assert fake.calls and all(c["local_files_only"] is True for c in fake.calls)


def test_offline_and_not_cached_is_one_clear_line(hub_repo, tmp_path, monkeypatch):
    _install(monkeypatch, hub_repo, tmp_path, hf_errors.LocalEntryNotFoundError("not cached\nmore"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        HubOfflineError, match=r"not in the local hub cache and HF_HUB_OFFLINE is set"
    ) as info:
        load_checkpoint(REPO, revision="abc")
    assert "\n" not in str(info.value) and "'abc'" in str(info.value)


def test_offline_off_values_download(hub_repo, tmp_path, monkeypatch):
    fake = _install(monkeypatch, hub_repo, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    resolve_model(REPO)
    assert fake.calls[0]["local_files_only"] is False


def test_vocoder_hub_id_fetches_only_vocos_files(tiny_ckpt, tmp_path, monkeypatch):
    """A checkpoint without vocoder weights + a Vocos hub repo id for --vocoder."""
    ck = load_checkpoint(tiny_ckpt)
    vocos_repo = tmp_path / "vocos"
    vocos_repo.mkdir()
    torch.save(ck.vocos_state, vocos_repo / "pytorch_model.bin")
    (vocos_repo / "config.yaml").write_text("feature_extractor: {}\n")
    (vocos_repo / "README.md").write_text("not needed")
    dit_only = {
        k: v for k, v in load_file(str(tiny_ckpt / "model.safetensors")).items() if "vocoder" not in k
    }
    assert not split_state(dit_only)[1]
    weights = tmp_path / "dit.safetensors"
    save_file(dit_only, str(weights))
    fake = _install(monkeypatch, vocos_repo, tmp_path)
    got = load_checkpoint(weights, vocab=ck.vocab_path, vocoder="charactr/vocos-mel-24khz")
    assert fake.calls[0]["repo_id"] == "charactr/vocos-mel-24khz"
    assert fake.fetched() == {"pytorch_model.bin", "config.yaml"}
    assert got.vocos_state.keys() == ck.vocos_state.keys()
