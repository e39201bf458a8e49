"""Real uvicorn servers on 127.0.0.1 for the server tests (a thread per server, pre-bound socket
so there is no free-port race), plus small helpers to talk to them."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np

SR = 24_000


@dataclass
class LiveServer:
    url: str
    app: object
    api_key: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout)


@contextlib.contextmanager
def run_server(
    engine, settings, ready_timeout: float = 60.0, wait_for: str = "/ready"
) -> Iterator[LiveServer]:
    """Start; wait until `wait_for` answers 200 ("/health": up but maybe still warming up)."""
    import uvicorn

    from indicf5_fast.server.app import create_app

    app = create_app(engine, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    live = LiveServer(f"http://127.0.0.1:{port}", app, settings.api_key)
    try:
        wait_ready(live, ready_timeout, wait_for)
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def wait_ready(live: LiveServer, timeout: float, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{live.url}{path}", headers=live.headers(), timeout=5)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.TransportError as e:
            last = repr(e)
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout} s: {last}")


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def int16_of(body: bytes, fmt: str) -> np.ndarray:
    """Decode a response body to int16 samples (checks 24 kHz mono for wav/flac)."""
    import soundfile as sf

    if fmt == "pcm":
        return np.frombuffer(body, dtype="<i2").copy()
    data, sr = sf.read(io.BytesIO(body), dtype="int16")
    assert sr == SR and data.ndim == 1
    return data


def expected_int16(wave: np.ndarray) -> np.ndarray:
    from indicf5_fast.frontend.audio import to_int16

    return to_int16(wave)


def assert_audio_close(got: np.ndarray, want: np.ndarray, lsb: int = 2) -> None:
    """Equal length and equal samples up to `lsb` 16-bit steps: batched padded matmuls and the
    streaming cross-fade (float32 vs float64 blend) may move a sample across a rounding edge."""
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= lsb, f"max diff {diff.max()} LSB at {int(diff.argmax())}"
    assert np.abs(want.astype(np.int32)).max() > 10 * lsb  # not trivially silent


def sine_wav(seconds: float, sr: int = SR, fmt: str = "WAV") -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    wave = (0.2 * np.sin(2 * np.pi * 220 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)).astype(
        np.float32
    )
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()
