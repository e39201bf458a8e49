"""The Triton target of `indicf5-fast stress --triton grpc://127.0.0.1:8001` (or http://...).

Requests go through the project's own Triton client (`indicf5_fast.deploy.triton.client`, which
needs `tritonclient`): one client per worker thread (the client is not thread-safe), each call
run off the event loop. Streams use the decoupled model over gRPC; TTFA is the first audio
chunk. Non-streamed: the whole response. Status mapping for the report: a full answer = 200, an
item error returned by the model (bad input) = 400, anything else (unreachable, timeout, failed
inference) = no status, i.e. a lost request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from indicf5_fast.bench.stress.client import check_loopback
from indicf5_fast.bench.stress.stats import RequestRecord
from indicf5_fast.bench.stress.texts import TextItem
from indicf5_fast.config import PRESETS, SAMPLE_RATE
from indicf5_fast.errors import IndicF5Error, InputError


def triton_options(voice: str, preset: str | None, nfe_step: int | None, speed: float | None, seed):
    """The request's keyword arguments for TritonTTSClient (preset expanded to its NFE/schedule)."""
    opts: dict = {"voice": voice}
    if preset:
        opts.update(PRESETS[preset])
    if nfe_step is not None:
        opts["nfe_step"] = nfe_step
    if speed is not None:
        opts["speed"] = speed
    if seed is not None:
        opts["seed"] = seed
    return opts


class TritonTarget:
    def __init__(self, url: str, *, stream: bool, timeout: float, workers: int, options: dict) -> None:
        check_loopback(url, schemes=("grpc", "http"))
        from indicf5_fast.deploy.triton.client import TritonTTSClient, _import_client, split_url

        protocol, _ = split_url(url)
        try:
            _import_client(protocol)
        except IndicF5Error as e:
            raise InputError(f"--triton is not available: {e}", "triton") from e
        if stream and protocol != "grpc":
            raise InputError("--stream with --triton needs grpc:// (Triton streams over gRPC only)", "triton")
        self.url, self.stream, self.timeout, self.options = url, stream, timeout, options
        self._client_cls = TritonTTSClient
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stress-triton")

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._client_cls(self.url, timeout_s=self.timeout)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def wait_ready(self, timeout: float) -> None:
        try:
            self._client().wait_ready(max(timeout, 0.1))
        except IndicF5Error as e:
            raise InputError(f"no ready Triton server: {e}", "triton") from e

    def _one(self, rec: RequestRecord, item: TextItem) -> None:
        t0 = time.perf_counter()
        samples = 0
        try:
            client = self._client()
            if self.stream:
                for chunk in client.stream(item.text, **self.options):
                    if rec.ttfa is None and len(chunk):
                        rec.ttfa = time.perf_counter() - t0
                    samples += len(chunk)
            else:
                samples = len(client.synthesize(item.text, **self.options))
            rec.status, rec.complete = 200, True
        except InputError as e:  # the model's per-item error: an answered bad request
            rec.status, rec.complete, rec.error = 400, True, f"400: {e}"[:300]
        except Exception as e:
            rec.error = f"{type(e).__name__}: {e}"[:300]
        rec.latency = time.perf_counter() - t0
        rec.audio_seconds = samples / SAMPLE_RATE
        if rec.status == 200:
            if not self.stream:
                rec.ttfa = rec.latency
            if samples == 0:
                rec.error = "no audio in a successful response"

    async def fill(self, rec: RequestRecord, item: TextItem) -> RequestRecord:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._one, rec, item)
        return rec

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for client in self._clients:
            try:
                client.close()
            except Exception:
                pass
