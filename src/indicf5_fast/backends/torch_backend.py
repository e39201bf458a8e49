"""PyTorch backend: the DiT and Vocos modules in the chosen dtype on the chosen device.

Precision: the DiT runs in ``dtype``; the sampler maths above it (timesteps, Euler update, CFG
combination, reference mask) stays float32 (``velocity`` returns float32), and so do the rotary
frequencies and cos/sin tables. The vocoder's ConvNeXt backbone runs in ``dtype`` (its GEMMs
are most of its cost); its head — exp of the log-magnitude, cos/sin of the phase and the
inverse STFT — stays float32: ``torch.istft`` has no bf16 kernel, and the bf16 matmul ISTFT
measured 3 dB lower SNR for ~15 % less vocoder time (<1 % of a synthesis).

Speed levers (all exact up to the dtype's rounding):
  * fused QKV projection (``DiT.fuse_qkv_``): one GEMM per layer instead of three;
  * CPU bf16/fp16 without AMX: attention as two batched GEMMs (``DiT.set_attention("matmul")``):
    there the fused flash kernel runs bf16 no faster than fp32; with AMX the fused kernel, padded
    to bounded lengths (``sdpa_lengths``: its per-length kernel cache is never freed);
  * eager CPU bf16: GEMM weights prepacked for oneDNN with bias and GELU fused (PackedLinear);
  * ``enable_compile``: torch.compile of one DiT forward. CPU: weights frozen and prepacked,
    elementwise ops fused, the frame count dynamic (a frozen graph holds its own copy of the
    weights, so a graph per length would cost a model's worth of memory each); the engine pads
    frames to ``frame_bucket`` multiples (with a mask). CUDA: ONE Inductor graph, dynamic in
    rows and frames, replayed through CUDA graphs (cudagraph trees record one CUDA graph per
    shape, in milliseconds, with no recompile). Each pass is padded here to a row bucket
    (2, 4, 8, 16, ... = 1, 2, 4, 8 requests with CFG; a CFG-free single row is padded to 2) and a
    geometric frame bucket (``frame_buckets``: 4 per octave), so a server sees a bounded set of
    shapes; ``warmup`` runs each shape it covers 3 times (CUDA-graph warm-up, record, replay)
    before the first request. The CUDA path is UNVERIFIED until ``make gpu-check`` has run.
"""

from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from indicf5_fast.backends.base import Backend
from indicf5_fast.model.attention import MATMUL_ATTENTION_MAX_SCORES, key_bias
from indicf5_fast.model.dit import DiT
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


# CUDA graphs: one pass is recorded (cudagraph trees) at its 2nd call and replayed from the 3rd
CUDA_GRAPH_WARM_CALLS = 3


def row_bucket(rows: int) -> int:
    """DiT rows of a compiled CUDA pass: the next power of two, at least 2 (CFG packs 2 rows per
    request, so 1, 2, 4, 8 requests -> 2, 4, 8, 16 rows; a CFG-free row is padded to 2, which
    keeps the batch dim >= 2 and so dynamic: no separate graph for size 1)."""
    return max(2, 1 << (max(1, int(rows)) - 1).bit_length())


def frame_buckets(
    max_frames: int = 4096, smallest: int = 128, per_octave: int = 4, multiple: int = 64
) -> tuple[int, ...]:
    """Geometric frame buckets from ``smallest`` to ``max_frames`` (included), ``per_octave``
    per doubling, each rounded up to a ``multiple`` (tensor-core friendly): padding costs at
    most ~20 % of the work above 512 frames, and 4096 frames need 19 sizes, not 64."""
    out: list[int] = []
    k = 0
    while True:
        size = bucket_length(math.ceil(smallest * 2 ** (k / per_octave)), multiple)
        if size >= max_frames:
            out.append(int(max_frames))
            return tuple(sorted(set(out)))
        out.append(size)
        k += 1


def sdpa_lengths(max_frames: int) -> tuple[int, ...]:
    """Lengths the CPU fused-attention kernel is padded to: 16 per octave from 64 frames, each a
    multiple of 32 (62 lengths up to 4096 frames; 2.4 % padding on average, at most 12 % above
    256 frames)."""
    return frame_buckets(max_frames, smallest=64, per_octave=16, multiple=32)


def cpu_has_amx() -> bool:
    """AMX tiles: PyTorch's fused CPU attention then runs on AMX micro-kernels (brgemm)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "amx_tile" in f.read()
    except OSError:
        return False


def frame_bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket >= n (past the last: the next multiple of 64)."""
    for b in buckets:
        if b >= n:
            return b
    return bucket_length(n, 64)


