"""`indicf5-fast export f5tts`: the files upstream F5-TTS's own tools read, proven with those tools.

Upstream ``f5-tts`` loads the exported checkpoint with ``utils_infer.load_model`` and its
``CFM.sample`` equals ours; ``load_vocoder(is_local=True)`` loads the Vocos dir and decodes as
ours; the TensorRT-LLM runtime's ``convert_checkpoint.py`` converts it (tp = 1) and the Triton
model's text-embedding loader accepts it strictly and embeds as ours. Our own loader reads the
export back to the same model. Everything past the checkpoint conversion needs a GPU
(``trtllm-build``): see docs/tensorrt-llm.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import indicf5_fast
from indicf5_fast.cli import main
from indicf5_fast.export.f5tts import MANIFEST, export_f5tts, model_config, upstream_model_name
from indicf5_fast.model.checkpoint import load_checkpoint
from indicf5_fast.model.dit import DiTArgs
from upstream_runtime import convert_checkpoint, runtime_dir, trtllm_runtime, utils_infer

TEXT = "नमस्ते दुनिया. Hello world, यह एक test है।"


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("f5tts") / "export"
    assert main(["export", "f5tts", "--model", str(tiny_ckpt), "--out", str(out), "--step", "7"]) == 0
    return out


def _cfg(exported: Path) -> dict:
    return yaml.safe_load((exported / "model_cfg.yaml").read_text())["model"]


def test_files_manifest_and_training_layout(exported, tiny_ckpt):
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["checkpoint"] == "model_7.pt" and manifest["flavour"] == "v0"
    for name, info in manifest["files"].items():
        data = (exported / name).read_bytes()
        assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"]
    ckpt = torch.load(exported / "model_7.pt", map_location="cpu", weights_only=True)
    assert list(ckpt) == ["ema_model_state_dict"]
    ema = ckpt["ema_model_state_dict"]
    src = load_checkpoint(tiny_ckpt)
    assert int(ema["step"]) == 7 and bool(ema["initted"])
    dit = {
        k[len("ema_model.transformer.") :]: v
        for k, v in ema.items()
        if k.startswith("ema_model.transformer.")
    }
    assert len(dit) == len(ema) - 2 and set(dit) == set(src.dit_state)
    assert all(torch.equal(dit[k], src.dit_state[k]) for k in dit)
    vocos = torch.load(exported / "vocos-mel-24khz" / "pytorch_model.bin", weights_only=True)
    assert set(vocos) == set(src.vocos_state) and all(
        torch.equal(vocos[k], src.vocos_state[k]) for k in vocos
    )
    # vocab: every line newline-terminated (upstream drops each line's last character)
    raw = (exported / "vocab.txt").read_text(encoding="utf-8")
    assert (
        raw.endswith("\n")
        and raw.split("\n")[:-1]
        == src.vocab_path.read_text(encoding="utf-8").split("\n")[: src.dit_args.vocab_size]
    )
    arch = _cfg(exported)["arch"]
    assert arch["text_mask_padding"] is False and arch["pe_attn_head"] == 1  # IndicF5 = v0


def test_upstream_load_model_and_cfm_sample_equal_ours(exported, tiny_tts):
    """upstream's own loader on the export; CFM.sample vs our sample_mel (<= 1e-4 relative)."""
    ui = utils_infer()
    from f5_tts.model import DiT
    from f5_tts.model.utils import convert_char_to_pinyin

    cfm = ui.load_model(
        DiT,
        _cfg(exported)["arch"],
        str(exported / "model_7.pt"),
        mel_spec_type="vocos",
        vocab_file=str(exported / "vocab.txt"),
        device="cpu",
    ).eval()
    cond = torch.randn(60, 100, generator=torch.Generator().manual_seed(3))
    for nfe, epss in ((8, False), (7, True)):
        with torch.inference_mode():
            ref, _ = cfm.sample(
                cond=cond[None],
                text=convert_char_to_pinyin([TEXT]),
                duration=150,
                steps=nfe,
                cfg_strength=2.0,
                sway_sampling_coef=-1.0,
                seed=11,
                use_epss=epss,
            )
        ours = torch.as_tensor(
            tiny_tts.sample_mel(
                cond.numpy(), TEXT, 150, nfe_step=nfe, seed=11, schedule="epss" if epss else "uniform"
            )
        )
        assert ours[60:].abs().max() > 1e-2  # not vacuous
        torch.testing.assert_close(ours, ref[0].float(), rtol=1e-4, atol=1e-4)


