"""``serve --backend remote --triton-protocol upstream``: the HTTP server in front of upstream
F5-TTS's own Triton model (``f5_tts`` of ``runtime/triton_trtllm`` in f5-tts 1.1.22, a
TensorRT-LLM DiT + TensorRT Vocos), so our API, voices, limits, streaming and metrics can front
a TensorRT-LLM deployment. See docs/tensorrt-llm.md.

Upstream's model takes one reference + one text per request and returns one waveform:
``reference_wav`` FP32 [-1], ``reference_wav_len`` INT32 [1], ``reference_text`` and
``target_text`` STRING [1] -> ``waveform`` FP32 [-1] (plus the batch dimension, max batch 4).
It is not IndicF5's pipeline: it fixes the step count (32, EPSS/sway grid baked in at load),
CFG 2, has its own duration rule (``ref_frames * (1 + target_bytes / ref_bytes)``, no speed),
caps an item at 4096 frames and draws noise from one process-wide random state (no seed).

So this side does what upstream's model does not: IndicF5's reference preparation (clip at
silences to <= 15 s, trim, 50 ms pad, RMS raised to 0.1 *before* resampling to 24 kHz, the
". " reference-text rule), IndicF5's chunking of long text (each chunk one Triton request, all
in flight at once so Triton's dynamic batcher can group them), the 0.15 s cross-fade and the
RMS restore. Per-request ``seed``, ``nfe_step``, ``preset``, ``speed`` (other than 1) and other
sampling options are refused with an InputError (HTTP 400) that says why. The audio is therefore
*not* IndicF5's own (different durations, steps grid and noise).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indicf5_fast.config import EngineConfig, SamplingOptions
from indicf5_fast.deploy.triton.client import TritonConnection, TritonError, split_url
from indicf5_fast.deploy.triton.tensors import TensorSpec
from indicf5_fast.errors import AudioError, BackendUnavailableError, InputError
from indicf5_fast.frontend import audio as audio_io
from indicf5_fast.frontend.text import Tokenizer, chunk_text, max_chunk_bytes, utf8_len

MODEL_NAME = "f5_tts"  # upstream's model_repo_f5_tts/f5_tts
SAMPLE_RATE = 24_000  # upstream's config: reference_audio_sample_rate "24000"; output 24 kHz
TARGET_RMS = 0.1
CROSS_FADE_SECONDS = 0.15
MAX_FRAMES = 4096  # upstream's max_mel_len: reference + generated frames per item

# upstream's config.pbtxt, shapes without the batch dimension (max_batch_size 4)
INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("reference_wav", np.float32, (-1,), optional=True),
    TensorSpec("reference_wav_len", np.int32, (1,), optional=True),
    TensorSpec("reference_text", np.bytes_, (1,)),
    TensorSpec("target_text", np.bytes_, (1,)),
)
OUTPUTS: tuple[TensorSpec, ...] = (TensorSpec("waveform", np.float32, (-1,)),)

_WHY = "upstream's f5_tts Triton model (--triton-protocol upstream)"
REFUSED: dict[str, str] = {
    "seed": f"seed is not supported by {_WHY}: it draws its noise from one process-wide random "
    "state, so a request cannot choose (or repeat) its noise",
    "nfe_step": f"nfe_step is not supported by {_WHY}: its TensorRT-LLM runtime fixes the number of "
    "sampler steps (32) when it loads",
    "preset": f"preset is not supported by {_WHY}: presets choose steps and schedule, which its "
    "TensorRT-LLM runtime fixes when it loads",
    "speed": f"speed other than 1.0 is not supported by {_WHY}: it derives the duration from the "
    "text lengths with its own rule and has no speed input",
}
_OTHER = "is not supported by " + _WHY + ": it fixes its sampling settings when it loads"


def encode_request(ref_wave: np.ndarray, ref_text: str, target_text: str) -> dict[str, np.ndarray]:
    """One request of upstream's ``f5_tts`` model (batch 1): 24 kHz mono reference + texts."""
    wave = np.ascontiguousarray(np.asarray(ref_wave, dtype=np.float32).reshape(1, -1))
    return {
        "reference_wav": wave,
        "reference_wav_len": np.array([[wave.shape[1]]], dtype=np.int32),
        "reference_text": np.array([[ref_text.encode("utf-8")]], dtype=np.object_),
        "target_text": np.array([[target_text.encode("utf-8")]], dtype=np.object_),
    }


