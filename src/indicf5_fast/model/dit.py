"""F5-TTS DiT backbone (IndicF5 = v0 "F5TTS_Base"; v1 "F5TTS_v1_Base" also supported).

A pure nn.Module: no sampler, no caches, no device choice. Parameter names equal upstream's
(``transformer.*`` keys of an F5/IndicF5 checkpoint load with ``strict=True``).

The text embedding is split from the velocity pass on purpose: it depends only on the text and
the duration, so callers compute it once per request (``embed_text``) and pass it to every
sampler step (``forward``), instead of upstream's hidden thread-local cache.

Shapes: b batch, n frames, nt text tokens, d model dim, dt text dim, 100 mel channels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from indicf5_fast.model.attention import (
    MATMUL_ATTENTION_MAX_SCORES,
    export_attention,
    fused_attention,
    key_bias,
    matmul_attention,
)


@dataclass(frozen=True)
class DiTArgs:
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    mel_dim: int = 100
    vocab_size: int = 2545  # V: the embedding table has V + 1 rows (row 0 = filler)
    text_dim: int = 512
    conv_layers: int = 4
    # flavour: v0 (IndicF5, F5TTS_Base) vs v1 (F5TTS_v1_Base); not recoverable from shapes
    text_mask_padding: bool = False
    pe_attn_head: int | None = 1  # heads that get rotary; None = all heads
    text_pos_max: int = 4096  # sinusoidal text position table size (IndicF5 4096, upstream 8192)

    @classmethod
    def base(cls, vocab_size: int = 2545, flavour: str = "v0") -> DiTArgs:
        return cls(vocab_size=vocab_size, **flavour_flags(flavour))

    @classmethod
    def tiny(cls, vocab_size: int = 64, flavour: str = "v0") -> DiTArgs:
        return cls(
            dim=64,
            depth=2,
            heads=4,
            dim_head=16,
            text_dim=32,
            conv_layers=2,
            vocab_size=vocab_size,
            **flavour_flags(flavour),
        )

    @property
    def flavour(self) -> str:
        return "v1" if self.text_mask_padding else "v0"

    def to_dict(self) -> dict:
        return asdict(self)


def flavour_flags(flavour: str) -> dict:
    """The two F5 flavours differ only in flags that the weights cannot reveal."""
    if flavour == "v0":
        return {"text_mask_padding": False, "pe_attn_head": 1, "text_pos_max": 4096}
    if flavour == "v1":
        return {"text_mask_padding": True, "pe_attn_head": None, "text_pos_max": 8192}
    raise ValueError(f"unknown DiT flavour {flavour!r} (expected 'v0' or 'v1')")


def sinusoidal_table(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed text positions: [n, dim] = cat(cos(p·f), sin(p·f)), f = 1/1e4^(2i/dim)."""
    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim))
    angles = torch.outer(torch.arange(n, device=device), freqs).float()  # [n, dim/2]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def timestep_features(t: torch.Tensor, dim: int = 256, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal timestep features: t [b] -> [b, dim] = cat(sin, cos)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    args = scale * t.unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat((args.sin(), args.cos()), dim=-1)


