"""``RemoteTTS``: the HTTP server's engine protocol (``server/engine_api.py``) served by Triton.

``indicf5-fast serve --backend remote --triton-url grpc://host:8001`` keeps voices, limits,
batching, streaming and the OpenAI API in the HTTP server and sends synthesis to the Triton
models of ``triton serve`` / ``triton build-repo``. No model weights are loaded here.

A voice is the decoded reference (wave at its own rate + transcript): every request carries it
to Triton, whose engine prepares it once and caches it by content hash. The HTTP server's batch
is sent as concurrent requests, so Triton's dynamic batcher groups them (requests of the same
voice batch together; different reference lengths cannot share a Triton batch).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indicf5_fast.config import SAMPLE_RATE, EngineConfig, SamplingOptions, check_seed, request_options
from indicf5_fast.deploy.triton import tensors
from indicf5_fast.deploy.triton.client import TritonTTSClient, split_url
from indicf5_fast.engine_stream import check_stream_options
from indicf5_fast.errors import BackendUnavailableError, InputError
from indicf5_fast.frontend import audio as audio_io
from indicf5_fast.frontend.normalize import normalize_text


@dataclass(frozen=True)
class RemoteVoice:
    key: str  # content hash (wave + rate + text), like the engine's Voice.key
    wave: np.ndarray = field(repr=False)  # [n] float32 mono at sample_rate
    sample_rate: int
    text: str

    @property
    def seconds(self) -> float:
        return self.wave.shape[0] / self.sample_rate


@dataclass
class RemoteRequest:
    text: str
    voice: RemoteVoice
    options: SamplingOptions  # the server batches requests with equal options
    seed: int | None = None
    chunking: str | None = None  # None: Triton's default (stream for the streaming model)
    first_chunk_nfe: int | None = None

    def item(self) -> dict[str, Any]:
        """-> keyword arguments of ``tensors.encode_request``."""
        o = self.options
        return {
            "text": self.text,
            "ref_audio": self.voice.wave,
            "ref_sample_rate": self.voice.sample_rate,
            "ref_text": self.voice.text,
            "seed": tensors.NO_SEED if self.seed is None else self.seed,
            "nfe_step": o.nfe_step,
            "speed": o.speed,
            "cfg_strength": o.cfg_strength,
            # None in SamplingOptions = no sway; sent as 0.0 (same grid), never left to Triton's default
            "sway_sampling_coef": 0.0 if o.sway_sampling_coef is None else o.sway_sampling_coef,
            "schedule": o.schedule,
            "cfg_skip_last": o.cfg_skip_last,
            "normalize": False,  # text and ref_text were normalised here (or deliberately not)
            "chunking": self.chunking,
            "first_chunk_nfe": self.first_chunk_nfe,
        }


class RemoteTTS:
    """Engine protocol over Triton. Thread-safe: one Triton client per calling thread."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: EngineConfig, *, timeout_s: float = 300.0):
        if not config.triton_url:
            raise InputError("--backend remote needs --triton-url (e.g. grpc://127.0.0.1:8001)", "triton_url")
        self.config = config
        # gRPC by default: only gRPC carries the decoupled (streaming) model's responses
        scheme = config.triton_url.partition("://")[0] if "://" in config.triton_url else "grpc"
        self.protocol, self.url = split_url(config.triton_url, scheme)
        self.timeout_s = timeout_s
        self._local = threading.local()

    @classmethod
    def from_config(cls, config: EngineConfig, wait_s: float = 60.0) -> RemoteTTS:
        """Connect and wait until Triton and the model are ready (clear error otherwise).
        ``config.triton_protocol == "upstream"``: upstream F5-TTS's own ``f5_tts`` model instead
        (see ``upstream.py``)."""
        if config.triton_protocol == "upstream":
            from indicf5_fast.deploy.triton.upstream import UpstreamRemoteTTS

            return UpstreamRemoteTTS.from_config(config, wait_s)  # type: ignore[return-value]
        engine = cls(config)
        try:
            engine._client().wait_ready(wait_s)
        except Exception as e:
            raise BackendUnavailableError(f"Triton at {config.triton_url} is not usable: {e}") from e
        return engine

    # ------------------------------------------------------------------ engine protocol
    def prepare_voice(
        self,
        ref_audio: Any,
        ref_text: str,
        sample_rate: int | None = None,
        *,
        language: str | None = None,
        normalize: bool | None = None,
    ) -> RemoteVoice:
        """Decode the reference here, exactly as the engine does (bad files fail at upload, not at
        synthesis); its text is normalised here like the engine does (Triton's own pass is then the
        identity). Triton's engine prepares the decoded mono wave."""
        if not isinstance(ref_text, str) or not ref_text.strip():
            raise InputError("ref_text is empty: give the transcript of the reference audio", "ref_text")
        ref_text = self._normalize(ref_text, language, normalize)
        wave, sr = audio_io.read_reference(ref_audio, sample_rate)
        h = hashlib.sha256(np.ascontiguousarray(wave).tobytes())
        h.update(f"|{sr}|".encode() + ref_text.encode("utf-8"))
        return RemoteVoice(key=h.hexdigest(), wave=wave, sample_rate=sr, text=ref_text)

    def make_request(
        self,
        text: str,
        ref_audio: Any = None,
        ref_text: str | None = None,
        *,
        voice: RemoteVoice | None = None,
        seed: int | None = None,
        preset: str | None = None,
        sample_rate: int | None = None,
        language: str | None = None,
        normalize: bool | None = None,
        chunking: str | None = None,
        first_chunk_nfe: int | None = None,
        **options: Any,
    ) -> RemoteRequest:
        """Same validation and text normalisation as the engine's, except the vocabulary check
        (the model is remote: text it cannot speak comes back as an InputError from Triton)."""
        if voice is None:
            if ref_audio is None:
                raise InputError("give a reference voice: ref_audio + ref_text", "ref_audio")
            voice = self.prepare_voice(
                ref_audio, ref_text or "", sample_rate, language=language, normalize=normalize
            )
        opts = request_options(self.config.sampling, preset, options)
        if not isinstance(text, str) or not text.strip():
            raise InputError("text is empty", "text")
        text = self._normalize(text, language, normalize)
        check_seed(seed)
        check_stream_options(chunking, "auto", first_chunk_nfe)
        return RemoteRequest(text, voice, opts, seed, chunking, first_chunk_nfe)

    def synthesize(
        self,
        text: str,
        ref_audio: Any = None,
        ref_text: str | None = None,
        nfe_step: int | None = None,
        cfg_strength: float | None = None,
        sway_sampling_coef: float | None = None,
        speed: float | None = None,
        seed: int | None = None,
        *,
        schedule: str | None = None,
        voice: RemoteVoice | None = None,
        cfg_skip_last: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        language: str | None = None,
        normalize: bool | None = None,
        chunking: str | None = None,
    ) -> np.ndarray:
        """As ``TTS.synthesize`` (same arguments, defaults from ``config.sampling``); the whole
        text is one Triton request, so ``progress`` is called once, at the end."""
        req = self.make_request(
            text,
            ref_audio,
            ref_text,
            voice=voice,
            seed=seed,
            nfe_step=nfe_step,
            cfg_strength=cfg_strength,
            sway_sampling_coef=sway_sampling_coef,
            speed=speed,
            schedule=schedule,
            cfg_skip_last=cfg_skip_last,
            language=language,
            normalize=normalize,
            chunking=chunking,
        )
        wave = self.synthesize_batch([req])[0]
        if progress is not None:
            progress(1, 1)
        return wave

    def synthesize_batch(self, requests: Sequence[RemoteRequest]) -> list[np.ndarray]:
        return self._client().synthesize_many([r.item() for r in requests])

    def synthesize_stream(self, request: RemoteRequest) -> Iterator[np.ndarray]:
        """Chunks from the decoupled model (gRPC); over HTTP the whole audio comes as one piece."""
        if self.protocol != "grpc":
            yield from self.synthesize_batch([request])
            return
        item = request.item()
        yield from self._client().stream(item.pop("text"), **item)

    def describe(self) -> dict[str, str]:
        return {"backend": "remote", "device": f"triton {self.protocol}://{self.url}", "dtype": "remote"}

    # ------------------------------------------------------------------ internals
    def _normalize(self, text: str, language: str | None, normalize: bool | None) -> str:
        if not (self.config.normalize if normalize is None else normalize):
            return text
        return normalize_text(text, self.config.language if language is None else language)

    def _client(self) -> TritonTTSClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = TritonTTSClient(self.url, self.protocol, timeout_s=self.timeout_s)
            self._local.client = client
        return client