def decode_response(waveform: np.ndarray | None) -> np.ndarray:
    if waveform is None:
        raise TritonError(f"{MODEL_NAME} answered without a 'waveform' output")
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if not np.isfinite(wave).all():
        raise TritonError(f"{MODEL_NAME} returned non-finite audio")
    return wave


class UpstreamClient(TritonConnection):
    """tritonclient (HTTP or gRPC) for upstream's model. One per thread (as tritonclient wants)."""

    input_specs = INPUTS

    def __init__(
        self, url: str, protocol: str | None = None, *, model: str = MODEL_NAME, timeout_s: float = 300.0
    ):
        super().__init__(url, protocol, model, timeout_s)

    def infer_iter(self, requests: Sequence[Mapping[str, np.ndarray]]) -> Iterator[np.ndarray]:
        """Send every request at once (Triton batches them); yield the waves in request order,
        each as soon as it and all before it have arrived."""
        for result in self._infer_in_order(requests):
            yield decode_response(result.as_numpy("waveform"))


@dataclass(frozen=True)
class UpstreamVoice:
    key: str  # content hash (audio + rate + text + clip limit)
    wave: np.ndarray = field(repr=False)  # [n] 24 kHz float32: clipped, RMS raised, resampled
    text: str  # reference text as IndicF5 feeds it (". " rule + one space)
    rms: float  # original RMS (output scaled back by rms / 0.1 when it was raised)

    @property
    def seconds(self) -> float:
        return self.wave.shape[0] / SAMPLE_RATE


@dataclass
class UpstreamRequest:
    text: str
    voice: UpstreamVoice
    chunks: list[str]

    def encoded(self) -> list[dict[str, np.ndarray]]:
        return [encode_request(self.voice.wave, self.voice.text, c) for c in self.chunks]


