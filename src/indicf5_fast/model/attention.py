"""Attention kernels of the DiT: the same softmax(q·kᵀ/√dh + key bias)·v three ways.

- ``fused_attention``: PyTorch's fused SDPA kernel (upstream's choice). Optionally padded to a
  bounded set of sequence lengths (``lengths``), see below.
- ``matmul_attention``: two batched GEMMs; faster than the fused kernel for bf16 on CPUs
  without AMX (the backend decides).
- ``export_attention``: what an ONNX export traces (the key bias rides in the score GEMM).

Why pad the fused kernel to bounded lengths on CPU (bf16/fp16): on CPUs with AMX the kernel
builds its GEMM micro-kernels per query/key length and keeps them in a per-thread cache that
is never freed nor bounded (PyTorch's CPU brgemm kernel cache; ONEDNN_PRIMITIVE_CACHE_CAPACITY
does not reach it). A server sees a new frame count with nearly every request: measured here
~90 KiB per new length per thread (0.36 MiB per length for the tiny DiT at 2 threads), so its
memory grew without end under random-length text. Padded to ``lengths`` (keys past ``n``
masked out, padded query rows dropped) the kernel sees a few dozen shapes; the result is the
same softmax up to the dtype's rounding (masked keys add exact zeros; only the blocking of the
reduction differs).
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F

# matmul attention materialises b·h·n² scores: above this (128 MB in bf16) use the fused kernel
MATMUL_ATTENTION_MAX_SCORES = 2**26


def key_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """mask [b, n] bool (True = valid frame) -> additive attention bias [b, 1, 1, n]: 0 / -inf."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, -torch.inf)
    return bias[:, None, None]


def padded_length(n: int, lengths: tuple[int, ...]) -> int:
    """The smallest of ``lengths`` (ascending) that holds ``n``; ``n`` itself past the last."""
    i = bisect.bisect_left(lengths, n)
    return lengths[i] if i < len(lengths) else n


def fused_attention(q, k, v, mask=None, lengths: tuple[int, ...] = ()) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with a key mask; q, k, v: [b, h, n, dh], mask [b, n]
    bool (True = valid) or None. With ``lengths``, the call is padded to ``padded_length``
    (see the module docstring). Not inside a compiled graph (it pads frames itself)."""
    n = q.shape[2]
    m = padded_length(n, lengths) if lengths and not torch.compiler.is_compiling() else n
    if m == n:
        attn_mask = None if mask is None else mask[:, None, None, :]  # keys only: [b, 1, 1, n]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    if mask is None:
        mask = torch.ones(q.shape[0], n, dtype=torch.bool, device=q.device)
    keys = F.pad(mask, (0, m - n), value=False)[:, None, None, :]  # [b, 1, 1, m]
    q, k, v = (F.pad(z, (0, 0, 0, m - n)) for z in (q, k, v))  # [b, h, m, dh]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keys)[:, :, :n]


def matmul_attention(q, k, v, attn_bias=None) -> torch.Tensor:
    """softmax(q·kᵀ/√dh + bias)·v as two batched GEMMs; q, k, v: [b, h, n, dh], attn_bias:
    [b, 1, 1, n] additive (``key_bias``). Materialises the [b, h, n, n] scores: on CPUs without
    AMX this runs bf16 about twice as fast as the fused flash kernel at a few hundred frames."""
    b, h, n, dh = q.shape
    q = q * dh**-0.5
    if attn_bias is None:
        return torch.matmul(torch.matmul(q, k.transpose(-1, -2)).softmax(dim=-1), v)  # s: [b, h, n, n]
    # the bias enters the GEMM (beta = 1), so the softmax stays a plain one-pass kernel (an add
    # fused into it splits it into passes over an fp32 copy of the scores: ~7x slower on CPU)
    bias = attn_bias.expand(b, h, 1, n).reshape(b * h, 1, n)
    s = torch.baddbmm(bias, q.reshape(b * h, n, dh), k.reshape(b * h, n, dh).transpose(1, 2))
    return torch.bmm(s.softmax(dim=-1), v.reshape(b * h, n, dh)).view(b, h, n, dh)


def export_attention(q, k, v, attn_bias=None) -> torch.Tensor:
    """``matmul_attention`` written for an exported graph: the key bias rides in the score GEMM
    as one extra channel (q gets a column of ones, k the bias), so the graph has no bias Add and
    no NaN guard (IsNaN + Where) over the [b, h, n, n] scores, which is what the ONNX translation
    of a bool-masked SDPA costs (~15 % of a DiT pass in ONNX Runtime CPU).
    q, k, v: [b, h, n, dh]; attn_bias: [b, 1, 1, n] (``key_bias``: 0 / -inf) -> [b, h, n, dh]."""
    b, h, n, dh = q.shape
    q = q * dh**-0.5
    if attn_bias is not None:
        q = torch.cat((q, torch.ones_like(q[..., :1])), dim=-1)  # [b, h, n, dh + 1]
        k = torch.cat((k, attn_bias.transpose(-1, -2).expand(b, h, n, 1)), dim=-1)
    return torch.matmul(torch.matmul(q, k.transpose(-1, -2)).softmax(dim=-1), v)  # scores [b, h, n, n]
