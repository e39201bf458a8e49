"""One timed end-to-end synthesis, ours or upstream's, with per-stage times and peak memory.

Our engine runs unmodified: its backend is wrapped in ``StageTimer``, a Backend that times the
three calls every backend makes (text embedding, DiT velocity, vocoder), records the shape of
every DiT pass (for the FLOP count) and keeps the mel handed to the vocoder (for the fidelity
columns). Front end = ``prepare_voice`` on a cold voice cache (read, clip, resample, mel).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from indicf5_fast.backends.base import Backend
from indicf5_fast.config import SAMPLE_RATE


class StageTimer(Backend):
    """Transparent timing proxy around a backend: the whole Backend contract is the inner one's."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name, self.device, self.dtype = inner.name, inner.device, inner.dtype
        self.reset()

    @property
    def frame_bucket(self) -> int:  # a property: enable_compile may change the inner one later
        return self.inner.frame_bucket

    def __getattr__(self, item):  # only called for attributes not found on the proxy
        return getattr(self.__dict__["inner"], item)

    def reset(self) -> None:
        self.times = {"text_embed": 0.0, "dit": 0.0, "vocoder": 0.0}
        self.passes: list[tuple[int, int]] = []
        self.mels: list[torch.Tensor] = []

    def _timed(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        if isinstance(self.device, torch.device) and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times[stage] += time.perf_counter() - t0
        return out

    def text_embed(self, tokens, drop):
        return self._timed("text_embed", self.inner.text_embed, tokens, drop)

    def velocity(self, x, cond, text_emb, t, mask):
        self.passes.append((int(x.shape[0]), int(x.shape[1])))
        return self._timed("dit", self.inner.velocity, x, cond, text_emb, t, mask)

    def vocode(self, mel):
        self.mels.append(mel.detach().float().cpu())
        return self._timed("vocoder", self.inner.vocode, mel)

    def warmup(self, frame_lengths, batch_sizes=(1,), cfg_free=False):
        return self.inner.warmup(frame_lengths, batch_sizes, cfg_free)

    def describe(self) -> dict:
        return self.inner.describe()


class PeakMemory:
    """Peak memory of one run and its rise above the start (the run's working memory; the
    rest is the loaded models). CUDA: max allocated. CPU: the process's peak RSS (VmHWM, reset
    through /proc/self/clear_refs; where that is not allowed it is the all-time peak)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb = self.delta_mb = float("nan")

    @staticmethod
    def _status_mb(key: str) -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        if key == "VmHWM":
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self.start = self._status_mb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = self._status_mb("VmHWM")
        self.delta_mb = self.mb - self.start


@dataclass
class RunResult:
    e2e_s: float
    stages: dict[str, float]  # seconds: frontend, text_embed, dit, vocoder, other
    audio_s: float
    peak_mem_mb: float
    peak_delta_mb: float  # peak minus the memory in use when the run started
    passes: list[tuple[int, int]]  # (batch, frames) of every DiT pass
    mel: np.ndarray = field(repr=False)  # [n_gen, 100] generated frames, for fidelity

    @property
    def rtf(self) -> float:
        return self.e2e_s / max(self.audio_s, 1e-9)


def run_ours(tts, ref_audio: str | Path, ref_text: str, text: str, seed: int, **options) -> RunResult:
    """Front end (cold voice cache) + ``synthesize`` with the backend wrapped in a StageTimer."""
    inner = tts.backend
    timer = StageTimer(inner)
    tts.backend = timer
    try:
        with PeakMemory(inner.device) as mem:
            t0 = time.perf_counter()
            with tts._voice_lock:  # cold cache: the front end is part of the measured work
                tts._voices.clear()
            voice = tts.prepare_voice(str(ref_audio), ref_text)
            t1 = time.perf_counter()
            wave = tts.synthesize(text, voice=voice, seed=seed, **options)
            t2 = time.perf_counter()
    finally:
        tts.backend = inner
    stages = {"frontend": t1 - t0, **timer.times}
    stages["other"] = max(0.0, (t2 - t1) - sum(timer.times.values()))
    mel = torch.cat([m[0].t() for m in timer.mels]).numpy() if timer.mels else np.zeros((0, 100))
    return RunResult(t2 - t0, stages, len(wave) / SAMPLE_RATE, mem.mb, mem.delta_mb, timer.passes, mel)


def run_upstream(
    pipeline, tts, ref_audio: str | Path, ref_text: str, text: str, seed: int, **options
) -> RunResult:
    """Upstream baseline on our preprocessed reference (see ``bench.upstream``)."""
    with PeakMemory(pipeline.device) as mem:
        t0 = time.perf_counter()
        with tts._voice_lock:
            tts._voices.clear()
        voice = tts.prepare_voice(str(ref_audio), ref_text)
        t1 = time.perf_counter()
        out = pipeline.synthesize(
            torch.from_numpy(voice.wave), voice.text, text, tts.mel, seed=seed, **options
        )
        t2 = time.perf_counter()
    stages = {**out.stages, "frontend": (t1 - t0) + out.stages["frontend"]}
    stages["other"] = max(0.0, (t2 - t0) - sum(stages.values()))
    return RunResult(
        t2 - t0, stages, out.wave.shape[-1] / SAMPLE_RATE, mem.mb, mem.delta_mb, out.passes, out.mel.numpy()
    )


def ttfa_ours(tts, voice, text: str, seed: int, **options) -> tuple[float, float]:
    """Seconds from the request to the first streamed audio chunk (voice already prepared), and
    the seconds of audio the whole stream gave."""
    req = tts.make_request(text, voice=voice, seed=seed, **options)
    t0 = time.perf_counter()
    chunks = tts.synthesize_stream(req)
    first = next(chunks)  # numpy: the GPU work behind it is done
    ttfa = time.perf_counter() - t0
    samples = first.shape[0] + sum(c.shape[0] for c in chunks)
    return ttfa, samples / 24_000


def mel_fidelity(mel: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Cosine similarity (flattened) and max abs difference of two generated mels."""
    n = min(mel.shape[0], ref.shape[0])
    a, b = mel[:n].astype(np.float64).ravel(), ref[:n].astype(np.float64).ravel()
    cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    return {"mel_cosine": cos, "mel_max_abs_diff": float(np.abs(a - b).max()) if n else float("nan")}
