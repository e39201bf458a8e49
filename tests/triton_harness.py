"""Real Triton servers on 127.0.0.1 for the Triton tests: PyTriton in this process, or the
tritonserver binary bundled in nvidia-pytriton on a generated model repository."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

# Long text: several IndicF5 text chunks for the demo voice (budget ≈ 790 UTF-8 bytes per chunk);
# speed 4 and few steps keep each chunk at ~740 frames so the tiny model stays fast.
LONG = "नमस्ते, आप कैसे हैं? यह एक परीक्षण है। " * 20
FAST = {"nfe_step": 4, "speed": 4.0}


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def pytriton(tts, voices=None, **config) -> Iterator:
    from indicf5_fast.deploy.triton.pytriton_server import PyTritonServer, TritonServeConfig

    http, grpc, metrics = free_ports(3)
    cfg = TritonServeConfig(http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=2, **config)
    with PyTritonServer(tts, voices, cfg) as server:
        yield server


@contextlib.contextmanager
def bundled_triton(repository, workdir, log_file) -> Iterator[tuple[str, str]]:
    """tritonserver on a model repository -> (http url, grpc url) once the models are ready."""
    from indicf5_fast.deploy.triton.bundled import start_server
    from indicf5_fast.deploy.triton.client import TritonTTSClient

    http, grpc, metrics = free_ports(3)
    proc = start_server(
        repository,
        workdir,
        log_file=log_file,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        exit_timeout_s=2,
    )
    try:
        with TritonTTSClient(f"127.0.0.1:{http}", "http") as probe:
            deadline = time.monotonic() + 120
            while not probe.is_ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"tritonserver did not become ready; log:\n{open(log_file).read()[-3000:]}"
                    )
                time.sleep(0.25)
        yield f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            proc.wait(timeout=10)
