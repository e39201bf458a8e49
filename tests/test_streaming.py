"""Engine chunking policies and streaming: upstream's plan by default, the stream policy for
streams, stream == non-stream with the same policy, nothing clipped, pipelining, progressive
first chunk, the 0.15 s cross-fade at every seam."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from indicf5_fast import engine_stream
from indicf5_fast.errors import InputError
from indicf5_fast.frontend import audio as audio_io
from indicf5_fast.frontend.text import chunk_text, max_chunk_bytes, utf8_len
from test_chunking import HINDI_PARAGRAPH, UNPUNCTUATED

FAST = {"nfe_step": 4, "speed": 2.0}
PARAGRAPH = HINDI_PARAGRAPH


def _raw_duration(voice, piece: str, speed: float) -> int:  # upstream's rule, before any clamp
    return voice.frames + int(voice.frames / utf8_len(voice.text) * utf8_len(piece) / speed)


def test_default_plan_is_upstreams_split_and_streams_use_the_stream_policy(tiny_tts, demo):
    req = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=1, **FAST)
    budget = max_chunk_bytes(demo.text.rstrip() + " ", demo.seconds)
    upstream = chunk_text(PARAGRAPH, budget)
    plan = tiny_tts.plan(req, 0)
    assert len(plan) == len(upstream) == 1  # IndicF5 never splits at a danda: one chunk
    for c, piece in zip(plan, upstream, strict=True):
        assert c.tokens == tiny_tts.tokenizer.encode(demo.text + piece)
        assert c.duration == _raw_duration(demo, piece, FAST["speed"])
        assert c.options == req.options and c.seed == 1 + c.index
    streamed = tiny_tts.plan(req, 0, streaming=True)
    assert len(streamed) == 3 and streamed[0].duration < plan[0].duration / 2
    # a request's own option wins over the call type; the engine option sets the default
    forced = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=1, chunking="stream", **FAST)
    assert [c.tokens for c in tiny_tts.plan(forced, 0)] == [c.tokens for c in streamed]
    forced = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=1, chunking="upstream", **FAST)
    assert [c.tokens for c in tiny_tts.plan(forced, 0, streaming=True)] == [c.tokens for c in plan]


@pytest.mark.parametrize("chunking", ["upstream", "stream"])
@pytest.mark.parametrize("pipeline", [True, False])
def test_stream_equals_non_stream_with_the_same_policy(tiny_tts, demo, chunking, pipeline):
    text = f"{PARAGRAPH} {PARAGRAPH}"
    req = tiny_tts.make_request(text, voice=demo, seed=3, chunking=chunking, **FAST)
    whole = tiny_tts.synthesize_batch([req])[0]
    pieces = list(tiny_tts.synthesize_stream(req, pipeline=pipeline))
    assert len(pieces) >= 2
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=1e-5, atol=1e-6)


def test_seams_use_the_same_cross_fade(tiny_tts, demo):
    req = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=3, chunking="stream", **FAST)
    chunks = tiny_tts.plan(req, 0)
    waves = [tiny_tts._scale_back(tiny_tts.run_chunks([c])[0], demo) for c in chunks]
    joined = audio_io.cross_fade_join(waves, 24_000, 0.15)
    fade = int(0.15 * 24_000)
    assert len(joined) == sum(map(len, waves)) - fade * (len(waves) - 1)
    streamed = np.concatenate(list(tiny_tts.synthesize_stream(req)))
    np.testing.assert_allclose(streamed, joined, rtol=1e-5, atol=1e-6)


def test_run_chunks_batches_chunks_of_several_requests(tiny_tts, demo):
    reqs = [tiny_tts.make_request(PARAGRAPH, voice=demo, seed=s, chunking="stream", **FAST) for s in (1, 2)]
    chunks = [c for i, r in enumerate(reqs) for c in tiny_tts.plan(r, i)]
    batched = tiny_tts.run_chunks(chunks)
    for c, w in zip(chunks, batched, strict=True):
        np.testing.assert_allclose(w, tiny_tts.run_chunks([c])[0], rtol=1e-4, atol=2e-5)


def test_long_unpunctuated_text_is_never_clipped(tiny_tts, demo):
    """2 800 characters without a sentence mark: upstream makes one chunk clipped at 4 096
    frames (most of the text never spoken); here every chunk fits, at any speed."""
    assert len(UNPUNCTUATED) > 2700
    for speed, chunking in ((1.0, None), (0.25, None), (0.25, "stream")):
        req = tiny_tts.make_request(UNPUNCTUATED, voice=demo, seed=0, speed=speed, chunking=chunking)
        plan = tiny_tts.plan(req, 0)
        assert len(plan) >= 10
        n_ref = len(tiny_tts.tokenizer.encode(demo.text))
        gen_tokens = sum(len(c.tokens) - n_ref for c in plan)
        # nothing dropped: every token is spoken, but the space at each cut
        assert gen_tokens + len(plan) - 1 == len(tiny_tts.tokenizer.encode(UNPUNCTUATED))
        for c in plan:
            assert len(c.tokens) < c.duration <= tiny_tts.max_frames
    # the frame maximum binds below IndicF5's budget at speed 0.25: its packing is kept elsewhere
    upstream, hard, _ = engine_stream.chunk_budgets(demo, 0.25, tiny_tts.max_frames)
    assert hard < upstream
    assert _raw_duration(demo, "क" * (hard // 3), 0.25) <= tiny_tts.max_frames


def test_reference_too_long_for_the_frame_maximum_is_an_input_error(tiny_tts, demo):
    import dataclasses

    huge = dataclasses.replace(demo, wave=np.zeros(4100 * 256, np.float32))
    with pytest.raises(InputError, match="shorter reference"):
        engine_stream.chunk_budgets(huge, 1.0, tiny_tts.max_frames)


def test_bad_stream_options_are_input_errors(tiny_tts, demo):
    with pytest.raises(InputError, match="chunking") as e:
        tiny_tts.make_request(PARAGRAPH, voice=demo, chunking="fastest")
    assert e.value.param == "chunking"
    for bad in (0, 300, 2.5, True):
        with pytest.raises(InputError, match="first_chunk_nfe"):
            tiny_tts.make_request(PARAGRAPH, voice=demo, first_chunk_nfe=bad)
    from indicf5_fast.config import EngineConfig

    with pytest.raises(InputError, match="chunking"):
        EngineConfig(chunking="sometimes").validate()


def test_progressive_first_chunk(tiny_tts, demo):
    req = tiny_tts.make_request(
        PARAGRAPH, voice=demo, seed=3, chunking="stream", nfe_step=8, first_chunk_nfe=5
    )
    plan = tiny_tts.plan(req, 0)
    assert plan[0].options.nfe_step == 5 and plan[0].options.schedule == "epss"
    assert all(c.options == req.options for c in plan[1:])
    pieces = list(tiny_tts.synthesize_stream(req))
    np.testing.assert_allclose(
        np.concatenate(pieces), tiny_tts.synthesize_batch([req])[0], rtol=1e-5, atol=1e-6
    )
    plain = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=3, chunking="stream", nfe_step=8)
    assert tiny_tts.plan(plain, 0)[0].options.nfe_step == 8  # off by default
    # asking for as many steps or more changes nothing
    same = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=3, nfe_step=8, first_chunk_nfe=8)
    assert tiny_tts.plan(same, 0)[0].options == same.options


class _Recorder:
    """Wraps an engine: records when each chunk's sampling starts; can fail on a chunk."""

    def __init__(self, tts, fail_at: int | None = None):
        self.tts, self.fail_at = tts, fail_at
        self.started: list[int] = []
        self.event = threading.Event()

    def run_chunks(self, chunks):
        self.started.append(chunks[0].index)
        self.event.set()
        if chunks[0].index == self.fail_at:
            raise RuntimeError("chunk failed")
        return self.tts.run_chunks(chunks)

    def _scale_back(self, wave, voice):
        return self.tts._scale_back(wave, voice)


