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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indicf5_fast.config import EngineConfig, SamplingOptions
from indicf5_fast.deploy.triton import tensors
from indicf5_fast.deploy.triton.client import TritonTTSClient, split_url
from indicf5_fast.engine_stream import check_stream_options
from indicf5_fast.errors import AudioError, BackendUnavailableError, InputError
from indicf5_fast.frontend import audio as audio_io


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
            "sway_sampling_coef": o.sway_sampling_coef,
            "schedule": o.schedule,
            "cfg_skip_last": o.cfg_skip_last,
            "chunking": self.chunking,
            "first_chunk_nfe": self.first_chunk_nfe,
        }


class RemoteTTS:
    """Engine protocol over Triton. Thread-safe: one Triton client per calling thread."""

    sample_rate = tensors.SAMPLE_RATE

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
        """Connect and wait until Triton and the model are ready (clear error otherwise)."""
        engine = cls(config)
        try:
            engine._client().wait_ready(wait_s)
        except Exception as e:
            raise BackendUnavailableError(f"Triton at {config.triton_url} is not usable: {e}") from e
        return engine

    # ------------------------------------------------------------------ engine protocol
    def prepare_voice(self, ref_audio: Any, ref_text: str, sample_rate: int | None = None) -> RemoteVoice:
        """Decode the reference here (bad files fail at upload, not at synthesis)."""
        if not isinstance(ref_text, str) or not ref_text.strip():
            raise InputError("ref_text is empty: give the transcript of the reference audio", "ref_text")
        if isinstance(ref_audio, tuple) and len(ref_audio) == 2:
            ref_audio, sample_rate = ref_audio
        if isinstance(ref_audio, np.ndarray):
            wave, sr = (
                np.asarray(ref_audio, dtype=np.float32).reshape(-1),
                int(sample_rate or self.sample_rate),
            )
            if wave.size == 0 or not np.isfinite(wave).all():
                raise AudioError("reference audio must be a non-empty finite wave")
        else:
            wave, sr = audio_io.read_audio(ref_audio)
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
        chunking: str | None = None,
        first_chunk_nfe: int | None = None,
        **options: Any,
    ) -> RemoteRequest:
        """Same validation as the engine's, except the vocabulary check (the model is remote:
        text it cannot speak comes back as an InputError from Triton)."""
        if voice is None:
            if ref_audio is None:
                raise InputError("give a reference voice: ref_audio + ref_text", "ref_audio")
            voice = self.prepare_voice(ref_audio, ref_text or "", sample_rate)
        base = SamplingOptions.preset(preset) if preset else self.config.sampling
        merged = {**base.__dict__, **{k: v for k, v in options.items() if v is not None}}
        unknown = set(merged) - set(SamplingOptions().__dict__)
        if unknown:
            raise InputError(f"unknown sampling option(s) {sorted(unknown)}", sorted(unknown)[0])
        opts = SamplingOptions(**merged)
        if "sway_sampling_coef" in options and options["sway_sampling_coef"] is None:
            opts.sway_sampling_coef = None
        opts.validate()
        if not isinstance(text, str) or not text.strip():
            raise InputError("text is empty", "text")
        if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise InputError("seed must be a non-negative integer", "seed")
        check_stream_options(chunking, "auto", first_chunk_nfe)
        return RemoteRequest(text, voice, opts, seed, chunking, first_chunk_nfe)

    def synthesize(
        self, text: str, voice: RemoteVoice, seed: int | None = None, **options: Any
    ) -> np.ndarray:
        return self.synthesize_batch([self.make_request(text, voice=voice, seed=seed, **options)])[0]

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
    def _client(self) -> TritonTTSClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = TritonTTSClient(self.url, self.protocol, timeout_s=self.timeout_s)
            self._local.client = client
        return client
