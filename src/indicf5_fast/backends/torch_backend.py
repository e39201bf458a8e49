"""PyTorch backend: the DiT and Vocos modules in the chosen dtype on the chosen device.

Precision: the DiT runs in ``dtype``; the sampler maths above it (timesteps, Euler update, CFG
combination, reference mask) stays float32 (``velocity`` returns float32), and so do the rotary
frequencies and cos/sin tables. The vocoder's ConvNeXt backbone runs in ``dtype`` (its GEMMs
are most of its cost); its head — exp of the log-magnitude, cos/sin of the phase and the
inverse STFT — stays float32: ``torch.istft`` has no bf16 kernel, and the bf16 matmul ISTFT
measured 3 dB lower SNR for ~15 % less vocoder time (<1 % of a synthesis).

Speed levers (all exact up to the dtype's rounding):
  * fused QKV projection (``DiT.fuse_qkv_``): one GEMM per layer instead of three;
  * CPU bf16/fp16: attention as two batched GEMMs (``DiT.set_attention("matmul")``): without
    AMX the fused flash kernel runs bf16 no faster than fp32;
  * eager CPU bf16: GEMM weights prepacked for oneDNN with bias and GELU fused (PackedLinear);
  * ``enable_compile``: torch.compile of one DiT forward. CPU: weights frozen and prepacked,
    elementwise ops fused, the frame count dynamic (a frozen graph holds its own copy of the
    weights, so a graph per length would cost a model's worth of memory each). CUDA: static
    shapes with CUDA graphs (``mode="reduce-overhead"``), one per frame bucket. The engine pads
    frames to ``frame_bucket`` multiples (with a mask) so a server reuses a handful of graphs
    (on CPU a small bucket is enough); ``warmup`` builds them up front.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

from indicf5_fast.backends.base import Backend
from indicf5_fast.model.dit import MATMUL_ATTENTION_MAX_SCORES, DiT, key_bias
from indicf5_fast.model.vocos import Vocos


class PackedLinear(nn.Module):
    """Eager CPU bf16 Linear on a oneDNN-prepacked copy of its weight, with the bias (and an
    optional tanh-GELU) fused into the GEMM: no per-call weight reorder, no bias copy, one
    pass less over the activations. It re-registers the source module's own weight and bias
    tensors under the same names and kinds (parameter or buffer), so the state_dict is
    unchanged. The packed copy costs one more weight's worth of memory.
    """

    def __init__(self, src: nn.Module, gelu_tanh: bool = False, batch_hint: int = 1024):
        super().__init__()
        for name in ("weight", "bias"):
            t = getattr(src, name)
            if name in src._parameters:
                self.register_parameter(name, t)
            else:
                self.register_buffer(name, t, persistent=name not in src._non_persistent_buffers_set)
        self.post, self.algorithm = ("gelu", "tanh") if gelu_tanh else ("none", "")
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), batch_hint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., k] -> [..., n]
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, self.post, [], self.algorithm)


def can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    return (
        device.type == "cpu"
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


@torch.no_grad()
def prepack_linears_(dit: DiT) -> DiT:
    """Swap the DiT's token-wise GEMMs (input projection; per layer qkv, out, FF in + GELU, FF
    out) for PackedLinear. Eager only: a compiled graph does its own packing (freezing)."""
    dit.input_embed.proj = PackedLinear(dit.input_embed.proj)
    for block in dit.transformer_blocks:
        attn, ff = block.attn, block.ff.ff
        if attn.fused:
            attn.to_qkv = PackedLinear(attn.to_qkv)
        attn.to_out[0] = PackedLinear(attn.to_out[0])
        ff[0][0] = PackedLinear(ff[0][0], gelu_tanh=True)
        ff[0][1] = nn.Identity()  # the GELU now runs inside the GEMM
        ff[2] = PackedLinear(ff[2])
    return dit


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """glibc only: serve allocations up to 256 MB from the heap and keep freed memory mapped.

    By default glibc hands large blocks (its threshold adapts up to 32 MB) to mmap and returns
    them on free, so every pass over a few-hundred-frame batch page-faults its activations in
    again: measured 1.2 s instead of 0.83 s per bf16 DiT pass at 608 frames, depending on the
    process's allocation history. Process-wide; the memory stays with the process (as a caching
    allocator's would). Returns False where it does not apply.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(
            libc.mallopt(m_trim_threshold, trim_threshold)
        )
    except (OSError, AttributeError):
        return False


