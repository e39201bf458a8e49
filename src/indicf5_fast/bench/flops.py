"""Compute-efficiency figures: the measured matmul peak and the DiT's FLOP count.

FLOPs count a multiply-add as 2. The DiT count covers every GEMM and convolution of one
forward pass (per-token work x frames, per-sample work x batch) plus attention's two batched
products; elementwise ops, norms and softmax are not counted (they are the overhead that
fusion removes). Achieved GFLOP/s = counted FLOPs / measured time.
"""

from __future__ import annotations

import time

import torch

from indicf5_fast.model.dit import DiTArgs


def dit_forward_flops(args: DiTArgs, frames: int, batch: int) -> float:
    """FLOPs of one ``DiT.forward`` on [batch, frames] (text embedding excluded)."""
    d, n = args.dim, frames
    inner = args.heads * args.dim_head
    per_token = (
        2 * (2 * args.mel_dim + args.text_dim) * d  # input projection
        + 2 * 2 * d * (d // 16) * 31  # two grouped convs (k 31, 16 groups)
        + args.depth * 2 * (3 * d * inner + inner * d + 2 * d * d * args.ff_mult)  # qkv, out, ff
        + args.depth * 2 * 2 * n * inner  # attention: QK^T and AV
        + 2 * d * args.mel_dim  # proj_out
    )
    per_sample = 2 * 256 * d + 2 * d * d + args.depth * 2 * d * 6 * d + 2 * d * 2 * d  # time + adaLN
    return float(batch * (n * per_token + per_sample))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    dtype: torch.dtype, device: torch.device | str = "cpu", size: int = 2048, reps: int = 3
) -> float:
    """Best-of-``reps`` GFLOP/s of a [size, size] @ [size, size] matmul (after one warm-up)."""
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    with torch.inference_mode():
        torch.matmul(a, b)
        _sync(device)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9
