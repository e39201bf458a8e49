"""`indicf5-fast triton serve` (PyTriton): real Triton on 127.0.0.1 with the tiny random model.
HTTP and gRPC give the in-process audio, concurrent requests are batched, the decoupled model
streams chunk by chunk, bad items fail alone, and the CLI client writes the same audio."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("tritonclient.http")

from triton_harness import FAST, LONG, pytriton  # noqa: E402

TEXT = "नमस्ते, आप कैसे हैं?"


@pytest.fixture(scope="module")
def server(tiny_tts, demo):
    # 50 ms queue delay: a loaded CI machine still gets the 8 concurrent requests into few calls
    with pytriton(tiny_tts, {"demo": demo}, max_batch=8, queue_delay_ms=50, instances=1) as s:
        yield s


def _client(server, protocol):
    from indicf5_fast.deploy.triton.client import TritonTTSClient

    return TritonTTSClient(
        server.http_url if protocol == "http" else server.grpc_url, protocol, timeout_s=120
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_clients_get_the_in_process_audio(server, tiny_tts, demo, demo_voice, protocol):
    from indicf5_fast.frontend.audio import read_audio

    wave, sr = read_audio(str(demo_voice[0]))
    want = tiny_tts.synthesize(TEXT, voice=demo, seed=7, nfe_step=8)
    with _client(server, protocol) as client:
        by_name = client.synthesize(TEXT, voice="demo", seed=7, nfe_step=8)
        by_audio = client.synthesize(
            TEXT, ref_audio=wave, ref_sample_rate=sr, ref_text=demo_voice[1], seed=7, nfe_step=8
        )
        other_seed = client.synthesize(TEXT, voice="demo", seed=8, nfe_step=8)
    assert want.shape[0] > 10_000 and np.abs(want).max() > 1e-3
    np.testing.assert_array_equal(by_name, want)  # one request = the same computation exactly
    np.testing.assert_array_equal(by_audio, want)
    assert not np.allclose(other_seed, want)  # the seed really travels


def test_concurrent_requests_arrive_in_fewer_model_calls(server, tiny_tts, demo):
    texts = [f"{TEXT} {w}" for w in ("एक", "दो", "तीन", "चार", "पांच", "छह", "सात", "आठ")]
    stats = server.handler.stats
    calls0, items0 = stats.calls, sum(stats.batch_sizes)
    with _client(server, "http") as client:
        got = client.synthesize_many(
            [{"text": t, "voice": "demo", "seed": 100 + i, "nfe_step": 8} for i, t in enumerate(texts)]
        )
    calls, items = stats.calls - calls0, sum(stats.batch_sizes) - items0
    assert items == len(texts)
    assert calls < len(texts), f"{len(texts)} requests in {calls} model calls: {stats.batch_sizes[-calls:]}"
    assert max(stats.batch_sizes[-calls:]) > 1
    for i, t in enumerate(texts):
        np.testing.assert_allclose(
            got[i], tiny_tts.synthesize(t, voice=demo, seed=100 + i, nfe_step=8), rtol=1e-4, atol=2e-5
        )


def test_streaming_model_sends_chunks_one_by_one(server, tiny_tts, demo):
    # the streaming model chunks for latency by default: the same audio as a full request asking for it
    req = tiny_tts.make_request(LONG, voice=demo, seed=3, chunking="stream", **FAST)
    want = tiny_tts.synthesize_batch([req])[0]
    n_chunks = len(tiny_tts.plan(req, 0))
    assert n_chunks >= 3
    arrivals, pieces = [], []
    with _client(server, "grpc") as client:
        for piece in client.stream(LONG, voice="demo", seed=3, **FAST):
            arrivals.append(time.monotonic())
            pieces.append(piece)
    last_made = server.handler.stats.last_chunk_at
    assert len(pieces) >= n_chunks  # one response per text chunk (+ the held-back cross-fade tail)
    # the first chunk was in our hands before the server had even produced the last one
    assert arrivals[0] < last_made, (arrivals[0], last_made)
    np.testing.assert_allclose(np.concatenate(pieces), want, rtol=0, atol=1e-5)
    # the chunking input: IndicF5's split streams the same audio as the batched model's default
    with _client(server, "grpc") as client:
        pieces = list(client.stream(LONG, voice="demo", seed=3, chunking="upstream", **FAST))
    want = tiny_tts.synthesize(LONG, voice=demo, seed=3, **FAST)
    np.testing.assert_allclose(np.concatenate(pieces), want, rtol=0, atol=1e-5)


def test_bad_items_fail_alone_and_http_cannot_stream(server):
    from indicf5_fast.errors import InputError

    with _client(server, "http") as client:
        with pytest.raises(InputError, match="unknown voice 'nope'") as info:
            client.synthesize(TEXT, voice="nope", seed=0, nfe_step=4)
        assert info.value.param == "voice"
        with pytest.raises(InputError, match="nfe_step"):
            client.synthesize(TEXT, voice="demo", seed=0, nfe_step=0)
        assert client.synthesize(TEXT, voice="demo", seed=0, nfe_step=4).size > 0  # still serving
        with pytest.raises(InputError, match="gRPC"):
            next(iter(client.stream(TEXT, voice="demo")))
    with _client(server, "grpc") as client:
        with pytest.raises(InputError, match="vocabulary") as info:
            list(client.stream("日本語", voice="demo", seed=0, nfe_step=4))
        assert info.value.param == "text"
        assert len(list(client.stream(TEXT, voice="demo", seed=0, nfe_step=4))) >= 1


def test_handler_keeps_good_items_when_a_batch_mate_is_bad(tiny_tts, demo):
    from indicf5_fast.deploy.triton import tensors
    from indicf5_fast.deploy.triton.handler import SynthesisHandler

    handler = SynthesisHandler(tiny_tts, {"demo": demo})
    good = tensors.encode_request(TEXT, voice="demo", seed=1, nfe_step=4)
    bad = tensors.encode_request(TEXT, voice="missing", seed=1, nfe_step=4)
    out_good, out_bad = handler.infer([good, bad])
    assert handler.stats.batch_sizes == [1]  # the bad item never reached the engine
    np.testing.assert_array_equal(
        tensors.decode_response(out_good)[0], tiny_tts.synthesize(TEXT, voice=demo, seed=1, nfe_step=4)
    )
    assert b"unknown voice" in out_bad["error"][0, 0] and out_bad["length"][0, 0] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_cli_client_writes_the_audio(server, tiny_tts, demo, demo_voice, tmp_path, stream):
    from indicf5_fast.cli import main
    from indicf5_fast.frontend.audio import read_audio, to_int16

    out = tmp_path / "x.wav"
    argv = ["triton", "client", "--text", TEXT, "--seed", "5", "--nfe", "8", "--out", str(out)]
    if stream:
        argv += [
            "--url",
            f"grpc://{server.grpc_url}",
            "--stream",
            "--ref-audio",
            str(demo_voice[0]),
            "--ref-text",
            demo_voice[1],
        ]
    else:
        argv += ["--url", server.http_url, "--protocol", "http", "--voice", "demo"]
    assert main(argv) == 0
    got, sr = read_audio(str(out))
    want = tiny_tts.synthesize(TEXT, voice=demo, seed=5, nfe_step=8)
    assert sr == 24_000
    np.testing.assert_allclose(
        to_int16(got).astype(np.int32), to_int16(want).astype(np.int32), rtol=0, atol=1
    )
