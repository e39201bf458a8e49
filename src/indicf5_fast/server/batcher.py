"""Asyncio micro-batching in front of one model worker thread.

Design:
- Admission: at most ``max_pending`` requests are admitted at once (queued + running, streams
  included). One more is refused at once with ``QueueFull`` (-> 503 + Retry-After), so overload
  never builds an unbounded backlog.
- Non-streaming requests wait in a queue. The scheduler takes the oldest one, then waits until
  ``max_wait_s`` after *its* arrival (or until ``max_batch_size`` compatible requests are queued)
  and sends those with equal sampling options to ``engine.synthesize_batch`` — one padded batch,
  each result equal to running the request alone. While a batch runs, new requests queue up, so
  the next batch forms by itself under load.
- All model work runs on a single worker thread (the model is compute bound; two threads would
  only fight over the cores). A stream's text chunks are jobs in the same queue, one at a time
  per stream: when chunk k is done, chunk k+1 is queued at once, so it samples while chunk k is
  being sent (pipelining), and a long stream interleaves with batches instead of blocking them.
  With an engine that exposes chunks (``open_stream`` + ``run_chunks``), the ready chunks of
  several streams with equal options share one padded batch; other engines' streams are pulled
  from ``synthesize_stream`` one piece per job.
- A request that times out while queued leaves the queue at once; one already running finishes
  on the worker (compute cannot be interrupted) and its result is dropped.
- ``stop()`` refuses new work, waits for admitted requests to finish, then stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from indicf5_fast.server.engine_api import SpeechEngine, batch_key
from indicf5_fast.server.metrics import Metrics

log = logging.getLogger("indicf5_fast.server")


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


@dataclass(eq=False)
class _Job:
    request: Any
    key: Any
    future: asyncio.Future
    enqueued: float
    queued: bool = True
    stream: bool = False  # a stream's text chunk (the stream holds the admission, not the job)


class Batcher:
    def __init__(
        self,
        engine: SpeechEngine,
        max_batch_size: int,
        max_wait_s: float,
        max_pending: int,
        metrics: Metrics | None = None,
        after_job: Callable[[], None] | None = None,
    ):
        self.engine = engine
        self.after_job = after_job  # run on the worker after each job (e.g. return freed memory)
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.max_pending = max(1, int(max_pending))
        self.metrics = metrics
        self._pending: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._admitted = 0
        self._running = 0  # requests whose work is on the worker right now
        self._lock = threading.Lock()  # _running is changed on the worker thread
        self._closing = False
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indicf5-worker")
        self._task = asyncio.create_task(self._schedule(), name="indicf5-batcher")

    async def stop(self, timeout_s: float = 60.0) -> None:
        """Refuse new requests, let admitted ones finish (up to timeout_s), stop the worker."""
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self._admitted > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            job.future.cancel()
        self._pending.clear()
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def closing(self) -> bool:
        return self._closing

    async def run_in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the model worker (warm-up), FIFO with synthesis jobs."""
        assert self._executor is not None and self._loop is not None, "start() first"
        return await self._loop.run_in_executor(self._executor, self._timed, fn, 0, *args)

    # ------------------------------------------------------------------ admission
    def _admit(self) -> None:
        if self._closing:
            self._count_rejection("shutting_down")
            raise ShuttingDown("the server is shutting down")
        if self._admitted >= self.max_pending:
            self._count_rejection("queue_full")
            raise QueueFull(f"server busy: {self._admitted} requests admitted (limit {self.max_pending})")
        self._admitted += 1
        self._update_gauges()

    def _release(self, n: int = 1) -> None:
        self._admitted -= n
        self._update_gauges()

    def _count_rejection(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()

    def _update_gauges(self) -> None:
        if self.metrics is not None:
            with self._lock:
                running = self._running
            self.metrics.inflight.set(self._admitted)
            self.metrics.queue_depth.set(max(0, self._admitted - running))

    # ------------------------------------------------------------------ non-streaming
    async def submit(self, request: Any, timeout_s: float | None = None) -> np.ndarray:
        """Queue one request for batching; returns its wave. Raises QueueFull / ShuttingDown at
        once, asyncio.TimeoutError after timeout_s, or the engine's exception for this request."""
        self._admit()
        assert self._loop is not None, "start() first"
        job = _Job(request, batch_key(request), self._loop.create_future(), time.monotonic())
        self._pending.append(job)
        self._wake.set()
        try:
            return await asyncio.wait_for(job.future, timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if job.queued:  # never reached the worker: free its slot now
                job.queued = False
                with contextlib.suppress(ValueError):
                    self._pending.remove(job)
                self._release()
            raise

    async def _schedule(self) -> None:
        while True:
            try:
                await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not leave every later request hanging
                log.exception("batch scheduler error")
                await asyncio.sleep(0.01)

    async def _schedule_once(self) -> None:
        """Wait for work, form one batch, run it."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self._pending[0]
            group = [j for j in self._pending if j.key == first.key][: self.max_batch_size]
            wait = first.enqueued + self.max_wait_s - time.monotonic()
            if len(group) < self.max_batch_size and wait > 0 and not self._closing:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            for job in group:
                self._pending.remove(job)
                job.queued = False
            await self._run_group(group)
            return

    async def _run_group(self, group: list[_Job]) -> None:
        assert self._loop is not None and self._executor is not None
        fn = self.engine.run_chunks if group[0].stream else self.engine.synthesize_batch  # type: ignore[attr-defined]
        try:
            outcomes = await self._loop.run_in_executor(
                self._executor, self._timed, self._isolated, len(group), fn, [j.request for j in group]
            )
        except BaseException as e:  # executor shut down under us: fail the group, keep the loop alive
            outcomes = [(None, e if isinstance(e, Exception) else RuntimeError("worker stopped"))] * len(
                group
            )
            if isinstance(e, asyncio.CancelledError):
                self._finish(group, outcomes)
                raise
        self._finish(group, outcomes)

    def _finish(self, group: list[_Job], outcomes: list[tuple[Any, Exception | None]]) -> None:
        for job, (wave, err) in zip(group, outcomes, strict=True):
            if not job.future.done():  # done = timed out / cancelled: drop the result
                if err is None:
                    job.future.set_result(wave)
                else:
                    job.future.set_exception(err)
            if job.stream and self.metrics is not None:
                self.metrics.stream_chunks.inc()
        self._release(sum(1 for job in group if not job.stream))

    def _isolated(
        self, fn: Callable[[list[Any]], list[Any]], requests: list[Any]
    ) -> list[tuple[Any, Exception | None]]:
        """Worker thread. One failing request (or stream chunk) must not fail its batch mates:
        on an error, retry each alone and report per item."""
        t0 = time.perf_counter()
        try:
            waves = fn(requests)
            outcomes: list[tuple[Any, Exception | None]] = [(w, None) for w in waves]
        except Exception as e:
            if len(requests) == 1:
                outcomes = [(None, e)]
            else:
                outcomes = []
                for r in requests:
                    try:
                        outcomes.append((fn([r])[0], None))
                    except Exception as e1:
                        outcomes.append((None, e1))
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(requests))
            self.metrics.batch_duration.observe(time.perf_counter() - t0)
        return outcomes

    def _timed(self, fn: Callable[..., Any], n_requests: int, *args: Any) -> Any:
        """Worker thread: run fn, keeping the running count and the busy-time counter."""
        with self._lock:
            self._running += n_requests
        self._update_gauges()
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if self.after_job is not None:
                try:
                    self.after_job()
                except Exception:  # housekeeping must never fail a request
                    log.exception("after_job hook failed")
            if self.metrics is not None:
                self.metrics.worker_busy.inc(time.perf_counter() - t0)
            with self._lock:
                self._running -= n_requests
            self._update_gauges()

    # ------------------------------------------------------------------ streaming
    def open_stream(self, request: Any) -> AudioStream | ChunkStream:
        """Admit a streaming request (QueueFull / ShuttingDown at once). Close the stream."""
        self._admit()
        chunked = callable(getattr(self.engine, "open_stream", None)) and callable(
            getattr(self.engine, "run_chunks", None)
        )
        return ChunkStream(self, request) if chunked else AudioStream(self, request)

    def _enqueue_chunk(self, chunk: Any) -> _Job:
        """Queue one stream chunk for batching (the stream was admitted when opened)."""
        assert self._loop is not None, "start() first"
        key = ("stream-chunk", batch_key(chunk))
        job = _Job(chunk, key, self._loop.create_future(), time.monotonic(), stream=True)
        self._pending.append(job)
        self._wake.set()
        return job

    def _dequeue(self, job: _Job) -> None:
        if job.queued:
            job.queued = False
            with contextlib.suppress(ValueError):
                self._pending.remove(job)


class ChunkStream:
    """A stream whose text chunks go through the batcher's queue (so they batch with the ready
    chunks of other streams). Chunk k+1 is queued as soon as chunk k is done: it samples on the
    worker while chunk k's audio is being sent. Audio equals ``engine.synthesize_stream``."""

    def __init__(self, batcher: Batcher, request: Any):
        self._b = batcher
        self._request = request
        self._state: Any = None  # engine_stream.StreamState
        self._next = 0
        self._job: _Job | None = None
        self._tail_sent = False
        self._closed = False

    def _submit_next(self) -> None:
        chunks = self._state.chunks
        self._job = self._b._enqueue_chunk(chunks[self._next]) if self._next < len(chunks) else None
        self._next += 1

    async def next_chunk(self, timeout_s: float | None = None) -> np.ndarray | None:
        """Next audio piece, or None at the end."""
        if self._state is None:
            self._state = self._b.engine.open_stream(self._request)  # type: ignore[attr-defined]
            self._submit_next()
        while self._job is not None:
            job = self._job
            try:
                wave = await asyncio.wait_for(job.future, timeout_s)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._b._dequeue(job)
                raise
            self._submit_next()  # pipelining: the next chunk is queued before this one is sent
            piece = self._state.push(wave)
            if piece.size:
                return piece
        if not self._tail_sent:
            self._tail_sent = True
            tail = self._state.finish()
            if tail.size:
                return tail
        return None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        b, job = self._b, self._job
        if job is None or job.future.done():
            b._release()
            return
        if job.queued:  # never reached the worker
            b._dequeue(job)
            job.future.cancel()
            b._release()
            return
        # running on the worker: the admission slot is freed when that chunk is done
        job.future.add_done_callback(lambda f: (f.cancelled() or f.exception(), b._release()))


class AudioStream:
    """Pulls ``engine.synthesize_stream`` one text chunk at a time on the worker thread."""

    def __init__(self, batcher: Batcher, request: Any):
        self._b = batcher
        self._request = request
        self._gen: Iterator[np.ndarray] | None = None
        self._closed = False

    def _step(self) -> np.ndarray | None:  # worker thread
        if self._gen is None:
            self._gen = iter(self._b.engine.synthesize_stream(self._request))
        chunk = next(self._gen, None)
        if chunk is not None and self._b.metrics is not None:
            self._b.metrics.stream_chunks.inc()
        return chunk

    async def next_chunk(self, timeout_s: float | None = None) -> np.ndarray | None:
        """Next audio piece, or None at the end."""
        b = self._b
        assert b._loop is not None and b._executor is not None
        fut = b._loop.run_in_executor(b._executor, b._timed, self._step, 1)
        return await asyncio.wait_for(fut, timeout_s)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        b = self._b
        if self._gen is None or b._executor is None or b._loop is None:
            b._release()
            return
        # the generator may still be running a chunk: close it on the worker, after that chunk
        loop, gen = b._loop, self._gen
        try:
            done = b._executor.submit(gen.close)
        except RuntimeError:  # executor already shut down
            b._release()
            return
        done.add_done_callback(lambda _f: _call_soon(loop, b._release))


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
        loop.call_soon_threadsafe(fn)
