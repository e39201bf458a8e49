"""`serve --backend remote --triton-protocol upstream`: our HTTP server in front of upstream
F5-TTS's own ``f5_tts`` Triton model, here a PyTriton stand-in with exactly upstream's tensor
names running upstream's ``model.py`` around our tiny model (``upstream_triton_standin``).

Checked: the tensor contract equals upstream's config.pbtxt; what arrives in Triton is IndicF5's
prepared 24 kHz reference and reference text plus IndicF5's text chunks; the audio equals
upstream's model run on exactly that, cross-faded and RMS-restored; streaming arrives chunk by
chunk and equals the full audio; concurrent requests meet in one Triton batch; seed, nfe_step,
preset and speed are refused with a 400 that says why, and fixed-sampling flags at start-up too.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from server_harness import assert_audio_close, expected_int16, int16_of, metric, run_server  # noqa: E402
from triton_harness import LONG  # noqa: E402
from upstream_runtime import model_config  # noqa: E402
from upstream_triton_standin import run_execute, upstream_triton  # noqa: E402

TEXT = "नमस्ते दुनिया, यह एक परीक्षण है।"
NFE = 4  # the stand-in's steps (upstream: 32); fewer keep the tiny model quick on 2 CPU cores


@pytest.fixture(scope="module")
def vocab(tiny_ckpt, tmp_path_factory):
    from indicf5_fast.export.f5tts import export_f5tts

    return str(export_f5tts(tiny_ckpt, tmp_path_factory.mktemp("f5tts-export") / "e") / "vocab.txt")


@pytest.fixture(scope="module")
def standin(tiny_tts, vocab):
    with upstream_triton(tiny_tts, vocab, nfe=NFE, seed=0, queue_delay_ms=200) as (server, record):
        yield server, record


def _config(url: str, vocab: str, **kw):
    from indicf5_fast.config import EngineConfig

    return EngineConfig(
        backend="remote", triton_url=url, triton_protocol="upstream", vocab=vocab,
        max_batch_size=8, batch_wait_ms=50, **kw,
    ).validate()  # fmt: skip


@pytest.fixture(scope="module")
def live(standin, vocab, tiny_ckpt, tmp_path_factory):
    from indicf5_fast.deploy.triton.upstream import UpstreamRemoteTTS
    from indicf5_fast.server.cli import build_engine
    from indicf5_fast.server.settings import ServerSettings

    engine = build_engine(_config(f"grpc://{standin[0].grpc_url}", vocab))  # the `serve` path
    assert isinstance(engine, UpstreamRemoteTTS)
    settings = ServerSettings(
        data_dir=str(tmp_path_factory.mktemp("up-data")), prompts_dir=str(tiny_ckpt / "prompts")
    )
    with run_server(engine, settings, ready_timeout=180) as server:  # warm-up runs one request
        yield server


@pytest.fixture(scope="module")
def client(live):
    with live.client(timeout=180) as c:
        yield c


def _request(wave, ref_text: str, target: str) -> dict[str, np.ndarray]:
    """Upstream's request, written out here independently of our client's encoder."""
    return {
        "reference_wav": np.asarray(wave, np.float32)[None],
        "reference_wav_len": np.array([[len(wave)]], np.int32),
        "reference_text": np.array([[ref_text.encode()]], dtype=object),
        "target_text": np.array([[target.encode()]], dtype=object),
    }


def _expected(model, voice, chunks: list[str]) -> np.ndarray:
    """Upstream's model on IndicF5's prepared reference, per chunk; cross-fade; RMS restore."""
    from indicf5_fast.frontend.audio import cross_fade_join

    waves = [w.reshape(-1) for w in run_execute(model, [_request(voice.wave, voice.text, c) for c in chunks])]
    if voice.rms < 0.1:
        waves = [w * (voice.rms / 0.1) for w in waves]
    return cross_fade_join(waves, 24_000, 0.15)


def _received_since(record, k: int) -> list[dict]:
    with record.lock:
        return list(record.requests[k:])


def test_contract_is_upstreams_config_pbtxt():
    from indicf5_fast.deploy.triton import upstream

    cfg = model_config("f5_tts")
    assert cfg["name"] == upstream.MODEL_NAME and cfg["max_batch_size"] == 4
    for ours, theirs in ((upstream.INPUTS, cfg["inputs"]), (upstream.OUTPUTS, cfg["outputs"])):
        assert [(s.name, s.dtype, s.shape, s.optional) for s in ours] == [
            (t["name"], t["dtype"], t["shape"], t["optional"]) for t in theirs
        ]


def test_wav_round_trip_sends_indicf5_reference_and_equals_upstream_model(client, standin, demo):
    server, record = standin
    k = len(record.requests)
    r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "demo"})
    assert r.status_code == 200, r.text
    (sent,) = _received_since(record, k)
    # what reached Triton: IndicF5's 24 kHz reference (clipped, RMS raised) and reference text
    assert sent["reference_wav"].dtype == np.float32 and sent["reference_wav"].shape == (1, demo.wave.size)
    np.testing.assert_array_equal(sent["reference_wav"][0], demo.wave)
    assert sent["reference_wav_len"].dtype == np.int32 and sent["reference_wav_len"].tolist() == [
        [demo.wave.size]
    ]
    assert sent["reference_text"].tolist() == [[demo.text.encode()]]
    assert sent["target_text"].tolist() == [[TEXT.encode()]]
    want = expected_int16(_expected(server.model, demo, [TEXT]))
    assert_audio_close(int16_of(r.content, "wav"), want, lsb=0)
    assert client.get("/ready").json()["ready"] is True
    text = client.get("/metrics").text
    assert metric(text, "indicf5_requests_total", route="/v1/audio/speech", status="200") >= 1
    assert metric(text, "indicf5_audio_seconds_total") > 0


def test_long_text_is_chunked_here_and_streams_chunk_by_chunk(client, standin, demo):
    server, record = standin
    k = len(record.requests)
    body = {"input": LONG, "voice": "demo", "stream": True, "response_format": "pcm"}
    pieces, t_first = [], None
    t0 = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        for data in r.iter_bytes():
            pieces.append(data)
            if t_first is None and data:
                t_first = time.perf_counter() - t0
    t_done = time.perf_counter() - t0
    chunks = [s["target_text"][0, 0].decode() for s in _received_since(record, k)]
    assert len(chunks) >= 2 and " ".join(chunks).split() == LONG.split()  # IndicF5's chunking, here
    assert t_first is not None and t_first < t_done
    streamed = int16_of(b"".join(pieces), "pcm")
    assert_audio_close(streamed, expected_int16(_expected(server.model, demo, chunks)))


def test_concurrent_requests_share_a_triton_batch(client, standin):
    server, record = standin
    texts = [f"{TEXT} {w}" for w in ("एक", "दो", "तीन", "चार")]
    calls0 = len(record.batch_sizes)
    barrier = threading.Barrier(len(texts))

    def one(t: str) -> int:
        barrier.wait(timeout=30)
        return client.post("/v1/audio/speech", json={"input": t, "voice": "demo"}).status_code

    with ThreadPoolExecutor(len(texts)) as pool:
        assert list(pool.map(one, texts)) == [200] * len(texts)
    sizes = record.batch_sizes[calls0:]
    assert sum(sizes) == len(texts) and max(sizes) > 1, sizes


@pytest.mark.parametrize(
    "extra, param, why",
    [
        ({"seed": 3}, "seed", "random state"),
        ({"nfe_step": 8}, "nfe_step", "number of sampler steps"),
        ({"preset": "fast"}, "preset", "steps and schedule"),
        ({"speed": 1.5}, "speed", "duration"),
    ],
)
def test_fixed_options_are_refused_with_the_reason(client, standin, extra, param, why):
    _, record = standin
    k = len(record.requests)
    r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "demo", **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and why in err["message"] and "upstream" in err["message"]
    r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "demo", "stream": True, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert len(record.requests) == k  # nothing was sent to Triton


def test_one_off_voice_is_resampled_here_and_vocab_checked(client, standin, tiny_tts, demo_voice):
    import soundfile as sf

    from indicf5_fast.frontend.audio import read_audio, resample

    _, record = standin
    wav, ref_text = demo_voice
    wave, sr = read_audio(str(wav))
    buf = io.BytesIO()
    sf.write(buf, resample(wave, sr, 16_000), 16_000, format="WAV", subtype="FLOAT")
    data = buf.getvalue()
    k = len(record.requests)
    files = {"ref_audio": ("ref.wav", data, "audio/wav")}
    r = client.post("/v1/tts", data={"ref_text": ref_text, "text": TEXT}, files=files)
    assert r.status_code == 200, r.text
    (sent,) = _received_since(record, k)
    np.testing.assert_array_equal(sent["reference_wav"][0], tiny_tts.prepare_voice(data, ref_text).wave)
    r = client.post("/v1/tts", data={"ref_text": ref_text, "text": TEXT, "seed": "1"}, files=files)
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed"
    r = client.post("/v1/audio/speech", json={"input": "日本語", "voice": "demo"})  # not in the vocab
    assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"]


def test_http_protocol_gives_the_same_audio(standin, vocab, demo_voice):
    from indicf5_fast.deploy.triton.upstream import UpstreamRemoteTTS

    server, _ = standin
    wav, ref_text = demo_voice
    out = {}
    for scheme, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        engine = UpstreamRemoteTTS.from_config(_config(f"{scheme}://{url}", vocab))
        voice = engine.prepare_voice(str(wav), ref_text)
        out[scheme] = engine.synthesize(TEXT, voice)
        assert engine.describe()["device"].startswith(f"triton {scheme}://")
    np.testing.assert_array_equal(out["http"], out["grpc"])
    assert out["http"].size > 24_000 // 4


def test_fixed_sampling_flags_and_bad_protocol_fail_at_start(standin, vocab, capsys):
    from indicf5_fast.cli import main
    from indicf5_fast.config import EngineConfig, SamplingOptions
    from indicf5_fast.errors import InputError
    from indicf5_fast.server.cli import build_engine

    server, _ = standin
    url = f"grpc://{server.grpc_url}"
    with pytest.raises(InputError, match="cannot be used with --triton-protocol upstream"):
        build_engine(_config(url, vocab, sampling=SamplingOptions.preset("fast")))
    with pytest.raises(InputError, match="triton_protocol"):
        EngineConfig(backend="remote", triton_url=url, triton_protocol="f5").validate()
    argv = [
        "serve",
        "--backend",
        "remote",
        "--triton-url",
        url,
        "--triton-protocol",
        "upstream",
        "--nfe",
        "8",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--triton-protocol upstream" in err and len(err.splitlines()) == 1
