"""Chunk budgets, chunking policy, and streaming: pipelined chunk-by-chunk synthesis.

``engine.TTS`` owns the model work; this module decides *which* chunks a request becomes and
drives a stream through them:

- ``chunk_budgets``: the byte budgets a voice allows (IndicF5's, and the largest chunk whose
  output stays within the model's frame maximum, so no duration is ever clipped with text left).
- ``resolve_chunking``: ``"upstream"`` (IndicF5's split, upstream's exact audio) or ``"stream"``
  (a short first chunk, then growing ones: ``frontend/chunking.py``). Unset, a stream uses the
  engine's ``EngineConfig.chunking`` ("auto" = ``stream`` for streams, ``upstream`` otherwise).
- ``StreamState``: one stream's planned chunks and its cross-fade joiner. Whoever computes the
  chunks hands each wave to ``push`` in order: ``stream_audio`` below (a worker thread samples
  chunk k+1 while the caller handles chunk k), or the HTTP server's batcher (which batches the
  ready chunks of several streams).

The audio of a stream equals ``synthesize_batch`` of the same request with the same chunking:
the same chunks, seeds and options, joined by the same 0.15 s cross-fade.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from indicf5_fast.errors import InputError
from indicf5_fast.frontend.chunking import MIN_CHUNK_BYTES, POLICIES, plan_chunks
from indicf5_fast.frontend.text import max_chunk_bytes, utf8_len

if TYPE_CHECKING:
    from indicf5_fast.config import SamplingOptions
    from indicf5_fast.engine import TTS, SynthesisRequest, Voice

CHUNKING_CHOICES = ("auto", *POLICIES)  # EngineConfig.chunking (config.CHUNKING)
PROGRESSIVE_SCHEDULE = "epss"  # the first chunk's few steps use the pruned grid where it has them
MAX_AHEAD = 2  # chunks a pipelined stream may hold ready beyond the one being consumed


def resolve_chunking(requested: str | None, configured: str, streaming: bool) -> str:
    """The policy a request runs with: its own, else the engine's; "auto" = by call type."""
    policy = requested or configured or "auto"
    if policy not in CHUNKING_CHOICES:
        raise InputError(f"chunking must be one of {CHUNKING_CHOICES}, got {policy!r}", "chunking")
    if policy == "auto":
        return "stream" if streaming else "upstream"
    return policy


def check_stream_options(chunking: str | None, configured: str, first_chunk_nfe: int | None) -> None:
    """InputError for a bad ``chunking`` or ``first_chunk_nfe`` request option."""
    resolve_chunking(chunking, configured, True)
    if first_chunk_nfe is not None and (
        not isinstance(first_chunk_nfe, int)
        or isinstance(first_chunk_nfe, bool)
        or not 1 <= first_chunk_nfe <= 256
    ):
        raise InputError(
            f"first_chunk_nfe must be an integer in 1..256, got {first_chunk_nfe!r}", "first_chunk_nfe"
        )


def chunk_budgets(voice: Voice, speed: float, max_frames: int) -> tuple[int, int, float]:
    """-> (IndicF5's byte budget, the byte budget every chunk must keep, bytes per second of
    generated speech).

    A chunk of ``g`` bytes is given ``ref_frames + int(ref_frames / ref_bytes * g / speed)``
    frames (upstream's rule), and its tokens (reference text + chunk, at most 1.5 per byte: a
    space may be inserted before each Latin word) must fit the same frame maximum, so the hard
    budget is the largest ``g`` meeting both; IndicF5's own budget is usually far below it.
    """
    ref_bytes, frames = utf8_len(voice.text), voice.frames
    upstream = max_chunk_bytes(voice.text.rstrip() + " ", voice.seconds)
    room = max_frames - frames
    by_frames = int(room * ref_bytes * speed / max(frames, 1)) + 1
    while by_frames > 0 and frames + int(frames / ref_bytes * by_frames / speed) > max_frames:
        by_frames -= 1  # float rounding: step down to the exact rule
    by_tokens = int((max_frames - 2) / 1.5 - len(voice.text))
    hard = min(upstream, by_frames, by_tokens)
    if hard < MIN_CHUNK_BYTES:
        raise InputError(
            f"the reference ({voice.seconds:.1f} s) leaves no room for generated speech within the "
            f"model's {max_frames}-frame maximum: use a shorter reference",
            "ref_audio",
        )
    return upstream, hard, ref_bytes * speed / max(voice.seconds, 1e-3)


