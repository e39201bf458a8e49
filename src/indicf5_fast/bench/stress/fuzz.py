"""Fuzz the HTTP API with hypothesis-generated malformed requests (needs `hypothesis`).

Each generated request is sent once (no shrinking, no replay database). The server passes when
no response is a 5xx, none hangs (every request answered within `timeout`), and afterwards
/health answers and an ordinary speech request still succeeds.

Request families: speech JSON bodies with fields dropped, mistyped or out of range and unknown
keys added; raw bodies (broken JSON, invalid UTF-8, wrong content types); voice uploads and
deletions with path-like names and corrupt / empty / oversized audio; the multipart one-off
voice route; unknown paths and wrong methods.
"""

from __future__ import annotations

import io
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from indicf5_fast.bench.stress.client import check_loopback
from indicf5_fast.errors import InputError, require

SPEECH = "/v1/audio/speech"
PATH_LIKE = (
    "../../etc/passwd",
    "..",
    ".",
    "/abs",
    "a/b",
    "a\\b",
    "..%2f..%2fetc",
    "demo\x00x",
    "CON",
    "~root",
    " ",
    "",
    "ok-name",
    "x" * 300,
    "देमो",
)
SAMPLE_TEXTS = ("नमस्ते, आप कैसे हैं?", "வணக்கம்.", "hello world", "", " ", "\x00", "🙂" * 20, "a" * 100_001)
BIG_BYTES = 12 * 1024 * 1024  # an "enormous" upload, above the server's default 10 MiB reference limit


@dataclass
class FuzzRequest:
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    files: dict | None = None
    data: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def describe(self, limit: int = 300) -> str:
        body = self.json if self.json is not None else self.content
        if self.files is not None or self.data is not None:
            files = {k: (v[0], f"<{len(v[1])} bytes>") for k, v in (self.files or {}).items()}
            body = {"files": files, "data": self.data}
        text = f"{self.method} {self.path} {self.headers or ''} {body!r}"
        return text if len(text) <= limit else text[:limit] + "..."


def tiny_wav(seconds: float = 0.3, sr: int = 24_000, channels: int = 1, amplitude: float = 2000.0) -> bytes:
    """A valid 16-bit WAV of low noise (a syntactically fine reference clip); amplitude 0 = silence."""
    import numpy as np

    n = int(seconds * sr) * channels
    x = (np.random.default_rng(0).standard_normal(n) * amplitude).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(x.tobytes())
    return buf.getvalue()