def rotary_angles(n: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """x_transformers convention: angles [n, 2·len(inv_freq)], each frequency repeated twice."""
    freqs = torch.outer(torch.arange(n, device=inv_freq.device).to(inv_freq.dtype), inv_freq)
    return freqs.repeat_interleave(2, dim=-1)


def rotary_cos_sin(n: int, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``rotary_angles``: [n, r] float32 each, computed once per forward pass and
    shared by every layer (they depend only on the frame count)."""
    angles = rotary_angles(n, inv_freq.float())
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1) -> (x0·cos - x1·sin, x1·cos + x0·sin) of x [..., r]
    (cos/sin broadcast to it) in float32, as x_transformers does; returns x's dtype."""
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    rotated_half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (xf * cos + rotated_half * sin).to(x.dtype)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # t: [b] -> [b, d]
        feats = timestep_features(t, self.freq_dim).to(self.time_mlp[0].weight.dtype)
        return self.time_mlp(feats)


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2), L2 norm over the time axis."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, n, c]
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.grn = GRN(intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, n, c]
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        y = F.gelu(self.pwconv1(self.norm(y)))  # exact GELU here (tanh only in the DiT FF)
        return x + self.pwconv2(self.grn(y))


class TextEmbedding(nn.Module):
    def __init__(self, args: DiTArgs):
        super().__init__()
        self.args = args
        self.text_embed = nn.Embedding(args.vocab_size + 1, args.text_dim)
        self.text_blocks = nn.Sequential(
            *[ConvNeXtV2Block(args.text_dim, args.text_dim * 2) for _ in range(args.conv_layers)]
        )

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None, drop: torch.Tensor) -> torch.Tensor:
        """tokens: [b, n] ids already shifted (+1; 0 = filler) and padded/cut to n frames;
        valid: [b, n] bool (frames inside each item's duration) or None; drop: [b] bool (uncond).
        -> [b, n, dt]"""
        pad_mask = tokens == 0  # v1 masks filler positions; computed before the uncond zeroing
        ids = torch.where(drop[:, None], torch.zeros_like(tokens), tokens)
        h = self.text_embed(ids)  # [b, n, dt]
        pos = sinusoidal_table(tokens.shape[1], self.args.text_dim, tokens.device).to(h.dtype)
        if valid is not None:
            h = h.masked_fill(~valid.unsqueeze(-1), 0.0)
            pos = pos.unsqueeze(0) * valid.unsqueeze(-1).to(pos.dtype)
        h = h + pos
        if self.args.text_mask_padding:
            keep = (~pad_mask).unsqueeze(-1)
            h = h * keep
            for block in self.text_blocks:
                h = block(h) * keep
        else:
            h = self.text_blocks(h)
        return h


class ConvPositionEmbedding(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        pad = kernel_size // 2
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=pad),
            nn.Mish(),
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=pad),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = x.transpose(1, 2)  # [b, d, n]
        keep = None if mask is None else mask.unsqueeze(1)
        if keep is not None:
            h = h.masked_fill(~keep, 0.0)
        for layer in self.conv1d:
            h = layer(h)
            # zero padded frames after each conv so they never leak into valid ones
            if keep is not None and isinstance(layer, nn.Conv1d):
                h = h.masked_fill(~keep, 0.0)
        return h.transpose(1, 2)