class UpstreamRemoteTTS:
    """The HTTP server's engine protocol (``server/engine_api.py``) over upstream's ``f5_tts``."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: EngineConfig, *, timeout_s: float = 300.0):
        if not config.triton_url:
            raise InputError("--backend remote needs --triton-url (e.g. grpc://127.0.0.1:8001)", "triton_url")
        if config.sampling != SamplingOptions():
            raise InputError(
                "--preset/--nfe/--schedule/--cfg/--sway/--speed/--cfg-skip-last cannot be used with "
                f"--triton-protocol upstream: {_WHY} fixes its sampling settings when it loads",
                "preset",
            )
        self.config = config
        scheme = config.triton_url.partition("://")[0] if "://" in config.triton_url else "grpc"
        self.protocol, self.url = split_url(config.triton_url, scheme)
        self.timeout_s = timeout_s
        # optional: with the exported vocab.txt, text the model cannot speak is a 400 here
        # (upstream's model silently maps unknown characters to the space token)
        self.tokenizer = Tokenizer.from_file(config.vocab) if config.vocab else None
        self._local = threading.local()

    @classmethod
    def from_config(cls, config: EngineConfig, wait_s: float = 60.0) -> UpstreamRemoteTTS:
        engine = cls(config)
        try:
            engine._client().wait_ready(wait_s)
        except Exception as e:
            raise BackendUnavailableError(f"Triton at {config.triton_url} is not usable: {e}") from e
        return engine

    # ------------------------------------------------------------------ engine protocol
    def prepare_voice(self, ref_audio: Any, ref_text: str, sample_rate: int | None = None) -> UpstreamVoice:
        """IndicF5's reference preparation, here (upstream's model only raises the RMS)."""
        if not isinstance(ref_text, str) or not ref_text.strip():
            raise InputError("ref_text is empty: give the transcript of the reference audio", "ref_text")
        if isinstance(ref_audio, tuple) and len(ref_audio) == 2:
            ref_audio, sample_rate = ref_audio
        if isinstance(ref_audio, np.ndarray):
            wave, sr = np.asarray(ref_audio, dtype=np.float32).reshape(-1), int(sample_rate or SAMPLE_RATE)
            if wave.size == 0 or not np.isfinite(wave).all():
                raise AudioError("reference audio must be a non-empty finite wave")
        else:
            wave, sr = audio_io.read_audio(ref_audio)
        if self.tokenizer is not None:
            self.tokenizer.check(ref_text, "ref_text")
        h = hashlib.sha256(np.ascontiguousarray(wave).tobytes())
        h.update(f"|{sr}|{self.config.max_ref_seconds}|".encode() + ref_text.encode("utf-8"))
        clipped = audio_io.prepare_reference_audio(wave, sr, max_seconds=self.config.max_ref_seconds)
        raised, rms = audio_io.normalize_reference_rms(clipped, TARGET_RMS)
        wave24 = np.asarray(audio_io.resample(raised, sr, SAMPLE_RATE), dtype=np.float32)
        if wave24.shape[0] < 512:
            raise AudioError("reference audio is too short after trimming silence (need speech, > 20 ms)")
        text = audio_io.prepare_reference_text(ref_text)
        if utf8_len(text[-1]) == 1:  # as upstream infer_batch_process: one more space
            text = text + " "
        return UpstreamVoice(key=h.hexdigest(), wave=wave24, text=text, rms=float(rms))

    def make_request(
        self,
        text: str,
        ref_audio: Any = None,
        ref_text: str | None = None,
        *,
        voice: UpstreamVoice | None = None,
        seed: int | None = None,
        preset: str | None = None,
        sample_rate: int | None = None,
        **options: Any,
    ) -> UpstreamRequest:
        if seed is not None:
            raise InputError(REFUSED["seed"], "seed")
        if preset is not None:
            raise InputError(REFUSED["preset"], "preset")
        for name, value in options.items():
            if value is None or (name == "speed" and _is_one(value)):
                continue
            raise InputError(REFUSED.get(name, f"{name} {_OTHER}"), name)
        if voice is None:
            if ref_audio is None:
                raise InputError("give a reference voice: ref_audio + ref_text", "ref_audio")
            voice = self.prepare_voice(ref_audio, ref_text or "", sample_rate)
        if not isinstance(text, str) or not text.strip():
            raise InputError("text is empty", "text")
        if self.tokenizer is not None:
            self.tokenizer.check(text, "text")
        budget = max_chunk_bytes(voice.text.rstrip() + " ", voice.seconds)
        chunks = chunk_text(text.strip(), budget) or [text.strip()]
        return UpstreamRequest(text=text, voice=voice, chunks=chunks)

    def warmup_requests(self, text: str, voice: UpstreamVoice) -> list[UpstreamRequest]:
        """What the server's warm-up runs (it cannot use presets or seeds here)."""
        return [self.make_request(text, voice=voice)]

    def synthesize(self, text: str, voice: UpstreamVoice, **options: Any) -> np.ndarray:
        return self.synthesize_batch([self.make_request(text, voice=voice, **options)])[0]

    def synthesize_batch(self, requests: Sequence[UpstreamRequest]) -> list[np.ndarray]:
        """All chunks of all requests in flight at once; each request's chunks cross-faded."""
        encoded = [e for r in requests for e in r.encoded()]
        waves = list(self._client().infer_iter(encoded))
        out, k = [], 0
        for r in requests:
            parts = [self._scale_back(w, r.voice) for w in waves[k : k + len(r.chunks)]]
            k += len(r.chunks)
            joined = audio_io.cross_fade_join(parts, SAMPLE_RATE, CROSS_FADE_SECONDS)
            if self.config.remove_silence:  # IndicF5's int16 output chain, as the engine does
                joined = audio_io.postprocess_indicf5(joined, SAMPLE_RATE).astype(np.float32) / 32768.0
            out.append(np.asarray(joined, dtype=np.float32))
        return out

    def synthesize_stream(self, request: UpstreamRequest) -> Iterator[np.ndarray]:
        """Chunk by chunk, in order, as each arrives; the concatenation equals the full audio."""
        from indicf5_fast.engine import StreamingCrossFade

        joiner = StreamingCrossFade(int(CROSS_FADE_SECONDS * SAMPLE_RATE))
        for wave in self._client().infer_iter(request.encoded()):
            ready = joiner.push(self._scale_back(wave, request.voice))
            if ready.size:
                yield ready
        tail = joiner.flush()
        if tail.size:
            yield tail

    def describe(self) -> dict[str, str]:
        return {
            "backend": "remote",
            "device": f"triton {self.protocol}://{self.url} (upstream {MODEL_NAME})",
            "dtype": "remote",
        }

    # ------------------------------------------------------------------ internals
    def _scale_back(self, wave: np.ndarray, voice: UpstreamVoice) -> np.ndarray:
        return wave * (voice.rms / TARGET_RMS) if voice.rms < TARGET_RMS else wave

    def _client(self) -> UpstreamClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = UpstreamClient(self.url, self.protocol, timeout_s=self.timeout_s)
            self._local.client = client
        return client


def _is_one(value: Any) -> bool:
    try:
        return float(value) == 1.0
    except (TypeError, ValueError):
        return False
