"""Speed levers on the PyTorch path keep the numbers: dtype paths, fused QKV, torch.compile with
length buckets (no recompiles after warm-up), CFG truncation, batching, the voice cache, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import indicf5_fast
from indicf5_fast import sampling
from indicf5_fast.backends.base import cpu_has_fast_bf16, resolve_dtype
from indicf5_fast.config import SamplingOptions
from indicf5_fast.errors import InputError
from indicf5_fast.model.dit import DiT, DiTArgs
from indicf5_fast.model.init import init_random_

TEXT = "नमस्ते दुनिया. यह एक छोटा परीक्षण है।"


def _cond_mel(n: int = 50) -> np.ndarray:
    return (torch.randn(n, 100, generator=torch.Generator().manual_seed(4)) * 2 - 5).numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class CountingBackend:
    """Wraps a backend; records the batch size of every velocity call."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def velocity(self, x, cond, text_emb, t, mask):
        self.batches.append(int(x.shape[0]))
        return self.inner.velocity(x, cond, text_emb, t, mask)


# ------------------------------------------------------------------ precision
def test_auto_dtype_never_picks_fp16_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    with pytest.raises(InputError):
        resolve_dtype("float16", cpu)


def test_bf16_path_runs_in_bf16_and_stays_close_to_fp32(tiny_ckpt, tiny_tts, demo_voice):
    bf = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="bfloat16")
    be = bf.backend
    assert be.dtype == torch.bfloat16 and be.dit.proj_out.weight.dtype == torch.bfloat16
    assert be.vocos.backbone.embed.weight.dtype == torch.bfloat16
    assert be.vocos.head.out.weight.dtype == torch.float32  # exp / ISTFT stay float32
    n = 70
    v = be.velocity(
        torch.randn(2, n, 100), torch.zeros(2, n, 100), torch.zeros(2, n, 32), torch.rand(2), None
    )
    assert v.dtype == torch.float32  # the sampler maths above the backend stays fp32
    ref = tiny_tts.sample_mel(_cond_mel(), TEXT, 120, nfe_step=8, seed=3)
    got = bf.sample_mel(_cond_mel(), TEXT, 120, nfe_step=8, seed=3)
    gen_ref, gen = ref[50:], got[50:]
    assert not np.array_equal(gen, gen_ref)  # really a different (bf16) computation
    assert _cosine(gen, gen_ref) > 0.999
    wav, text = demo_voice
    wave = bf.synthesize("एक छोटा वाक्य।", wav, text, nfe_step=4, seed=0)
    assert wave.dtype == np.float32 and np.isfinite(wave).all() and np.abs(wave).max() > 0


# ------------------------------------------------------------------ attention variants
@pytest.mark.parametrize("impl", ["matmul", "export"])
def test_attention_variants_equal_sdpa_with_and_without_padding(impl):
    args = DiTArgs.tiny(vocab_size=40)
    ref = init_random_(DiT(args), torch.Generator().manual_seed(0)).eval()
    alt = init_random_(DiT(args), torch.Generator().manual_seed(0)).eval().set_attention(impl)
    g = torch.Generator().manual_seed(2)
    x, cond = torch.randn(2, 29, 100, generator=g), torch.randn(2, 29, 100, generator=g)
    t = torch.tensor([0.1, 0.8])
    with torch.no_grad():
        emb = ref.embed_text(torch.randint(0, 40, (2, 12), generator=g), torch.tensor([29, 22]))
        for mask in (None, torch.arange(29)[None] < torch.tensor([[29], [22]])):
            want, got = ref(x, cond, emb, t, mask), alt(x, cond, emb, t, mask)
            assert torch.isfinite(got).all() and want.abs().max() > 1e-3
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="attention impl"):
        alt.set_attention("flash")


