"""The OpenAPI schema tells the truth about the server (issue 10, bug 4).

A real uvicorn server on 127.0.0.1 (tiny random model, `fast` preset, an API key) is checked by
the schemathesis CLI with every check but positive_data_acceptance (a schema cannot say "a valid
WAV file"), a fixed seed and a max-examples cap; plus the schema facts it relies on, asserted
directly: /health is public (`security: []`), every other route declares the key, the request
constraints the server enforces are in the schema, declared errors use the OpenAI-style body.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("schemathesis")

from server_harness import run_server, sine_wav  # noqa: E402

KEY = "k-openapi"
MAX_CHARS = 200  # short texts keep each generated synthesis quick on 2 CPU cores
SEED = 20261125
MAX_EXAMPLES = int(os.environ.get("INDICF5_SCHEMATHESIS_EXAMPLES", "30"))  # about a minute here
TEXT = "नमस्ते दुनिया"


@pytest.fixture(scope="module")
def live(tiny_ckpt, tmp_path_factory):
    import indicf5_fast
    from indicf5_fast.config import PRESETS
    from indicf5_fast.server.settings import ServerSettings

    engine = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32", **PRESETS["fast"])
    settings = ServerSettings(
        api_key=KEY,
        data_dir=str(tmp_path_factory.mktemp("openapi-voices")),
        prompts_dir=str(tiny_ckpt / "prompts"),
        max_input_chars=MAX_CHARS,
        max_ref_bytes=512 * 1024,
        request_timeout_s=120.0,
    )
    with run_server(engine, settings) as server:
        yield server


@pytest.fixture(scope="module")
def spec(live) -> dict:
    r = httpx.get(f"{live.url}/openapi.json")  # public, like /health and /docs
    assert r.status_code == 200
    return r.json()


def _operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            yield path, method, op


def test_health_is_public_and_every_other_route_declares_the_key(live, spec):
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert "401" not in spec["paths"]["/health"]["get"]["responses"]
    assert httpx.get(f"{live.url}/health").status_code == 200
    schemes = spec["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"]
    assert bearer, schemes
    protected = [(p, m, op) for p, m, op in _operations(spec) if p != "/health"]
    assert len(protected) >= 8
    for path, method, op in protected:
        assert {bearer[0]: []} in op["security"], (path, method)
        assert "401" in op["responses"], (path, method)
        r = httpx.request(method.upper(), f"{live.url}{path.replace('{name}', 'demo')}")
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key", (path, method)


def test_either_declared_header_with_the_key_is_enough(live):
    """The schema offers Bearer or X-API-Key; a wrong value in the other one must not lock out."""
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        {"X-API-Key": KEY},
        {"Authorization": f"Bearer {KEY}", "X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong", "X-API-Key": KEY},
    ):
        assert httpx.get(f"{live.url}/v1/voices", headers=headers).status_code == 200, headers
    for headers in ({"Authorization": "Bearer wrong", "X-API-Key": "wrong"}, {"X-API-Key": ""}):
        r = httpx.get(f"{live.url}/v1/voices", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", headers


def test_enforced_constraints_are_in_the_schema(spec):
    from indicf5_fast.server.settings import VOICE_NAME_RE

    schemas = spec["components"]["schemas"]
    speech = schemas["SpeechRequest"]["properties"]
    assert speech["input"] | {"minLength": 1, "maxLength": MAX_CHARS, "pattern": r"\S"} == speech["input"]
    assert {"type": "string", "pattern": VOICE_NAME_RE.pattern} in speech["voice"]["anyOf"]
    assert speech["response_format"]["enum"] == ["wav", "pcm", "flac"]
    speed = next(s for s in speech["speed"]["anyOf"] if s.get("type") == "number")  # None = server default
    assert (speed["minimum"], speed["maximum"]) == (0.25, 4.0)
    nfe = next(s for s in speech["nfe_step"]["anyOf"] if s.get("type") == "integer")
    assert (nfe["minimum"], nfe["maximum"]) == (1, 256)
    assert schemas["SpeechRequest"].get("additionalProperties") is False
    tts = spec["paths"]["/v1/tts"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    tts_props = schemas[tts["$ref"].rsplit("/", 1)[-1]]["properties"]
    voice = spec["paths"]["/v1/voices"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    voice_props = schemas[voice["$ref"].rsplit("/", 1)[-1]]["properties"]
    for prop in (tts_props["text"], tts_props["ref_text"], voice_props["ref_text"]):
        assert (prop["minLength"], prop["maxLength"], prop["pattern"]) == (1, MAX_CHARS, r"\S")
    assert voice_props["name"]["pattern"] == VOICE_NAME_RE.pattern
    assert "maxLength" not in schemas["VoiceInfo"]["properties"]["ref_text"]  # a response: no limit
    for method in ("get", "delete"):
        (param,) = spec["paths"]["/v1/voices/{name}"][method]["parameters"]
        assert param["schema"]["pattern"] == VOICE_NAME_RE.pattern


def test_declared_errors_are_the_openai_body(spec):
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # validation errors are 400
    error_ref = "#/components/schemas/ErrorResponse"
    for path, _method, op in _operations(spec):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and not (path == "/ready" and status == "503"):
                assert response["content"]["application/json"]["schema"]["$ref"] == error_ref, (path, status)
    speech = spec["paths"]["/v1/audio/speech"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422", "503"} <= set(speech)
    assert {"400", "401", "404"} <= set(spec["paths"]["/v1/voices/{name}"]["get"]["responses"])
    assert {"400", "401", "409", "413", "422"} <= set(spec["paths"]["/v1/voices"]["post"]["responses"])


def test_constraints_are_enforced_as_declared(live):
    """What the schema says is invalid gets a 400 with the field named (never 2xx / 5xx)."""
    with live.client() as c:
        cases = [
            ("post", "/v1/audio/speech", {"json": {"input": ""}}, "input"),
            ("post", "/v1/audio/speech", {"json": {"input": " \t\n"}}, "input"),
            ("post", "/v1/audio/speech", {"json": {"input": "क" * (MAX_CHARS + 1)}}, "input"),
            ("post", "/v1/audio/speech", {"json": {"input": TEXT, "voice": "demo\n"}}, "voice"),
            ("get", "/v1/voices/demo%0A", {}, "name"),
            ("delete", "/v1/voices/" + "a" * 65, {}, "name"),
        ]
        for method, path, kwargs, param in cases:
            r = c.request(method.upper(), path, **kwargs)
            assert r.status_code == 400, (path, kwargs, r.status_code, r.text[:200])
            assert r.json()["error"]["param"] == param, r.json()
        files = {"ref_audio": ("ref.wav", sine_wav(1.0), "audio/wav")}
        r = c.post("/v1/voices", data={"name": "trailing\n", "ref_text": TEXT}, files=files)
        assert r.status_code == 400 and r.json()["error"]["param"] == "name", r.text
        assert "invalid voice name" in r.json()["error"]["message"]
        assert c.get("/v1/voices/demo").status_code == 200
    data = live.app.state.settings.voices_dir()
    assert not data.exists() or not any(data.iterdir())  # "trailing\n" never reached the disk


def test_405_allow_lists_every_method_of_the_path(live):
    with live.client() as c:
        for path, allowed in (("/v1/voices", "GET, POST"), ("/v1/voices/demo", "DELETE, GET")):
            r = c.put(path)
            assert r.status_code == 405 and r.headers["allow"] == allowed, (path, r.headers)
            assert r.json()["error"]["type"] == "invalid_request_error"


def test_schemathesis_finds_no_failure(live, tmp_path):
    """`schemathesis run <url>/openapi.json -c all --exclude-checks positive_data_acceptance`."""
    exe = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(exe),
        "run",
        f"{live.url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-database",
        "none",  # no example store: the same seed gives the same run
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--no-color",
    ]
    # cwd: a temporary dir, so nothing (a .schemathesis/ dir, reports) lands in the repository
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Coverage" in out and "Fuzzing" in out and "Stateful" in out, out[-3000:]  # phases ran
