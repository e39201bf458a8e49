"""Request / response bodies (pydantic). The OpenAPI schema FastAPI serves is built from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ResponseFormat = Literal["wav", "pcm", "flac"]
Preset = Literal["quality", "fast"]
Chunking = Literal["upstream", "stream"]

MEDIA_TYPES: dict[str, str] = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}


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
    input: str = Field(..., description="Text to speak (max characters: server setting).")
    voice: str | None = Field(
        None, description="Voice name (see GET /v1/voices); default: the server's default voice."
    )
    response_format: ResponseFormat = Field(
        "wav", description="wav / flac (16-bit, 24 kHz mono) or pcm (raw s16le, 24 kHz mono)."
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate.")
    stream: bool = Field(
        False,
        description="Stream audio per text chunk: WAV header (sizes 0xFFFFFFFF) then PCM, or raw pcm. "
        "Not available for flac.",
    )
    nfe_step: int | None = Field(None, ge=1, le=256, description="Sampler steps (default: preset / server).")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Noise seed: same seed, same audio.")
    preset: Preset | None = Field(None, description="quality = 32 uniform steps; fast = EPSS 7 steps.")
    chunking: Chunking | None = Field(
        None,
        description="Text chunking. stream = a short first chunk (1-2 s of speech), then growing "
        "chunks: audio starts sooner; upstream = IndicF5's split (upstream's exact audio). "
        "Default: stream when streaming, else upstream. Same option, same audio, streamed or not.",
    )
    first_chunk_nfe: int | None = Field(
        None,
        ge=1,
        le=256,
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


def audio_responses() -> dict[int | str, dict]:
    ok = {
        200: {
            "description": "Audio (24 kHz mono 16-bit). Header X-Sample-Rate gives the rate.",
            "content": {
                mt: {"schema": {"type": "string", "format": "binary"}} for mt in MEDIA_TYPES.values()
            },
        }
    }
    return ok | ERROR_RESPONSES