def plan_text(voice: Voice, text: str, policy: str, speed: float, max_frames: int) -> list[str]:
    """The request's text chunks under ``policy`` (never empty: at least the stripped text)."""
    upstream, hard, bps = chunk_budgets(voice, speed, max_frames)
    return plan_chunks(text, policy, hard, bps, upstream_bytes=upstream) or [text.strip()]


def first_chunk_options(options: SamplingOptions, first_nfe: int | None) -> SamplingOptions:
    """The progressive first chunk: fewer steps (pruned EPSS grid) for chunk 0 only."""
    if first_nfe is None or first_nfe >= options.nfe_step:
        return options
    return dataclasses.replace(
        options,
        nfe_step=first_nfe,
        schedule=PROGRESSIVE_SCHEDULE,
        cfg_skip_last=min(options.cfg_skip_last, first_nfe),
    )


class StreamingCrossFade:
    """Incremental version of the 0.15 s linear cross-fade join: holds back the last
    ``fade`` samples (they may still be blended with the next chunk)."""

    def __init__(self, fade: int):
        self.fade = fade
        self.held = np.zeros(0, dtype=np.float32)
        self.started = False

    def push(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if not self.started:
            self.started, joined = True, wave
        else:
            k = min(self.fade, self.held.shape[0], wave.shape[0])
            if k > 0:
                blend = self.held[-k:] * np.linspace(1, 0, k) + wave[:k] * np.linspace(0, 1, k)
                joined = np.concatenate([self.held[:-k], blend.astype(np.float32), wave[k:]])
            else:
                joined = np.concatenate([self.held, wave])
        cut = max(0, joined.shape[0] - self.fade)
        self.held = joined[cut:]
        return joined[:cut]

    def flush(self) -> np.ndarray:
        out, self.held = self.held, np.zeros(0, dtype=np.float32)
        return out


class StreamState:
    """One streaming request: its chunks (``engine._Chunk``, in order) and the joiner."""

    def __init__(self, tts: TTS, request: SynthesisRequest, fade_samples: int):
        self.tts, self.voice = tts, request.voice
        self.chunks = tts.plan(request, 0, streaming=True)
        self._joiner = StreamingCrossFade(fade_samples)

    def push(self, wave: np.ndarray) -> np.ndarray:
        """The next chunk's wave -> the audio now final (the cross-fade tail is held back)."""
        return self._joiner.push(self.tts._scale_back(wave, self.voice))

    def finish(self) -> np.ndarray:
        return self._joiner.flush()


def stream_audio(tts: TTS, state: StreamState, pipeline: bool = True) -> Iterator[np.ndarray]:
    """Yield the stream's audio as each chunk is done. With ``pipeline``, a worker thread
    samples the next chunks (up to ``MAX_AHEAD``) while the caller handles this one; closing the
    generator stops it after the chunk it is on (compute cannot be interrupted)."""
    if not pipeline:
        for c in state.chunks:
            piece = state.push(tts.run_chunks([c])[0])
            if piece.size:
                yield piece
    else:
        for wave in _ahead(tts, state.chunks):
            piece = state.push(wave)
            if piece.size:
                yield piece
    tail = state.finish()
    if tail.size:
        yield tail


def _ahead(tts: TTS, chunks: list) -> Iterator[np.ndarray]:
    ready: queue.Queue = queue.Queue(maxsize=MAX_AHEAD)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for c in chunks:
                if stop.is_set():
                    return
                put((tts.run_chunks([c])[0], None))
        except BaseException as e:  # handed to the consumer, raised there
            put((None, e))

    worker = threading.Thread(target=produce, name="indicf5-stream", daemon=True)
    worker.start()
    try:
        for _ in chunks:
            wave, err = ready.get()
            if err is not None:
                raise err
            yield wave
    finally:
        stop.set()
