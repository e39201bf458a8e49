"""What the HTTP server needs from an engine — and nothing more.

``indicf5_fast.engine.TTS`` implements it in-process; ``indicf5_fast.deploy.triton.remote.RemoteTTS``
implements it by proxying to a Triton server. ``create_app`` accepts any object with these members,
so the HTTP layer (validation, voices, batching, streaming, metrics) is the same for both.

Contract (both implementations must keep it):
- ``prepare_voice(ref_audio, ref_text)``: ``ref_audio`` is the raw bytes of an uploaded reference
  file (WAV/FLAC/OGG/MP3/M4A/WebM); returns an opaque voice object reused by ``make_request``.
  Raises ``AudioError`` for bad audio, ``InputError`` for bad text.
- ``make_request(text, voice=..., seed=..., preset=..., nfe_step=..., speed=...)``: validates and
  returns an opaque request object (``None`` options mean "engine default"). Raises ``InputError``.
  If the request has an ``options`` attribute, requests with equal ``options`` are batched together.
  Its ``text`` attribute, if any, is the text the model reads (response header X-Normalized-Text-Length).
- Text options, passed to both only when a request sets them: ``language="mr"`` (ISO 639-1) and
  ``normalize=False`` (numbers etc. stay as written; default: written out as words).
- ``synthesize_batch(requests)``: list of float32 waves [n] at ``sample_rate``, one per request, each
  equal to what the request would give alone (same seed).
- ``synthesize_stream(request)``: yields float32 pieces whose concatenation equals the request's
  ``synthesize_batch`` result.
- ``config``: the ``EngineConfig`` (the server reads ``max_batch_size`` and ``batch_wait_ms``).
Optional: ``sample_rate`` (default 24000), ``backend.warmup(frame_lengths, batch_sizes)``,
``backend.describe()`` or ``describe()``, ``plan(request, i)`` (chunk durations for warm-up),
``warmup_requests(text, voice)`` (the warm-up's requests, for an engine that refuses presets/seeds).
``make_request(..., chunking=..., first_chunk_nfe=...)`` (passed only when the client set them).
Optional chunk API (then the batcher batches the ready chunks of several streams):
``open_stream(request)`` -> a state with ``chunks`` (items with ``options``), ``push(wave)`` -> the
audio now final, ``finish()`` -> the held-back tail; ``run_chunks(chunks)`` -> one wave per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indicf5_fast.config import SAMPLE_RATE, EngineConfig

DEFAULT_SAMPLE_RATE = SAMPLE_RATE


@runtime_checkable
class SpeechEngine(Protocol):
    config: EngineConfig

    def prepare_voice(self, ref_audio: Any, ref_text: str) -> Any: ...

    def make_request(
        self,
        text: str,
        *,
        voice: Any,
        seed: int | None = None,
        preset: str | None = None,
        nfe_step: int | None = None,
        speed: float | None = None,
    ) -> Any: ...

    def synthesize_batch(self, requests: Sequence[Any]) -> list[np.ndarray]: ...

    def synthesize_stream(self, request: Any) -> Iterator[np.ndarray]: ...


def sample_rate_of(engine: SpeechEngine) -> int:
    return int(getattr(engine, "sample_rate", DEFAULT_SAMPLE_RATE))


def describe(engine: SpeechEngine) -> dict[str, str]:
    """backend / device / dtype / model, for /ready and the info metric."""
    info: dict[str, str] = {"model": str(getattr(engine.config, "model", ""))}
    for obj in (getattr(engine, "backend", None), engine):
        fn = getattr(obj, "describe", None)
        if callable(fn):
            try:
                info.update({k: str(v) for k, v in dict(fn()).items()})
            except Exception:  # describing is best-effort, never fatal
                pass
            break
    info.setdefault("backend", str(getattr(engine.config, "backend", "")))
    return info


def batch_key(request: Any) -> Any:
    """Requests with equal keys can share one padded batch (same sampling options)."""
    opts = getattr(request, "options", None)
    if opts is None:
        return None
    try:
        return tuple(sorted(vars(opts).items()))
    except TypeError:
        return repr(opts)
