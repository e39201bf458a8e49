"""Checkpoint layout, loading errors, tokenizer parity with upstream."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import indicf5_fast
from indicf5_fast.errors import CheckpointError
from indicf5_fast.frontend.text import Tokenizer
from indicf5_fast.model.checkpoint import load_checkpoint
from indicf5_fast.model.dit import DiT, DiTArgs
from indicf5_fast.model.random_checkpoint import BASE_VOCAB_SIZE, build_vocab, indicf5_layout
from indicf5_fast.model.vocos import Vocos, VocosArgs
from upstream_oracle import f5_model

SAMPLES = {
    "hindi": "नमस्ते दुनिया, यह एक परीक्षण है। क्या आप ठीक हैं?",
    "tamil": "வணக்கம் உலகம்; இது ஒரு சோதனை.",
    "bengali": "আমি বাংলায় কথা বলি। “ভালো” আছি!",
    "mixed": "Hello नमस्ते OK world; it's “fine” 123 abc:def",
}


def test_base_layout_has_447_indicf5_tensors():
    with torch.device("meta"):
        tensors = indicf5_layout(DiT(DiTArgs.base(BASE_VOCAB_SIZE)), Vocos(VocosArgs()))
    assert len(tensors) == 447
    dit_keys = [k for k in tensors if k.startswith("ema_model._orig_mod.transformer.")]
    voc_keys = [k for k in tensors if k.startswith("vocoder._orig_mod.")]
    assert (len(dit_keys), len(voc_keys)) == (364, 83)
    assert tensors["ema_model._orig_mod.transformer.text_embed.text_embed.weight"].shape == (2546, 512)
    assert tensors["ema_model._orig_mod.transformer.input_embed.proj.weight"].shape == (1024, 712)
    n_params = sum(v.numel() for k, v in tensors.items() if k in dit_keys)
    assert 330e6 < n_params < 345e6


def test_vocab_covers_scripts_and_space_first():
    vocab = build_vocab()
    assert vocab[0] == " " and len(set(vocab)) == len(vocab)
    for ch in "अகকਕકକకಕമA।,?":
        assert ch in vocab, ch
    assert len(build_vocab(BASE_VOCAB_SIZE)) == BASE_VOCAB_SIZE


def test_random_weights_are_not_degenerate(tiny_ckpt):
    ck = load_checkpoint(tiny_ckpt)
    for k, v in {**ck.dit_state, **ck.vocos_state}.items():
        if v.is_floating_point() and v.numel() > 1:
            assert v.abs().sum() > 0, f"{k} is all zero"
    assert ck.config["arch"]["flavour"] == "v0"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_tokenizer_ids_equal_upstream(tiny_ckpt, name):
    f5_model()
    from f5_tts.model.utils import convert_char_to_pinyin, list_str_to_idx

    tok = Tokenizer.from_file(tiny_ckpt / "checkpoints" / "vocab.txt")
    text = SAMPLES[name]
    ref = list_str_to_idx(convert_char_to_pinyin([text]), tok.index)[0].tolist()
    assert tok.encode(text) == ref
    assert sum(i != 0 for i in ref) > len(ref) // 2  # mostly known characters, not all unknown


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_and_corrupt_files(tiny_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    d = _copy(tiny_ckpt, tmp_path / "corrupt")
    (d / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(d)
    d = _copy(tiny_ckpt, tmp_path / "novocab")
    (d / "checkpoints" / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="vocab"):
        load_checkpoint(d)
    d = _copy(tiny_ckpt, tmp_path / "badjson")
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(d)


def test_wrong_shapes_and_missing_keys_are_named(tiny_ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy(tiny_ckpt, tmp_path / "shapes")
    tensors = load_file(str(d / "model.safetensors"))
    key = "ema_model._orig_mod.transformer.transformer_blocks.1.attn.to_k.weight"
    tensors[key] = torch.zeros(3, 3)
    del tensors["vocoder._orig_mod.head.out.bias"]
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        indicf5_fast.load(str(d), device="cpu", dtype="float32")
    assert "transformer_blocks.1.attn.to_k.weight" in str(e.value)
    d2 = _copy(tiny_ckpt, tmp_path / "missingvoc")
    tensors = load_file(str(d2 / "model.safetensors"))
    del tensors["vocoder._orig_mod.head.out.bias"]
    save_file(tensors, str(d2 / "model.safetensors"))
    with pytest.raises(CheckpointError, match="head.out.bias"):
        indicf5_fast.load(str(d2), device="cpu", dtype="float32")


def test_vocab_size_mismatch(tiny_ckpt, tmp_path):
    d = _copy(tiny_ckpt, tmp_path / "vocab")
    with (d / "checkpoints" / "vocab.txt").open("a", encoding="utf-8") as f:
        f.write("☃\n")
    with pytest.raises(CheckpointError, match="tokens"):
        load_checkpoint(d)


def test_v1_flavour_from_config(tiny_ckpt, tmp_path):
    d = _copy(tiny_ckpt, tmp_path / "v1")
    cfg = json.loads((d / "config.json").read_text())
    cfg["arch"]["flavour"] = "v1"
    (d / "config.json").write_text(json.dumps(cfg))
    assert load_checkpoint(d).dit_args.flavour == "v1"
    assert load_checkpoint(d, flavour="v0").dit_args.flavour == "v0"


@pytest.mark.parametrize("kind", ["release_safetensors", "training_pt"])
def test_upstream_checkpoint_plus_vocos_dir(tiny_ckpt, tmp_path, kind):
    """Upstream F5 checkpoints: DiT weights under ema_model.transformer.* (+ initted/step), the
    vocoder in a Vocos dir (config.yaml + pytorch_model.bin), the vocab as a separate file."""
    from safetensors.torch import save_file

    ck = load_checkpoint(tiny_ckpt)
    vocos_dir = tmp_path / "vocos"
    vocos_dir.mkdir()
    torch.save(ck.vocos_state, vocos_dir / "pytorch_model.bin")
    (vocos_dir / "config.yaml").write_text("feature_extractor: {}\n")
    dit = {f"ema_model.transformer.{k}": v.contiguous() for k, v in ck.dit_state.items()}
    if kind == "release_safetensors":
        weights = tmp_path / "model_1250000.safetensors"
        save_file({**dit, "ema_model.initted": torch.tensor(True), "ema_model.step": torch.tensor(5)}, str(weights))
    else:
        weights = tmp_path / "model_last.pt"
        torch.save({"ema_model_state_dict": {**dit, "initted": torch.tensor(True)}, "step": 7}, weights)
    tts = indicf5_fast.load(str(weights), device="cpu", dtype="float32", vocab=str(ck.vocab_path),
                            vocoder=str(vocos_dir))
    ref = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32")
    cond = torch.randn(30, 100, generator=torch.Generator().manual_seed(0)).numpy()
    a = tts.sample_mel(cond, "नमस्ते", 60, nfe_step=4, seed=1)
    b = ref.sample_mel(cond, "नमस्ते", 60, nfe_step=4, seed=1)
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=0, atol=0)
    wave = tts.vocode(a)
    assert wave.shape == (59 * 256,)
    with pytest.raises(CheckpointError, match="vocab"):
        load_checkpoint(weights)


def test_hub_id_goes_through_huggingface_hub(tiny_ckpt, monkeypatch):
    """No network in tests: snapshot_download is replaced, the call path is real."""
    import huggingface_hub

    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append(repo_id)
        if repo_id == "ai4bharat/IndicF5":
            return str(tiny_ckpt)
        raise OSError(f"{repo_id}: 404 repository not found")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    tts = indicf5_fast.load("ai4bharat/IndicF5", device="cpu", dtype="float32")
    assert calls == ["ai4bharat/IndicF5"] and tts.tokenizer.vocab_size > 500
    with pytest.raises(CheckpointError, match="could not download"):
        load_checkpoint("someone/missing-model")
