"""Backend interface: the only parts that differ between PyTorch, ONNX Runtime and OpenVINO.

A backend computes the text embedding, the DiT velocity and the vocoder. The sampler loop, CFG,
timesteps, front ends and batching live above it and are shared by every backend.

The whole contract (the engine uses nothing else): ``name``, ``device`` (where the sampler keeps
its tensors), ``dtype``, ``frame_bucket`` (the engine pads frame counts to a multiple of it),
``text_embed``, ``velocity``, ``vocode``, ``warmup`` and ``describe``.

Process-wide settings — the only ones this package changes, all when a backend is created:
  * ``torch.set_num_threads`` (``set_cpu_threads``, CPU devices): ``config.threads``, else every
    core unless OMP_NUM_THREADS is set. Affects every torch user in the process.
  * glibc ``mallopt`` thresholds (``torch_backend.keep_freed_memory``, torch backend on CPU):
    freed activation memory stays mapped for the next pass instead of being page-faulted in again.
  * ``torch._dynamo.config.recompile_limit`` raised to >= 64 (``TorchBackend.enable_compile``).
Inductor options (freezing, CUDA graphs) are scoped to the compiled calls; nothing else is global.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import torch

from indicf5_fast.errors import BackendUnavailableError, InputError


class Backend(ABC):
    name: str = "base"
    device: torch.device = torch.device("cpu")  # where velocity's inputs and outputs live
    dtype: torch.dtype = torch.float32  # compute dtype (inputs/outputs stay float32)
    frame_bucket: int = 1  # > 1: the engine pads frames to a multiple (with a mask) for graph reuse

    @abstractmethod
    def text_embed(self, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """tokens: [b, n] shifted ids (0 = filler) already fitted to n frames; drop: [b] bool
        (True = unconditional). -> [b, n, dt] on the backend device."""

    @abstractmethod
    def velocity(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        text_emb: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """x, cond: [b, n, 100] float32; text_emb from ``text_embed``; t: [b] float32; mask: [b, n]
        or None. -> velocity [b, n, 100] float32."""

    @abstractmethod
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: [b, 100, n] float32 -> wave [b, (n - 1) * 256] float32."""

    def warmup(  # noqa: B027
        self, frame_lengths: list[int], batch_sizes: tuple[int, ...] = (1,), cfg_free: bool = False
    ) -> None:
        """Compile / build every shape that will be used (no-op where nothing is compiled):
        DiT batch 2b (CFG) for each request batch size b at each frame length, and also b when
        ``cfg_free`` (CFG truncation or cfg_strength 0)."""

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }


def resolve_device(device: str) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"invalid device {device!r} (expected cpu, cuda, cuda:N or auto)", "device") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {device!r} requested but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r} (expected cpu, cuda, cuda:N or auto)", "device")
    return dev


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run several times faster than fp32 on such CPUs."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype in (None, "", "auto"):
        if device.type == "cuda":
            # the chosen GPU's own capability: bf16 needs Ampere (sm_80) or newer in hardware
            # (is_bf16_supported() is true by emulation on older GPUs, and asks device 0)
            major, _ = torch.cuda.get_device_capability(device)
            return torch.bfloat16 if major >= 8 else torch.float16
        # never fp16 on a CPU: it runs ~1000x slower than bf16 here
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if dtype not in table:
        raise InputError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}", "dtype")
    if dtype == "float16" and device.type == "cpu":
        raise InputError(
            "float16 on CPU is extremely slow (no fp16 matmul units); use bfloat16 or float32", "dtype"
        )
    return table[dtype]


def set_cpu_threads(threads: int | None) -> None:
    """``torch.set_num_threads`` for the whole process (see the module docstring): ``threads``, or
    every core unless OMP_NUM_THREADS says otherwise."""
    if threads:
        torch.set_num_threads(threads)
    elif os.environ.get("OMP_NUM_THREADS") is None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1)))
