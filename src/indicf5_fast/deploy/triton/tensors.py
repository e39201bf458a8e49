"""The Triton tensor contract of the IndicF5 models, in one place.

Used by the PyTriton binding, the classic model repository (its ``config.pbtxt`` and its
python-backend ``model.py``), the client and the HTTP server's remote backend, so the four can
never disagree about a name, a dtype or a shape.

Shapes below exclude the batch dimension (every model has ``max_batch_size >= 1``): a request
carries ``b`` items, e.g. ``text`` [b, 1] bytes and ``ref_audio`` [b, n] float32.

Per-item errors: one bad item must not fail the other requests that Triton's dynamic batcher
put in the same model call, so validation errors are returned in the ``error`` output (empty =
ok, else JSON ``{"type", "message", "param"}``) instead of being raised for the whole call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from indicf5_fast.config import BOUNDS, SAMPLE_RATE, check_seed
from indicf5_fast.errors import AudioError, InputError

if TYPE_CHECKING:
    from indicf5_fast.engine import TTS, SynthesisRequest, Voice

MODEL_NAME = "indicf5"  # batched model: one response per request
STREAM_MODEL_NAME = "indicf5_stream"  # decoupled model: one response per text chunk
NO_SEED = -1  # `seed` value meaning "random", so seeded and unseeded items share one batch


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: type  # numpy scalar type (np.bytes_ = Triton TYPE_STRING / BYTES)
    shape: tuple[int, ...]
    optional: bool = False

    @property
    def triton_dtype(self) -> str:  # KServe v2 / tritonclient name
        return _V2_DTYPES[self.dtype]

    @property
    def config_dtype(self) -> str:  # config.pbtxt name
        return "TYPE_STRING" if self.dtype is np.bytes_ else "TYPE_" + _V2_DTYPES[self.dtype]


_V2_DTYPES = {np.bytes_: "BYTES", np.float32: "FP32", np.int32: "INT32", np.int64: "INT64", np.bool_: "BOOL"}

INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text", np.bytes_, (1,)),
    TensorSpec("ref_text", np.bytes_, (1,), optional=True),
    TensorSpec("ref_audio", np.float32, (-1,), optional=True),  # mono wave at ref_sample_rate
    TensorSpec("ref_sample_rate", np.int32, (1,), optional=True),  # default 24000
    TensorSpec("voice", np.bytes_, (1,), optional=True),  # name of a voice registered on the server
    TensorSpec("nfe_step", np.int32, (1,), optional=True),
    TensorSpec("seed", np.int64, (1,), optional=True),  # -1 = random
    TensorSpec("speed", np.float32, (1,), optional=True),
    TensorSpec("cfg_strength", np.float32, (1,), optional=True),
    TensorSpec("sway_sampling_coef", np.float32, (1,), optional=True),  # NaN = no sway (as 0)
    TensorSpec("schedule", np.bytes_, (1,), optional=True),  # uniform | epss
    TensorSpec("cfg_skip_last", np.int32, (1,), optional=True),
    TensorSpec(
        "language", np.bytes_, (1,), optional=True
    ),  # ISO 639-1 (hi, mr, bn, as ...); "" = from script
    TensorSpec("normalize", np.bool_, (1,), optional=True),  # false: numbers, dates ... stay as written
    TensorSpec("chunking", np.bytes_, (1,), optional=True),  # upstream | stream (default: by model)
    TensorSpec("first_chunk_nfe", np.int32, (1,), optional=True),  # progressive first chunk's steps
)
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("audio", np.float32, (-1,)),  # 24 kHz, zero-padded to the longest item of the request
    TensorSpec("length", np.int32, (1,)),  # valid samples of each item
    TensorSpec("error", np.bytes_, (1,)),  # empty = ok
)
STREAM_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("audio", np.float32, (-1,)),  # one chunk
    TensorSpec("error", np.bytes_, (1,)),  # empty = ok; else the only response of the stream
)

# optional input -> engine request option (the engine validates the values). chunking unset:
# the batched model uses IndicF5's split, the streaming model the latency-aware one.
_OPTION_INPUTS = {
    "nfe_step": int,
    "speed": float,
    "cfg_strength": float,
    "sway_sampling_coef": float,
    "schedule": str,
    "cfg_skip_last": int,
    "chunking": str,
    "first_chunk_nfe": int,
}


# ------------------------------------------------------------------------------ client side
def encode_request(
    text: str,
    *,
    voice: str | None = None,
    ref_audio: np.ndarray | None = None,
    ref_sample_rate: int | None = None,
    ref_text: str | None = None,
    seed: int | None = None,
    language: str | None = None,
    normalize: bool | None = None,
    **options: Any,
) -> dict[str, np.ndarray]:
    """One item -> the input arrays of a request with batch size 1 (None values are left out)."""
    if (voice is None) == (ref_audio is None):
        raise InputError("give exactly one of voice (a registered name) or ref_audio + ref_text", "voice")
    out: dict[str, np.ndarray] = {"text": _bytes_item(text)}
    if voice is not None:
        out["voice"] = _bytes_item(voice)
    else:
        wave = np.asarray(ref_audio, dtype=np.float32).reshape(-1)
        out["ref_audio"] = wave[None, :]
        out["ref_sample_rate"] = np.array([[ref_sample_rate or SAMPLE_RATE]], dtype=np.int32)
        out["ref_text"] = _bytes_item(ref_text or "")
    if seed is not None:
        if seed != NO_SEED:  # NO_SEED: an unseeded item in a batch with seeded ones
            check_seed(seed)
        out["seed"] = np.array([[seed]], dtype=np.int64)
    if language is not None:
        out["language"] = _bytes_item(language)
    if normalize is not None:
        out["normalize"] = np.array([[bool(normalize)]], dtype=np.bool_)
    specs = {s.name: s for s in INPUTS}
    for name, value in options.items():
        if name not in _OPTION_INPUTS:
            raise InputError(f"unknown option {name!r} (expected one of {sorted(_OPTION_INPUTS)})", name)
        if value is None:  # left out: the server engine's default
            continue
        if name in BOUNDS:  # the engine's range: also keeps the value inside the tensor's dtype
            BOUNDS[name].check(name, value)
        spec = specs[name]
        out[name] = _bytes_item(value) if spec.dtype is np.bytes_ else np.array([[value]], dtype=spec.dtype)
    return out


def decode_response(outputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of the batched model -> one float32 wave per item; raises the first item error."""
    for raw in np.asarray(outputs["error"]).reshape(-1):
        raise_item_error(raw)
    audio = np.asarray(outputs["audio"], dtype=np.float32)
    lengths = np.asarray(outputs["length"]).reshape(-1)
    return [audio[i, : int(n)].copy() for i, n in enumerate(lengths)]