def float_wav(seconds: float = 1.0, sr: int = 44_100) -> bytes:
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    x = np.random.default_rng(1).uniform(-1, 1, int(seconds * sr)).astype(np.float32)
    sf.write(buf, x, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def strategies(voice: str = "demo"):
    """The hypothesis strategy of FuzzRequest (built lazily: hypothesis is a dev dependency)."""
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
    )
    anything = st.recursive(
        scalars,
        lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4),
        max_leaves=8,
    )
    fields = {
        "model": st.just("indicf5") | st.text(max_size=30),
        "input": st.sampled_from(SAMPLE_TEXTS) | st.text(max_size=200),
        "voice": st.just("demo") | st.sampled_from(PATH_LIKE) | st.text(max_size=40),
        "response_format": st.sampled_from(["wav", "pcm", "flac", "mp3", "opus", "WAV", "", "wav\x00"])
        | st.text(max_size=10),
        "speed": st.sampled_from([0, -1, 0.1, 0.25, 1.0, 4.0, 4.5, 1e308])
        | st.floats(allow_nan=False, allow_infinity=False),
        "stream": st.booleans() | st.sampled_from(["yes", "true", 1, 0, 2]),
        # mostly out of range: an in-range value means a real synthesis (slow for large NFE)
        "nfe_step": st.sampled_from([-1, 0, 1, 2, 4, 257, 10**9, 2**63])
        | st.integers(-(2**40), 2**40)
        | st.text(max_size=5),
        "seed": st.sampled_from([-1, 0, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1])
        | st.integers(-(2**80), 2**80),
        "preset": st.sampled_from(["quality", "fast", "turbo", "", "FAST"]) | st.text(max_size=10),
    }
    mutated = {k: v | anything for k, v in fields.items()}
    speech_body = st.builds(
        lambda base, extra: {**base, **extra},
        st.fixed_dictionaries({}, optional=mutated),
        st.dictionaries(st.text(max_size=12), anything, max_size=3),
    )
    content_types = st.sampled_from(
        [
            "application/json",
            "text/plain",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
            "",
            "*/*",
        ]
    )
    # near-valid: a correct body with one or two fields replaced, so the requests get past the
    # schema into voices, limits and synthesis (a fully random body stops at validation)
    valid = {
        "model": st.just("indicf5"),
        "response_format": st.sampled_from(["wav", "pcm", "flac"]),
        "speed": st.floats(0.25, 4.0),
        "stream": st.booleans(),
        "nfe_step": st.integers(1, 8),
        "seed": st.integers(0, 2**63 - 1),
        "preset": st.sampled_from(["quality", "fast"]),
    }
    base = st.fixed_dictionaries(
        {"input": st.sampled_from(SAMPLE_TEXTS[:3]), "voice": st.just(voice)}, optional=valid
    )
    changes = st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: mutated[k] for k in keys})
    )
    near_valid = st.builds(lambda b, c: FuzzRequest("POST", SPEECH, json={**b, **c}), base, changes)
    speech_json = st.builds(lambda b: FuzzRequest("POST", SPEECH, json=b), speech_body)
    speech_top = st.builds(lambda b: FuzzRequest("POST", SPEECH, json=b), anything)  # list, number, null...
    raw_bodies = st.sampled_from(
        [
            b"",
            b"{",
            b"null",
            b"[]",
            b'"x"',
            b"123",
            b'{"input": NaN, "voice": "demo"}',
            b'{"input": Infinity, "voice": "demo"}',
            b'{"input": "a", "speed": 1e999}',
            b'\xff\xfe{"input": "a"}',
            b'{"input": "\xff\xfe\xfd", "voice": "demo"}',
            b'{"input": "\\ud800", "voice": "demo"}',
            b'{"input": "a", "input": 5}',
            b"[" * 5000 + b"]" * 5000,
        ]
    ) | st.binary(max_size=300)
    speech_raw = st.builds(
        lambda c, ct: FuzzRequest("POST", SPEECH, content=c, headers={"content-type": ct} if ct else {}),
        raw_bodies,
        content_types,
    )
    audio = st.sampled_from(
        [
            "empty",
            "tiny_wav",
            "tiny_wav",
            "silent",
            "stereo_8k",
            "float",
            "long",
            "garbage",
            "truncated",
            "big",
        ]
    ) | st.binary(max_size=200).map(lambda b: ("bytes", b))
    name = st.sampled_from(PATH_LIKE) | st.text(max_size=40)
    text = st.sampled_from(SAMPLE_TEXTS[:6]) | st.text(max_size=80)
    upload_field = st.sampled_from(["ref_audio", "ref_audio", "ref_audio", "audio", "file"])
    filename = st.sampled_from(["ref.wav", "a.flac", "../../x.wav", "", "x" * 300, "a.exe"])
    form_value = st.sampled_from(
        ["", "true", "false", "0", "-1", "1e9", "wav", "flac", "fast", "nan"]
    ) | st.text(max_size=10)
    form_keys = ["overwrite", "response_format", "speed", "stream", "nfe_step", "seed", "preset", "x"]
    form_extra = st.dictionaries(st.sampled_from(form_keys), form_value, max_size=4)
    voices_post = st.builds(
        lambda n, t, a, f, fn, extra: FuzzRequest(
            "POST",
            "/v1/voices",
            files={f: (fn, _audio_bytes(a), "audio/wav")},
            data={"name": n, "ref_text": t, **extra},
        ),
        name,
        text,
        audio,
        upload_field,
        filename,
        form_extra,
    )
    voices_delete = st.builds(lambda n: FuzzRequest("DELETE", "/v1/voices/" + quote(n, safe="")), name)
    tts = st.builds(
        lambda t, rt, a, f, extra: FuzzRequest(
            "POST",
            "/v1/tts",
            files={f: ("ref.wav", _audio_bytes(a), "audio/wav")},
            data={"text": t, "ref_text": rt, **extra},
        ),
        text,
        text,
        audio,
        upload_field,
        form_extra,
    )
    paths = st.sampled_from(
        [SPEECH, "/v1/voices", "/v1/tts", "/health", "/ready", "/metrics", "/v1/voices/demo"]
    )
    wrong = st.builds(
        lambda m, p: FuzzRequest(m, p),
        st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "POST"]),
        paths | st.text(max_size=30).map(lambda s: "/" + quote(s, safe="/")),
    )
    auth = st.sampled_from([{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic Zm9vOmJhcg=="}])
    any_request = st.one_of(
        near_valid,
        near_valid,
        near_valid,
        speech_json,
        speech_top,
        speech_raw,
        voices_post,
        voices_delete,
        tts,
        wrong,
    )
    return st.builds(
        lambda r, h: FuzzRequest(r.method, r.path, r.json, r.content, r.files, r.data, {**r.headers, **h}),
        any_request,
        auth,
    )


def _audio_bytes(kind) -> bytes:
    if isinstance(kind, tuple):
        return kind[1]
    if kind == "empty":
        return b""
    if kind == "tiny_wav":
        return tiny_wav()
    if kind == "truncated":
        return tiny_wav()[:60]
    if kind == "big":
        return b"RIFF" + b"\x00" * (BIG_BYTES - 4)
    if kind == "silent":
        return tiny_wav(1.0, amplitude=0.0)
    if kind == "stereo_8k":
        return tiny_wav(1.0, sr=8000, channels=2)
    if kind == "float":
        return float_wav()
    if kind == "long":
        return tiny_wav(40.0, sr=8000)  # above the server's default 30 s reference limit
    return bytes(range(256)) * 4  # garbage


def send(client, base: str, req: FuzzRequest, timeout: float) -> tuple[int | None, float, str | None]:
    """(status or None, seconds, error) for one request; the body is read in full."""
    t0 = time.perf_counter()
    try:
        r = client.request(
            req.method,
            base + req.path,
            json=req.json,
            content=req.content,
            files=req.files,
            data=req.data,
            headers=req.headers,
            timeout=timeout,
        )
        return r.status_code, time.perf_counter() - t0, None
    except Exception as e:  # timeouts and dropped connections are failures of the server
        return None, time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:300]


def run_fuzz(
    url: str,
    examples: int = 500,
    timeout: float = 30.0,
    api_key: str | None = None,
    seed: int = 0,
    max_seconds: float = 1800.0,
    voice: str = "demo",
    wait_ready: float = 60.0,
) -> dict:
    """Send `examples` generated requests to the server at `url`; returns the result dict with
    `passed`, status counts, failures (first 20) and the health check afterwards."""
    import httpx

    hyp = require("hypothesis", "dev", "fuzzing (--fuzz)")
    HealthCheck, Phase, given, settings = hyp.HealthCheck, hyp.Phase, hyp.given, hyp.settings
    hypothesis_seed = hyp.seed
    base = check_loopback(url)
    if not 1 <= examples <= 100_000:
        raise InputError("--fuzz must be in 1..100000", "fuzz")
    statuses: Counter = Counter()
    failures: list[dict] = []
    slowest = [0.0]
    over_time = [0]
    auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
    t_end = time.perf_counter() + max_seconds
    with httpx.Client(trust_env=False) as client:
        _wait_ready(client, base, auth, wait_ready)

        @hypothesis_seed(seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategies(voice))
        def one(req: FuzzRequest) -> None:
            if time.perf_counter() > t_end:
                over_time[0] += 1
                return
            if auth and "authorization" not in req.headers:
                req.headers.update(auth)
            status, secs, err = send(client, base, req, timeout)
            slowest[0] = max(slowest[0], secs)
            statuses["timeout" if err and "Timeout" in err else (status or "error")] += 1
            if status is None or status >= 500 or secs > timeout:
                if len(failures) < 20:
                    failures.append(
                        {"request": req.describe(), "status": status, "seconds": secs, "error": err}
                    )
                else:
                    failures.append({})  # counted, not kept

        t0 = time.perf_counter()
        one()
        wall = time.perf_counter() - t0
        health = _health(client, base, auth, voice, timeout)
    n_fail = len(failures)
    sent = sum(statuses.values())
    return {
        "tool": "indicf5-fast stress --fuzz",
        "url": base,
        "examples": examples,
        "sent": sent,
        "wall_seconds": wall,
        "slowest_seconds": slowest[0],
        "status_counts": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "server_errors": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500),
        "hangs_or_dropped": sum(v for k, v in statuses.items() if not isinstance(k, int)),
        "failures": n_fail,
        "samples": [f for f in failures if f][:20],
        "skipped_over_time": over_time[0],
        "health_after": health,
        "passed": n_fail == 0 and over_time[0] == 0 and health["ok"],
    }


def _wait_ready(client, base: str, auth: dict, wait: float) -> None:
    end = time.perf_counter() + wait
    while True:
        try:
            status = client.get(base + "/ready", headers=auth, timeout=5.0).status_code
        except Exception as e:
            status = f"{type(e).__name__}: {e}"
        if status == 200:
            return
        if time.perf_counter() >= end:
            raise InputError(f"no ready server at {base} (/ready: {status})", "url")
        time.sleep(0.5)


def _health(client, base: str, auth: dict, voice: str, timeout: float) -> dict:
    """Is the server still fine: /health 200 and a plain speech request gives audio."""
    out: dict = {"ok": False}
    try:
        out["health_status"] = client.get(base + "/health", timeout=timeout).status_code
        body = {"model": "indicf5", "input": "नमस्ते।", "voice": voice, "response_format": "wav"}
        r = client.post(base + SPEECH, json=body, headers=auth, timeout=timeout)
        out["speech_status"] = r.status_code
        out["speech_bytes"] = len(r.content)
        out["ok"] = out["health_status"] == 200 and r.status_code == 200 and r.content[:4] == b"RIFF"
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"[:300]
    return out