def pad_pass(
    x: torch.Tensor,
    cond: torch.Tensor,
    text_emb: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor | None,
    rows: int,
    frames: int,
) -> tuple[torch.Tensor, ...]:
    """Pad one DiT pass [r, n, .] to [rows, frames, .]. Padded frames are zero and masked out
    (the DiT masks keys, convolutions and outputs, so valid frames see exactly what they would
    see alone); padded rows repeat the last real row (finite values; their outputs are
    dropped). -> x, cond, text_emb, t [rows], mask [rows, frames] bool."""
    r, n = x.shape[:2]
    if mask is None:
        mask = torch.ones(r, n, dtype=torch.bool, device=x.device)

    def grow(z: torch.Tensor, fill=0) -> torch.Tensor:
        if frames > n:
            pad = (0, 0, 0, frames - n) if z.dim() == 3 else (0, frames - n)
            z = torch.nn.functional.pad(z, pad, value=fill)
        if rows > r:
            z = torch.cat([z, z[-1:].expand(rows - r, *z.shape[1:])])
        return z

    t = t.reshape(-1).expand(r)
    if rows > r:
        t = torch.cat([t, t[-1:].expand(rows - r)])
    return grow(x), grow(cond), grow(text_emb), t.contiguous(), grow(mask, False)


class GraphThread:
    """The one thread every compiled CUDA-graph pass runs on. torch keeps CUDA graphs (cudagraph
    trees) and their memory pool per thread: passes from the server's worker, Triton's model
    threads and pipelined streams would each record (and hold memory for) their own set. A call
    from another thread is handed over (~tens of microseconds per DiT pass)."""

    def __init__(self, name: str = "indicf5-cudagraphs"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.ident = self._pool.submit(threading.get_ident).result()

    def call(self, fn, *args):
        if threading.get_ident() == self.ident:
            return fn(*args)
        return self._pool.submit(fn, *args).result()


def raise_recompile_limit(limit: int, config=None) -> int:
    """Make sure dynamo may keep ``limit`` graphs per function. The option is
    ``recompile_limit`` from torch 2.7 and ``cache_size_limit`` before (pyproject admits
    torch >= 2.4). Never lowers it. -> the limit now in force."""
    cfg = torch._dynamo.config if config is None else config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(int(getattr(cfg, name)), int(limit)))
    return int(getattr(cfg, name))


def graph_budget(device_type: str, max_batch: int = 8) -> int:
    """How many compiled graphs (dynamo cache entries) the compiled DiT can need. CUDA: rows
    and frames dynamic, always masked, but dynamo may split the row range on guards of its own
    (seen on CPU: a conv's batch >= 16), so one per row bucket, x2 past the rotary table. CPU:
    one per row count (1 .. 2 * max_batch) x masked x attention kind x rotary table."""
    rows = 2 * max(1, int(max_batch))
    if device_type == "cuda":
        return 2 * len({row_bucket(r) for r in range(1, rows + 1)})
    return rows * 2 * 2 * 2


