"""`create_app` serves any object implementing the small engine protocol (as the Triton proxy
will): readiness gating during warm-up, batching of compatible requests, error isolation inside a
batch, and 500 JSON for engine bugs. The fake engine needs no model, so timings are exact."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from indicf5_fast.config import EngineConfig  # noqa: E402
from indicf5_fast.errors import InputError  # noqa: E402
from server_harness import metric, run_server, sine_wav  # noqa: E402


class FakeEngine:
    """Implements server.engine_api.SpeechEngine: each request -> a constant wave (seed-dependent)."""

    sample_rate = 16_000

    def __init__(self) -> None:
        self.config = EngineConfig(max_batch_size=4, batch_wait_ms=100)
        self.release = threading.Event()  # synthesis blocks until set (holds the warm-up)
        self.batches: list[list[str]] = []

    def prepare_voice(self, ref_audio, ref_text):
        return SimpleNamespace(n=len(ref_audio), text=ref_text)

    def make_request(self, text, *, voice, seed=None, preset=None, nfe_step=None, speed=None):
        if "invalid" in text:
            raise InputError("this text is invalid", "text")
        return SimpleNamespace(text=text, voice=voice, seed=seed or 0, options=SimpleNamespace(nfe=nfe_step))

    def synthesize_batch(self, requests):
        assert self.release.wait(30)
        self.batches.append([r.text for r in requests])
        if any("boom" in r.text for r in requests):
            raise RuntimeError("kaboom")
        return [np.full(1600, (r.seed % 7 + 1) / 10, np.float32) for r in requests]

    def synthesize_stream(self, request):
        yield from np.array_split(self.synthesize_batch([request])[0], 3)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    from indicf5_fast.server.engine_api import SpeechEngine
    from indicf5_fast.server.settings import ServerSettings

    prompts = tmp_path_factory.mktemp("prompts")
    (prompts / "demo.wav").write_bytes(sine_wav(1.0))
    (prompts / "demo.txt").write_text("hello there", encoding="utf-8")
    engine = FakeEngine()
    assert isinstance(engine, SpeechEngine)
    with run_server(engine, ServerSettings(prompts_dir=str(prompts)), wait_for="/health") as live:
        yield engine, live


def test_not_ready_until_warm_then_serves(fake):
    engine, live = fake
    with live.client() as c:
        assert c.get("/health").status_code == 200
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "warming_up"
        r = c.post("/v1/audio/speech", json={"input": "hi"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "not_ready"
        engine.release.set()
        for _ in range(200):
            if c.get("/ready").status_code == 200:
                break
            threading.Event().wait(0.02)
        r = c.post("/v1/audio/speech", json={"input": "hi", "seed": 2, "response_format": "pcm"})
        assert r.status_code == 200 and r.headers["x-sample-rate"] == "16000"
        assert np.all(np.frombuffer(r.content, "<i2") == int(0.3 * 32768))


def test_batches_compatible_requests_and_isolates_a_failing_one(fake):
    engine, live = fake
    engine.release.set()
    texts = ["a one", "b boom", "c three", "d four"]
    barrier = threading.Barrier(len(texts))

    def one(t):
        barrier.wait(timeout=10)
        with live.client() as c:
            return c.post("/v1/audio/speech", json={"input": t, "seed": 1, "nfe_step": 4})

    engine.batches.clear()
    with ThreadPoolExecutor(len(texts)) as pool:
        rs = dict(zip(texts, pool.map(one, texts), strict=True))
    assert rs["b boom"].status_code == 500
    assert "RuntimeError: kaboom" in rs["b boom"].json()["error"]["message"]
    assert all(rs[t].status_code == 200 for t in texts if t != "b boom")
    assert max(len(b) for b in engine.batches) > 1  # they were batched, then retried one by one


def test_engine_input_error_is_400_and_options_split_batches(fake):
    engine, live = fake
    engine.release.set()
    with live.client() as c:
        r = c.post("/v1/audio/speech", json={"input": "invalid words"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        engine.batches.clear()
        bodies = [{"input": f"x{i}", "nfe_step": 4 + i % 2} for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(lambda b: c.post("/v1/audio/speech", json=b), bodies))
        assert all(r.status_code == 200 for r in rs)
        # requests with different sampling options never share a batch
        for batch in engine.batches:
            assert len({int(t[1:]) % 2 for t in batch}) == 1
        text = c.get("/metrics").text
        assert metric(text, "indicf5_requests_total", route="/v1/audio/speech", status="500") == 1
