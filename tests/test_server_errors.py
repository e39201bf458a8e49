"""Bad input, overload, timeouts and graceful shutdown of `indicf5-fast serve` (real uvicorn on
127.0.0.1, tiny random model). Bad input must be a 4xx with an OpenAI-style reason, never a 5xx."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from server_harness import metric, run_server, sine_wav  # noqa: E402

KEY = "k-errors"
TEXT = "नमस्ते दुनिया, यह एक परीक्षण है।"
MAX_REF_BYTES = 256 * 1024
MAX_QUEUE = 3


@pytest.fixture(scope="module")
def engine(tiny_ckpt):
    import indicf5_fast

    # batch size 1, no wait: admitted requests run strictly one after the other (overload test)
    return indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32", max_batch_size=1, batch_wait_ms=0)


@pytest.fixture(scope="module")
def live(engine, tiny_ckpt, tmp_path_factory):
    from indicf5_fast.server.settings import ServerSettings

    settings = ServerSettings(
        api_key=KEY,
        data_dir=str(tmp_path_factory.mktemp("err-data") / "data"),
        prompts_dir=str(tiny_ckpt / "prompts"),
        max_ref_bytes=MAX_REF_BYTES,
        max_upload_seconds=10.0,
        max_queue=MAX_QUEUE,
    )
    with run_server(engine, settings) as server:
        yield server


def _wav(wave: np.ndarray, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, 24000, format=fmt, subtype=subtype)
    return buf.getvalue()


def _aiff() -> bytes:
    return _wav(np.sin(np.arange(24000, dtype=np.float32) / 10) * 0.1, fmt="AIFF")


def _multipart_raw(text: bytes):
    """A multipart body whose `text` field holds raw (non-UTF-8) bytes."""
    b = b"xXbOuNdArYx"
    parts = [
        (b'name="text"', text),
        (b'name="ref_text"', "नमस्ते, यह एक परीक्षण वाक्य है।".encode()),
        (b'name="ref_audio"; filename="r.wav"\r\nContent-Type: audio/wav', sine_wav(1.0)),
    ]
    body = b"".join(
        b"--" + b + b"\r\nContent-Disposition: form-data; " + h + b"\r\n\r\n" + v + b"\r\n" for h, v in parts
    )
    body += b"--" + b + b"--\r\n"
    return (
        "POST",
        "/v1/tts",
        {"content": body, "headers": {"content-type": "multipart/form-data; boundary=" + b.decode()}},
    )


def _speech(**body):
    return ("POST", "/v1/audio/speech", {"json": {"input": TEXT, "voice": "demo"} | body})


def _raw(content: bytes, ctype: str = "application/json"):
    return ("POST", "/v1/audio/speech", {"content": content, "headers": {"content-type": ctype}})


def _tts(audio: bytes | None, **fields):
    data = {"text": TEXT, "ref_text": "नमस्ते, यह एक परीक्षण वाक्य है।"} | fields
    files = {} if audio is None else {"ref_audio": ("ref.wav", audio, "audio/wav")}
    return ("POST", "/v1/tts", {"data": {k: v for k, v in data.items() if v is not None}, "files": files})


def _voice(name: str, audio: bytes | None = None):
    files = {"ref_audio": ("ref.wav", audio or sine_wav(1.5), "audio/wav")}
    return ("POST", "/v1/voices", {"data": {"name": name, "ref_text": TEXT}, "files": files})


BAD = {
    # speech body
    "empty": (_speech(input=""), 400, "input"),
    "blank": (_speech(input="   \n"), 400, "input"),
    "100k chars": (_speech(input="क" * 100_000), 400, "input"),
    "unknown script": (_speech(input="你好，世界"), 400, "input"),
    "missing input": (("POST", "/v1/audio/speech", {"json": {"voice": "demo"}}), 400, "input"),
    "bad voice": (_speech(voice="alloy"), 400, "voice"),
    "path voice": (_speech(voice="../../etc/passwd"), 400, "voice"),
    "backslash voice": (_speech(voice="..\\x"), 400, "voice"),
    "bad format": (_speech(response_format="mp3"), 400, "response_format"),
    "negative speed": (_speech(speed=-1.0), 400, "speed"),
    "zero speed": (_speech(speed=0), 400, "speed"),
    "text speed": (_speech(speed="fast"), 400, "speed"),
    "nfe 0": (_speech(nfe_step=0), 400, "nfe_step"),
    "nfe huge": (_speech(nfe_step=100000), 400, "nfe_step"),
    "negative seed": (_speech(seed=-1), 400, "seed"),
    "bad preset": (_speech(preset="ultra"), 400, "preset"),
    "unknown field": (_speech(temperature=0.7), 400, "temperature"),
    "flac stream": (_speech(stream=True, response_format="flac"), 400, "response_format"),
    "lone surrogate": (_raw(b'{"input": "\\ud800abc", "voice": "demo"}'), 400, "input"),
    "non-UTF-8": (_raw(b'{"input": "\xff\xfe\xfd", "voice": "demo"}'), 400, None),
    "latin-1 bytes": (_raw(b'{"input": "caf\xe9"}'), 400, None),
    "invalid JSON": (_raw(b'{"input": '), 400, None),
    "JSON array": (_raw(b'["hi"]'), 400, None),
    "not JSON": (_raw(b"input=hi", "text/plain"), 400, None),
    # one-off reference audio
    "missing audio": (_tts(None), 400, "ref_audio"),
    "missing ref_text": (_tts(sine_wav(1.0), ref_text=None), 400, "ref_text"),
    "zero-length audio": (_tts(b""), 422, "ref_audio"),
    "corrupt audio": (_tts(os.urandom(5000)), 422, "ref_audio"),
    "truncated wav": (_tts(sine_wav(1.0)[:60]), 422, "ref_audio"),
    "no samples": (_tts(sine_wav(0.0)), 422, "ref_audio"),
    "digital silence": (_tts(_wav(np.zeros(48000, np.float32))), 422, "ref_audio"),
    "NaN samples": (_tts(_wav(np.full(4800, np.nan, np.float32), "FLOAT")), 422, "ref_audio"),
    "aiff audio": (_tts(_aiff()), 422, "ref_audio"),
    "too long audio": (_tts(sine_wav(12.0, sr=8000)), 422, "ref_audio"),
    "enormous audio": (_tts(b"\0" * (MAX_REF_BYTES + 1000)), 413, "ref_audio"),
    "enormous body": (_tts(b"\0" * (3 << 20)), 413, None),
    "tts unknown script": (_tts(sine_wav(1.0), text="Привет"), 400, "text"),
    "tts non-UTF-8 text": (_multipart_raw(b"\xff\xfe\xfd"), 400, "text"),
    # voices
    "voice name ..": (_voice(".."), 400, "name"),
    "voice name path": (_voice("../escape"), 400, "name"),
    "voice name slash": (_voice("a/b"), 400, "name"),
    "voice name hidden": (_voice(".hidden"), 400, "name"),
    "voice name empty": (_voice(""), 400, "name"),
    "voice name long": (_voice("a" * 65), 400, "name"),
    "voice name NUL": (_voice("a\0b"), 400, "name"),
    "voice corrupt": (_voice("okname", os.urandom(3000)), 422, "ref_audio"),
    "replace builtin": (_voice("demo"), 409, "name"),
    "delete builtin": (("DELETE", "/v1/voices/demo", {}), 403, "name"),
    "delete missing": (("DELETE", "/v1/voices/nobody", {}), 404, "name"),
    "delete dotdot": (("DELETE", "/v1/voices/..%2F..%2Fetc", {}), 404, None),
    "get bad name": (("GET", "/v1/voices/a.b", {}), 400, "name"),
    # routing / auth
    "unknown route": (("GET", "/v1/nothing", {}), 404, None),
    "wrong method": (("GET", "/v1/audio/speech", {}), 405, None),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_4xx_with_reason(live, case):
    (method, path, kwargs), status, param = BAD[case]
    with live.client() as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["message"] and err["type"] and set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param, err


def test_missing_or_wrong_api_key_is_401_and_server_still_answers(live, tmp_path_factory):
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic x"},
    ):
        r = httpx.post(f"{live.url}/v1/audio/speech", json={"input": TEXT}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    with live.client() as c:
        ok = c.post("/v1/audio/speech", json={"input": TEXT, "seed": 1, "nfe_step": 4})
        assert ok.status_code == 200 and ok.content[:4] == b"RIFF"
        metrics = c.get("/metrics").text
    assert metric(metrics, "indicf5_requests_total", status="500") == 0
    # nothing escaped the data directory, no stray voice was stored
    data = live.app.state.settings.voices_dir()
    assert sorted(p.name for p in data.parent.rglob("*")) == ["voices"]


def test_overload_rejects_fast_while_admitted_requests_complete(live):
    n, k = MAX_QUEUE, 3
    barrier = threading.Barrier(n + k)
    t0 = time.perf_counter()

    def one(i: int):
        barrier.wait(timeout=30)
        with live.client() as c:  # >= 0.3 s each on the tiny model, strictly one at a time
            r = c.post("/v1/audio/speech", json={"input": TEXT, "seed": i, "nfe_step": 64})
        return r, time.perf_counter() - t0

    with ThreadPoolExecutor(n + k) as pool:
        results = list(pool.map(one, range(n + k)))
    ok = [t for r, t in results if r.status_code == 200]
    busy = [(r, t) for r, t in results if r.status_code == 503]
    assert len(ok) == n and len(busy) == k, [r.status_code for r, _ in results]
    for r, _ in busy:
        assert r.headers["retry-after"].isdigit()
        assert r.json()["error"]["code"] == "queue_full"
    # every refusal came back before the first admitted request finished
    assert max(t for _, t in busy) < min(ok), (busy, ok)
    with live.client() as c:
        assert metric(c.get("/metrics").text, "indicf5_rejected_total", reason="queue_full") == k


def test_timeout_is_504_and_frees_the_queue(engine, tiny_ckpt):
    from indicf5_fast.server.settings import ServerSettings

    settings = ServerSettings(prompts_dir=str(tiny_ckpt / "prompts"), request_timeout_s=0.5)
    with run_server(engine, settings) as live, live.client() as c:
        slow = {"input": TEXT, "seed": 1, "nfe_step": 192}  # >= 1 s on the tiny model
        before = metric(c.get("/metrics").text, "indicf5_batch_size_count")
        with ThreadPoolExecutor(2) as pool:  # the second one times out while still queued
            rs = list(pool.map(lambda _: c.post("/v1/audio/speech", json=slow), range(2)))
        for r in rs:
            assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        deadline = time.monotonic() + 30
        while metric(c.get("/metrics").text, "indicf5_inflight_requests") > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        text = c.get("/metrics").text
        assert metric(text, "indicf5_batch_size_count") - before == 1  # the queued one never ran
        assert c.post("/v1/audio/speech", json={"input": TEXT, "nfe_step": 2}).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_and_graceful_shutdown_finishes_admitted_requests(
    tiny_ckpt, tmp_path, tiny_tts, demo_voice
):
    port = _free_port()
    env = dict(os.environ, INDICF5_API_KEY="cli-key")
    cmd = [sys.executable, "-m", "indicf5_fast.cli", "serve", "--model", str(tiny_ckpt), "--device", "cpu"]
    cmd += ["--dtype", "float32", "--port", str(port), "--data-dir", str(tmp_path), "--max-batch-size", "1"]
    cmd += ["--batch-wait-ms", "0", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": "Bearer cli-key"}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/ready", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read().decode()
        body = {"input": TEXT, "voice": "demo", "seed": 9, "nfe_step": 96}  # demo: from the checkpoint

        def one(_):
            return httpx.post(f"{url}/v1/audio/speech", json=body, headers=headers, timeout=60)

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(one, i) for i in range(2)]
            while time.monotonic() < deadline:  # both admitted (one running, one queued)
                m = httpx.get(f"{url}/metrics", headers=headers, timeout=5).text
                if metric(m, "indicf5_inflight_requests") == 2:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=60) for f in futures]
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        wav, text = demo_voice
        want = tiny_tts.synthesize(TEXT, voice=tiny_tts.prepare_voice(str(wav), text), seed=9, nfe_step=96)
        for r in results:
            assert r.status_code == 200
            assert len(r.content) == 44 + 2 * len(want)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
