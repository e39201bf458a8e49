"""Engine: requests -> reference voice (cached) -> text chunks -> batched sampling -> vocoder -> audio.

Upstream IndicF5 semantics, step by step (``infer_process`` / ``infer_batch_process``):
reference clipped at silences (<= 15 s), edge silence trimmed, 50 ms silence appended; RMS
raised to 0.1 before resampling to 24 kHz; gen text chunked by a UTF-8 byte budget; per chunk
text = ref_text + chunk, duration from UTF-8 byte lengths; sample; drop the reference frames;
vocode; restore RMS; join chunks with a 0.15 s cross-fade.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from indicf5_fast import engine_stream, sampling
from indicf5_fast.backends.base import Backend
from indicf5_fast.config import (
    CROSS_FADE_SECONDS,
    HOP_LENGTH,
    N_MELS,
    SAMPLE_RATE,
    TARGET_RMS,
    EngineConfig,
    SamplingOptions,
    check_seed,
    request_options,
)
from indicf5_fast.engine_stream import StreamingCrossFade  # noqa: F401  (public name, moved)
from indicf5_fast.errors import AudioError, InputError
from indicf5_fast.frontend import audio as audio_io
from indicf5_fast.frontend.normalize import normalize_text
from indicf5_fast.frontend.text import Tokenizer, utf8_len
from indicf5_fast.model.mel import MelSpectrogram


@dataclass(frozen=True)
class Voice:
    """A preprocessed reference: everything the front end computes once per voice."""

    key: str  # content hash (audio + text + clip settings)
    wave: np.ndarray  # [ns] 24 kHz float32, RMS-raised, clipped
    mel: torch.Tensor  # [n_ref, 100] log-mel (cond)
    text: str  # reference text as the model sees it
    rms: float  # original RMS (output is scaled back by rms / 0.1 when it was raised)

    @property
    def frames(self) -> int:  # reference frames cut from the output (upstream: samples // hop)
        return self.wave.shape[0] // HOP_LENGTH

    @property
    def seconds(self) -> float:
        return self.wave.shape[0] / SAMPLE_RATE


@dataclass
class SynthesisRequest:
    text: str
    voice: Voice
    options: SamplingOptions = field(default_factory=SamplingOptions)
    seed: int | None = None
    chunking: str | None = None  # "upstream" | "stream"; None = EngineConfig.chunking
    first_chunk_nfe: int | None = None  # progressive first chunk: its steps (None = off)


@dataclass
class _Chunk:
    """One sampler item: a text chunk of one request."""

    request: int
    index: int
    voice: Voice
    tokens: list[int]
    duration: int
    seed: int
    options: SamplingOptions


class TTS:
    """Public engine. Thread-safe for concurrent ``synthesize`` calls (no shared mutable state
    except the voice cache, which is locked).

    Sampling arguments left at None (``nfe_step``, ``cfg_strength``, ``sway_sampling_coef``,
    ``schedule``, ``speed``, ``cfg_skip_last``) take the engine's ``config.sampling`` values; an
    explicit value overrides them for that call."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        config: EngineConfig,
        backend: Backend,
        tokenizer: Tokenizer,
        mel_frontend: MelSpectrogram,
        max_frames: int,
    ):
        self.config = config
        self.backend = backend
        self.tokenizer = tokenizer
        self._mel = _on_cpu(mel_frontend)  # waves and reference mels are CPU/numpy, always
        # GPU backends sample a multi-chunk text's chunks as one padded batch (one launch per
        # step instead of one per chunk); on CPU that gains nothing and one by one keeps memory low
        self.batch_chunks = getattr(getattr(backend, "device", None), "type", "cpu") == "cuda"
        self.max_frames = max_frames
        self._voices: OrderedDict[str, Voice] = OrderedDict()
        self._voice_lock = threading.Lock()
        self.voice_cache_hits = 0
        self.voice_cache_misses = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls, model: str, backend: str = "torch", device: str = "auto", dtype: str = "auto", **overrides
    ) -> TTS:
        """``model`` + any EngineConfig / SamplingOptions field by name -> a loaded engine."""
        config = EngineConfig(model=str(model), backend=backend, device=device, dtype=dtype)
        return cls.from_config(config.replace(**overrides))

    @classmethod
    def from_config(cls, config: EngineConfig) -> TTS:
        """The one way an engine is built (CLI, server, Triton and bench all come here)."""
        from indicf5_fast.backends import create_backend
        from indicf5_fast.model.checkpoint import load_checkpoint

        config = config.validate()
        if not config.model:
            raise InputError("no model given: a checkpoint directory, file or hub id", "model")
        ckpt = load_checkpoint(
            config.model,
            flavour=config.flavour,
            vocab=config.vocab,
            vocoder=config.vocoder,
            revision=config.revision,
        )
        tokenizer = Tokenizer.from_file(ckpt.vocab_path)
        dit, vocos = ckpt.build()
        # the mel front end is a CPU copy made before the backend moves the vocoder (whose
        # feature extractor holds the checkpoint's window and filterbank) to its device
        mel_frontend = copy.deepcopy(vocos.feature_extractor.mel_spec).cpu()
        be = create_backend(config, ckpt, dit, vocos)
        return cls(config, be, tokenizer, mel_frontend, ckpt.dit_args.text_pos_max)

    # ------------------------------------------------------------------ front ends
    @torch.inference_mode()
    def mel(self, wave: np.ndarray | torch.Tensor) -> np.ndarray:
        """24 kHz float32 wave [ns] -> log-mel [ns // 256 + 1, 100]."""
        w = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(1, -1)
        return self._mel(w)[0].transpose(0, 1).contiguous().numpy()

    def prepare_voice(
        self,
        ref_audio,
        ref_text: str,
        sample_rate: int | None = None,
        *,
        language: str | None = None,
        normalize: bool | None = None,
    ) -> Voice:
        """Reference audio (path, bytes, array, (array, sr)) + its text -> cached Voice (the text
        normalised like the generated text: its audio says "पाँच", not "5")."""
        if not isinstance(ref_text, str) or not ref_text.strip():
            raise InputError("ref_text is empty: give the transcript of the reference audio", "ref_text")
        ref_text = self._normalize(ref_text, language, normalize)
        wave, sr = audio_io.read_reference(ref_audio, sample_rate)
        key = _voice_key(wave, sr, ref_text, self.config.max_ref_seconds)
        with self._voice_lock:
            if key in self._voices:
                self._voices.move_to_end(key)
                self.voice_cache_hits += 1
                return self._voices[key]
            self.voice_cache_misses += 1
        voice = self._build_voice(key, wave, sr, ref_text)
        with self._voice_lock:
            self._voices[key] = voice
            while len(self._voices) > max(0, self.config.voice_cache_size):
                self._voices.popitem(last=False)
        return voice

    def _build_voice(self, key: str, wave: np.ndarray, sr: int, ref_text: str) -> Voice:
        clipped = audio_io.prepare_reference_audio(wave, sr, max_seconds=self.config.max_ref_seconds)
        raised, rms = audio_io.normalize_reference_rms(clipped, TARGET_RMS)
        wave24 = np.asarray(audio_io.resample(raised, sr, SAMPLE_RATE), dtype=np.float32)
        if wave24.shape[0] < HOP_LENGTH * 2:
            raise AudioError("reference audio is too short after trimming silence (need speech, > 20 ms)")
        text = audio_io.prepare_reference_text(ref_text)
        if utf8_len(text[-1]) == 1:  # upstream infer_batch_process appends one more space
            text = text + " "
        self.tokenizer.check(ref_text, "ref_text")
        mel = torch.from_numpy(self.mel(wave24))
        return Voice(key=key, wave=wave24, mel=mel, text=text, rms=float(rms))

    # ------------------------------------------------------------------ public synthesis API
    def synthesize(
        self,
        text: str,
        ref_audio=None,
        ref_text: str | None = None,
        nfe_step: int | None = None,
        cfg_strength: float | None = None,
        sway_sampling_coef: float | None = None,
        speed: float | None = None,
        seed: int | None = None,
        *,
        schedule: str | None = None,
        voice: Voice | None = None,
        cfg_skip_last: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        language: str | None = None,
        normalize: bool | None = None,
        chunking: str | None = None,
    ) -> np.ndarray:
        """Text + reference -> float32 wave [n] at 24 kHz (sampling defaults: ``config.sampling``;
        language / normalize: ``make_request``; ``chunking``: see ``plan``)."""
        req = self.make_request(
            text,
            ref_audio,
            ref_text,
            voice=voice,
            seed=seed,
            language=language,
            normalize=normalize,
            nfe_step=nfe_step,
            cfg_strength=cfg_strength,
            sway_sampling_coef=sway_sampling_coef,
            speed=speed,
            schedule=schedule,
            cfg_skip_last=cfg_skip_last,
            chunking=chunking,
        )
        chunks = self.plan(req, 0)
        if self.batch_chunks and len(chunks) > 1:
            waves = self._run_grouped(chunks, progress)
        else:
            waves = [self._run_chunks([c])[0] for c in _with_progress(chunks, progress)]
        return self._finish(waves, req.voice)

    def _run_grouped(
        self, chunks: list[_Chunk], progress: Callable[[int, int], None] | None
    ) -> list[np.ndarray]:
        """One request's chunks in padded batches (max_batch_size), back in text order."""
        done: dict[int, np.ndarray] = {}
        for group in _batch_groups(chunks, self.config.max_batch_size):
            for c, w in zip(group, self._run_chunks(group), strict=True):
                done[c.index] = w
            if progress is not None:
                progress(len(done), len(chunks))
        return [done[c.index] for c in chunks]

    def synthesize_batch(self, requests: Sequence[SynthesisRequest | dict]) -> list[np.ndarray]:
        """Many requests at once: their chunks are sampled in padded batches (max_batch_size).
        Every result equals the request's own ``synthesize`` output (same seed)."""
        reqs = [r if isinstance(r, SynthesisRequest) else self.make_request(**r) for r in requests]
        chunks = [c for i, r in enumerate(reqs) for c in self.plan(r, i)]
        waves: dict[tuple[int, int], np.ndarray] = {}
        for group in _batch_groups(chunks, self.config.max_batch_size):
            for c, w in zip(group, self._run_chunks(group), strict=True):
                waves[(c.request, c.index)] = w
        out = []
        for i, r in enumerate(reqs):
            n = sum(1 for c in chunks if c.request == i)
            out.append(self._finish([waves[(i, k)] for k in range(n)], r.voice))
        return out

    def synthesize_stream(self, request: SynthesisRequest, *, pipeline: bool = True) -> Iterator[np.ndarray]:
        """Yield audio as each text chunk is done; the concatenation equals ``synthesize_batch``
        of the request with the same chunking. Unset, streams chunk for latency (``stream``: a
        short first chunk, see ``EngineConfig.chunking``). ``pipeline``: a worker thread samples
        the next chunk while the caller handles this one."""
        return engine_stream.stream_audio(self, self.open_stream(request), pipeline)

    def open_stream(self, request: SynthesisRequest) -> engine_stream.StreamState:
        """The chunk plan of a stream + its joiner, for callers that compute the chunks
        themselves (the server's batcher batches the ready chunks of several streams)."""
        return engine_stream.StreamState(self, request, int(CROSS_FADE_SECONDS * SAMPLE_RATE))

    def run_chunks(self, chunks: Sequence[_Chunk]) -> list[np.ndarray]:
        """Sample and vocode chunks (of any requests), batched by equal options; -> one wave per
        chunk, in order, each equal to the chunk run alone."""
        waves: dict[int, np.ndarray] = {}
        index = {id(c): i for i, c in enumerate(chunks)}
        for group in _batch_groups(list(chunks), self.config.max_batch_size):
            for c, w in zip(group, self._run_chunks(group), strict=True):
                waves[index[id(c)]] = w
        return [waves[i] for i in range(len(chunks))]

    def make_request(
        self,
        text: str,
        ref_audio=None,
        ref_text: str | None = None,
        *,
        voice: Voice | None = None,
        seed: int | None = None,
        preset: str | None = None,
        sample_rate: int | None = None,
        language: str | None = None,
        normalize: bool | None = None,
        chunking: str | None = None,
        first_chunk_nfe: int | None = None,
        **options: Any,
    ) -> SynthesisRequest:
        """Validate one request. Sampling ``options`` left out or None take the preset's values
        (``preset``) or else the engine's ``config.sampling``. ``normalize`` (default
        ``config.normalize``, on): numbers, amounts, dates and times become words (``normalize_text``)
        before the vocabulary check; ``language`` (ISO 639-1, default ``config.language``) picks e.g.
        Marathi over Hindi."""
        if voice is None:
            if ref_audio is None:
                raise InputError("give a reference voice: ref_audio + ref_text", "ref_audio")
            voice = self.prepare_voice(
                ref_audio, ref_text or "", sample_rate, language=language, normalize=normalize
            )
        opts = request_options(self.config.sampling, preset, options)
        if not isinstance(text, str):
            raise InputError("text must be a string", "text")
        text = self._normalize(text, language, normalize)
        self.tokenizer.check(text, "text")
        check_seed(seed)
        engine_stream.check_stream_options(chunking, self.config.chunking, first_chunk_nfe)
        return SynthesisRequest(text, voice, opts, seed, chunking, first_chunk_nfe)

    def _normalize(self, text: str, language: str | None, normalize: bool | None) -> str:
        """The request path's text normalisation (``sample_mel`` stays raw, as upstream)."""
        if not (self.config.normalize if normalize is None else normalize):
            return text
        return normalize_text(text, self.config.language if language is None else language)

    def plan(self, req: SynthesisRequest, request_index: int, streaming: bool = False) -> list[_Chunk]:
        """Chunk the text and size each chunk's output. The policy is the request's ``chunking``,
        else ``EngineConfig.chunking`` ("auto": ``stream`` when ``streaming``, else IndicF5's
        split, ``upstream``); no chunk's duration exceeds the model's frame maximum."""
        v, speed = req.voice, req.options.speed
        policy = engine_stream.resolve_chunking(req.chunking, self.config.chunking, streaming)
        pieces = engine_stream.plan_text(v, req.text, policy, speed, self.max_frames)
        first = engine_stream.first_chunk_options(req.options, req.first_chunk_nfe)
        seed = secrets.randbelow(2**31) if req.seed is None else req.seed
        ref_bytes = utf8_len(v.text)
        out = []
        for k, piece in enumerate(pieces):
            tokens = self.tokenizer.encode(v.text + piece)
            duration = v.frames + int(v.frames / ref_bytes * utf8_len(piece) / speed)
            # as CFM.sample: at least the reference (cond frames) / text plus one frame
            duration = max(max(len(tokens), v.mel.shape[0]) + 1, duration)
            duration = min(duration, self.max_frames)  # never binds: the budget keeps it within
            opts = first if k == 0 else req.options
            out.append(_Chunk(request_index, k, v, tokens, duration, seed + k, opts))
        return out

    # ------------------------------------------------------------------ mel-level API
    def sample_mel(
        self,
        cond_mel,
        text: str,
        duration: int,
        nfe_step: int | None = None,
        cfg_strength: float | None = None,
        sway_sampling_coef: float | None = None,
        seed: int = 0,
        schedule: str | None = None,
        cfg_skip_last: int | None = None,
    ) -> np.ndarray:
        """cond_mel [n_ref, 100] + full text (ref_text + gen_text) -> mel [duration, 100] with the
        reference frames included (upstream ``CFM.sample`` with ``seed``). Sampling defaults:
        ``config.sampling`` (``speed`` does not apply: the duration is given)."""
        cond = torch.as_tensor(np.asarray(cond_mel, dtype=np.float32))
        if cond.ndim != 2 or cond.shape[1] != N_MELS:
            raise InputError(f"cond_mel must be [n, {N_MELS}], got {tuple(cond.shape)}", "cond_mel")
        tokens = self.tokenizer.encode(text)
        duration = min(max(max(len(tokens), cond.shape[0]) + 1, int(duration)), self.max_frames)
        opts = self.config.sampling.replace(
            nfe_step=nfe_step,
            cfg_strength=cfg_strength,
            schedule=schedule,
            sway_sampling_coef=sway_sampling_coef,
            cfg_skip_last=cfg_skip_last,
        ).validate()
        mel = self._sample([cond], [tokens], [duration], [seed], opts)
        return mel[0, :duration].cpu().numpy()

    @torch.inference_mode()
    def vocode(self, mel) -> np.ndarray:
        """mel [n, 100] -> float32 wave [(n - 1) * 256] (Vocos decode)."""
        m = torch.as_tensor(np.asarray(mel, dtype=np.float32))
        if m.ndim != 2 or m.shape[1] != N_MELS:
            raise InputError(f"mel must be [n, {N_MELS}], got {tuple(m.shape)}", "mel")
        return self.backend.vocode(m.t().unsqueeze(0))[0].cpu().numpy()

    # ------------------------------------------------------------------ internals
    def _run_chunks(self, chunks: list[_Chunk]) -> list[np.ndarray]:
        """Sample a group of chunks with equal options in one padded batch, then vocode each."""
        opts = chunks[0].options
        mel = self._sample(
            [c.voice.mel for c in chunks],
            [c.tokens for c in chunks],
            [c.duration for c in chunks],
            [c.seed for c in chunks],
            opts,
        )
        waves = []
        for i, c in enumerate(chunks):
            gen = mel[i, c.voice.frames : c.duration]  # [n_gen, 100]: drop the reference frames
            # the mel stays on the backend's device between the sampler and the vocoder
            with torch.inference_mode():
                waves.append(self.backend.vocode(gen.t().unsqueeze(0))[0].cpu().numpy())
        return waves

    @torch.inference_mode()
    def _sample(
        self,
        conds: list[torch.Tensor],
        tokens: list[list[int]],
        durations: list[int],
        seeds: list[int],
        opts: SamplingOptions,
    ) -> torch.Tensor:
        b, n_max = len(durations), max(durations)
        # compiled backends: pad frames to a bucket multiple (masked) so graphs are reused
        bucket = max(1, int(self.backend.frame_bucket))
        n = -(-n_max // bucket) * bucket
        cond = torch.zeros(b, n, N_MELS)
        cond_mask = torch.zeros(b, n, dtype=torch.bool)
        for i, c in enumerate(conds):
            m = min(c.shape[0], durations[i])
            cond[i, :m] = c[:m]
            cond_mask[i, :m] = True
        text_emb, null_emb = self._text_embeddings(tokens, durations, n, opts.cfg_strength >= 1e-5)
        noise = torch.nn.functional.pad(sampling.initial_noise(durations, seeds), (0, 0, 0, n - n_max))
        grid = sampling.time_grid(opts.nfe_step, opts.schedule, opts.sway_sampling_coef)
        mask = sampling.lengths_to_mask(durations, n) if (b > 1 or bucket > 1) else None
        # Noise is drawn on the CPU (upstream's numbers for a seed), then everything the sampler
        # touches moves to the backend's device once, so no step copies to or from the host.
        dev = self.backend.device
        noise, cond, cond_mask, text_emb, grid = (t.to(dev) for t in (noise, cond, cond_mask, text_emb, grid))
        null_emb = None if null_emb is None else null_emb.to(dev)
        mask = None if mask is None else mask.to(dev)
        out = sampling.sample(
            self.backend.velocity,
            noise,
            cond,
            cond_mask,
            text_emb,
            null_emb,
            grid,
            cfg_strength=opts.cfg_strength,
            mask=mask,
            cfg_skip_last=opts.cfg_skip_last,
        )
        return out[:, :n_max]  # [b, n_max, 100] on the backend's device

    def _text_embeddings(self, tokens: list[list[int]], durations: list[int], n: int, with_null: bool):
        """Once per request: each item's embedding at its own length, zero-padded to n frames
        (so a batched item sees exactly what it would see alone)."""
        conds, nulls = [], []
        for ids, dur in zip(tokens, durations, strict=True):
            shifted = torch.tensor(
                [i + 1 for i in ids[:dur]] + [0] * max(0, dur - len(ids)), dtype=torch.long
            )
            both = torch.stack([shifted, shifted]) if with_null else shifted[None]
            drop = torch.tensor([False, True][: both.shape[0]])
            emb = self.backend.text_embed(both, drop)  # [1 or 2, dur, dt]
            conds.append(emb[0])
            nulls.append(emb[1] if with_null else None)
        return _pad_stack(conds, n), (_pad_stack(nulls, n) if with_null else None)

    def _scale_back(self, wave: np.ndarray, voice: Voice) -> np.ndarray:
        return wave * (voice.rms / TARGET_RMS) if voice.rms < TARGET_RMS else wave

    def _finish(self, waves: list[np.ndarray], voice: Voice) -> np.ndarray:
        joined = audio_io.cross_fade_join(
            [self._scale_back(w, voice) for w in waves], SAMPLE_RATE, CROSS_FADE_SECONDS
        )
        if self.config.remove_silence:  # IndicF5's int16 output chain, returned as float32
            joined = audio_io.postprocess_indicf5(joined, SAMPLE_RATE).astype(np.float32) / 32768.0
        return np.asarray(joined, dtype=np.float32)


def _on_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in eval mode on the CPU; a CPU copy when its tensors live elsewhere (the
    caller's module is never moved)."""
    on_cpu = all(t.device.type == "cpu" for t in list(module.parameters()) + list(module.buffers()))
    return (module if on_cpu else copy.deepcopy(module).cpu()).eval()


def _pad_stack(items: list[torch.Tensor], n: int) -> torch.Tensor:
    out = items[0].new_zeros(len(items), n, items[0].shape[-1])
    for i, t in enumerate(items):
        out[i, : t.shape[0]] = t
    return out


def _batch_groups(chunks: list[_Chunk], max_batch: int) -> Iterator[list[_Chunk]]:
    """Group chunks with identical sampling options, longest first, into batches."""
    by_opts: dict[tuple, list[_Chunk]] = {}
    for c in chunks:
        by_opts.setdefault(c.options.key(), []).append(c)
    for group in by_opts.values():
        group.sort(key=lambda c: -c.duration)
        for i in range(0, len(group), max(1, max_batch)):
            yield group[i : i + max_batch]


def _with_progress(items: list, progress: Callable[[int, int], None] | None) -> Iterator:
    for i, item in enumerate(items):
        yield item
        if progress is not None:
            progress(i + 1, len(items))


def _voice_key(wave: np.ndarray, sr: int, text: str, max_seconds: float) -> str:
    h = hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
    h.update(f"|{sr}|{max_seconds}|".encode())
    h.update(text.encode("utf-8"))
    return h.hexdigest()