def test_upstream_load_vocoder_local_dir_decodes_as_ours(exported, tiny_tts):
    ui = utils_infer()
    vocoder = ui.load_vocoder(
        vocoder_name="vocos", is_local=True, local_path=str(exported / "vocos-mel-24khz"), device="cpu"
    )
    mel = torch.randn(1, 100, 90, generator=torch.Generator().manual_seed(5)) * 2.0 - 4.0
    with torch.inference_mode():
        ref = vocoder.decode(mel)[0]
    ours = torch.as_tensor(tiny_tts.vocode(mel[0].T.numpy()))
    assert ours.shape == ref.shape == (89 * 256,) and ours.abs().max() > 1e-3
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_trtllm_convert_checkpoint_reads_the_export(exported, tmp_path):
    """runtime/triton_trtllm/scripts/convert_checkpoint.py (tp = 1) on the export: every DiT
    weight converted under the TensorRT-LLM names, q/k scaled by 64^-0.25, config flags = v0."""
    conv = convert_checkpoint()
    ckpt = load_checkpoint(
        exported / "model_7.pt", vocab=exported / "vocab.txt", vocoder=exported / "vocos-mel-24khz"
    )
    a = ckpt.dit_args
    args = Namespace(
        pytorch_ckpt=str(exported / "model_7.pt"), output_dir=str(tmp_path / "trtllm_ckpt"),
        tp_size=1, cp_size=1, pp_size=1, dtype="float32", fp8_linear=False, model_name="F5TTS_Custom",
        hidden_size=a.dim, depth=a.depth, num_heads=a.heads, dim_head=a.dim_head, ff_mult=a.ff_mult,
        text_dim=a.text_dim, text_mask_padding=a.text_mask_padding, conv_layers=a.conv_layers,
        pe_attn_head=a.pe_attn_head,
    )  # fmt: skip
    conv.covert_and_save(args, 0)  # sic: upstream's name
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "trtllm_ckpt" / "rank0.safetensors"))
    config = json.loads((tmp_path / "trtllm_ckpt" / "config.json").read_text())
    assert config["text_mask_padding"] is False and config["pe_attn_head"] == 1
    assert len(weights) == len(ckpt.dit_state)
    src = ckpt.dit_state
    for i in range(a.depth):
        b = f"transformer_blocks.{i}"
        torch.testing.assert_close(weights[f"{b}.attn.to_q.weight"], src[f"{b}.attn.to_q.weight"] * 64**-0.25)
        torch.testing.assert_close(weights[f"{b}.attn.to_k.bias"], src[f"{b}.attn.to_k.bias"] * 64**-0.25)
        assert torch.equal(weights[f"{b}.attn.to_out.weight"], src[f"{b}.attn.to_out.0.weight"])
        assert torch.equal(weights[f"{b}.ff.project_in.weight"], src[f"{b}.ff.ff.0.0.weight"])
    assert torch.equal(weights["time_embed.mlp1.weight"], src["time_embed.time_mlp.0.weight"])
    assert weights["input_embed.conv_pos_embed.conv1d1.weight"].shape == (
        *src["input_embed.conv_pos_embed.conv1d.0.weight"].shape,
        1,
    )


def test_trtllm_runtime_text_embedding_loads_the_export_and_equals_ours(exported, tiny_tts):
    """The Triton model computes the text embedding in PyTorch from ``model_path``:
    ``get_text_embed_dict`` + ``TextEmbedding.load_state_dict(strict=True)`` on our export."""
    rt = trtllm_runtime()
    cfg = _cfg(exported)["arch"]
    vocab_size = sum(1 for _ in (exported / "vocab.txt").open(encoding="utf-8"))
    emb = rt.TextEmbedding(
        text_num_embeds=vocab_size, text_dim=cfg["text_dim"], mask_padding=cfg["text_mask_padding"],
        conv_layers=cfg["conv_layers"], precompute_max_pos=4096,
    ).eval()  # fmt: skip
    emb.load_state_dict(rt.get_text_embed_dict(str(exported / "model_7.pt")), strict=True)
    ids = torch.tensor([tiny_tts.tokenizer.encode(TEXT)])  # runtime: -1 padded ids; it adds 1 itself
    n = ids.shape[1] + 20
    with torch.inference_mode():
        ref = torch.cat([emb(ids, n, drop_text=False), emb(ids, n, drop_text=True)])
        shifted = torch.nn.functional.pad(ids + 1, (0, 20))
        ours = tiny_tts.backend.text_embed(torch.cat([shifted, shifted]), torch.tensor([False, True]))
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(ours.float(), ref, rtol=1e-5, atol=1e-5)


