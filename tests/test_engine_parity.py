"""End-to-end parity of the sampler and checkpoint loading against upstream f5-tts CFM.sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import indicf5_fast
from indicf5_fast.model.checkpoint import load_checkpoint
from indicf5_fast.sampling import EPSS_TABLE, time_grid
from upstream_oracle import f5_model

TEXT = "नमस्ते दुनिया. Hello world, यह एक test है।"


def upstream_cfm(ckpt_dir, attn_mask=False):
    up = f5_model()
    ck = load_checkpoint(ckpt_dir)
    a = ck.dit_args
    dit = up.DiT(
        dim=a.dim,
        depth=a.depth,
        heads=a.heads,
        dim_head=a.dim_head,
        ff_mult=a.ff_mult,
        text_num_embeds=a.vocab_size,
        text_dim=a.text_dim,
        conv_layers=a.conv_layers,
        text_mask_padding=a.text_mask_padding,
        pe_attn_head=a.pe_attn_head,
        attn_mask_enabled=attn_mask,
        dropout=0.0,
    )
    dit.load_state_dict(ck.dit_state)
    vocab = {t: i for i, t in enumerate(ck.vocab_path.read_text(encoding="utf-8").split("\n")[:-1])}
    return up.CFM(transformer=dit, vocab_char_map=vocab).eval()


def upstream_sample(cfm, cond_mel, text, duration, nfe, schedule, seed=7):
    from f5_tts.model.utils import convert_char_to_pinyin

    with torch.inference_mode():
        out, _ = cfm.sample(
            cond=torch.as_tensor(cond_mel)[None],
            text=convert_char_to_pinyin([text]),
            duration=duration,
            steps=nfe,
            cfg_strength=2.0,
            sway_sampling_coef=-1.0,
            seed=seed,
            use_epss=(schedule == "epss"),
        )
    return out[0]


@pytest.mark.parametrize("nfe", [8, 32])
@pytest.mark.parametrize("schedule", ["uniform", "epss"])
def test_sample_mel_matches_upstream_cfm(tiny_ckpt, tiny_tts, nfe, schedule):
    cfm = upstream_cfm(tiny_ckpt)
    g = torch.Generator().manual_seed(3)
    cond_mel = torch.randn(60, 100, generator=g).numpy()
    ref = upstream_sample(cfm, cond_mel, TEXT, 150, nfe, schedule)
    ours = tiny_tts.sample_mel(cond_mel, TEXT, 150, nfe_step=nfe, seed=7, schedule=schedule)
    assert ours.shape == (150, 100)
    gen = torch.as_tensor(ours)[60:]
    assert gen.abs().max() > 1e-2 and not torch.allclose(gen, torch.as_tensor(cond_mel[:1]))
    torch.testing.assert_close(torch.as_tensor(ours), ref, rtol=1e-4, atol=1e-4)


def test_epss_grids_equal_upstream():
    f5_model()
    from f5_tts.model.utils import get_epss_timesteps

    for n in list(EPSS_TABLE) + [3, 32]:
        up = get_epss_timesteps(n, device="cpu", dtype=torch.float32)
        torch.testing.assert_close(time_grid(n, "epss", None), up, rtol=0, atol=0)


def test_checkpoint_from_upstream_state_dict_loads(tmp_path, tiny_ckpt):
    """A checkpoint written from upstream modules' state_dict() with IndicF5 prefixes loads
    through indicf5_fast.load and gives upstream's output."""
    from safetensors.torch import save_file

    cfm = upstream_cfm(tiny_ckpt)
    ck = load_checkpoint(tiny_ckpt)
    tensors = {
        f"ema_model._orig_mod.transformer.{k}": v.contiguous()
        for k, v in cfm.transformer.state_dict().items()
    }
    tensors |= {f"vocoder.{k}": v.contiguous() for k, v in ck.vocos_state.items()}  # no _orig_mod here
    (tmp_path / "checkpoints").mkdir()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "checkpoints" / "vocab.txt").write_bytes(ck.vocab_path.read_bytes())
    tts = indicf5_fast.load(str(tmp_path), device="cpu", dtype="float32")
    cond_mel = np.random.default_rng(0).standard_normal((40, 100)).astype(np.float32)
    ref = upstream_sample(cfm, cond_mel, TEXT, 100, 8, "uniform", seed=11)
    ours = tts.sample_mel(cond_mel, TEXT, 100, nfe_step=8, seed=11)
    torch.testing.assert_close(torch.as_tensor(ours), ref, rtol=1e-4, atol=1e-4)


def test_batched_chunks_equal_one_by_one(tiny_tts, demo_voice):
    wav, text = demo_voice
    voice = tiny_tts.prepare_voice(str(wav), text)
    texts = ["नमस्ते.", "यह एक लंबा वाक्य है जो कुछ ज़्यादा समय लेगा।", "ok"]
    reqs = [tiny_tts.make_request(t, voice=voice, seed=5 + i, nfe_step=8) for i, t in enumerate(texts)]
    batched = tiny_tts.synthesize_batch(reqs)
    for i, t in enumerate(texts):
        alone = tiny_tts.synthesize(t, voice=voice, seed=5 + i, nfe_step=8)
        assert batched[i].shape == alone.shape
        np.testing.assert_allclose(batched[i], alone, rtol=1e-4, atol=2e-5)
