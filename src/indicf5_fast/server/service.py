"""The server's work, independent of routing: voices, limits, warm-up, synthesis, audio responses.

Errors leave this module as ``ApiError`` (status + OpenAI-style reason), never as a bare 500 for
something the client sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import UploadFile
from fastapi.responses import Response, StreamingResponse

from indicf5_fast.config import PRESETS
from indicf5_fast.errors import IndicF5Error
from indicf5_fast.frontend import audio as audio_io
from indicf5_fast.server.batcher import AudioStream, Batcher, QueueFull, ShuttingDown
from indicf5_fast.server.engine_api import SpeechEngine, describe, sample_rate_of
from indicf5_fast.server.errors import ApiError, from_engine_error
from indicf5_fast.server.metrics import Metrics
from indicf5_fast.server.protocol import MEDIA_TYPES
from indicf5_fast.server.settings import ServerSettings
from indicf5_fast.server.voices import AUDIO_EXTS, StoredVoice, VoiceStore, check_name

log = logging.getLogger("indicf5_fast.server")


class SpeechService:
    def __init__(
        self,
        engine: SpeechEngine,
        settings: ServerSettings,
        metrics: Metrics,
        after_job: Callable[[], None] | None = None,
    ):
        self.engine, self.settings, self.metrics = engine, settings, metrics
        self.sample_rate = sample_rate_of(engine)
        self.info = describe(engine)
        self.store = VoiceStore(settings.voices_dir(), settings.prompts_dir, settings.max_voices)
        cfg = engine.config
        self.batcher = Batcher(
            engine,
            max_batch_size=int(getattr(cfg, "max_batch_size", 1) or 1),
            max_wait_s=float(getattr(cfg, "batch_wait_ms", 0.0) or 0.0) / 1000.0,
            max_pending=settings.max_queue,
            metrics=metrics,
            after_job=after_job,
        )
        self._prepared: dict[str, Any] = {}  # voice name -> the engine's prepared voice
        self._store_lock = asyncio.Lock()
        self.state, self.detail = "starting", None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.store.load()
        self.metrics.voices.set(len(self.store))
        self.metrics.set_engine_info(self.info)
        await self.batcher.start()

    async def warmup(self) -> None:
        """Prepare every stored voice, run a short synthesis per preset, warm the backend; then
        /ready turns true. A voice that fails to prepare is logged and skipped."""
        self.state = "warming_up"
        try:
            for v in self.store.list():
                try:
                    await self._prepare_stored(v)
                except ApiError as e:
                    log.warning("voice %s cannot be prepared: %s", v.name, e.message)
            if self.settings.warmup:
                await self._warm_engine()
        except Exception as e:
            self.state, self.detail = "failed", f"warm-up failed: {type(e).__name__}: {e}"
            log.exception("warm-up failed")
            return
        self.state = "ready"
        self.metrics.ready.set(1)
        log.info("ready: %d voice(s), %s", len(self.store), self.info)

    async def _warm_engine(self) -> None:
        name = self.default_voice_name()
        if name is None or name not in self._prepared:
            log.warning("no voice to warm up with; skipping the warm-up synthesis")
            return
        voice, text = self._prepared[name], self.store.get(name).ref_text[:60]  # type: ignore[union-attr]
        durations: set[int] = set()
        # an engine with fixed sampling (upstream's Triton model) gives its own warm-up requests
        warm_requests = getattr(self.engine, "warmup_requests", None)
        if callable(warm_requests):
            requests = [("fixed sampling", r) for r in warm_requests(text, voice)]
        else:
            requests = [(p, self.engine.make_request(text, voice=voice, seed=0, preset=p)) for p in PRESETS]
        for preset, req in requests:
            plan = getattr(self.engine, "plan", None)
            if callable(plan):
                durations.update(int(c.duration) for c in plan(req, 0))
            t0 = time.perf_counter()
            await self.batcher.run_in_worker(self.engine.synthesize_batch, [req])
            log.info("warm-up synthesis (%s) %.2f s", preset, time.perf_counter() - t0)
        warm = getattr(getattr(self.engine, "backend", None), "warmup", None)
        if callable(warm) and durations:
            sizes = tuple(sorted({1, self.batcher.max_batch_size}))
            await self.batcher.run_in_worker(warm, sorted(durations), sizes)

    async def stop(self) -> None:
        self.state = "shutting_down"
        self.metrics.ready.set(0)
        await self.batcher.stop(self.settings.shutdown_timeout_s)

    def require_ready(self) -> None:
        if self.state == "ready":
            return
        reason = {"warming_up": "not_ready", "starting": "not_ready", "failed": "not_ready"}.get(
            self.state, "shutting_down"
        )
        self.metrics.rejected.labels(reason).inc()
        msg = self.detail if self.state == "failed" else f"server is {self.state.replace('_', ' ')}"
        raise ApiError(503, msg or "not ready", None, reason, self._retry_after())

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(self.settings.retry_after_s)))}

    # ------------------------------------------------------------------ voices
    def default_voice_name(self) -> str | None:
        if self.settings.default_voice and self.store.get(self.settings.default_voice):
            return self.settings.default_voice
        names = self.store.names()
        return names[0] if names else None

    async def voice(self, name: str | None) -> Any:
        if name is None:
            name = self.default_voice_name()
            if name is None:
                raise ApiError(400, "no voice given and the server has no voices (POST /v1/voices)", "voice")
        check_name(name, "voice")
        stored = self.store.get(name)
        if stored is None:
            known = ", ".join(self.store.names()[:20]) or "none"
            raise ApiError(400, f"voice {name!r} not found (available: {known})", "voice", "voice_not_found")
        return await self._prepare_stored(stored)

    async def _prepare_stored(self, stored: StoredVoice) -> Any:
        if stored.name not in self._prepared:
            data = await asyncio.to_thread(stored.read_audio)
            self._prepared[stored.name] = await self.prepare(data, stored.ref_text)
        return self._prepared[stored.name]

    async def prepare(
        self, data: bytes, ref_text: str, language: str | None = None, normalize: bool = True
    ) -> Any:
        try:
            return await asyncio.to_thread(
                self.engine.prepare_voice, data, ref_text, **_text_options(language, normalize)
            )
        except IndicF5Error as e:
            raise from_engine_error(e) from None

    async def read_upload(self, upload: UploadFile) -> tuple[bytes, str, float, int]:
        """Size, container and duration checks before the engine sees the bytes.
        -> (bytes, format, seconds, sample rate)."""
        limit = self.settings.max_ref_bytes
        if upload.size is not None and upload.size > limit:
            raise ApiError(413, f"reference audio is {upload.size} bytes; the limit is {limit}", "ref_audio")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"reference audio exceeds the limit of {limit} bytes", "ref_audio")
        if not data:
            raise ApiError(422, "reference audio is empty (0 bytes)", "ref_audio", "invalid_audio")
        try:  # decodes at most max_upload_seconds (compressed formats), none at all for WAV/FLAC
            info = await asyncio.to_thread(audio_io.probe_audio, data, self.settings.max_upload_seconds)
        except IndicF5Error as e:
            raise ApiError(422, str(e), "ref_audio", "invalid_audio") from None
        if info.format not in AUDIO_EXTS:
            raise ApiError(
                422,
                f"unsupported reference format {info.format} (WAV, FLAC, OGG, MP3, M4A/AAC, MP4 or WebM)",
                "ref_audio",
                "invalid_audio",
            )
        seconds = info.seconds
        if not info.complete or seconds > self.settings.max_upload_seconds:
            shown = f"{seconds:.1f} s" if info.complete else "longer"
            raise ApiError(
                422,
                f"reference audio is {shown}; the limit is {self.settings.max_upload_seconds:g} s",
                "ref_audio",
                "audio_too_long",
            )
        return data, info.format, seconds, info.sample_rate

    def check_text(self, text: str, param: str) -> None:
        if len(text) > self.settings.max_input_chars:
            raise ApiError(
                400,
                f"{param} is {len(text)} characters; the limit is {self.settings.max_input_chars}",
                param,
                "string_too_long",
            )
        if not text.strip():
            raise ApiError(400, f"{param} is empty", param, "empty")

    async def add_voice(self, name: str, upload: UploadFile, ref_text: str, overwrite: bool) -> StoredVoice:
        check_name(name)
        self.check_text(ref_text, "ref_text")
        self.store.check_can_add(name, overwrite)  # fail fast, before decoding anything
        data, fmt, seconds, sr = await self.read_upload(upload)
        prepared = await self.prepare(data, ref_text)
        async with self._store_lock:
            stored = await asyncio.to_thread(
                self.store.add, name, data, fmt, ref_text, seconds, sr, overwrite
            )
            self._prepared[name] = prepared
        self.metrics.voices.set(len(self.store))
        return stored

    async def delete_voice(self, name: str) -> None:
        async with self._store_lock:
            await asyncio.to_thread(self.store.delete, name)
            self._prepared.pop(name, None)
        self.metrics.voices.set(len(self.store))

    # ------------------------------------------------------------------ synthesis
    def make_request(
        self,
        text: str,
        voice: Any,
        param: str = "input",
        *,
        language: str | None = None,
        normalize: bool = True,
        **options: Any,
    ) -> Any:
        """Validate through the engine; its ``text`` parameter is called ``param`` in this API."""
        self.check_text(text, param)
        try:
            return self.engine.make_request(
                text, voice=voice, **options, **_text_options(language, normalize)
            )
        except IndicF5Error as e:
            err = from_engine_error(e)
            if err.param == "text":
                err.param = param
            raise err from None

    async def respond(self, request: Any, fmt: str, stream: bool, route: str, t_arrival: float) -> Response:
        if stream:
            if fmt == "flac":
                raise ApiError(
                    400,
                    "stream=true supports response_format wav or pcm (FLAC needs the whole audio)",
                    "response_format",
                    "unsupported_stream_format",
                )
            return await self._stream(request, fmt, route, t_arrival)
        wave = await self._run(self.batcher.submit(request, self.settings.request_timeout_s))
        body = await asyncio.to_thread(audio_io.encode_audio, wave, self.sample_rate, fmt)
        seconds = len(wave) / self.sample_rate
        latency = time.perf_counter() - t_arrival
        self.metrics.observe_synthesis(route, False, latency, latency, seconds)
        headers = {"X-Sample-Rate": str(self.sample_rate), "X-Audio-Seconds": f"{seconds:.3f}"}
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers | _text_header(request))

    async def _stream(self, request: Any, fmt: str, route: str, t_arrival: float) -> Response:
        try:
            stream = self.batcher.open_stream(request)
        except (QueueFull, ShuttingDown) as e:
            raise self._busy(e) from None
        timeout = self.settings.request_timeout_s
        try:  # the first chunk is computed before the 200 goes out, so its errors keep their status
            first = await self._run(stream.next_chunk(timeout))
        except BaseException:
            await stream.aclose()
            raise
        ttfa = time.perf_counter() - t_arrival
        header = audio_io.wav_stream_header(self.sample_rate) if fmt == "wav" else b""
        headers = {"X-Sample-Rate": str(self.sample_rate), "Cache-Control": "no-store"}
        headers |= _text_header(request)
        body = self._stream_body(stream, first, header, route, t_arrival, ttfa)
        return StreamingResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def _stream_body(
        self, stream: AudioStream, first: np.ndarray | None, header: bytes, route: str, t0: float, ttfa: float
    ):
        samples = 0
        try:
            chunk = first
            data = header
            while chunk is not None:
                samples += len(chunk)
                yield data + audio_io.to_int16(chunk).astype("<i2").tobytes()
                data = b""
                # a failure after the 200 went out cannot change the status: it propagates, the
                # connection is cut and the client sees a truncated (invalid) chunked body
                chunk = await stream.next_chunk(self.settings.request_timeout_s)
            if data:  # no audio at all: still a valid (empty) WAV
                yield data
            latency = time.perf_counter() - t0
            self.metrics.observe_synthesis(route, True, ttfa, latency, samples / self.sample_rate)
        except Exception:
            log.exception("stream aborted after %d samples", samples)
            raise
        finally:
            await stream.aclose()

    async def _run(self, awaitable) -> Any:
        """Await synthesis work, mapping every failure to an ApiError."""
        try:
            return await awaitable
        except (QueueFull, ShuttingDown) as e:
            raise self._busy(e) from None
        except asyncio.TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(
                504, f"request timed out after {self.settings.request_timeout_s:g} s", None, "timeout"
            ) from None
        except IndicF5Error as e:
            raise from_engine_error(e) from None
        except ApiError:
            raise
        except Exception as e:
            log.exception("synthesis failed")
            raise ApiError(
                500, f"synthesis failed: {type(e).__name__}: {e}", None, "synthesis_failed"
            ) from None

    def _busy(self, e: Exception) -> ApiError:
        code = "queue_full" if isinstance(e, QueueFull) else "shutting_down"
        return ApiError(503, str(e), None, code, self._retry_after())


def _text_options(language: str | None, normalize: bool) -> dict[str, Any]:
    """Only what the request changed, so engines written before these options keep working."""
    out: dict[str, Any] = {}
    if language is not None:
        out["language"] = language
    if not normalize:
        out["normalize"] = False
    return out


def _text_header(request: Any) -> dict[str, str]:
    """The length of the text the model reads (after normalisation), for debugging."""
    text = getattr(request, "text", None)
    return {"X-Normalized-Text-Length": str(len(text))} if isinstance(text, str) else {}