# ------------------------------------------------------------------ fused QKV
def test_fused_qkv_equals_separate_projections():
    args = DiTArgs.tiny(vocab_size=40)
    plain = init_random_(DiT(args), torch.Generator().manual_seed(0)).eval()
    fused = init_random_(DiT(args), torch.Generator().manual_seed(0)).eval().fuse_qkv_()
    sd_plain, sd_fused = plain.state_dict(), fused.state_dict()
    assert list(sd_plain) == list(sd_fused)  # checkpoints keep upstream's keys
    for k in sd_plain:
        torch.testing.assert_close(sd_fused[k], sd_plain[k], rtol=0, atol=0)
    attn = fused.transformer_blocks[0].attn
    assert attn.to_k.weight.data_ptr() == attn.to_qkv.weight[args.dim :].data_ptr()  # views, no copy
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([37, 30])
    mask = torch.arange(37)[None] < lens[:, None]
    x, cond = torch.randn(2, 37, 100, generator=g), torch.randn(2, 37, 100, generator=g)
    text = torch.randint(0, 40, (2, 20), generator=g)
    with torch.no_grad():
        emb = plain.embed_text(text, lens)
        want = plain(x, cond, emb, torch.tensor([0.2, 0.7]), mask)
        got = fused(x, cond, emb, torch.tensor([0.2, 0.7]), mask)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_prepacked_linears_keep_state_dict_and_outputs(tiny_ckpt):
    from indicf5_fast.backends.torch_backend import PackedLinear, can_prepack

    cpu = torch.device("cpu")
    if not can_prepack(cpu, torch.bfloat16):
        pytest.skip("oneDNN bf16 is not available on this CPU")
    plain = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="bfloat16").backend
    packed = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="bfloat16").backend
    plain._prepack = False
    keys_before = {k: v.clone() for k, v in packed.dit.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x, cond, emb = (
        torch.randn(2, 45, 100, generator=g),
        torch.randn(2, 45, 100, generator=g),
        torch.randn(2, 45, 32, generator=g),
    )
    t = torch.tensor([0.4, 0.4])
    got, want = packed.velocity(x, cond, emb, t, None), plain.velocity(x, cond, emb, t, None)
    assert packed.describe()["prepacked"] and not plain.describe()["prepacked"]
    assert sum(isinstance(m, PackedLinear) for m in packed.dit.modules()) == 1 + 4 * 2  # proj + 4 per layer
    after = packed.dit.state_dict()
    assert list(after) == list(keys_before)
    for k, v in keys_before.items():
        assert torch.equal(after[k], v)
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)  # bf16 rounding differs, values do not
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    with pytest.raises(RuntimeError):
        packed.enable_compile(16)  # compiled graphs pack their own weights