def warmup_shapes(
    frame_lengths: list[int],
    batch_sizes: tuple[int, ...],
    cfg_free: bool,
    *,
    cuda_graphs: bool,
    frame_bucket: int = 1,
    buckets: tuple[int, ...] = (),
) -> list[tuple[int, int, bool]]:
    """Every (rows, frames, masked) DiT pass a run with these request lengths and batch sizes
    makes. CFG passes have 2·b rows, CFG-free ones (cfg_strength 0, CFG truncation) b rows.
    CUDA graphs: every request batch bucket up to max(batch_sizes) (1, 2, 4, 8, ...), rows and
    frames bucketed as ``_forward`` pads them (always masked); CFG-free passes always included
    (their row buckets are among the CFG ones: no extra shape). CPU: frames padded to a
    ``frame_bucket`` multiple, masked when padded or batched (as the engine)."""
    shapes: set[tuple[int, int, bool]] = set()
    if cuda_graphs:
        top = max(batch_sizes or (1,))
        sizes = sorted({1 << k for k in range(top.bit_length()) if 1 << k <= top} | {top})
        for n in frame_lengths:
            for b in sizes:
                for rows in (2 * b, b):
                    shapes.add((row_bucket(rows), frame_bucket_for(int(n), buckets), True))
        return sorted(shapes)
    for n in frame_lengths:
        for b in batch_sizes:
            for rows in (2 * b, b) if cfg_free else (2 * b,):
                shapes.add((rows, bucket_length(int(n), frame_bucket), frame_bucket > 1 or b > 1))
    return sorted(shapes)


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
            # without AMX the fused kernel runs bf16 at ~fp32 speed and two GEMMs are ~2x faster;
            # with AMX the fused kernel is 1.3-4x faster (attention alone; 1.05-1.26x per DiT pass
            # above ~400 frames, docs/benchmarks.md). Either way it runs
            # padded to bounded lengths (model/attention.py: its kernel cache grows per length)
            impl = "sdpa" if cpu_has_amx() else "matmul"
            self.dit.set_attention(impl, sdpa_lengths=sdpa_lengths(self.dit.args.text_pos_max))
        self._prepack = prepack and can_prepack(device, dtype)  # done at the first eager call
        self.vocos = vocos.to(device=device).eval().requires_grad_(False)
        self.vocoder_dtype = dtype if vocoder_dtype is None else vocoder_dtype
        self.vocos.backbone.to(self.vocoder_dtype)  # head (exp, cos/sin, ISTFT) stays float32
        self.frame_bucket = 1  # > 1 only when compiled on CPU: the engine pads frames to a multiple
        self.frame_buckets: tuple[int, ...] = ()  # compiled CUDA: geometric buckets (pads here)
        self.compiles = 0  # graphs built by torch.compile so far (tests assert no recompiles)
        self._compiled = None
        self._graph_thread: GraphThread | None = None  # compiled CUDA: where every pass runs
        self._inductor_patches: dict = {}
        self._built: set[tuple] = set()  # compiled graph keys (see _forward)
        self._lock = threading.Lock()  # first calls only: compiling, prepacking

    # ------------------------------------------------------------------ compile
    def enable_compile(self, frame_bucket: int = 64, max_batch: int = 8) -> None:
        """torch.compile one DiT forward (fullgraph). Graphs are built lazily or by ``warmup``.
        CPU: the engine pads frames to ``frame_bucket`` multiples. CUDA: ``frame_bucket`` is
        not used; passes are padded here to row and geometric frame buckets (``frame_buckets``
        up to the DiT's rotary/text table size, the engine's duration limit)."""
        from torch._inductor.compile_fx import compile_fx

        if any(isinstance(m, PackedLinear) for m in self.dit.modules()):
            raise RuntimeError("enable_compile() must come before the first eager forward")
        self._prepack = False  # the frozen graph prepacks its own weights

        def counting_inductor(gm, example_inputs):
            # Inductor settings are applied around every compile, here: passing them as compile
            # options does not enable freezing, and dynamo may recompile on a guard of its own
            # (e.g. a conv's batch-size range) inside an already-built graph key.
            self.compiles += 1
            with torch._inductor.config.patch(self._inductor_patches):
                return compile_fx(gm, example_inputs)

        # CUDA: CUDA graphs (cudagraph trees, as mode="reduce-overhead"), one per recorded shape.
        # CPU: freezing = weights as constants, prepacked for oneDNN, GELU fused into its GEMM.
        cuda = self.device.type == "cuda"
        self._inductor_patches = {"triton.cudagraphs": True} if cuda else {"freezing": True}
        # every graph key the forward can produce must fit, else requests fail past the limit
        raise_recompile_limit(graph_budget(self.device.type, max_batch) + 4)
        if cuda:
            self._graph_thread = GraphThread()
            self.frame_bucket = 1  # the engine pads nothing; _forward pads to the buckets
            self.frame_buckets = frame_buckets(self.dit.args.text_pos_max)
            # cudagraph trees warn past N recorded shapes per graph: we expect up to this many
            shapes = len({row_bucket(r) for r in range(1, 2 * max(1, max_batch) + 1)}) * len(
                self.frame_buckets
            )
            triton_cfg = torch._inductor.config.triton
            if getattr(triton_cfg, "cudagraph_dynamic_shape_warn_limit", None) is not None:
                triton_cfg.cudagraph_dynamic_shape_warn_limit = max(
                    triton_cfg.cudagraph_dynamic_shape_warn_limit, shapes
                )
        else:
            self.frame_bucket = max(1, int(frame_bucket))
        # dynamic=False: nothing becomes dynamic by itself; the frame dim (CPU) or the row and
        # frame dims (CUDA) are marked dynamic explicitly in _call_compiled
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
        if self._graph_thread is not None and threading.get_ident() != self._graph_thread.ident:
            return self._graph_thread.call(self._forward_on_graph_thread, x, cond, text_emb, t, mask)
        # graphs are guarded on the dispatch keys: keep every input an inference tensor
        x, cond, text_emb, t, mask = (
            z if z is None or z.is_inference() else z.clone() for z in (x, cond, text_emb, t, mask)
        )
        rows, n = x.shape[:2]
        if self.device.type == "cuda":  # bounded shape set: row and frame buckets, always masked
            x, cond, text_emb, t, mask = pad_pass(
                x, cond, text_emb, t, mask, row_bucket(rows), frame_bucket_for(n, self.frame_buckets)
            )
        bias = None if mask is None else key_bias(mask, x.dtype)  # outside the graph: see DiT.forward
        key = self._graph_key(x.shape[0], x.shape[1], mask is not None)
        if key in self._built:  # built: no lock (a dynamo recompile is serialised by dynamo)
            out = self._call_compiled(x, cond, text_emb, t, mask, bias)
        else:
            with self._lock:  # one thread compiles a new graph, the others wait for it
                out = self._call_compiled(x, cond, text_emb, t, mask, bias)
                self._built.add(key)
        return out[:rows, :n]

    def _forward_on_graph_thread(self, x, cond, text_emb, t, mask):
        # grad mode and the current device are per thread: set them as the caller had them
        device = torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()
        with torch.inference_mode(), device:
            return self._forward(x, cond, text_emb, t, mask)

    def _graph_key(self, rows: int, n: int, masked: bool) -> tuple:
        """Which compiled graph a call uses. CUDA: rows and frames dynamic, one graph (two past
        the rotary table). CPU: length is dynamic, but the forward branches on it (matmul vs
        fused attention, cached vs computed rotary)."""
        a = self.dit.args
        if self.device.type == "cuda":
            return (masked, n <= a.text_pos_max)
        matmul = self.dit.transformer_blocks[0].attn.attn_impl == "matmul"
        small = matmul and rows * a.heads * n * n <= MATMUL_ATTENTION_MAX_SCORES
        return (rows, masked, small, n <= a.text_pos_max)

    def _call_compiled(self, x, cond, text_emb, t, mask, bias):
        cuda = self.device.type == "cuda"
        for z in (x, cond, text_emb) + (() if mask is None else (mask,)):
            torch._dynamo.mark_dynamic(z, 1)  # frames: one graph for every length
            if cuda:
                torch._dynamo.mark_dynamic(z, 0)  # rows too (buckets keep them >= 2)
        if bias is not None:
            torch._dynamo.mark_dynamic(bias, 3)
            if cuda:
                torch._dynamo.mark_dynamic(bias, 0)
        if cuda:
            torch._dynamo.mark_dynamic(t, 0)
            torch.compiler.cudagraph_mark_step_begin()
            # the output lives in the CUDA graph's pool and is overwritten by the next replay
            return self._compiled(x, cond, text_emb, t, mask, bias).clone()
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

    def warmup_plan(
        self, frame_lengths: list[int], batch_sizes: tuple[int, ...] = (1,), cfg_free: bool = False
    ) -> list[tuple[int, int, bool]]:
        """The (rows, frames, masked) DiT passes ``warmup`` runs (see ``warmup_shapes``)."""
        cuda_graphs = self.compiled and self.device.type == "cuda"
        return warmup_shapes(
            [int(n) for n in frame_lengths],
            tuple(batch_sizes),
            cfg_free,
            cuda_graphs=cuda_graphs,
            frame_bucket=self.frame_bucket,
            buckets=self.frame_buckets,
        )

    @torch.inference_mode()
    def warmup(
        self, frame_lengths: list[int], batch_sizes: tuple[int, ...] = (1,), cfg_free: bool = False
    ) -> None:
        """Build every graph a run will use: for each request batch size b the CFG pass
        (DiT batch 2b; also b when ``cfg_free`` — CFG truncation or cfg_strength 0; always on
        compiled CUDA, where it adds no shape) at each frame length, padded as the engine and
        ``_forward`` pad it (``warmup_plan``). Compiled CUDA: every request batch
        bucket up to max(batch_sizes), each shape run 3 times so its CUDA graph is recorded
        before the first request. Eager: warms oneDNN's / cuBLAS's caches. Also runs the text
        embedding and the vocoder once."""
        dim_t = self.dit.args.text_dim
        plan = self.warmup_plan(frame_lengths, batch_sizes, cfg_free)
        calls = CUDA_GRAPH_WARM_CALLS if self.compiled and self.device.type == "cuda" else 1
        for rows, n, masked in plan:
            x = torch.randn(rows, n, 100, device=self.device)
            mask = torch.ones(rows, n, dtype=torch.bool, device=self.device) if masked else None
            emb = torch.zeros(rows, n, dim_t, device=self.device)
            for _ in range(calls):
                self.velocity(x, torch.zeros_like(x), emb, torch.zeros(rows, device=self.device), mask)
        n = min((f for _, f, _ in plan), default=64)
        self.text_embed(torch.ones(2, n, dtype=torch.long), torch.tensor([False, True]))
        self.vocode(torch.randn(1, 100, n))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "vocoder_dtype": str(self.vocoder_dtype).replace("torch.", ""),
            "compile": self.compiled,
            "prepacked": any(isinstance(m, PackedLinear) for m in self.dit.modules()),
            "frame_bucket": self.frame_bucket,
            **({"frame_buckets": len(self.frame_buckets)} if self.frame_buckets else {}),
        }