def bucket_length(n: int, bucket: int) -> int:
    """Smallest multiple of ``bucket`` that is >= n."""
    return int(math.ceil(n / max(1, bucket)) * max(1, bucket))


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        dit: DiT,
        vocos: Vocos,
        device: torch.device,
        dtype: torch.dtype,
        fuse_qkv: bool = True,
        vocoder_dtype: torch.dtype | None = None,
        prepack: bool = True,
    ):
        self.device, self.dtype = device, dtype
        if device.type == "cpu":
            keep_freed_memory()
        inv_freq = dit.rotary_embed.inv_freq.detach().float().clone()
        self.dit = dit.to(device=device, dtype=dtype).eval().requires_grad_(False)
        # rotary frequencies stay float32 (in bf16 the angle at frame 400 is off by up to 0.17 rad)
        self.dit.rotary_embed.inv_freq = inv_freq.to(device)
        self.dit.cache_rope_()  # cos/sin tables, float32, once
        if fuse_qkv:
            self.dit.fuse_qkv_()  # after the last .to(): the q/k/v params become views of it
        if device.type == "cpu" and dtype != torch.float32:
            # the CPU flash kernel runs bf16 at ~fp32 speed without AMX; two GEMMs are ~2x faster
            self.dit.set_attention("matmul")
        self._prepack = prepack and can_prepack(device, dtype)  # done at the first eager call
        self.vocos = vocos.to(device=device).eval().requires_grad_(False)
        self.vocoder_dtype = dtype if vocoder_dtype is None else vocoder_dtype
        self.vocos.backbone.to(self.vocoder_dtype)  # head (exp, cos/sin, ISTFT) stays float32
        self.frame_bucket = 1  # > 1 only when compiled: the engine pads frames to a multiple
        self.compiles = 0  # graphs built by torch.compile so far (tests assert no recompiles)
        self._compiled = None
        self._inductor_patches: dict = {}
        self._built: set[tuple] = set()  # compiled graph keys (see _forward)
        self._lock = threading.Lock()  # first calls only: compiling, prepacking

    # ------------------------------------------------------------------ compile
    def enable_compile(self, frame_bucket: int = 64) -> None:
        """torch.compile one DiT forward (fullgraph). Graphs are built lazily or by ``warmup``."""
        from torch._inductor.compile_fx import compile_fx

        if any(isinstance(m, PackedLinear) for m in self.dit.modules()):
            raise RuntimeError("enable_compile() must come before the first eager forward")
        self._prepack = False  # the frozen graph prepacks its own weights

        def counting_inductor(gm, example_inputs):
            self.compiles += 1
            return compile_fx(gm, example_inputs)

        # Inductor settings are applied around every call (the compile happens inside the first
        # call of each shape): passing them as compile options does not enable freezing.
        # CUDA: mode="reduce-overhead" = CUDA graphs, static shapes (one graph per bucket).
        # CPU: freezing = weights as constants, prepacked for oneDNN, GELU fused into its GEMM.
        cuda = self.device.type == "cuda"
        self._inductor_patches = {"triton.cudagraphs": True} if cuda else {"freezing": True}
        limit = max(torch._dynamo.config.recompile_limit, 64)  # CUDA: a graph per (bucket, batch)
        torch._dynamo.config.recompile_limit = limit
        self.frame_bucket = max(1, int(frame_bucket))
        self._compiled = torch.compile(self.dit, backend=counting_inductor, fullgraph=True, dynamic=False)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def _forward(self, x, cond, text_emb, t, mask):
        if self._compiled is None:
            # prepacked lazily: enable_compile (which must not see packed weights) follows __init__
            if self._prepack:
                with self._lock:
                    if self._prepack:
                        prepack_linears_(self.dit)
                        self._prepack = False
            return self.dit(x, cond, text_emb, t, mask)
        # graphs are guarded on the dispatch keys: keep every input an inference tensor
        x, cond, text_emb, t, mask = (
            z if z is None or z.is_inference() else z.clone() for z in (x, cond, text_emb, t, mask)
        )
        bias = None if mask is None else key_bias(mask, x.dtype)  # outside the graph: see DiT.forward
        key = self._graph_key(x.shape[0], x.shape[1], mask is not None)
        if key in self._built:  # nothing to compile: no global config patch, no lock
            return self._call_compiled(x, cond, text_emb, t, mask, bias)
        with self._lock, torch._inductor.config.patch(self._inductor_patches):
            out = self._call_compiled(x, cond, text_emb, t, mask, bias)
            self._built.add(key)
            return out

    def _graph_key(self, rows: int, n: int, masked: bool) -> tuple:
        """Which compiled graph a call uses. CUDA: static shapes. CPU: length is dynamic, but
        the forward branches on it (matmul vs fused attention, cached vs computed rotary)."""
        if self.device.type == "cuda":
            return (rows, n, masked)
        a = self.dit.args
        return (rows, masked, rows * a.heads * n * n <= MATMUL_ATTENTION_MAX_SCORES, n <= a.text_pos_max)

    def _call_compiled(self, x, cond, text_emb, t, mask, bias):
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
            return self._compiled(x, cond, text_emb, t, mask, bias).clone()  # graph-owned output
        for z in (x, cond, text_emb) + (() if mask is None else (mask,)):
            torch._dynamo.mark_dynamic(z, 1)  # frames: one CPU graph for every length
        if bias is not None:
            torch._dynamo.mark_dynamic(bias, 3)
        return self._compiled(x, cond, text_emb, t, mask, bias)

    # ------------------------------------------------------------------ Backend interface
    @torch.inference_mode()
    def text_embed(self, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        return self.dit.text_embed(tokens.to(self.device), None, drop.to(self.device))

    @torch.inference_mode()
    def velocity(self, x, cond, text_emb, t, mask):
        dev, dt = self.device, self.dtype
        v = self._forward(
            x.to(dev, dt),
            cond.to(dev, dt),
            text_emb.to(dev, dt),
            t.to(dev, torch.float32),
            None if mask is None else mask.to(dev),
        )
        return v.float().to(x.device)  # the sampler's device (a no-op on CPU)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        # mel [b, 100, n] float32 -> backbone in vocoder_dtype -> head float32 -> [b, (n-1)*256]
        h = self.vocos.backbone(mel.to(self.device, self.vocoder_dtype))
        return self.vocos.head(h.float()).float()

    @torch.inference_mode()
    def warmup(
        self, frame_lengths: list[int], batch_sizes: tuple[int, ...] = (1,), cfg_free: bool = False
    ) -> None:
        """Build every graph a run will use: for each request batch size b the CFG pass
        (DiT batch 2b; also b when ``cfg_free`` — CFG truncation or cfg_strength 0) at each
        frame length, padded to its bucket with a mask exactly as the engine does. Eager: warms
        oneDNN's primitive cache. Also runs the text embedding and the vocoder once."""
        dim_t = self.dit.args.text_dim
        lengths = sorted({bucket_length(int(n), self.frame_bucket) for n in frame_lengths})
        masked = self.frame_bucket > 1
        for n in lengths:
            for b in batch_sizes:
                for rows in (2 * b, b) if cfg_free else (2 * b,):
                    x = torch.randn(rows, n, 100)
                    # as the engine: a mask when padding to buckets or batching requests
                    mask = torch.ones(rows, n, dtype=torch.bool) if (masked or b > 1) else None
                    self.velocity(
                        x, torch.zeros_like(x), torch.zeros(rows, n, dim_t), torch.zeros(rows), mask
                    )
        n = min(lengths) if lengths else 64
        self.text_embed(torch.ones(2, n, dtype=torch.long), torch.tensor([False, True]))
        self.vocode(torch.randn(1, 100, n))

    def describe(self) -> dict:
        return {
            **super().describe(),
            "vocoder_dtype": str(self.vocoder_dtype).replace("torch.", ""),
            "compile": self.compiled,
            "prepacked": any(isinstance(m, PackedLinear) for m in self.dit.modules()),
            "frame_bucket": self.frame_bucket,
        }
