"""A deterministic stand-in speech server for testing the stress tool itself.

It speaks the same API as `indicf5-fast serve` (POST /v1/audio/speech, /health, /ready,
/metrics) but synthesises nothing: a streamed response is the WAV header at once, then silence
PCM chunks after fixed delays, so the time to first audio and the total latency are known in
advance. Faults can be switched on (every n-th request a 500, a hang, or leaked memory) so the
tests can check that the stress and soak tools notice them.

Run: python tests/doubles/fake_server.py --port 8123 --first-delay 0.2 --chunk-delay 0.1
"""

import argparse
import asyncio
import itertools
import struct
from dataclasses import dataclass

SAMPLE_RATE = 24_000


@dataclass
class FakeOptions:
    first_delay: float = 0.2  # seconds from request to the first PCM chunk (after the header)
    chunk_delay: float = 0.1  # seconds between PCM chunks
    chunks: int = 3
    chunk_seconds: float = 0.5  # audio per chunk
    fail_every: int = 0  # every n-th request answers 500 (0 = never)
    hang_every: int = 0  # every n-th request never answers (0 = never)
    leak_kib: int = 0  # KiB kept forever per request (a memory leak on purpose)


def _wav_header(data_bytes: int) -> bytes:
    """44-byte mono 16-bit WAV header; data_bytes 0xFFFFFFFF = unknown length (a stream). Written
    here rather than imported so the fake starts without torch."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    return (
        struct.pack("<4sI8sI", b"RIFF", riff, b"WAVEfmt ", 16)
        + fmt
        + struct.pack("<4sI", b"data", data_bytes)
    )


def _metrics_text(state: dict) -> str:
    n = state["batches"]
    lines = [
        "# HELP indicf5_queue_depth requests waiting or running",
        "# TYPE indicf5_queue_depth gauge",
        f"indicf5_queue_depth {state['inflight']}",
        "# HELP indicf5_requests_total speech requests by status",
        "# TYPE indicf5_requests_total counter",
    ]
    lines += [f'indicf5_requests_total{{status="{s}"}} {c}' for s, c in sorted(state["status"].items())]
    lines += [
        "# HELP indicf5_batch_size requests per model batch",
        "# TYPE indicf5_batch_size histogram",
        f'indicf5_batch_size_bucket{{le="1.0"}} {n}',
        f'indicf5_batch_size_bucket{{le="2.0"}} {n}',
        f'indicf5_batch_size_bucket{{le="+Inf"}} {n}',
        f"indicf5_batch_size_count {n}",
        f"indicf5_batch_size_sum {n}",
    ]
    return "\n".join(lines) + "\n"


def create_app(opts: FakeOptions):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

    app = FastAPI(title="indicf5-fast fake speech server")
    counter = itertools.count(1)
    state: dict = {"inflight": 0, "batches": 0, "status": {}, "leak": []}
    chunk = b"\x00\x00" * int(SAMPLE_RATE * opts.chunk_seconds)

    def count(status: int) -> None:
        state["status"][str(status)] = state["status"].get(str(status), 0) + 1

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        return {"ready": True}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(_metrics_text(state))

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        n = next(counter)
        try:
            body = await request.json()
        except ValueError:
            count(400)
            return JSONResponse({"error": {"message": "invalid JSON", "type": "invalid_request_error"}}, 400)
        if opts.leak_kib:
            state["leak"].append(b"\x01" * (opts.leak_kib * 1024))  # written, so it is resident
        if opts.fail_every and n % opts.fail_every == 0:
            count(500)
            return JSONResponse({"error": {"message": "injected failure", "type": "server_error"}}, 500)
        if opts.hang_every and n % opts.hang_every == 0:
            await asyncio.sleep(3600)
        state["inflight"] += 1
        state["batches"] += 1
        count(200)
        fmt = body.get("response_format", "wav")
        header = _wav_header(0xFFFFFFFF) if fmt == "wav" else b""

        async def chunks():
            try:
                yield header
                await asyncio.sleep(opts.first_delay)
                for i in range(opts.chunks):
                    if i:
                        await asyncio.sleep(opts.chunk_delay)
                    yield chunk
            finally:
                state["inflight"] -= 1

        if body.get("stream"):
            return StreamingResponse(chunks(), media_type="audio/wav")
        try:
            await asyncio.sleep(opts.first_delay + opts.chunk_delay * (opts.chunks - 1))
        finally:
            state["inflight"] -= 1
        pcm = chunk * opts.chunks
        header = _wav_header(len(pcm)) if fmt == "wav" else b""
        return Response(header + pcm, media_type="audio/wav")

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    for name, default in FakeOptions.__dataclass_fields__.items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default.default), default=default.default)
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the fake server binds to loopback only")
    opts = FakeOptions(**{k: getattr(args, k) for k in FakeOptions.__dataclass_fields__})
    # a short graceful shutdown: hung requests (hang_every) must not delay the exit
    uvicorn.run(
        create_app(opts), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )


if __name__ == "__main__":
    main()
