"""FastAPI app factory: routes only; the work is in ``service.SpeechService``.

``create_app(engine, settings)`` takes any object implementing ``engine_api.SpeechEngine`` (the
in-process ``TTS`` or a remote proxy) and returns the ASGI app. The model must already be loaded;
warm-up runs in the background after start-up, and ``/ready`` turns true when it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import FastAPI, File, Form, Path, Security, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer

from indicf5_fast import __version__
from indicf5_fast.server.engine_api import SpeechEngine
from indicf5_fast.server.errors import ApiError, install_handlers
from indicf5_fast.server.metrics import CONTENT_TYPE_LATEST, Metrics
from indicf5_fast.server.middleware import (
    PUBLIC_PATHS,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    MetricsMiddleware,
)
from indicf5_fast.server.protocol import (
    LANGUAGE_HELP,
    NORMALIZE_HELP,
    VOICE_NAME_PATTERN,
    Chunking,
    DeletedVoice,
    Health,
    Language,
    Preset,
    Readiness,
    ResponseFormat,
    SpeechRequest,
    VoiceInfo,
    VoiceList,
    audio_responses,
    bounds,
    error_responses,
    finish_openapi,
)
from indicf5_fast.server.service import SpeechService
from indicf5_fast.server.settings import UI_PATH, ServerSettings
from indicf5_fast.server.voices import check_name

log = logging.getLogger("indicf5_fast.server")
REF_AUDIO_HELP = "Reference speech: WAV, FLAC, OGG, MP3, M4A/AAC, MP4 or WebM/Opus."

DESCRIPTION = """IndicF5 text-to-speech. `POST /v1/audio/speech` follows OpenAI's speech API (plus
`stream`, `nfe_step`, `seed`, `preset`, `language`, `normalize`, `chunking`, `first_chunk_nfe`);
`POST /v1/tts` takes a one-off reference voice; voices are
managed under `/v1/voices`. All errors are `{"error": {"message", "type", "param", "code"}}`."""


def create_app(
    engine: SpeechEngine,
    settings: ServerSettings | None = None,
    after_job: Callable[[], None] | None = None,
) -> FastAPI:
    """The ASGI app. ``after_job`` runs on the model worker after each job (serve passes the
    native-memory policy's ``release``)."""
    settings = (settings or ServerSettings()).validate()
    metrics = Metrics()
    service = SpeechService(engine, settings, metrics, after_job=after_job)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        warm = asyncio.create_task(service.warmup(), name="indicf5-warmup")
        try:
            yield
        finally:  # uvicorn has already waited for in-flight HTTP requests
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
            await service.stop()

    # `dependencies=auth` documents the security schemes on every route but /health; the check
    # itself is ApiKeyMiddleware, which runs before the body is read (auto_error=False: these
    # dependencies never reject). Either header with the right key is accepted. Routes stay on
    # the app (no APIRouter): MetricsMiddleware and the 405 Allow header read app.router.routes
    # as a flat list of routes.
    auth = (
        [Security(HTTPBearer(auto_error=False)), Security(APIKeyHeader(name="X-API-Key", auto_error=False))]
        if settings.api_key
        else []
    )
    denied = (401,) if settings.api_key else ()  # only a server with a key answers 401
    app = FastAPI(title="indicf5-fast", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    default_openapi = app.openapi

    def openapi() -> dict:  # text limits are server settings: added per app
        return finish_openapi(default_openapi(), settings.max_input_chars)

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.service = service
    app.state.settings = settings
    install_handlers(app)
    # added innermost first: the last one added runs first
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # the page under /ui has Gradio's login (the key as the password) instead of the header
    public = {"public_paths": PUBLIC_PATHS | {"/", UI_PATH}, "public_prefixes": (UI_PATH + "/",)}
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, **(public if settings.ui else {}))
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.router.routes)

    @app.get(
        "/health",
        response_model=Health,
        tags=["ops"],
        summary="Liveness (no API key needed)",
        openapi_extra={"security": []},  # public even when the other routes need the key
    )
    async def health() -> Health:
        return Health()

    @app.get(
        "/ready",
        dependencies=auth,
        response_model=Readiness,
        tags=["ops"],
        summary="Readiness: 200 once the model is warm, else 503",
        responses={
            503: {"model": Readiness, "description": "Not ready (warming up, failed, stopping)."},
            **error_responses(*denied),
        },
    )
    async def ready() -> JSONResponse:
        body = Readiness(
            ready=service.state == "ready",
            status=service.state,
            detail=service.detail,
            engine=service.info,
            voices=len(service.store),
            default_voice=service.default_voice_name(),
            max_batch_size=service.batcher.max_batch_size,
            max_queue=settings.max_queue,
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get(
        "/metrics",
        dependencies=auth,
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **error_responses(*denied),
        },
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/audio/speech",
        dependencies=auth,
        tags=["speech"],
        summary="Text to speech (OpenAI-compatible)",
        response_class=Response,
        responses=audio_responses(400, *denied, 413, 422, 500, 503, 504),
    )
    async def speech(body: SpeechRequest) -> Response:
        t0 = time.perf_counter()
        service.require_ready()
        service.check_text(body.input, "input")
        voice = await service.voice(body.voice)
        req = service.make_request(
            body.input,
            voice,
            seed=body.seed,
            preset=body.preset,
            nfe_step=body.nfe_step,
            speed=body.speed,
            language=body.language,
            normalize=body.normalize,
            **_set(chunking=body.chunking, first_chunk_nfe=body.first_chunk_nfe),
        )
        return await service.respond(req, body.response_format, body.stream, "/v1/audio/speech", t0)

    @app.post(
        "/v1/tts",
        dependencies=auth,
        tags=["speech"],
        summary="Text to speech with a one-off reference voice (multipart)",
        response_class=Response,
        responses=audio_responses(400, *denied, 413, 422, 500, 503, 504),
    )
    async def tts(
        ref_audio: Annotated[UploadFile, File(description=REF_AUDIO_HELP)],
        ref_text: Annotated[str, Form(description="Transcript of the reference audio.")],
        text: Annotated[str, Form(description="Text to speak.")],
        response_format: Annotated[ResponseFormat, Form()] = "wav",
        speed: Annotated[float | None, Form(**bounds("speed"))] = None,
        stream: Annotated[bool, Form()] = False,
        nfe_step: Annotated[int | None, Form(**bounds("nfe_step"))] = None,
        seed: Annotated[int | None, Form(**bounds("seed"))] = None,
        preset: Annotated[Preset | None, Form()] = None,
        language: Annotated[Language | None, Form(description=LANGUAGE_HELP)] = None,
        normalize: Annotated[bool, Form(description=NORMALIZE_HELP + " Also the reference text.")] = True,
        chunking: Annotated[Chunking | None, Form()] = None,
        first_chunk_nfe: Annotated[int | None, Form(**bounds("nfe_step"))] = None,
    ) -> Response:
        t0 = time.perf_counter()
        service.require_ready()
        service.check_text(text, "text")
        service.check_text(ref_text, "ref_text")
        data, _fmt, _secs, _sr = await service.read_upload(ref_audio)
        voice = await service.prepare(data, ref_text, language=language, normalize=normalize)
        req = service.make_request(
            text,
            voice,
            "text",
            seed=seed,
            preset=preset,
            nfe_step=nfe_step,
            speed=speed,
            language=language,
            normalize=normalize,
            **_set(chunking=chunking, first_chunk_nfe=first_chunk_nfe),
        )
        return await service.respond(req, response_format, stream, "/v1/tts", t0)

    @app.post(
        "/v1/voices",
        dependencies=auth,
        tags=["voices"],
        summary="Upload a named voice (persisted)",
        status_code=201,
        response_model=VoiceInfo,
        responses=error_responses(400, *denied, 409, 413, 422, 500, 503),
    )
    async def add_voice(
        name: Annotated[
            str,
            Form(
                pattern=VOICE_NAME_PATTERN,
                description="1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit.",
            ),
        ],
        ref_text: Annotated[str, Form(description="Transcript of the reference audio.")],
        ref_audio: Annotated[UploadFile, File(description=REF_AUDIO_HELP)],
        overwrite: Annotated[bool, Form()] = False,
    ) -> VoiceInfo:
        service.require_ready()
        stored = await service.add_voice(name, ref_audio, ref_text, overwrite)
        return VoiceInfo(**stored.info())

    @app.get(
        "/v1/voices",
        dependencies=auth,
        tags=["voices"],
        summary="List voices",
        response_model=VoiceList,
        responses=error_responses(*denied),
    )
    async def list_voices() -> VoiceList:
        return VoiceList(data=[VoiceInfo(**v.info()) for v in service.store.list()])

    @app.get(
        "/v1/voices/{name}",
        dependencies=auth,
        tags=["voices"],
        summary="One voice",
        response_model=VoiceInfo,
        responses=error_responses(400, *denied, 404),
    )
    async def get_voice(name: Annotated[str, Path(pattern=VOICE_NAME_PATTERN)]) -> VoiceInfo:
        stored = service.store.get(check_name(name))
        if stored is None:
            raise ApiError(404, f"voice {name!r} not found", "name", "voice_not_found")
        return VoiceInfo(**stored.info())

    @app.delete(
        "/v1/voices/{name}",
        dependencies=auth,
        tags=["voices"],
        summary="Delete an uploaded voice",
        response_model=DeletedVoice,
        responses=error_responses(400, *denied, 403, 404),
    )
    async def delete_voice(name: Annotated[str, Path(pattern=VOICE_NAME_PATTERN)]) -> DeletedVoice:
        await service.delete_voice(name)
        return DeletedVoice(name=name)

    if settings.ui:
        from indicf5_fast.server.ui import mount_ui

        mount_ui(app, service, settings)
    return app


def _set(**options: object) -> dict[str, object]:
    """Only the options the client set: an engine without them (a proxy, a double) still works."""
    return {k: v for k, v in options.items() if v is not None}