def decode_stream_response(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """One response of the streaming model -> its audio chunk; raises the stream's error."""
    if outputs.get("error") is not None:
        raise_item_error(np.asarray(outputs["error"]).reshape(-1)[0])
    return np.asarray(outputs["audio"], dtype=np.float32).reshape(-1)


def raise_item_error(raw: Any) -> None:
    """An ``error`` element -> nothing if empty, else the engine's InputError / AudioError with
    its message and parameter (so an HTTP server in front maps it to the right 4xx)."""
    text = _text(raw)
    if not text:
        return
    try:
        info = json.loads(text)
    except ValueError:
        info = {"message": text}
    cls = AudioError if info.get("type") == "AudioError" else InputError
    raise cls(str(info.get("message", text)), info.get("param"))


def _bytes_item(value: Any) -> np.ndarray:
    return np.array([[str(value).encode("utf-8")]], dtype=np.object_)


# ------------------------------------------------------------------------------ server side
def batch_size_of(data: Mapping[str, np.ndarray]) -> int:
    return int(np.asarray(data["text"]).shape[0])


def parse_items(
    tts: TTS, data: Mapping[str, np.ndarray], voices: Mapping[str, Voice]
) -> list[SynthesisRequest | InputError]:
    """Input arrays of one Triton request ([b, ...] each) -> b engine requests (or the error of
    that item). Reference voices go through ``tts.prepare_voice`` (cached by content hash)."""
    out: list[SynthesisRequest | InputError] = []
    for i in range(batch_size_of(data)):
        try:
            out.append(_parse_item(tts, data, i, voices))
        except InputError as e:  # AudioError is an InputError
            out.append(e)
    return out


def _parse_item(tts: TTS, data: Mapping[str, np.ndarray], i: int, voices: Mapping[str, Voice]):
    def item(name: str):
        return None if data.get(name) is None else np.asarray(data[name])[i]

    text = _text(item("text")[0])
    language = item("language")
    text_options: dict[str, Any] = {}
    if language is not None and _text(language[0]):
        text_options["language"] = _text(language[0])
    if item("normalize") is not None:
        text_options["normalize"] = bool(item("normalize")[0])
    voice_name = item("voice")
    if voice_name is not None and _text(voice_name[0]):
        name = _text(voice_name[0])
        if name not in voices:
            raise InputError(f"unknown voice {name!r} (registered: {sorted(voices) or 'none'})", "voice")
        voice = voices[name]
    else:
        wave = item("ref_audio")
        if wave is None or wave.size == 0:
            raise InputError("give a registered voice name or ref_audio + ref_text", "ref_audio")
        sr = item("ref_sample_rate")
        ref_text = item("ref_text")
        voice = tts.prepare_voice(
            (np.asarray(wave, dtype=np.float32), int(sr[0]) if sr is not None else SAMPLE_RATE),
            _text(ref_text[0]) if ref_text is not None else "",
            **text_options,
        )
    options: dict[str, Any] = {}
    for name, cast in _OPTION_INPUTS.items():
        value = item(name)
        if value is None:
            continue
        v = cast(_text(value[0])) if cast is str else cast(value[0])
        if name == "sway_sampling_coef" and math.isnan(v):
            v = 0.0  # "no sway": the same time grid as none at all
        options[name] = v
    seed = item("seed")
    seed_value = int(seed[0]) if seed is not None and int(seed[0]) != NO_SEED else None
    return tts.make_request(text, voice=voice, seed=seed_value, **options, **text_options)


def pack_outputs(results: list[np.ndarray | InputError]) -> dict[str, np.ndarray]:
    """b results (wave or error) -> the three output arrays of one response."""
    waves = [r if isinstance(r, np.ndarray) else np.zeros(0, np.float32) for r in results]
    longest = max([1] + [w.shape[0] for w in waves])  # >= 1: pytriton cannot ship a 0-size tensor
    audio = np.zeros((len(waves), longest), dtype=np.float32)
    for i, w in enumerate(waves):
        audio[i, : w.shape[0]] = w
    return {
        "audio": audio,
        "length": np.array([[w.shape[0]] for w in waves], dtype=np.int32),
        "error": np.array(
            [[b"" if isinstance(r, np.ndarray) else error_bytes(r)] for r in results], dtype=np.object_
        ),
    }


def stream_outputs(chunk: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "audio": np.asarray(chunk, dtype=np.float32)[None, :],
        "error": np.array([[b""]], dtype=np.object_),
    }


def stream_error_outputs(error: InputError) -> dict[str, np.ndarray]:
    # a 1-sample audio: pytriton cannot ship a 0-size tensor
    return {
        "audio": np.zeros((1, 1), np.float32),
        "error": np.array([[error_bytes(error)]], dtype=np.object_),
    }


def error_bytes(error: InputError) -> bytes:
    info = {"type": type(error).__name__, "message": str(error), "param": getattr(error, "param", None)}
    return json.dumps(info, ensure_ascii=False).encode("utf-8")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)
