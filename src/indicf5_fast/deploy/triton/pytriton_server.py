"""The engine inside NVIDIA Triton via PyTriton: a dynamically batched model and a decoupled
(streaming) model, both served by one in-process engine.

PyTriton starts the bundled ``tritonserver`` binary as a child process; Triton's python-backend
stubs forward each model call to the callables bound here, which run in this process. Dynamic
batching happens in Triton: it hands us several requests per call, and all of their items go to
one ``TTS.synthesize_batch``.
"""

from __future__ import annotations

import logging
import os
import socket
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from indicf5_fast.config import BOUNDS
from indicf5_fast.deploy.triton import tensors
from indicf5_fast.deploy.triton.handler import SynthesisHandler
from indicf5_fast.errors import BackendUnavailableError, InputError, require

if TYPE_CHECKING:
    from indicf5_fast.engine import TTS, Voice

LOG = logging.getLogger(__name__)


@dataclass
class TritonServeConfig:
    address: str = "127.0.0.1"  # loopback unless the user asks for more
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8  # Triton max_batch_size of the batched model (items per model call)
    queue_delay_ms: float = 5.0  # how long Triton waits to fill a batch
    instances: int = 1  # model instances (threads here) of each model
    log_verbose: int = 0
    exit_timeout_s: int = 10  # how long Triton waits for in-flight requests when stopping

    def validate(self) -> TritonServeConfig:
        BOUNDS["max_batch_size"].check("max_batch", self.max_batch)  # the engine's batch = Triton's
        BOUNDS["batch_wait_ms"].check("queue_delay_ms", self.queue_delay_ms)
        if not 1 <= self.instances <= 64:
            raise InputError("instances must be in 1..64", "instances")
        return self


def ensure_libpython_on_library_path() -> None:
    """Triton's python-backend stub dlopens ``libpython3.X.so``; a pyenv/venv interpreter keeps it
    outside the system path, and the stub then crashes at start. The tritonserver child inherits
    this process's environment, so prepend the interpreter's LIBDIR once, before it starts."""
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and libdir not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


class PyTritonServer:
    """``with PyTritonServer(tts, voices, config) as server: ...`` serves both models."""

    def __init__(
        self, tts: TTS, voices: dict[str, Voice] | None = None, config: TritonServeConfig | None = None
    ):
        self.config = (config or TritonServeConfig()).validate()
        self.handler = SynthesisHandler(tts, voices)
        self._triton = None

    @property
    def http_url(self) -> str:
        return f"{self.config.address}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.address}:{self.config.grpc_port}"

    def start(self) -> PyTritonServer:
        triton_mod = _import_pytriton()
        ensure_libpython_on_library_path()
        c = self.config
        for port in (c.http_port, c.grpc_port, c.metrics_port):  # else Triton dies and PyTriton waits minutes
            check_port_free(c.address, port)
        triton = triton_mod.Triton(
            config=triton_mod.TritonConfig(
                http_address=c.address,
                http_port=c.http_port,
                grpc_address=c.address,
                grpc_port=c.grpc_port,
                metrics_address=c.address,
                metrics_port=c.metrics_port,
                log_verbose=c.log_verbose,
                exit_timeout_secs=c.exit_timeout_s,
            )
        )
        try:
            self._bind(triton, triton_mod)
            triton.run()
        except Exception as e:
            triton.stop()
            raise BackendUnavailableError(f"Triton did not start: {type(e).__name__}: {e}") from e
        self._triton = triton
        return self

    def serve_forever(self) -> None:
        """Block until Triton exits (Ctrl-C stops it)."""
        if self._triton is None:
            self.start()
        try:
            self._triton.serve()
        finally:
            self.stop()

    def stop(self) -> None:
        if self._triton is not None:
            self._triton.stop()
            self._triton = None

    def __enter__(self) -> PyTritonServer:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    # ------------------------------------------------------------------ binding
    def _bind(self, triton, m) -> None:
        c = self.config
        inputs = [
            m.Tensor(name=s.name, dtype=s.dtype, shape=s.shape, optional=s.optional) for s in tensors.INPUTS
        ]
        triton.bind(
            model_name=tensors.MODEL_NAME,
            infer_func=[self._batched_callable() for _ in range(c.instances)],
            inputs=inputs,
            outputs=[m.Tensor(name=s.name, dtype=s.dtype, shape=s.shape) for s in tensors.OUTPUTS],
            config=m.ModelConfig(
                max_batch_size=c.max_batch,
                batcher=m.DynamicBatcher(max_queue_delay_microseconds=int(c.queue_delay_ms * 1000)),
            ),
            strict=True,
        )
        # batch size 1 and no dynamic batcher: one stream per call, so a slow stream never holds
        # back another one beyond the instance count
        triton.bind(
            model_name=tensors.STREAM_MODEL_NAME,
            infer_func=[self._stream_callable() for _ in range(c.instances)],
            inputs=inputs,
            outputs=[m.Tensor(name=s.name, dtype=s.dtype, shape=s.shape) for s in tensors.STREAM_OUTPUTS],
            config=m.ModelConfig(max_batch_size=1, batcher=None, decoupled=True),
            strict=True,
        )

    def _batched_callable(self) -> Callable:
        handler = self.handler

        def infer(requests: list) -> list[dict[str, np.ndarray]]:
            return handler.infer([r.data for r in requests])

        return infer

    def _stream_callable(self) -> Callable:
        handler = self.handler

        def infer_stream(requests: list) -> Iterator[list[dict[str, np.ndarray]]]:
            (request,) = requests  # no dynamic batcher: Triton passes one request per call
            for outputs in handler.stream(request.data):
                yield [outputs]

        return infer_stream


def check_port_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton binds: TIME_WAIT is fine
        try:
            s.bind((address, port))
        except OSError as e:
            raise InputError(f"cannot listen on {address}:{port}: {e.strerror or e}", "port") from None


def _import_pytriton():
    """pytriton's public names in one namespace; a clear error when the extra is missing."""
    model_config = require("pytriton.model_config", "triton", "Triton serving")
    triton = require("pytriton.triton", "triton", "Triton serving")
    return SimpleNamespace(
        DynamicBatcher=model_config.DynamicBatcher,
        ModelConfig=model_config.ModelConfig,
        Tensor=model_config.Tensor,
        Triton=triton.Triton,
        TritonConfig=triton.TritonConfig,
    )
