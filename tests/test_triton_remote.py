"""`indicf5-fast serve --backend remote`: the HTTP server (voices, limits, batching, streaming,
OpenAI API) in front of a real Triton (PyTriton, tiny random model) on 127.0.0.1. The WAV
round trip equals the in-process engine, streams arrive in pieces and equal the full audio,
concurrent HTTP requests are batched by Triton, and engine errors keep their 4xx."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from server_harness import assert_audio_close, expected_int16, int16_of, run_server  # noqa: E402
from triton_harness import FAST, LONG, pytriton  # noqa: E402

TEXT = "नमस्ते दुनिया, यह एक परीक्षण है।"


@pytest.fixture(scope="module")
def triton(tiny_tts):
    with pytriton(tiny_tts, None, max_batch=8, queue_delay_ms=50) as server:  # no voices: they live in HTTP
        yield server


@pytest.fixture(scope="module")
def live(triton, tiny_ckpt, tmp_path_factory):
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.deploy.triton.remote import RemoteTTS
    from indicf5_fast.server.cli import build_engine
    from indicf5_fast.server.settings import ServerSettings

    config = EngineConfig(
        backend="remote", triton_url=f"grpc://{triton.grpc_url}", max_batch_size=8, batch_wait_ms=50
    )
    engine = build_engine(config.validate())  # the `serve --backend remote` path
    assert isinstance(engine, RemoteTTS)
    settings = ServerSettings(
        data_dir=str(tmp_path_factory.mktemp("remote-data")), prompts_dir=str(tiny_ckpt / "prompts")
    )
    with run_server(engine, settings, ready_timeout=120) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    with live.client(timeout=120) as c:
        yield c


def _speech(client, text=TEXT, **kw):
    return client.post(
        "/v1/audio/speech", json={"input": text, "voice": "demo", "seed": 3, "nfe_step": 8} | kw
    )


def test_wav_round_trip_through_triton_equals_the_engine(client, tiny_tts, demo):
    r = _speech(client)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/wav")
    want = expected_int16(tiny_tts.synthesize(TEXT, voice=demo, seed=3, nfe_step=8))
    assert_audio_close(int16_of(r.content, "wav"), want, lsb=0)
    assert client.get("/ready").json()["ready"] is True


def test_streaming_through_triton_arrives_in_pieces_equal_to_full(client, tiny_tts, demo):
    body = {"input": LONG, "voice": "demo", "seed": 4, "stream": True, **FAST}
    pieces, t_first = [], None
    t0 = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        for data in r.iter_bytes():
            pieces.append(data)
            if t_first is None and sum(map(len, pieces)) > 44:
                t_first = time.perf_counter() - t0
    t_done = time.perf_counter() - t0
    streamed = int16_of(b"".join(pieces)[44:], "pcm")
    req = tiny_tts.make_request(LONG, voice=demo, seed=4, chunking="stream", **FAST)  # streams' default
    want = expected_int16(tiny_tts.synthesize_batch([req])[0])
    assert t_first is not None and t_first < t_done
    assert_audio_close(streamed, want)


def test_concurrent_http_requests_are_batched_in_triton(client, triton):
    texts = [f"{TEXT} {w}" for w in ("एक", "दो", "तीन", "चार", "पांच", "छह", "सात", "आठ")]
    stats = triton.handler.stats
    calls0, items0 = stats.calls, sum(stats.batch_sizes)
    barrier = threading.Barrier(len(texts))

    def one(i: int) -> int:
        barrier.wait(timeout=30)
        return _speech(client, texts[i], seed=50 + i).status_code

    with ThreadPoolExecutor(len(texts)) as pool:
        assert list(pool.map(one, range(len(texts)))) == [200] * len(texts)
    assert sum(stats.batch_sizes) - items0 == len(texts)
    assert stats.calls - calls0 < len(texts)


def test_engine_errors_from_triton_keep_their_status(client):
    r = _speech(client, "日本語")  # no character of the model's vocabulary: found by Triton's engine
    assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"], r.text
    r = _speech(client, "日本語", stream=True)
    assert r.status_code == 400, r.text