def test_our_loader_reads_the_export_back(exported, tiny_tts):
    back = indicf5_fast.load(
        str(exported / "model_7.pt"), device="cpu", dtype="float32",
        vocab=str(exported / "vocab.txt"), vocoder=str(exported / "vocos-mel-24khz"),
    )  # fmt: skip
    cond = torch.randn(30, 100, generator=torch.Generator().manual_seed(0)).numpy()
    a = back.sample_mel(cond, TEXT, 80, nfe_step=4, seed=1)
    b = tiny_tts.sample_mel(cond, TEXT, 80, nfe_step=4, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.vocode(a), tiny_tts.vocode(b))


def test_model_config_matches_upstream_base_configs():
    """IndicF5's dims + v0 flags are exactly upstream's F5TTS_Base (v1: F5TTS_v1_Base)."""
    cfg_dir = runtime_dir().parents[1] / "configs"
    for flavour, name in (("v0", "F5TTS_Base"), ("v1", "F5TTS_v1_Base")):
        args = DiTArgs.base(flavour=flavour)
        assert upstream_model_name(args) == name
        up = yaml.safe_load((cfg_dir / f"{name}.yaml").read_text())["model"]
        ours = model_config(args, name)["model"]
        assert {k: ours["arch"][k] for k in up["arch"]} == up["arch"]
        assert ours["arch"]["dim_head"] == 64 and ours["mel_spec"] == up["mel_spec"]
    assert upstream_model_name(DiTArgs.tiny()) is None


def test_convert_presets_equal_upstream_converter():
    """Our --model_name choice agrees with convert_checkpoint.py's hard-coded presets."""
    src = (runtime_dir() / "scripts" / "convert_checkpoint.py").read_text()
    for name in ("F5TTS_Base", "F5TTS_v1_Base", "F5TTS_Small", "F5TTS_v1_Small"):
        block = re.search(rf'args.model_name == "{name}":(.*?)(?:elif|return)', src, re.S).group(1)
        vals = dict(re.findall(r"args\.(\w+) = (\w+)", block))
        args = DiTArgs(
            dim=int(vals["hidden_size"]), depth=int(vals["depth"]), heads=int(vals["num_heads"]),
            dim_head=int(vals["dim_head"]), ff_mult=int(vals["ff_mult"]), text_dim=int(vals["text_dim"]),
            conv_layers=int(vals["conv_layers"]), text_mask_padding=vals["text_mask_padding"] == "True",
            pe_attn_head=None if vals["pe_attn_head"] == "None" else int(vals["pe_attn_head"]),
        )  # fmt: skip
        assert upstream_model_name(args) == name


def test_reexport_replaces_and_foreign_dirs_are_refused(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "e"
    export_f5tts(tiny_ckpt, out, step=1)
    export_f5tts(tiny_ckpt, out, step=2)  # an earlier export: replaced, no stale model_1.pt
    assert sorted(p.name for p in out.glob("model_*.pt")) == ["model_2.pt"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["export", "f5tts", "--model", str(tiny_ckpt), "--out", str(foreign)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not empty" in err and len(err.splitlines()) == 1
    assert main(["export", "f5tts", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: model not found")
    assert (foreign / "notes.txt").read_text() == "mine"
    assert main(["export", "f5tts", "--model", str(tiny_ckpt), "--out", str(foreign), "--force"]) == 0


def test_duplicate_vocab_tokens_are_refused(tiny_ckpt, tmp_path):
    import shutil

    from indicf5_fast.errors import CheckpointError

    d = tmp_path / "dup"
    shutil.copytree(tiny_ckpt, d)
    vocab = d / "checkpoints" / "vocab.txt"
    lines = vocab.read_text(encoding="utf-8").split("\n")
    lines[5] = lines[6]  # same count, one token twice: upstream's {token: id} map would shrink
    vocab.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CheckpointError, match="more than once"):
        export_f5tts(d, tmp_path / "out")


def test_runbook_pins_the_tested_upstream_files():
    """docs/tensorrt-llm.md pins upstream's runtime files by sha256: they must be the files
    these tests ran against (a newer f5-tts in CI means the runbook needs a re-check)."""
    doc = (Path(__file__).parents[1] / "docs" / "tensorrt-llm.md").read_text(encoding="utf-8")
    pins = re.findall(r"^\| `([0-9a-f]{64})` \| `([^`]+)` \|$", doc, re.M)
    assert len(pins) >= 10 and "model_repo_f5_tts/f5_tts/config.pbtxt" in dict((p, h) for h, p in pins)
    root = runtime_dir()
    for digest, rel in pins:
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
