"""The web playground's programmatic side, against a real uvicorn server on 127.0.0.1 (tiny random
model) with the page mounted at /ui: Gradio's `/synthesize` through `gradio_client` returns the
HTTP API's exact WAV bytes for the same request; the key is Gradio's login password there while
the API keeps its Bearer check; errors come back as messages; voices are shared with the API."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from server_harness import run_server

KEY = "ui-key-7"
TEXT = "नमस्ते दुनिया, यह एक परीक्षण है।"


@pytest.fixture(scope="module")
def live(tiny_ckpt, tmp_path_factory):
    import indicf5_fast
    from indicf5_fast.server.settings import ServerSettings

    engine = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32", max_batch_size=4)
    settings = ServerSettings(
        api_key=KEY,
        data_dir=str(tmp_path_factory.mktemp("ui-data")),
        prompts_dir=str(tiny_ckpt / "prompts"),
        warmup=False,
        ui=True,
    )
    with run_server(engine, settings) as server:
        yield server


@pytest.fixture(scope="module")
def gradio(live):
    return Client(f"{live.url}/ui/", auth=("anyone", KEY), verbose=False)


def _synthesize(gradio: Client, **kw) -> bytes:
    args = {"text": TEXT, "voice": "demo", "seed": 5, "nfe_step": None, "preset": "fast", "speed": 1.0} | kw
    path = gradio.predict(**args, api_name="/synthesize")
    with open(path, "rb") as f:
        return f.read()


def _api(live, **kw) -> bytes:
    body = {"input": TEXT, "voice": "demo", "seed": 5, "preset": "fast"} | kw
    with live.client() as c:
        r = c.post("/v1/audio/speech", json=body)
    assert r.status_code == 200, r.text
    return r.content


@pytest.mark.parametrize(
    "ui_args, api_args",
    [
        ({}, {}),
        (
            {"seed": 11, "nfe_step": 6, "preset": "quality", "speed": 1.5},
            {"seed": 11, "nfe_step": 6, "preset": "quality", "speed": 1.5},
        ),
    ],
)
def test_synthesize_returns_the_http_apis_wav_bytes(live, gradio, ui_args, api_args):
    got = _synthesize(gradio, **ui_args)
    want = _api(live, **api_args)
    assert got[:4] == b"RIFF" and len(got) > 44 + 2_000
    assert got == want
    # and not trivially: another seed gives other audio
    assert _synthesize(gradio, **(ui_args | {"seed": 99})) != want


def test_synthesize_is_listed_with_its_parameters(gradio):
    api = gradio.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(api) == ["/synthesize"]  # the page's own events are private
    names = [p["parameter_name"] for p in api["/synthesize"]["parameters"]]
    assert names == ["text", "voice", "seed", "nfe_step", "preset", "speed"]


def test_random_seed_when_none(gradio):
    a, b = _synthesize(gradio, seed=None), _synthesize(gradio, seed=-1)
    assert a[:4] == b"RIFF" and a != b


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"text": "   "}, "text is empty"),
        ({"voice": "nobody"}, "voice 'nobody' not found"),
        ({"voice": "../etc"}, "invalid voice name"),
        ({"preset": "turbo"}, "unknown preset 'turbo'"),
        ({"nfe_step": 999}, "nfe_step must be an integer in 1..256"),
        ({"speed": 0.0}, None),  # 0 = the default speed: valid
        ({"text": "x" * 5000}, "text is 5000 characters; the limit is 4096"),
    ],
)
def test_errors_are_messages_not_tracebacks(gradio, kw, message):
    if message is None:
        assert _synthesize(gradio, **kw)[:4] == b"RIFF"
        return
    with pytest.raises(AppError) as e:
        _synthesize(gradio, **kw)
    assert message in str(e.value) and "Traceback" not in str(e.value)


def test_queue_full_is_a_message(live, gradio):
    batcher = live.app.state.service.batcher
    old, batcher.max_pending = batcher.max_pending, 0  # every admission is refused: 503 queue_full
    try:
        with pytest.raises(AppError, match="Server busy"):
            _synthesize(gradio)
        with live.client() as c:  # the HTTP API says the same thing its own way
            assert c.post("/v1/audio/speech", json={"input": TEXT, "voice": "demo"}).status_code == 503
    finally:
        batcher.max_pending = old


def test_login_replaces_the_bearer_header_only_under_ui(live):
    import httpx

    # the page itself needs no Authorization header (a browser cannot send one) ...
    r = httpx.get(f"{live.url}/ui/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    # ... but without logging in nothing of the app is served
    assert httpx.get(f"{live.url}/ui/config").status_code == 401
    with pytest.raises(Exception, match="(?i)login|auth|401"):
        Client(f"{live.url}/ui/", verbose=False)
    with pytest.raises(Exception, match="(?i)login|auth|credentials|401"):
        Client(f"{live.url}/ui/", auth=("anyone", "wrong"), verbose=False)
    # a prefix that merely starts with "/ui" is not exempt, and the API keeps its key
    assert httpx.get(f"{live.url}/uix").status_code == 401
    assert httpx.get(f"{live.url}/v1/voices").status_code == 401
    assert httpx.get(f"{live.url}/", follow_redirects=False).headers["location"] == "/ui/"


def test_voices_are_shared_with_the_http_api(live, gradio, tiny_ckpt):
    wav = (tiny_ckpt / "prompts" / "demo.wav").read_bytes()
    text = (tiny_ckpt / "prompts" / "demo.txt").read_text().strip()
    with live.client() as c:
        r = c.post(
            "/v1/voices",
            data={"name": "ravi", "ref_text": text},
            files={"ref_audio": ("ravi.wav", wav, "audio/wav")},
        )
        assert r.status_code == 201, r.text
    got = _synthesize(gradio, voice="ravi")
    assert got == _api(live, voice="ravi")


def test_spectrogram_image():
    from indicf5_fast.model.mel import MelSpectrogram
    from indicf5_fast.server.ui import spectrogram_image

    t = np.arange(24_000) / 24_000
    low = (8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)
    img = spectrogram_image(low, MelSpectrogram())
    assert img.dtype == np.uint8 and img.shape == (200, 24_000 // 256 + 1, 3)
    rows = img.astype(float).mean(axis=(1, 2))
    assert rows[-40:].mean() > rows[:40].mean() + 50  # a 200 Hz tone is bright at the bottom


def test_ui_command_refuses_a_network_address(capsys):
    from indicf5_fast.cli import main
    from indicf5_fast.server.ui_cli import is_loopback

    assert main(["ui", "--model", "x", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: `ui` serves on loopback only") and "\n" not in err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_every_example_is_in_the_models_vocabulary(tiny_tts):
    from indicf5_fast.frontend.text import split_characters
    from indicf5_fast.server.ui import EXAMPLES

    assert len(EXAMPLES) == 11 and len({lang for lang, _ in EXAMPLES}) == 11
    for lang, text in EXAMPLES:
        unknown = [c for c in split_characters(text) if c != " " and c not in tiny_tts.tokenizer.index]
        assert not unknown, (lang, unknown)


@pytest.mark.parametrize("streaming", [True, False])
def test_generate_streams_chunks_then_the_whole_result(tiny_tts, tiny_ckpt, tmp_path, streaming):
    """The page's Generate handler on the service alone (no HTTP): each chunk is yielded as a WAV
    as soon as it is made (streaming), then the full result; without ffmpeg (streaming False) the
    player gets the whole WAV at the end. Chunks, the download and the API's stream agree."""
    import asyncio
    import io

    import soundfile as sf

    from indicf5_fast.server.metrics import Metrics
    from indicf5_fast.server.service import SpeechService
    from indicf5_fast.server.settings import ServerSettings
    from indicf5_fast.server.ui import Playground

    long = " ".join(["यह एक लंबा वाक्य है, जो कुछ ज़्यादा समय लेगा।"] * 9)  # two chunks
    engine = tiny_tts
    settings = ServerSettings(prompts_dir=str(tiny_ckpt / "prompts"), warmup=False, ui=True)

    async def run() -> list[tuple]:
        service = SpeechService(engine, settings, Metrics())
        await service.start()
        await service.warmup()
        page = Playground(service, settings, streaming=streaming)
        page.cache_dir = str(tmp_path)
        try:
            return [out async for out in page.generate(long, "demo", None, None, "quality", 4, 2.0, 3, False)]
        finally:
            await service.stop()

    outs = asyncio.run(run())
    *partial, final = outs
    assert len(partial) >= 2  # at least one yield per text chunk, before the end
    assert all("Generating" in o[1] for o in partial) and "RTF" in final[1] and "seed 3" in final[1]
    wav_path, flac_path = final[3]
    full, sr = sf.read(wav_path, dtype="int16")
    assert sr == 24_000 and np.array_equal(sf.read(flac_path, dtype="int16")[0], full)
    assert final[2].shape[0] == 200 and final[2].shape[1] == len(full) // 256 + 1
    if streaming:
        chunks = [sf.read(io.BytesIO(o[0]), dtype="int16")[0] for o in partial]
        assert np.array_equal(np.concatenate(chunks), full)
        assert final[0] == {"__type__": "update"}  # gr.skip(): the player keeps the stream
    else:
        assert all(o[0] == {"__type__": "update"} for o in partial) and final[0] == wav_path
        return
    # the same samples as the engine's own stream for that request
    voice = engine.prepare_voice(
        str(tiny_ckpt / "prompts" / "demo.wav"), (tiny_ckpt / "prompts" / "demo.txt").read_text().strip()
    )
    req = engine.make_request(long, voice=voice, seed=3, preset="quality", nfe_step=4, speed=2.0)
    from indicf5_fast.frontend.audio import to_int16

    want = to_int16(np.concatenate(list(engine.synthesize_stream(req))))
    assert np.array_equal(full, want)
