"""The server batcher's stream chunks, with an engine double whose timing the test controls:
ready chunks of several streams share a batch, chunk k+1 is queued (and sampled) while chunk k
is with the caller, closing frees the slot, and one failing chunk fails only its stream."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from indicf5_fast.config import EngineConfig
from indicf5_fast.server.batcher import Batcher, ChunkStream


@dataclass
class _Chunk:
    stream: str
    index: int
    options: SimpleNamespace


class _State:
    def __init__(self, name: str, n: int):
        self.chunks = [_Chunk(name, k, SimpleNamespace(nfe=4)) for k in range(n)]

    def push(self, wave):
        return wave

    def finish(self):
        return np.zeros(0, np.float32)


class ChunkEngine:
    """open_stream + run_chunks: each chunk's wave is [index] * 4; 'bad' streams fail chunk 1."""

    def __init__(self) -> None:
        self.config = EngineConfig(max_batch_size=4, batch_wait_ms=20)
        self.calls: list[list[tuple[str, int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def open_stream(self, request):
        return _State(request.name, request.n)

    def run_chunks(self, chunks):
        self.started.set()
        assert self.gate.wait(30)
        self.calls.append([(c.stream, c.index) for c in chunks])
        if any(c.stream == "bad" and c.index == 1 for c in chunks):
            raise RuntimeError("chunk failed")
        return [np.full(4, c.index, np.float32) for c in chunks]

    def synthesize_batch(self, requests):  # the engine protocol's other half (unused here)
        raise AssertionError("not a stream")

    def synthesize_stream(self, request):
        raise AssertionError("the batcher must use the chunk API")


def _req(name: str, n: int = 3):
    return SimpleNamespace(name=name, n=n)


async def _drain(stream: ChunkStream) -> list[float]:
    out = []
    try:
        while (piece := await stream.next_chunk(10)) is not None:
            out.append(float(piece[0]))
    finally:
        await stream.aclose()
    return out


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_ready_chunks_of_several_streams_share_one_batch():
    async def main():
        engine = ChunkEngine()
        b = Batcher(engine, max_batch_size=4, max_wait_s=0.02, max_pending=8)
        await b.start()
        streams = [b.open_stream(_req(name)) for name in "abc"]
        assert all(isinstance(s, ChunkStream) for s in streams)
        got = await asyncio.gather(*(_drain(s) for s in streams))
        await b.stop()
        return engine.calls, got, b.admitted

    calls, got, admitted = _run(main())
    assert got == [[0.0, 1.0, 2.0]] * 3  # each stream's chunks, in order
    assert calls == [[("a", k), ("b", k), ("c", k)] for k in range(3)]  # chunk k of all three
    assert admitted == 0


def test_next_chunk_is_sampled_while_the_caller_holds_this_one():
    async def main():
        engine = ChunkEngine()
        b = Batcher(engine, max_batch_size=4, max_wait_s=0.0, max_pending=8)
        await b.start()
        s = b.open_stream(_req("a"))
        first = await s.next_chunk(10)
        engine.started.clear()
        engine.gate.clear()  # chunk 1 must start without another next_chunk call
        started = await asyncio.to_thread(engine.started.wait, 10)
        engine.gate.set()
        rest = await _drain(s)
        await b.stop()
        return float(first[0]), started, rest

    first, started, rest = _run(main())
    assert first == 0.0 and started and rest == [1.0, 2.0]


def test_closing_a_stream_drops_its_queued_chunk_and_frees_its_slot():
    async def main():
        engine = ChunkEngine()
        b = Batcher(engine, max_batch_size=4, max_wait_s=0.0, max_pending=1)
        await b.start()
        s = b.open_stream(_req("a", n=5))
        await s.next_chunk(10)
        engine.gate.clear()  # chunk 1 runs and blocks; nothing else can be admitted meanwhile
        await asyncio.to_thread(engine.started.wait, 10)
        with pytest.raises(Exception, match="busy"):
            b.open_stream(_req("b"))
        await s.aclose()
        assert b.admitted == 1  # chunk 1 is still on the worker: the slot is freed after it
        engine.gate.set()
        for _ in range(200):
            if b.admitted == 0:
                break
            await asyncio.sleep(0.01)
        n_calls = len(engine.calls)
        await asyncio.sleep(0.1)
        other = await _drain(b.open_stream(_req("b", n=1)))
        await b.stop()
        return b.admitted, n_calls, engine.calls, other

    admitted, n_calls, calls, other = _run(main())
    assert admitted == 0 and other == [0.0]
    assert calls[:n_calls] == [[("a", 0)], [("a", 1)]]  # chunk 2 of the closed stream never ran


def test_a_failing_chunk_fails_only_its_stream():
    async def main():
        engine = ChunkEngine()
        b = Batcher(engine, max_batch_size=4, max_wait_s=0.02, max_pending=8)
        await b.start()
        good, bad = b.open_stream(_req("good")), b.open_stream(_req("bad"))
        results = await asyncio.gather(_drain(good), _drain(bad), return_exceptions=True)
        await b.stop()
        return results, b.admitted

    (good, bad), admitted = _run(main())
    assert good == [0.0, 1.0, 2.0]
    assert isinstance(bad, RuntimeError) and "chunk failed" in str(bad)
    assert admitted == 0