class InputEmbedding(nn.Module):
    def __init__(self, mel_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(mel_dim * 2 + text_dim, dim)
        self.conv_pos_embed = ConvPositionEmbedding(dim)

    def forward(self, x, cond, text_emb, mask=None) -> torch.Tensor:  # -> [b, n, d]
        h = self.proj(torch.cat((x, cond, text_emb), dim=-1))
        return self.conv_pos_embed(h, mask) + h


class AdaLayerNorm(nn.Module):
    """adaLN-Zero: one Linear gives shift/scale/gate for attention and for the MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim * 6)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:  # t: [b, d] -> 6 × [b, 1, d]
        return tuple(c.unsqueeze(1) for c in self.linear(F.silu(t)).chunk(6, dim=-1))


class AdaLayerNormFinal(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim * 2)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(t)).chunk(2, dim=-1)  # note the order: scale, then shift
        return layer_norm(x) * (1 + scale[:, None]) + shift[:, None]


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class FusedLinear(nn.Module):
    """A Linear whose weight and bias are derived tensors (non-persistent buffers): they are
    not checkpoint state, so adding one leaves the state_dict unchanged."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, pe_attn_head: int | None):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.pe_attn_head = heads, dim_head, pe_attn_head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self.fused = False  # see fuse_qkv_
        self.attn_impl = "sdpa"  # or "matmul": see DiT.set_attention
        self.sdpa_lengths: tuple[int, ...] = ()  # fused kernel padded to these (attention.py)

    @torch.no_grad()
    def fuse_qkv_(self) -> None:
        """Inference transform: one [3·inner, d] projection (``to_qkv``) instead of three.

        ``to_qkv`` holds the fused tensors as non-persistent buffers and to_q/to_k/to_v's
        parameters become views of them, so the state_dict is unchanged and no memory is
        duplicated. Call it after the last ``.to(device, dtype)`` (a later ``.to`` converts the
        two copies separately).
        """
        if self.fused:
            return
        lins = (self.to_q, self.to_k, self.to_v)
        weight, bias = torch.cat([lin.weight for lin in lins]), torch.cat([lin.bias for lin in lins])
        self.to_qkv = FusedLinear(weight, bias)  # [3·inner, d], [3·inner]
        for lin, w, b in zip(lins, self.to_qkv.weight.chunk(3), self.to_qkv.bias.chunk(3), strict=True):
            lin.weight = nn.Parameter(w, requires_grad=False)
            lin.bias = nn.Parameter(b, requires_grad=False)
        self.fused = True

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotary on a projection x [b, n, h·dh]: the first r channels of the first
        pe_attn_head heads (v0: head 0 only; v1: all heads); cos/sin [n, r]."""
        heads = self.heads if self.pe_attn_head is None else self.pe_attn_head
        r = cos.shape[-1]
        xh = x.unflatten(-1, (self.heads, self.dim_head))  # [b, n, h, dh] view
        rotated = apply_rotary(xh[:, :, :heads, :r], cos[:, None], sin[:, None])
        if not torch.compiler.is_compiling():
            xh[:, :, :heads, :r] = rotated  # eager: in place, the other channels are not touched
            return x
        # compiled: functional (an in-place slice write becomes a masked copy of all of qkv)
        if r < self.dim_head:
            rotated = torch.cat((rotated, xh[:, :, :heads, r:]), dim=-1)
        if heads < self.heads:
            rotated = torch.cat((rotated, xh[:, :, heads:]), dim=2)
        return rotated.flatten(-2)

    def forward(self, x, rope, mask=None, attn_bias=None) -> torch.Tensor:
        # x: [b, n, d]; rope: (cos, sin) [n, r]; mask [b, n] bool; attn_bias = key_bias(mask)
        b, n, _ = x.shape
        if self.fused:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # [b, n, inner] each
        else:
            q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        q, k = self._rope(q, *rope), self._rope(k, *rope)
        q, k, v = (z.view(b, n, self.heads, self.dim_head).transpose(1, 2) for z in (q, k, v))
        small = b * self.heads * n * n <= MATMUL_ATTENTION_MAX_SCORES
        if self.attn_impl == "export" or (self.attn_impl == "matmul" and small):
            if mask is not None and attn_bias is None:
                attn_bias = key_bias(mask, q.dtype)
            attend = export_attention if self.attn_impl == "export" else matmul_attention
            o = attend(q, k, v, attn_bias)
        else:
            o = fused_attention(q, k, v, mask, self.sdpa_lengths)  # [b, h, n, dh]
        o = self.to_out[0](o.transpose(1, 2).reshape(b, n, -1))
        return o if mask is None else o.masked_fill(~mask.unsqueeze(-1), 0.0)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        inner = dim * mult
        # index layout (0.0 = Linear in, 2 = Linear out) matches upstream's state_dict keys
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh")),
            nn.Identity(),
            nn.Linear(inner, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    def __init__(self, args: DiTArgs):
        super().__init__()
        self.attn_norm = AdaLayerNorm(args.dim)
        self.attn = Attention(args.dim, args.heads, args.dim_head, args.pe_attn_head)
        self.ff = FeedForward(args.dim, args.ff_mult)

    def forward(self, x, t, rope, mask=None, attn_bias=None) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.attn_norm(t)  # [b, 1, d] each
        # addcmul = one pass over [b, n, d] instead of two (modulation and gated residual)
        h = self.attn(torch.addcmul(shift_a, layer_norm(x), 1 + scale_a), rope, mask, attn_bias)
        x = torch.addcmul(x, gate_a, h)
        return torch.addcmul(x, gate_m, self.ff(torch.addcmul(shift_m, layer_norm(x), 1 + scale_m)))


class DiT(nn.Module):
    def __init__(self, args: DiTArgs):
        super().__init__()
        self.args = args
        self.time_embed = TimestepEmbedding(args.dim)
        self.text_embed = TextEmbedding(args)
        self.input_embed = InputEmbedding(args.mel_dim, args.text_dim, args.dim)
        self.rotary_embed = nn.Module()
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, args.dim_head, 2).float() / args.dim_head))
        self.rotary_embed.register_buffer("inv_freq", inv_freq)  # persistent: it is in checkpoints
        self.transformer_blocks = nn.ModuleList([DiTBlock(args) for _ in range(args.depth)])
        self.norm_out = AdaLayerNormFinal(args.dim)
        self.proj_out = nn.Linear(args.dim, args.mel_dim)

    def fuse_qkv_(self) -> DiT:
        """Inference transform (see ``Attention.fuse_qkv_``); same outputs, fewer GEMMs."""
        for block in self.transformer_blocks:
            block.attn.fuse_qkv_()
        return self

    def cache_rope_(self, max_frames: int | None = None) -> DiT:
        """Inference transform: precompute the rotary cos/sin for up to ``max_frames`` frames
        (default: the text position table size) from the float32 ``inv_freq``, as float32
        non-persistent buffers. A compiled graph then reads them as constants instead of
        recomputing cos/sin in every layer. Call it after the last ``.to(dtype)``."""
        n = max_frames or self.args.text_pos_max
        cos, sin = rotary_cos_sin(n, self.rotary_embed.inv_freq.float())
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        return self

    def _rope_table(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos = getattr(self, "rope_cos", None)
        if cos is not None and n <= cos.shape[0] and cos.dtype == torch.float32:
            return cos[:n], self.rope_sin[:n]
        return rotary_cos_sin(n, self.rotary_embed.inv_freq)

    def set_attention(self, impl: str, sdpa_lengths: tuple[int, ...] | None = None) -> DiT:
        """``"sdpa"`` (fused kernel, upstream's), ``"matmul"`` (see ``matmul_attention``) or
        ``"export"`` (see ``export_attention``: what the ONNX export traces). ``sdpa_lengths``
        (ascending; ``()`` = none; None = unchanged): sequence lengths the fused kernel is
        padded to (``attention.fused_attention``: bounds its per-length kernel cache on CPU)."""
        if impl not in ("sdpa", "matmul", "export"):
            raise ValueError(f"attention impl must be 'sdpa', 'matmul' or 'export', got {impl!r}")
        for block in self.transformer_blocks:
            block.attn.attn_impl = impl
            if sdpa_lengths is not None:
                block.attn.sdpa_lengths = tuple(sorted(int(x) for x in sdpa_lengths))
        return self

    # -- text: once per request ---------------------------------------------------------------
    def embed_text(
        self, text: torch.Tensor, seq_len: int | torch.Tensor, drop_text: bool = False
    ) -> torch.Tensor:
        """text: [b, nt] vocab ids, batch padding -1; seq_len: frames (int, or [b] per item).
        -> [b, max(seq_len), dt]. Same semantics as upstream ``TextEmbedding.forward``."""
        tokens, valid = text_tokens_for_frames(text, seq_len)
        drop = torch.full((tokens.shape[0],), drop_text, dtype=torch.bool, device=tokens.device)
        return self.text_embed(tokens, valid, drop)

    # -- velocity: once per step --------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        text_emb: torch.Tensor,
        time: torch.Tensor,
        mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x, cond: [b, n, 100]; text_emb: [b, n, dt]; time: [b] or scalar; mask: [b, n] bool.
        -> velocity [b, n, 100]. Uncond (CFG) rows pass zero cond and the dropped text emb.
        attn_bias: optional ``key_bias(mask, x.dtype)`` precomputed by a compiled caller (built
        inside the graph it is fused into every softmax, ~7x slower on CPU)."""
        b, n, _ = x.shape
        if time.ndim == 0:
            time = time.repeat(b)
        if mask is not None and attn_bias is None:
            attn_bias = key_bias(mask, x.dtype)  # once for every layer (used by matmul attention)
        t = self.time_embed(time)  # [b, d]
        h = self.input_embed(x, cond, text_emb, mask)  # [b, n, d]
        rope = self._rope_table(n)  # ([n, dh], [n, dh]) float32, shared by every layer
        for block in self.transformer_blocks:
            h = block(h, t, rope, mask, attn_bias)
        return self.proj_out(self.norm_out(h, t))


def text_tokens_for_frames(
    text: torch.Tensor, seq_len: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shift ids by +1 (pad -1 -> filler 0) and cut/pad them to the frame count.

    text: [b, nt]; seq_len: int or [b]. -> tokens [b, n] (n = max seq_len), valid [b, n] or None.
    """
    tokens = text + 1
    if torch.is_tensor(seq_len):
        lens = seq_len.to(device=text.device, dtype=torch.long)
        n = int(lens.max().item())
    else:
        lens, n = None, int(seq_len)
    tokens = F.pad(tokens[:, :n], (0, max(0, n - tokens.shape[1])), value=0)
    if lens is None:
        return tokens, None
    valid = torch.arange(n, device=text.device)[None, :] < lens[:, None]
    return tokens.masked_fill(~valid, 0), valid
