"""`indicf5-fast serve` against a real uvicorn server on 127.0.0.1 with the tiny random model:
formats, streaming, dynamic batching, voices, metrics, OpenAPI."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from server_harness import (  # noqa: E402
    SR,
    assert_audio_close,
    expected_int16,
    int16_of,
    metric,
    run_server,
)

KEY = "test-key-123"
TEXT = "नमस्ते दुनिया, यह एक परीक्षण है।"
# ~2 kB of UTF-8: three text chunks for the demo voice (IndicF5 budget ≈ 750 bytes per chunk);
# streamed at speed 2 and 4 steps to keep the test short. Upstream's splitter breaks after ", "
# but not after a danda, so the comma is what makes the chunks.
LONG = " ".join(["यह एक लंबा वाक्य है, जो कुछ ज़्यादा समय लेगा।"] * 17)
FAST = {"speed": 2.0, "nfe_step": 4}


@pytest.fixture(scope="module")
def live(tiny_ckpt, tmp_path_factory):
    import indicf5_fast
    from indicf5_fast.server.settings import ServerSettings

    engine = indicf5_fast.load(
        str(tiny_ckpt), device="cpu", dtype="float32", max_batch_size=8, batch_wait_ms=50
    )
    settings = ServerSettings(
        api_key=KEY,
        data_dir=str(tmp_path_factory.mktemp("server-data")),
        prompts_dir=str(tiny_ckpt / "prompts"),
    )
    with run_server(engine, settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    with live.client() as c:
        yield c


def _speech(client, text=TEXT, **kw):
    body = {"model": "indicf5", "input": text, "voice": "demo", "seed": 3, "nfe_step": 8} | kw
    return client.post("/v1/audio/speech", json=body)


def test_health_is_public_and_everything_else_needs_the_key(live, client):
    import httpx

    assert httpx.get(f"{live.url}/health").json() == {"status": "ok"}
    for path in ("/ready", "/metrics", "/v1/voices"):
        r = httpx.get(f"{live.url}{path}")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(f"{live.url}/ready", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["ready"] is True
    assert r.json()["default_voice"] == "demo"


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac"])
def test_speech_round_trips_and_equals_the_engine(client, tiny_tts, demo, fmt):
    r = _speech(client, response_format=fmt)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(
        {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}[fmt]
    )
    assert r.headers["x-sample-rate"] == str(SR)
    got = int16_of(r.content, fmt)  # wav/flac: soundfile reads it back at 24 kHz mono
    want = expected_int16(tiny_tts.synthesize(TEXT, voice=demo, seed=3, nfe_step=8))
    assert_audio_close(got, want, lsb=0)  # one request, one chunk: the same computation exactly


def test_streaming_first_audio_before_completion_and_equal_to_full(live, client, tiny_tts, demo):
    from indicf5_fast.frontend.audio import wav_stream_header

    t0 = time.perf_counter()
    full = _speech(client, LONG, **FAST)  # not streamed: IndicF5's chunking (3 chunks)
    t_full = time.perf_counter() - t0
    assert full.status_code == 200
    # streamed: the stream chunking by default; the same audio as a full request asking for it
    same_policy = _speech(client, LONG, chunking="stream", **FAST)
    assert same_policy.status_code == 200

    pieces, t_first = [], None
    t0 = time.perf_counter()
    with client.stream(
        "POST", "/v1/audio/speech", json={"input": LONG, "voice": "demo", "seed": 3, "stream": True} | FAST
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("audio/wav")
        for data in r.iter_bytes():
            pieces.append(data)
            if t_first is None and sum(map(len, pieces)) > 44:
                t_first = time.perf_counter() - t0
    t_done = time.perf_counter() - t0
    body = b"".join(pieces)
    assert body[:44] == wav_stream_header(SR)  # sizes 0xFFFFFFFF: length unknown up front
    streamed = np.frombuffer(body[44:], dtype="<i2")
    # chunks are synthesized one after the other: audio must arrive well before the end
    assert t_first is not None and t_first < t_done and t_first < t_full, (t_first, t_done, t_full)
    assert_audio_close(streamed, int16_of(same_policy.content, "wav"))
    req = tiny_tts.make_request(LONG, voice=demo, **FAST)
    assert len(tiny_tts.plan(req, 0)) == 3 and len(tiny_tts.plan(req, 0, streaming=True)) > 3
    # the IndicF5 chunking streams too, equal to the full request
    with client.stream(
        "POST",
        "/v1/audio/speech",
        json={"input": LONG, "voice": "demo", "seed": 3, "stream": True, "chunking": "upstream"} | FAST,
    ) as r:
        assert r.status_code == 200
        body = r.read()
    assert_audio_close(np.frombuffer(body[44:], dtype="<i2"), int16_of(full.content, "wav"))

    # raw pcm streams too; flac cannot
    with client.stream(
        "POST",
        "/v1/audio/speech",
        json={
            "input": TEXT,
            "voice": "demo",
            "seed": 3,
            "nfe_step": 8,
            "stream": True,
            "response_format": "pcm",
        },
    ) as r:
        assert r.status_code == 200
        pcm = np.frombuffer(r.read(), dtype="<i2")
    assert_audio_close(pcm, int16_of(_speech(client, response_format="pcm").content, "pcm"))
    r = _speech(client, stream=True, response_format="flac")
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"


def test_concurrent_requests_are_batched_and_equal_sequential_results(client):
    texts = [f"{TEXT} {w}" for w in ("एक", "दो", "तीन", "चार", "पांच", "छह", "सात", "आठ")]
    before = client.get("/metrics").text
    barrier = threading.Barrier(len(texts))

    def one(i: int) -> bytes:
        barrier.wait(timeout=30)
        r = _speech(client, texts[i], seed=100 + i)
        assert r.status_code == 200, r.text
        return r.content

    with ThreadPoolExecutor(len(texts)) as pool:
        together = list(pool.map(one, range(len(texts))))
    after = client.get("/metrics").text
    n_batches = metric(after, "indicf5_batch_size_count") - metric(before, "indicf5_batch_size_count")
    n_items = metric(after, "indicf5_batch_size_sum") - metric(before, "indicf5_batch_size_sum")
    assert n_items == len(texts)
    assert n_batches < len(texts), f"{len(texts)} requests ran in {n_batches} batches"
    for i, body in enumerate(together):
        alone = _speech(client, texts[i], seed=100 + i)
        assert_audio_close(int16_of(body, "wav"), int16_of(alone.content, "wav"))


def test_concurrent_streams_share_batches_and_equal_full_requests(client):
    texts = [f"{w}, {LONG[:120]}" for w in ("एक", "दो", "तीन", "चार")]
    before = client.get("/metrics").text
    barrier = threading.Barrier(len(texts))

    def one(i: int) -> bytes:
        barrier.wait(timeout=30)
        body = {"input": texts[i], "voice": "demo", "seed": 50 + i, "stream": True, "response_format": "pcm"}
        with client.stream("POST", "/v1/audio/speech", json=body | FAST) as r:
            assert r.status_code == 200
            return r.read()

    with ThreadPoolExecutor(len(texts)) as pool:
        streamed = list(pool.map(one, range(len(texts))))
    after = client.get("/metrics").text
    n_batches = metric(after, "indicf5_batch_size_count") - metric(before, "indicf5_batch_size_count")
    n_items = metric(after, "indicf5_batch_size_sum") - metric(before, "indicf5_batch_size_sum")
    chunks = metric(after, "indicf5_stream_chunks_total") - metric(before, "indicf5_stream_chunks_total")
    assert n_items == chunks >= 2 * len(texts)  # every chunk of every stream went through a batch
    assert n_batches < n_items, f"{n_items} stream chunks ran in {n_batches} batches"
    for i, body in enumerate(streamed):
        full = _speech(client, texts[i], seed=50 + i, chunking="stream", response_format="pcm", **FAST)
        assert_audio_close(np.frombuffer(body, dtype="<i2"), int16_of(full.content, "pcm"))


def test_chunking_and_progressive_first_chunk_fields(client, tiny_tts, demo):
    r = _speech(client, LONG, chunking="fastest")
    assert 400 <= r.status_code < 500 and "chunking" in r.text
    r = _speech(client, LONG, first_chunk_nfe=0)
    assert 400 <= r.status_code < 500 and "first_chunk_nfe" in r.text
    r = _speech(client, LONG[:200], chunking="stream", first_chunk_nfe=2, response_format="pcm", **FAST)
    assert r.status_code == 200, r.text
    req = tiny_tts.make_request(LONG[:200], voice=demo, seed=3, chunking="stream", first_chunk_nfe=2, **FAST)
    want = expected_int16(tiny_tts.synthesize_batch([req])[0])
    assert_audio_close(int16_of(r.content, "pcm"), want)


def test_voice_upload_use_list_delete_and_persistence(live, client, demo_voice):
    from indicf5_fast.server.voices import VoiceStore

    wav, text = demo_voice
    files = {"ref_audio": ("ref.wav", wav.read_bytes(), "audio/wav")}
    r = client.post("/v1/voices", data={"name": "my-voice_1", "ref_text": text}, files=files)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "my-voice_1" and abs(r.json()["duration_seconds"] - 2.4) < 0.01
    names = [v["name"] for v in client.get("/v1/voices").json()["data"]]
    assert names == ["demo", "my-voice_1"]
    # same audio + text as "demo": same speech for the same seed
    a, b = _speech(client, voice="my-voice_1"), _speech(client, voice="demo")
    assert a.status_code == 200 and a.content == b.content
    # stored on disk: a fresh store (a restarted server) finds it
    store = VoiceStore(live.app.state.settings.voices_dir())
    store.load()
    assert store.names() == ["my-voice_1"] and store.get("my-voice_1").read_audio() == wav.read_bytes()

    r = client.post("/v1/voices", data={"name": "my-voice_1", "ref_text": text}, files=files)
    assert r.status_code == 409
    r = client.post(
        "/v1/voices", data={"name": "my-voice_1", "ref_text": text, "overwrite": "true"}, files=files
    )
    assert r.status_code == 201
    assert client.delete("/v1/voices/demo").status_code == 403
    assert client.delete("/v1/voices/my-voice_1").json() == {"name": "my-voice_1", "deleted": True}
    assert client.delete("/v1/voices/my-voice_1").status_code == 404
    r = _speech(client, voice="my-voice_1")
    assert r.status_code == 400 and r.json()["error"]["param"] == "voice"
    assert not (live.app.state.settings.voices_dir() / "my-voice_1").exists()


def test_tts_multipart_one_off_voice_equals_named_voice(client, demo_voice):
    wav, text = demo_voice
    r = client.post(
        "/v1/tts",
        data={"text": TEXT, "ref_text": text, "seed": "3", "nfe_step": "8", "response_format": "flac"},
        files={"ref_audio": ("ref.wav", wav.read_bytes(), "audio/wav")},
    )
    assert r.status_code == 200, r.text
    assert_audio_close(int16_of(r.content, "flac"), int16_of(_speech(client).content, "wav"), lsb=0)


def test_metrics_cover_requests_latency_audio_and_queue(client):
    _speech(client)
    text = client.get("/metrics").text
    assert metric(text, "indicf5_requests_total", route="/v1/audio/speech", status="200") >= 1
    assert metric(text, "indicf5_time_to_first_audio_seconds_count", route="/v1/audio/speech") >= 1
    assert metric(text, "indicf5_request_latency_seconds_count", stream="false") >= 1
    assert metric(text, "indicf5_audio_seconds_total") > 0
    assert metric(text, "indicf5_rtf_count") >= 1
    assert metric(text, "indicf5_ready") == 1
    assert metric(text, "indicf5_engine_info", backend="torch", device="cpu") == 1
    for name in ("indicf5_queue_depth", "indicf5_inflight_requests", "indicf5_worker_busy_seconds_total"):
        assert f"\n{name} " in text


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/audio/speech",
        "/v1/tts",
        "/v1/voices",
        "/v1/voices/{name}",
        "/health",
        "/ready",
        "/metrics",
    } <= set(spec["paths"])
    speech = spec["paths"]["/v1/audio/speech"]["post"]
    assert set(speech["responses"]["200"]["content"]) == {"audio/wav", "audio/flac", "audio/pcm"}
    props = spec["components"]["schemas"]["SpeechRequest"]["properties"]
    assert {
        "model",
        "input",
        "voice",
        "response_format",
        "speed",
        "stream",
        "nfe_step",
        "seed",
        "preset",
    } <= set(props)
    assert "securitySchemes" in spec["components"]


def test_speech_reads_numbers_as_words_and_reports_the_normalized_length(client, tiny_tts, demo):
    from indicf5_fast import normalize_text

    text = "आज ₹2,500 और 15/08/1947"
    spoken = normalize_text(text)
    r = _speech(client, text)
    assert r.status_code == 200, r.text
    assert r.headers["x-normalized-text-length"] == str(len(spoken))
    want = expected_int16(tiny_tts.synthesize(spoken, voice=demo, seed=3, nfe_step=8, normalize=False))
    assert_audio_close(int16_of(r.content, "wav"), want, lsb=0)
    raw = _speech(client, text, normalize=False)
    assert raw.status_code == 200 and raw.headers["x-normalized-text-length"] == str(len(text))
    marathi = _speech(client, "आज 5 लोग", language="mr")
    assert marathi.headers["x-normalized-text-length"] == str(len(normalize_text("आज 5 लोग", "mr")))
    bad = _speech(client, text, language="xx")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "language"
    body = {"input": text, "voice": "demo", "seed": 3, "nfe_step": 4, "stream": True}
    with client.stream("POST", "/v1/audio/speech", json=body) as s:
        assert s.status_code == 200 and s.headers["x-normalized-text-length"] == str(len(spoken))
        s.read()


def test_references_from_phones_and_browsers(live, client, demo_voice):
    pytest.importorskip("av")
    import soundfile as sf

    from indicf5_fast import normalize_text
    from test_audio_av import encode, tone

    wav, text = demo_voice
    x, sr = sf.read(wav, dtype="float32")
    m4a = encode(x[None], sr, "ipod", "aac")
    form = {"text": "आज 5 लोग", "ref_text": text, "seed": "3", "nfe_step": "4", "language": "mr"}
    r = client.post("/v1/tts", data=form, files={"ref_audio": ("ref.m4a", m4a, "audio/mp4")})
    assert r.status_code == 200, r.text
    assert r.headers["x-normalized-text-length"] == str(len(normalize_text("आज 5 लोग", "mr")))
    webm = encode(x[None], sr, "webm", "libopus", rate=48000)
    r = client.post(
        "/v1/voices",
        data={"name": "browser-voice", "ref_text": text},
        files={"ref_audio": ("r.webm", webm, "audio/webm")},
    )
    assert r.status_code == 201, r.text
    assert (live.app.state.settings.voices_dir() / "browser-voice" / "reference.webm").is_file()
    assert _speech(client, voice="browser-voice").status_code == 200
    assert client.delete("/v1/voices/browser-voice").status_code == 200
    for data, code in (
        (m4a[: len(m4a) // 2], "invalid_audio"),
        (encode(tone(40.0, 16000), 16000, "webm", "libopus", rate=48000, b="8000"), "audio_too_long"),
    ):
        r = client.post("/v1/tts", data=form, files={"ref_audio": ("ref.m4a", data, "audio/mp4")})
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