def test_pipeline_samples_the_next_chunk_while_the_caller_holds_this_one(tiny_tts, demo):
    req = tiny_tts.make_request(f"{PARAGRAPH} {PARAGRAPH}", voice=demo, seed=3, chunking="stream", **FAST)
    rec = _Recorder(tiny_tts)
    state = tiny_tts.open_stream(req)
    n = len(state.chunks)
    gen = engine_stream.stream_audio(rec, state, pipeline=True)
    next(gen)  # the first audio; we now "play" it and ask for nothing
    deadline = time.monotonic() + 30
    while len(rec.started) < min(n, 1 + engine_stream.MAX_AHEAD) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.started[:2] == [0, 1], rec.started  # chunk 1 started without being asked for
    gen.close()  # stops the worker after its current chunk
    time.sleep(0.2)
    settled = len(rec.started)
    time.sleep(0.5)
    assert len(rec.started) == settled <= 1 + engine_stream.MAX_AHEAD + 1

    rec2 = _Recorder(tiny_tts)
    unpipelined = engine_stream.stream_audio(rec2, tiny_tts.open_stream(req), pipeline=False)
    next(unpipelined)
    assert rec2.started == [0]  # lazy: nothing beyond what was asked for
    unpipelined.close()


def test_pipeline_raises_the_workers_error(tiny_tts, demo):
    req = tiny_tts.make_request(PARAGRAPH, voice=demo, seed=3, chunking="stream", **FAST)
    gen = engine_stream.stream_audio(_Recorder(tiny_tts, fail_at=1), tiny_tts.open_stream(req), pipeline=True)
    next(gen)
    with pytest.raises(RuntimeError, match="chunk failed"):
        list(gen)


def test_triton_tensors_and_remote_proxy_carry_the_stream_options(tiny_tts, demo):
    """The Triton contract (inputs `chunking`, `first_chunk_nfe`) and the HTTP server's remote
    proxy: encoded by the client side, parsed into the engine's request on the server side."""
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.deploy.triton import tensors
    from indicf5_fast.deploy.triton.remote import RemoteTTS

    remote = RemoteTTS(EngineConfig(triton_url="grpc://127.0.0.1:1"))  # never connects here
    voice = remote.prepare_voice((demo.wave, 24_000), "नमस्ते")
    req = remote.make_request(PARAGRAPH, voice=voice, seed=2, chunking="stream", first_chunk_nfe=5)
    arrays = tensors.encode_request(**req.item())
    assert arrays["chunking"][0, 0] == b"stream" and arrays["first_chunk_nfe"][0, 0] == 5
    parsed = tensors.parse_items(tiny_tts, {**arrays, "voice": None}, {})[0]
    assert parsed.chunking == "stream" and parsed.first_chunk_nfe == 5 and parsed.seed == 2
    assert "chunking" not in tensors.encode_request(**remote.make_request(PARAGRAPH, voice=voice).item())
    with pytest.raises(InputError, match="chunking"):
        remote.make_request(PARAGRAPH, voice=voice, chunking="fastest")
    bad = tensors.encode_request(PARAGRAPH, voice="demo", chunking="fastest")
    assert isinstance(tensors.parse_items(tiny_tts, bad, {"demo": demo})[0], InputError)