# ------------------------------------------------------------------ length buckets + compile
def test_bucket_padding_with_mask_equals_unpadded(tiny_ckpt, tiny_tts):
    """The engine pads frames to bucket multiples (masked) for compiled backends."""
    padded = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32")
    padded.backend.frame_bucket = 32  # padding without compile: exercises the engine path only
    for duration in (97, 128):
        want = tiny_tts.sample_mel(_cond_mel(), TEXT, duration, nfe_step=6, seed=2)
        got = padded.sample_mel(_cond_mel(), TEXT, duration, nfe_step=6, seed=2)
        assert got.shape == want.shape == (duration, 100)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_compile_does_not_recompile_after_warmup(tiny_ckpt, tiny_tts):
    tts = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32", compile=True, frame_bucket=32)
    be = tts.backend
    assert be.compiled and be.frame_bucket == 32
    be.warmup([60, 100, 150], batch_sizes=(1,))
    built = be.compiles
    assert built >= 1
    outs = {}
    for duration in (61, 90, 100, 140, 150):  # all inside the warmed buckets (64 .. 160)
        outs[duration] = tts.sample_mel(_cond_mel(), TEXT, duration, nfe_step=4, seed=1)
    assert be.compiles == built, "a length inside the warmed buckets recompiled"
    for duration, got in outs.items():
        want = tiny_tts.sample_mel(_cond_mel(), TEXT, duration, nfe_step=4, seed=1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ fewer passes
def test_presets_and_any_nfe():
    fast = SamplingOptions.preset("fast")
    assert (fast.nfe_step, fast.schedule) == (7, "epss")
    quality = SamplingOptions.preset("quality")
    assert (quality.nfe_step, quality.schedule) == (32, "uniform")
    grid = sampling.time_grid(7, "epss", None)
    torch.testing.assert_close(grid, torch.tensor([0, 2, 4, 6, 8, 16, 24, 32]) / 32)
    for n in (1, 3, 13):  # any NFE works; EPSS without a table entry falls back to uniform
        assert sampling.time_grid(n, "uniform").numel() == n + 1
        torch.testing.assert_close(sampling.time_grid(n, "epss", None), torch.linspace(0, 1, n + 1))


def test_cfg_truncation_skips_uncond_pass_in_last_steps(tiny_ckpt):
    tts = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32")
    counting = CountingBackend(tts.backend)
    tts.backend = counting
    full = tts.sample_mel(_cond_mel(), TEXT, 110, nfe_step=6, seed=5)
    assert counting.batches == [2] * 6
    counting.batches.clear()
    cut = tts.sample_mel(_cond_mel(), TEXT, 110, nfe_step=6, seed=5, cfg_skip_last=2)
    assert counting.batches == [2] * 4 + [1] * 2
    assert not np.allclose(cut[50:], full[50:])

    # the same thing by hand: CFG for steps 0-3, the conditional prediction alone for 4-5
    g = torch.Generator().manual_seed(0)
    noise, cond = torch.randn(1, 20, 100, generator=g), torch.randn(1, 20, 100, generator=g)
    keep = torch.arange(20)[None] < 8
    emb, null = torch.randn(1, 20, 8, generator=g), torch.randn(1, 20, 8, generator=g)

    def velocity(x, c, e, t, mask):  # a deterministic stand-in for the DiT
        return torch.tanh(x * 0.5 + c * 0.3 + e.mean(-1, keepdim=True) + t[:, None, None])

    grid = sampling.time_grid(6)
    got = sampling.sample(velocity, noise, cond, keep, emb, null, grid, 2.0, cfg_skip_last=2)
    x, step_cond = noise.clone(), torch.where(keep[..., None], cond, 0.0)
    for k in range(6):
        t = grid[k].repeat(1)
        v = velocity(x, step_cond, emb, t, None)
        if k < 4:
            v = v + (v - velocity(x, torch.zeros_like(step_cond), null, t, None)) * 2.0
        x = x + (grid[k + 1] - grid[k]) * v
    torch.testing.assert_close(got, torch.where(keep[..., None], cond, x), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ batching and the voice cache
def test_batch_of_different_lengths_equals_one_by_one_with_buckets(tiny_ckpt, demo_voice):
    tts = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32", max_batch_size=4)
    tts.backend.frame_bucket = 16  # the compiled path's padding, cheaply
    wav, text = demo_voice
    voice = tts.prepare_voice(str(wav), text)
    texts = ["ठीक है।", "यह वाक्य पहले वाले से काफ़ी लंबा है, इसलिए इसकी अवधि भी लंबी होगी।", "नमस्ते दुनिया"]
    reqs = [tts.make_request(t, voice=voice, seed=11 + i, nfe_step=6) for i, t in enumerate(texts)]
    batched = tts.synthesize_batch(reqs)
    lengths = {b.shape[0] for b in batched}
    assert len(lengths) == 3  # really different lengths in one padded batch
    for i, t in enumerate(texts):
        alone = tts.synthesize(t, voice=voice, seed=11 + i, nfe_step=6)
        np.testing.assert_allclose(batched[i], alone, rtol=1e-4, atol=2e-5)


def test_voice_cache_hit_skips_front_end(tiny_ckpt, demo_voice):
    tts = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32")
    wav, text = demo_voice
    calls = []
    build = tts._build_voice
    tts._build_voice = lambda *a, **k: calls.append(1) or build(*a, **k)
    first = tts.prepare_voice(str(wav), text)
    again = tts.prepare_voice(str(wav), text)
    assert again is first and len(calls) == 1
    assert (tts.voice_cache_hits, tts.voice_cache_misses) == (1, 1)
    tts.prepare_voice(str(wav), text + " दोबारा")  # other text: another voice
    assert len(calls) == 2 and tts.voice_cache_misses == 2
