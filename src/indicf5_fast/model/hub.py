"""Hugging Face hub downloads: only the files the loader reads, a pinned revision, one-line errors.

``huggingface_hub`` raises many exception types with multi-line messages; each is turned into a
HubError subclass whose single line says what the user should do. ``HF_HUB_OFFLINE`` is read at
call time (not import time), so a test or a container can set it per process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from indicf5_fast.errors import (
    HubAccessError,
    HubError,
    HubNotFoundError,
    HubOfflineError,
    HubRevisionError,
)

# What load_checkpoint reads from an IndicF5-layout repo. Weights are taken from the repo root
# only (_find_weights does not recurse): nested weights are excluded by NESTED_WEIGHTS.
MODEL_FILES = ("config.json", "checkpoints/vocab.txt", "vocab.txt", "prompts/*", "*.safetensors")
PT_FILES = ("*.pt",)  # fetched only when the root has no .safetensors (the loader prefers those)
NESTED_WEIGHTS = ("*/*.safetensors", "*/*.pt", "*/*.bin")
VOCOS_FILES = ("config.yaml", "pytorch_model.bin")  # a Vocos repo, e.g. charactr/vocos-mel-24khz
DEFAULT_VOCAB = "checkpoints/vocab.txt"
LOGIN_HINT = "log in with `huggingface-cli login` (or `hf auth login`) or set HF_TOKEN"


def looks_like_hub_id(text: str) -> bool:
    """``owner/name``: one slash, not a relative or absolute path."""
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith("/")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE with huggingface_hub's own truth values."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """Snapshot of the files an IndicF5-layout repo needs; returns the local snapshot dir."""
    root = download(repo_id, MODEL_FILES, revision)
    extra: list[str] = []
    vocab = _config_vocab(root / "config.json")
    if vocab not in MODEL_FILES and not (root / vocab).is_file():
        extra.append(vocab)
    if not any(root.glob("*.safetensors")):
        extra.extend(PT_FILES)
    # A second call only adds files: those already fetched are found in the cache.
    return download(repo_id, extra, revision) if extra else root


def download_vocoder(repo_id: str, revision: str | None = None) -> Path:
    return download(repo_id, VOCOS_FILES, revision)


def download(repo_id: str, patterns: Sequence[str], revision: str | None = None) -> Path:
    """snapshot_download restricted to ``patterns``; every hub failure becomes one HubError line."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a core dependency
        raise HubError("huggingface_hub is needed to download hub models: pip install huggingface_hub") from e
    offline = hub_offline()
    try:
        path = snapshot_download(
            repo_id=repo_id,
            revision=revision,
            allow_patterns=list(patterns),
            ignore_patterns=list(NESTED_WEIGHTS),
            local_files_only=offline,
        )
    except Exception as e:  # mapped below; anything unknown still ends as one line
        raise hub_error(e, repo_id, revision, offline) from e
    return Path(path)


def hub_error(e: BaseException, repo_id: str, revision: str | None, offline: bool) -> HubError:
    """Map a huggingface_hub exception to a one-line HubError (by type name, then HTTP status,
    so it works across huggingface_hub versions without importing their error module)."""
    names = {c.__name__ for c in type(e).__mro__}
    status = getattr(getattr(e, "response", None), "status_code", None)
    at = f" at revision {revision!r}" if revision else ""
    page = f"https://huggingface.co/{repo_id}"
    if "GatedRepoError" in names:
        return HubAccessError(f"{repo_id} is a gated model: accept its terms on {page} and {LOGIN_HINT}")
    if "RevisionNotFoundError" in names:
        return HubRevisionError(
            f"{repo_id} has no revision {revision!r} (a branch, tag or commit hash): check --revision"
        )
    if "RepositoryNotFoundError" in names:
        return HubNotFoundError(
            f"{repo_id} was not found on the hub: check the id; if it is private or gated, "
            f"accept its terms on {page} and {LOGIN_HINT}"
        )
    if status in (401, 403):
        return HubAccessError(
            f"the hub refused access to {repo_id} (HTTP {status}): accept the model's terms on {page} "
            f"and {LOGIN_HINT}"
        )
    if "LocalEntryNotFoundError" in names or "OfflineModeIsEnabled" in names:
        if offline:
            return HubOfflineError(
                f"{repo_id}{at} is not in the local hub cache and HF_HUB_OFFLINE is set: "
                "download it once with network access, or unset HF_HUB_OFFLINE"
            )
        return HubOfflineError(
            f"could not reach the model hub for {repo_id}{at} and it is not in the local cache: "
            "check the network (or pass a local directory as --model)"
        )
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return HubError(f"could not download {repo_id!r}{at} from the model hub: {first}")


def _config_vocab(path: Path) -> str:
    """The vocab path config.json names (default checkpoints/vocab.txt); load_checkpoint reports
    a broken config.json itself, so a bad file here just means the default."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("vocab_path", DEFAULT_VOCAB)
    except (OSError, ValueError, AttributeError):
        return DEFAULT_VOCAB
    return value if isinstance(value, str) and value else DEFAULT_VOCAB
