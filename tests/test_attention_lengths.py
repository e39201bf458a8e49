"""The fused attention kernel padded to bounded lengths (model/attention.py): same result, a
bounded set of kernel shapes whatever the request lengths, and (on AMX CPUs, where PyTorch
keeps a never-freed micro-kernel per length) bounded native memory."""

from __future__ import annotations

import ctypes
import platform
import random

import pytest
import torch
import torch.nn.functional as F

from indicf5_fast.backends.torch_backend import TorchBackend, cpu_has_amx, sdpa_lengths
from indicf5_fast.model import attention
from indicf5_fast.model.dit import DiT, DiTArgs
from indicf5_fast.model.init import init_random_
from indicf5_fast.model.vocos import Vocos, VocosArgs


def _dit(lengths: tuple[int, ...] | None, dtype=torch.float32) -> DiT:
    dit = init_random_(DiT(DiTArgs.tiny(vocab_size=40)), torch.Generator().manual_seed(0)).eval()
    return dit.to(dtype).set_attention("sdpa", sdpa_lengths=lengths)


def _inputs(n: int, valid: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(n)
    x, cond = torch.randn(2, n, 100, generator=g), torch.randn(2, n, 100, generator=g)
    text = torch.randint(0, 40, (2, 12), generator=g)
    return x.to(dtype), cond.to(dtype), text, torch.tensor([0.2, 0.7]), torch.tensor([n, valid])


def test_padded_lengths_and_helper():
    lengths = sdpa_lengths(4096)
    assert lengths == tuple(sorted(set(lengths))) and lengths[-1] == 4096 and len(lengths) <= 64
    assert all(x % 32 == 0 for x in lengths)
    for n in range(1, 4097):
        m = attention.padded_length(n, lengths)
        assert m in lengths and n <= m and (m - n < 64 or m <= n * 1.125)  # <= 12.5 % above 256
    assert attention.padded_length(5000, lengths) == 5000  # past the last: unpadded


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_padded_dit_equals_unpadded(dtype):
    plain, padded = _dit(()), _dit((64, 96, 128))
    plain, padded = plain.to(dtype), padded.to(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0.05, "atol": 0.05}
    with torch.no_grad():
        for n, valid in ((70, 70), (70, 41), (128, 100)):  # padded to 96 / 96 / none
            x, cond, text, t, lens = _inputs(n, valid, dtype)
            emb = plain.embed_text(text, lens)
            mask = None if valid == n else torch.arange(n)[None] < lens[:, None]
            want, got = plain(x, cond, emb, t, mask), padded(x, cond, emb, t, mask)
            assert torch.isfinite(got).all() and want.abs().max() > 1e-3
            torch.testing.assert_close(got.float(), want.float(), **tol)


def test_fused_kernel_sees_only_the_bounded_lengths(monkeypatch):
    lengths = sdpa_lengths(4096)
    seen: set[tuple[int, int]] = set()
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.add((q.shape[2], k.shape[2]))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    dit, rng = _dit(lengths), random.Random(0)
    with torch.no_grad():
        for n in rng.sample(range(20, 700), 40):
            x, cond, text, t, lens = _inputs(n, max(1, n - rng.randrange(0, 15)))
            dit(x, cond, dit.embed_text(text, lens), t, torch.arange(n)[None] < lens[:, None])
    assert seen and all(q == k and q in lengths for q, k in seen)
    assert len(seen) < 25  # 40 distinct frame counts, far fewer kernel shapes


def test_cpu_half_precision_backend_pads_the_fused_kernel():
    dit = init_random_(DiT(DiTArgs.tiny(vocab_size=40)), torch.Generator().manual_seed(0))
    vocos = Vocos(VocosArgs.tiny())
    backend = TorchBackend(dit, vocos, torch.device("cpu"), torch.bfloat16, prepack=False)
    attn = [b.attn for b in backend.dit.transformer_blocks]
    assert {a.attn_impl for a in attn} == {"sdpa" if cpu_has_amx() else "matmul"}
    assert all(a.sdpa_lengths == sdpa_lengths(dit.args.text_pos_max) for a in attn)
    fp32 = TorchBackend(
        init_random_(DiT(DiTArgs.tiny(vocab_size=40)), torch.Generator().manual_seed(0)),
        Vocos(VocosArgs.tiny()),
        torch.device("cpu"),
        torch.float32,
    )
    # fp32: upstream's exact kernel, unpadded (parity tests compare it with upstream)
    assert all(b.attn.attn_impl == "sdpa" and b.attn.sdpa_lengths == () for b in fp32.dit.transformer_blocks)


def _heap_in_use_mib() -> float:
    class MallInfo2(ctypes.Structure):
        names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        _fields_ = [(n, ctypes.c_size_t) for n in names.split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().uordblks / 2**20


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not cpu_has_amx(),
    reason="needs glibc's mallinfo2 and an AMX CPU (elsewhere the fused kernel keeps no per-length cache)",
)
def test_native_memory_stays_bounded_over_many_lengths():
    """PyTorch's fused CPU attention keeps a micro-kernel per new length (never freed): 80
    distinct lengths grow the heap by MiBs unpadded; padded, the few shapes are built once."""
    q = torch.randn(2, 4, 1200, 64, dtype=torch.bfloat16)

    def growth(lengths: tuple[int, ...], ns: range) -> float:
        # warm-up: allocator, thread pool, and (padded) every kernel shape the run will use
        warm = {attention.padded_length(n, lengths) for n in ns} if lengths else range(ns[0] - 5, ns[0])
        for n in warm:
            attention.fused_attention(q[:, :, :n], q[:, :, :n], q[:, :, :n], None, lengths)
        before = _heap_in_use_mib()
        for n in ns:
            attention.fused_attention(q[:, :, :n], q[:, :, :n], q[:, :, :n], None, lengths)
        return _heap_in_use_mib() - before

    unpadded = growth((), range(300, 380))
    padded = growth(sdpa_lengths(4096), range(700, 780))  # lengths the unpadded run did not see
    assert unpadded > 3.0, f"unpadded growth {unpadded:.1f} MiB: the cache this guards against is gone?"
    assert padded < 1.0, f"padded growth {padded:.1f} MiB"
