"""ONNX Runtime backend: the exported graphs (``indicf5_fast.export.onnx``) run by ORT sessions.

Execution providers, chosen by ``--providers`` (else by ``--device``):
  * CPU (default here): fp32 (or int8) graphs, session options tuned for latency — intra-op
    threads = physical cores, full graph optimisation, memory arena on.
  * CUDA: the fp16 DiT graph; IO binding on torch CUDA tensors so x/cond/text embedding/mask and
    the velocity stay on the GPU across sampler steps. ORT runs on its own CUDA stream (a real
    torch.cuda.Stream: handle 0 would mean "no user stream" to ORT), ordered against torch's
    current stream with events (``StreamOrder``), so no host sync per step. If ORT does not
    take the stream, each run is bracketed by host syncs instead (correct, slower).
  * TensorRT (through onnxruntime-gpu's TensorRT EP): the fp32 graphs built in fp16 by TensorRT,
    engine + timing cache on disk, one explicit shape profile per graph (ORT keeps a TRT context
    on profile 0, so several profiles would not be used). The DiT's exported attention
    materialises [rows, heads, n, n] scores, and TensorRT sizes its memory for the profile's
    maximum: the profile admits as many rows at the longest length as fit
    ``ATTENTION_BUDGET_BYTES`` (2 GiB: 4 rows = 2 requests with CFG at 4096 frames); larger
    passes (any provider) are split into row chunks that fit the budget.
CUDA and TensorRT are unverified here (no GPU); a provider that is not there is a
BackendUnavailableError, never a silent CPU fallback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from indicf5_fast.backends.base import Backend
from indicf5_fast.backends.onnx_common import GraphBackend, exported_graphs, physical_cores
from indicf5_fast.config import HOP_LENGTH
from indicf5_fast.errors import BackendUnavailableError, InputError, require

if TYPE_CHECKING:
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.model.checkpoint import Checkpoint
    from indicf5_fast.model.dit import DiT
    from indicf5_fast.model.vocos import Vocos

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (CUDA, TRT)
PROVIDER_ALIASES = {
    "cpu": CPU,
    "cuda": CUDA,
    "gpu": CUDA,
    "tensorrt": TRT,
    "trt": TRT,
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
_NP_TYPES = {torch.float32: np.float32, torch.int64: np.int64, torch.bool: np.bool_}
OUTPUTS = {"text_embed": "text_emb", "velocity": "v", "vocoder": "wave"}
# the [rows, heads, n, n] attention scores of one exported DiT pass may take at most this much
# (ORT's softmax output is the same size again): larger passes are split into row chunks
ATTENTION_BUDGET_BYTES = 2 << 30


def max_attention_rows(heads: int, frames: int, elem_bytes: int, budget: int = ATTENTION_BUDGET_BYTES) -> int:
    """Rows of one DiT pass whose [rows, heads, frames, frames] scores fit ``budget`` (>= 1)."""
    return max(1, int(budget) // (heads * frames * frames * elem_bytes))


class StreamOrder:
    """ONNX Runtime's CUDA work on its own torch stream, ordered against torch's current stream
    with CUDA events (no host sync).

    ORT gets ``stream`` as its ``user_compute_stream``: a real ``torch.cuda.Stream``, never
    torch's default stream, whose handle 0 ORT reads as "no user stream". The runs use
    ``disable_synchronize_execution_providers`` (ORT does not wait for its stream at the end of
    a run), so the order is explicit:
      ``before(tensors)``: ORT's stream waits for torch's current stream (inputs are written),
        and every tensor ORT reads or writes is recorded on ORT's stream, so torch's caching
        allocator does not reuse its memory before ORT's work on it is done;
      ``after()``: torch's current stream waits for ORT's stream (outputs are complete).
    """

    def __init__(self, device: torch.device, stream=None, current_stream=None):
        self.device = device
        self.stream = stream if stream is not None else torch.cuda.Stream(device)
        self._current = current_stream or (lambda: torch.cuda.current_stream(device))
        self.handle = int(self.stream.cuda_stream)
        if self.handle == 0:
            raise RuntimeError("ONNX Runtime needs a non-default CUDA stream (handle 0 = no user stream)")

    def before(self, tensors) -> None:
        self.stream.wait_stream(self._current())
        for t in tensors:
            if t.is_cuda:
                t.record_stream(self.stream)

    def after(self) -> None:
        self._current().wait_stream(self.stream)


def stream_options(provider: str, handle: int | None) -> dict[str, str]:
    """Provider options that hand ORT a user compute stream. TensorRT gets only
    ``user_compute_stream`` (ORT >= 1.17 sets ``has_user_compute_stream`` itself; older
    versions parse that key differently or reject it); CUDA gets both."""
    if handle is None:
        return {}
    if not int(handle):
        raise ValueError("user_compute_stream must not be 0 (ORT reads 0 as no user stream)")
    if provider == TRT:
        return {"user_compute_stream": str(int(handle))}
    return {"has_user_compute_stream": "1", "user_compute_stream": str(int(handle))}


def stream_accepted(session, provider: str, handle: int) -> bool:
    """Whether ``session`` really runs ``provider`` on our stream (from the options ORT reports;
    unknown counts as no, so the caller falls back to host syncs, which is always correct)."""
    try:
        opts = session.get_provider_options().get(provider, {})
    except Exception:  # ORT builds without get_provider_options for this EP
        return False
    if "user_compute_stream" in opts:
        try:
            return int(opts["user_compute_stream"]) == int(handle)
        except ValueError:
            return False
    return str(opts.get("has_user_compute_stream", "0")).lower() in ("1", "true")


def resolve_providers(requested: list[str] | None, device: torch.device, available: list[str]) -> list[str]:
    """``--providers`` (aliases cpu, cuda, tensorrt/trt, ...) or the device's default -> ORT
    provider names, best first, CPU last as the fallback for nodes a GPU EP cannot take."""
    if requested:
        names = [PROVIDER_ALIASES.get(p.strip().lower(), p.strip()) for p in requested if p.strip()]
    else:
        names = [CUDA, CPU] if device.type == "cuda" else [CPU]
    missing = [n for n in names if n not in available]
    if missing:
        hint = ""
        if any(n in GPU_PROVIDERS for n in missing):
            hint = (
                " CUDA/TensorRT need onnxruntime-gpu (pip install 'indicf5-fast[onnx-gpu]'; it must replace"
                " the CPU onnxruntime package, never sit beside it), a CUDA GPU, and for TensorRT the"
                " TensorRT libraries."
            )
        raise BackendUnavailableError(
            f"ONNX Runtime execution provider(s) {', '.join(missing)} not available here "
            f"(available: {', '.join(available)}).{hint}"
        )
    if names[0] == TRT and CUDA not in names and CUDA in available:
        names.insert(1, CUDA)  # nodes TensorRT rejects run on CUDA, not on the CPU
    if CPU not in names:
        names.append(CPU)
    return list(dict.fromkeys(names))


def pick_variant(dtype: str, providers: list[str]) -> str:
    """Which export the providers want: CPU fp32; CUDA fp16 (float32 on request); TensorRT the fp32
    graph (TensorRT itself builds fp16 kernels)."""
    gpu = providers[0] in GPU_PROVIDERS
    if dtype in ("float16",) and not gpu:
        raise InputError("float16 needs a GPU provider (cuda/tensorrt); the CPU runs the fp32 graph", "dtype")
    if dtype == "bfloat16":
        raise InputError(
            "backend onnx has fp32/fp16/int8 graphs, no bfloat16 (for bf16 on CPU use backend openvino or torch)",
            "dtype",
        )
    if providers[0] == CUDA and dtype in ("auto", "float16", None, ""):
        return "fp16"
    return "fp32"


def session_options(threads: int, gpu: bool):
    ort = require("onnxruntime", "onnx", "backend onnx")

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # the graphs are chains; parallel = overhead
    so.inter_op_num_threads = 1
    so.intra_op_num_threads = 1 if gpu else threads
    so.enable_cpu_mem_arena = True  # reuse activation buffers across steps (shapes repeat per request)
    # no busy-waiting between ops: three sessions and torch's pool share the cores (measured
    # faster on a loaded CPU; a 0.4 GFLOP/frame pass leaves spinning nothing to win)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def trt_profile(io: dict, max_batch: int, max_frames: int, opt_frames: int, opt_batch: int) -> dict[str, str]:
    """One TensorRT optimisation profile (min/opt/max) for a graph's dynamic inputs:
    batch 1..max_batch, frames 2..max_frames (the largest length bucket)."""
    out = {}
    for kind, batch, frames in (
        ("min", 1, 2),
        ("opt", opt_batch, opt_frames),
        ("max", max_batch, max_frames),
    ):
        parts = []
        for name, spec in io["inputs"].items():
            dims = [batch if d == "batch" else frames if d == "frames" else int(d) for d in spec["shape"]]
            parts.append(f"{name}:" + "x".join(str(d) for d in dims))
        out[f"trt_profile_{kind}_shapes"] = ",".join(parts)
    return out


class OnnxBackend(GraphBackend):
    name = "onnx"

    def __init__(
        self,
        onnx_dir: Path,
        manifest: dict,
        providers: list[str],
        device: torch.device,
        *,
        threads: int | None = None,
        max_batch: int = 8,
        max_frames: int = 4096,
        frame_bucket: int = 64,
        trt_fp16: bool = True,
        trt_cache: Path | None = None,
        attention_budget_bytes: int = ATTENTION_BUDGET_BYTES,
        stream_order: StreamOrder | None = None,
    ):
        ort = require("onnxruntime", "onnx", "backend onnx")

        self.onnx_dir, self.manifest, self.device = Path(onnx_dir), manifest, device
        self.variant = manifest["variant"]
        self.requested = providers
        self.gpu = providers[0] in GPU_PROVIDERS
        # IO binding on torch tensors needs torch to see the same GPU; else numpy in/out
        self.bind = self.gpu and device.type == "cuda"
        self.device_id = (device.index or 0) if device.type == "cuda" else 0
        self.dtype = (
            torch.float16 if self.variant == "fp16" or (providers[0] == TRT and trt_fp16) else torch.float32
        )
        self.text_dim = manifest["dit_args"]["text_dim"]
        self.heads = int(manifest["dit_args"]["heads"])
        self.threads = threads or physical_cores()
        self.trt_cache = trt_cache or self.onnx_dir / "trt-cache"
        self.attention_budget = int(attention_budget_bytes)
        self._score_bytes = 2 if self.dtype == torch.float16 else 4
        bucket = max(1, frame_bucket)
        top = -(-max_frames // bucket) * bucket
        # TensorRT: the profile's maximum rows at the longest length fit the attention budget
        self.max_rows = 2 * max(1, max_batch)
        if providers[0] == TRT:
            self.max_rows = min(self.max_rows, max_attention_rows(self.heads, top, 2, self.attention_budget))
        self._run_sync = ort.RunOptions()  # ORT waits for its stream at the end of a run
        self._run_nosync = ort.RunOptions()  # ordering done by StreamOrder instead
        self._run_nosync.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._order = (stream_order or StreamOrder(device)) if self.bind else None
        handle = self._order.handle if self._order is not None else None
        self.sessions, self.ordered = {}, {}
        for graph, info in manifest["graphs"].items():
            opt_batch = 1 if graph == "vocoder" else 2  # CFG packs cond + uncond
            rows = self.max_rows if graph == "velocity" else 2 * max(1, max_batch)
            sizes = {"max_batch": rows, "top": top, "opt_batch": min(opt_batch, rows)}
            self.sessions[graph], self.ordered[graph] = self._open(ort, info, handle, trt_fp16, sizes)
        self.active_providers = self.sessions["velocity"].get_providers()

    def _open(self, ort, info: dict, handle: int | None, trt_fp16: bool, sizes: dict) -> tuple:
        """One session. With a user stream first; if ORT rejects those options (their parsing
        differs across ORT versions) or does not report taking the stream, the session runs on
        ORT's own stream with host syncs around each run. -> (session, runs on our stream)."""
        path = str(self.onnx_dir / info["file"])
        attempts = [handle, None] if handle is not None else [None]
        error: Exception | None = None
        for h in attempts:
            prov = self._provider_options(info, h, trt_fp16, **sizes)
            try:
                sess = ort.InferenceSession(path, session_options(self.threads, self.gpu), providers=prov)
            except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
                error = e
                continue
            active = sess.get_providers()
            if self.requested[0] not in active:  # ORT falls back to CPU silently when an EP fails
                raise BackendUnavailableError(
                    f"{self.requested[0]} was requested but ONNX Runtime could not start it (active: "
                    f"{active}); check the CUDA/cuDNN/TensorRT libraries match your onnxruntime-gpu build"
                )
            return sess, h is not None and stream_accepted(sess, self.requested[0], h)
        raise BackendUnavailableError(f"ONNX Runtime could not load {info['file']}: {error}") from error

    def _provider_options(self, info, stream, trt_fp16, *, max_batch, top, opt_batch) -> list:
        """Per-session provider list: GPU EPs get our stream (``stream_options``); TensorRT gets
        its caches and one shape profile (batch 1..max_batch, frames 2..top, optimised for
        opt_batch x 512)."""
        out: list = []
        for p in self.requested:
            opts: dict[str, object] = {}
            if p in GPU_PROVIDERS:
                opts["device_id"] = self.device_id
                opts |= stream_options(p, stream)
            if p == CUDA:
                opts |= {"arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}
            if p == TRT:
                self.trt_cache = _writable(
                    self.trt_cache, manifest_key=self.manifest["source"]["fingerprint"]
                )
                opts |= {
                    "trt_fp16_enable": bool(trt_fp16),
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(self.trt_cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(self.trt_cache),
                    "trt_max_workspace_size": 4 << 30,
                    **trt_profile(info, max_batch, top, min(512, top), opt_batch),
                }
            out.append((p, opts) if opts else p)
        return out

    # ------------------------------------------------------------------ running
    def _run(self, graph: str, feeds: dict[str, torch.Tensor], out_shape: tuple[int, ...]) -> torch.Tensor:
        """Run one graph; the output lands on the device of the first input (the sampler keeps its
        tensors where they are: on the GPU with IO binding nothing crosses the bus per step)."""
        sess = self.sessions[graph]
        where = next(iter(feeds.values())).device
        if not self.bind:
            arrays = {k: v.detach().to("cpu").contiguous().numpy() for k, v in feeds.items()}
            out = torch.from_numpy(sess.run([OUTPUTS[graph]], arrays, self._run_sync)[0])
            return out.to(where)
        binding = sess.io_binding()
        keep = []  # the bound buffers must outlive run_with_iobinding
        for name, t in feeds.items():
            t = t.to(self.device).contiguous()
            keep.append(t)
            binding.bind_input(name, "cuda", self.device_id, _NP_TYPES[t.dtype], tuple(t.shape), t.data_ptr())
        out = torch.empty(out_shape, dtype=torch.float32, device=self.device)
        binding.bind_output(OUTPUTS[graph], "cuda", self.device_id, np.float32, out_shape, out.data_ptr())
        if self.ordered[graph]:  # on our stream: event ordering both ways, no host sync
            self._order.before([*keep, out])
            sess.run_with_iobinding(binding, self._run_nosync)
            self._order.after()
        else:  # ORT's own stream: torch's writes must be done before, ORT syncs at the end
            self._sync_torch()
            sess.run_with_iobinding(binding, self._run_sync)
        return out.to(where)

    def _sync_torch(self) -> None:
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def text_embed(self, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape
        feeds = {"tokens": tokens.to(torch.int64), "drop": drop.to(torch.bool)}
        return self._run("text_embed", feeds, (b, n, self.text_dim))

    def rows_per_pass(self, frames: int) -> int:
        """DiT rows one graph run may take at ``frames``: the attention scores fit the budget
        (and, for TensorRT, the profile)."""
        fit = max_attention_rows(self.heads, frames, self._score_bytes, self.attention_budget)
        return max(1, min(fit, self.max_rows)) if self.requested[0] == TRT else fit

    @torch.inference_mode()
    def velocity(self, x, cond, text_emb, t, mask):
        b, n, c = x.shape
        if mask is None:  # the graph always takes a mask: all frames valid
            mask = torch.ones(b, n, dtype=torch.bool, device=x.device)
        t = t.to(torch.float32).reshape(-1).expand(b)
        step = self.rows_per_pass(n)
        outs = []
        for i in range(0, b, step):  # rows are independent: a split pass equals the whole one
            rows = slice(i, min(b, i + step))
            feeds = {
                "x": x[rows].to(torch.float32),
                "cond": cond[rows].to(torch.float32),
                "text_emb": text_emb[rows].to(torch.float32),
                "t": t[rows],
                "mask": mask[rows].to(torch.bool),
            }
            outs.append(self._run("velocity", feeds, (rows.stop - rows.start, n, c)))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        b, _, n = mel.shape
        return self._run("vocoder", {"mel": mel.to(torch.float32)}, (b, max(0, n - 1) * HOP_LENGTH))

    def describe(self) -> dict:
        return {
            **super().describe(),
            "variant": self.variant,
            "providers": self.active_providers,
            "onnx_dir": str(self.onnx_dir),
            "threads": None if self.gpu else self.threads,
            **({"user_stream": all(self.ordered.values())} if self.bind else {}),
        }


def _writable(path: Path, manifest_key: str) -> Path:
    """``path`` if writable (TensorRT engines are cached there), else a per-user cache dir."""
    from indicf5_fast.export.onnx import writable_or

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "indicf5-fast" / "trt"
    out = writable_or(path, cache / manifest_key)
    out.mkdir(parents=True, exist_ok=True)
    return out


def create_onnx_backend(
    config: EngineConfig, ckpt: Checkpoint, dit: DiT, vocos: Vocos, device: torch.device
) -> Backend:
    """backend "onnx" (ONNX Runtime) on ``config.onnx_dir``, else on the export next to the
    checkpoint (made once, reused afterwards)."""
    ort = require("onnxruntime", "onnx", "backend onnx")  # before a possibly long export
    providers = resolve_providers(config.providers, device, ort.get_available_providers())
    variant = pick_variant(config.dtype, providers)
    onnx_dir, manifest = exported_graphs(config, ckpt, dit, vocos, fp16=variant == "fp16")
    return OnnxBackend(
        onnx_dir,
        manifest,
        providers,
        device,
        threads=config.threads,
        max_batch=config.max_batch_size,
        max_frames=ckpt.dit_args.text_pos_max,
        frame_bucket=config.frame_bucket,
        trt_fp16=config.dtype != "float32",
    )
