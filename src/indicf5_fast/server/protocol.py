"""Request / response bodies (pydantic). The OpenAPI schema FastAPI serves is built from these.

The schema states what the server enforces: enums, numeric bounds and the voice-name pattern are
pydantic constraints (checked on parse); the request-text limits depend on a server setting, are
checked by ``SpeechService.check_text`` and written into the schema by ``document_text_limits``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from indicf5_fast.config import BOUNDS
from indicf5_fast.server.settings import VOICE_NAME_RE

ResponseFormat = Literal["wav", "pcm", "flac"]
Preset = Literal["quality", "fast"]
# ISO 639-1 codes of IndicF5's languages + English (frontend/normalize.py reads numbers in them)
Language = Literal["as", "bn", "gu", "hi", "kn", "ml", "mr", "or", "pa", "ta", "te", "en"]
LANGUAGE_HELP = (
    "ISO 639-1 code of the text (as bn gu hi kn ml mr or pa ta te en): the language numbers, "
    "dates and amounts are read in where the script is shared (hi/mr, bn/as). Default: from the script."
)
NORMALIZE_HELP = "Write numbers, amounts, percentages, units, dates and times as words before synthesis."
Chunking = Literal["upstream", "stream"]

MEDIA_TYPES: dict[str, str] = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}
VOICE_NAME_PATTERN = VOICE_NAME_RE.pattern  # JSON Schema regex: "$" is the end of the string
# Request text fields that SpeechService.check_text rejects when blank or over max_input_chars.
TEXT_FIELDS = ("input", "text", "ref_text")
NOT_BLANK = r"\S"  # JSON Schema "pattern" is a search: at least one non-whitespace character


def bounds(name: str) -> dict[str, float]:
    """pydantic ``ge``/``le`` of an option, from the engine's one table (config.BOUNDS)."""
    return {"ge": BOUNDS[name].lo, "le": BOUNDS[name].hi}


def _utf8(value: str | None) -> str | None:
    """JSON allows lone surrogates ("\\ud800"); they are not text and cannot be encoded."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError("must be valid Unicode text (lone surrogate found)") from e
    return value


class SpeechRequest(BaseModel):
    """OpenAI ``/v1/audio/speech`` body plus IndicF5 options (unknown fields are rejected)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("indicf5", description="Accepted for OpenAI compatibility; the loaded model is used.")
    input: str = Field(..., description="Text to speak: not blank; max characters is a server setting.")
    voice: str | None = Field(
        None,
        pattern=VOICE_NAME_PATTERN,
        description="Voice name (see GET /v1/voices); default: the server's default voice.",
    )
    response_format: ResponseFormat = Field(
        "wav", description="wav / flac (16-bit, 24 kHz mono) or pcm (raw s16le, 24 kHz mono)."
    )
    speed: float | None = Field(None, **bounds("speed"), description="Speaking rate (default: preset / server).")
    stream: bool = Field(
        False,
        description="Stream audio per text chunk: WAV header (sizes 0xFFFFFFFF) then PCM, or raw pcm. "
        "Not available for flac.",
    )
    nfe_step: int | None = Field(None, **bounds("nfe_step"), description="Sampler steps (default: preset / server).")
    seed: int | None = Field(None, **bounds("seed"), description="Noise seed: same seed, same audio.")
    preset: Preset | None = Field(None, description="quality = 32 uniform steps; fast = EPSS 7 steps.")
    language: Language | None = Field(None, description=LANGUAGE_HELP)
    normalize: bool = Field(True, description=NORMALIZE_HELP)
    chunking: Chunking | None = Field(
        None,
        description="Text chunking. stream = a short first chunk (1-2 s of speech), then growing "
        "chunks: audio starts sooner; upstream = IndicF5's split (upstream's exact audio). "
        "Default: stream when streaming, else upstream. Same option, same audio, streamed or not.",
    )
    first_chunk_nfe: int | None = Field(
        None,
        **bounds("nfe_step"),
        description="Progressive first chunk: sample only the first chunk with this many (EPSS) steps, "
        "e.g. 5, for an even earlier start at some fidelity cost. Default: off.",
    )
    instructions: str | None = Field(None, description="Accepted for OpenAI compatibility; ignored.")
    stream_format: Literal["audio"] | None = Field(
        None, description="OpenAI compatibility: only 'audio' (raw audio bytes); 'sse' is not supported."
    )

    _check_text = field_validator("input", "voice", "model", "instructions")(_utf8)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, OpenAI style."""

    error: ErrorDetail


class VoiceInfo(BaseModel):
    name: str
    ref_text: str
    duration_seconds: float | None = None
    sample_rate: int | None = None
    builtin: bool = Field(False, description="From the checkpoint's prompts/ (cannot be deleted).")
    created_at: float | None = Field(None, description="Unix time of the upload.")


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceInfo]


class DeletedVoice(BaseModel):
    name: str
    deleted: bool = True


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    status: str = Field(..., description="warming_up | ready | failed | shutting_down")
    detail: str | None = None
    engine: dict[str, str] = Field(default_factory=dict)
    voices: int = 0
    default_voice: str | None = None
    max_batch_size: int = 1
    max_queue: int = 1


ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "Invalid request (bad field, unknown voice, ...)."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    403: {"model": ErrorResponse, "description": "Built-in voices cannot be deleted."},
    404: {"model": ErrorResponse, "description": "No such voice."},
    409: {"model": ErrorResponse, "description": "A voice of that name exists."},
    413: {"model": ErrorResponse, "description": "Request body or reference audio too large."},
    422: {"model": ErrorResponse, "description": "Reference audio cannot be used (corrupt, silent...)."},
    503: {"model": ErrorResponse, "description": "Queue full, warming up or shutting down (Retry-After)."},
    504: {"model": ErrorResponse, "description": "Request timed out."},
    500: {"model": ErrorResponse, "description": "Internal error (logged)."},
}


def error_responses(*codes: int) -> dict[int | str, dict]:
    """The OpenAI-style error body for each status a route can answer with."""
    return {code: ERROR_RESPONSES[code] for code in codes}


def audio_responses(*error_codes: int) -> dict[int | str, dict]:
    ok = {
        200: {
            "description": "Audio (24 kHz mono 16-bit). Header X-Sample-Rate gives the rate, "
            "X-Normalized-Text-Length the length (characters) of the text the model read.",
            "content": {
                mt: {"schema": {"type": "string", "format": "binary"}} for mt in MEDIA_TYPES.values()
            },
        }
    }
    return ok | error_responses(*error_codes)


def finish_openapi(spec: dict, max_chars: int) -> dict:
    """What FastAPI's generated schema cannot know (idempotent, edits ``spec`` in place):

    - check_text's rule (not blank, at most ``max_chars`` code points, a server setting) on every
      request body's TEXT_FIELDS; response models (VoiceInfo.ref_text) are left alone;
    - FastAPI's automatic 422 ``HTTPValidationError`` is dropped: errors.install_handlers answers
      a validation failure with 400 and the OpenAI-style body, which every route declares."""
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                props = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
                for name in TEXT_FIELDS:
                    if name in props:
                        props[name].update(minLength=1, maxLength=max_chars, pattern=NOT_BLANK)
    return spec
