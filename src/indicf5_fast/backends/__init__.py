"""Backend factory. Optional backends (ONNX Runtime, OpenVINO, remote Triton) are imported
lazily here and only here, so the core installs and runs without them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from indicf5_fast.backends.base import Backend, resolve_device, resolve_dtype, set_cpu_threads
from indicf5_fast.errors import BackendUnavailableError

if TYPE_CHECKING:
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.model.checkpoint import Checkpoint
    from indicf5_fast.model.dit import DiT
    from indicf5_fast.model.vocos import Vocos

__all__ = ["Backend", "create_backend", "resolve_device", "resolve_dtype"]


def create_backend(config: EngineConfig, ckpt: Checkpoint, dit: DiT, vocos: Vocos) -> Backend:
    device = resolve_device(config.device)
    if device.type == "cpu":
        set_cpu_threads(config.threads)
    if config.backend == "torch":
        from indicf5_fast.backends.torch_backend import TorchBackend

        backend = TorchBackend(dit, vocos, device, resolve_dtype(config.dtype, device))
        if config.compile:
            backend.enable_compile(config.frame_bucket, max_batch=config.max_batch_size)
        return backend
    if config.backend == "onnx":
        from indicf5_fast.backends.onnx_backend import create_onnx_backend

        return create_onnx_backend(config, ckpt, dit, vocos, device)
    if config.backend == "openvino":
        from indicf5_fast.backends.openvino_backend import create_openvino_backend

        return create_openvino_backend(config, ckpt, dit, vocos, device)
    raise BackendUnavailableError(f"backend {config.backend!r} cannot run in-process (use the server)")
