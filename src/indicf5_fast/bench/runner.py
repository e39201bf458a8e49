"""The offline benchmark: configurations x output lengths, interleaved, medians of N.

Every configuration (backend x dtype x compile x NFE x schedule) and the upstream f5-tts eager
fp32 baseline run in one process on the same weights, reference, text and seed. Each round runs
every (configuration, length) once, in alternating order, so slow drift and noisy neighbours
hit all of them alike; the matmul peak is re-measured every round. Warm-up (one short run per
engine and length; it includes torch.compile) is timed and reported apart.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from indicf5_fast.bench.flops import dit_forward_flops, matmul_gflops
from indicf5_fast.bench.measure import RunResult, mel_fidelity, run_ours, run_upstream, ttfa_ours
from indicf5_fast.config import HOP_LENGTH, SAMPLE_RATE, EngineConfig

DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# Hindi sentences for the generated text; words are taken in order until the planned output
# reaches the requested length.
PASSAGE = (
    "भारत एक विशाल देश है जहाँ अनेक भाषाएँ बोली जाती हैं। हर राज्य की अपनी संस्कृति, अपना खान-पान "
    "और अपने त्योहार हैं। गाँवों में सुबह जल्दी शुरू होती है और शहरों में रात देर तक रौनक रहती है। "
    "बच्चे स्कूल जाते हैं, किसान खेतों में काम करते हैं और बाज़ारों में दिन भर चहल-पहल रहती है। "
    "नदियाँ, पहाड़ और समुद्र तट इस देश की सुंदरता को और भी बढ़ाते हैं।"
)


@dataclass(frozen=True)
class Config:
    backend: str  # torch | onnx | onnx-int8 | openvino | upstream
    dtype: str
    compile: bool = False
    nfe: int = 32
    schedule: str = "uniform"
    repeats: int | None = None  # fewer timed runs than the plan's (e.g. a fidelity reference)

    @property
    def engine_key(self) -> tuple[str, str, bool]:
        return (self.backend, self.dtype, self.compile)

    @property
    def label(self) -> str:
        who = "upstream f5-tts" if self.backend == "upstream" else self.backend
        mode = ("compile " if self.compile else "eager ") if self.backend in ("torch", "upstream") else ""
        return f"{who} {DTYPE_SHORT.get(self.dtype, self.dtype)} {mode}nfe{self.nfe} {self.schedule}"


@dataclass
class Plan:
    model_dir: Path
    configs: list[Config]
    seconds: list[float]  # target lengths of generated speech
    repeats: int = 3
    seed: int = 0
    # every engine of ours = this config with the configuration's backend, dtype and compile
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(device="cpu", frame_bucket=16))
    ttfa_text: str | None = None  # time to first audio of this sentence per configuration
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.engine.device


def text_for_seconds(tts, voice, seconds: float) -> str:
    """Words of PASSAGE, in order, until the planned generated audio reaches ``seconds``."""
    words, target = PASSAGE.split(), seconds * SAMPLE_RATE / HOP_LENGTH
    ref_bytes = len(voice.text.encode("utf-8"))
    out: list[str] = []
    for w in words * 8:
        out.append(w)
        text = " ".join(out)
        if int(voice.frames / ref_bytes * len(text.encode("utf-8"))) >= target:
            return text
    return " ".join(out)


def as_engine_sees_it(text: str, voice) -> str:
    """The generated text exactly as the engine's chunker hands it to the model (it may drop
    a space after a danda), so the upstream baseline gets the same tokens and duration. The
    bench texts are one chunk."""
    from indicf5_fast.frontend.text import chunk_text, max_chunk_bytes

    pieces = chunk_text(text.strip(), max_chunk_bytes(voice.text.rstrip() + " ", voice.seconds))
    if len(pieces) != 1:
        raise ValueError(f"bench text is {len(pieces)} chunks; use a shorter length")
    return pieces[0]


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class Engines:
    """One loaded engine per (backend, dtype, compile); an 'unavailable' reason where it fails."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.engines: dict[tuple, object] = {}
        self.unavailable: dict[tuple, str] = {}
        self._onnx_dirs: dict[str | None, Path] = {}  # quantize -> export directory

    def get(self, key: tuple[str, str, bool]):
        if key in self.engines or key in self.unavailable:
            return self.engines.get(key)
        try:
            self.engines[key] = self._load(*key)
        except Exception as e:  # a missing optional backend must not stop the benchmark
            self.unavailable[key] = f"{type(e).__name__}: {e}"
        return self.engines.get(key)

    def _load(self, backend: str, dtype: str, compile_: bool):
        from indicf5_fast.engine import TTS
        from indicf5_fast.model.checkpoint import load_checkpoint

        p = self.plan
        if backend == "upstream":
            from indicf5_fast.bench.upstream import UpstreamPipeline, upstream_unavailable_reason

            reason = upstream_unavailable_reason()
            if reason:
                raise RuntimeError(reason)
            return UpstreamPipeline(
                load_checkpoint(p.model_dir), device=p.device, dtype=getattr(torch, dtype)
            )
        base = p.engine.replace(model=str(p.model_dir), dtype=dtype)
        if backend == "torch":
            return TTS.from_config(base.replace(backend="torch", compile=compile_))
        # onnx-int8: the ONNX Runtime backend on the dynamically quantized export (fp32 activations)
        quantize = "int8" if backend == "onnx-int8" else None
        if quantize not in self._onnx_dirs:
            from indicf5_fast.export.onnx import ensure_onnx_export

            self._onnx_dirs[quantize] = Path(ensure_onnx_export(p.model_dir, out_dir=None, quantize=quantize))
        runtime = "onnx" if backend == "onnx-int8" else backend
        return TTS.from_config(base.replace(backend=runtime, onnx_dir=str(self._onnx_dirs[quantize])))


def rss_mb() -> float:
    """Resident memory of this process now (MB); NaN where /proc is not available."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _disturbed(shares: list[float]) -> int:
    return sum(x < 0.8 * max(shares) for x in shares) if shares else 0


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def run_plan(plan: Plan, progress: Callable[[str], None] | None = None) -> dict:
    """Run the whole plan; returns the results dict that report.py writes out."""
    say = progress or (lambda msg: None)
    device = torch.device(
        plan.device if plan.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    engines = Engines(plan)
    t_load = time.perf_counter()
    ours_keys = [c.engine_key for c in plan.configs if c.backend != "upstream"]
    keys = list(dict.fromkeys(ours_keys + [c.engine_key for c in plan.configs if c.backend == "upstream"]))
    engine_mb: dict[tuple, float] = {}  # process memory growth while loading + warming up
    for key in keys:
        say(f"loading {key[0]} {key[1]}{' compile' if key[2] else ''}")
        before = rss_mb()
        engines.get(key)
        engine_mb[key] = rss_mb() - before
    front = next((engines.engines[k] for k in ours_keys if k in engines.engines), None)
    if front is None:  # nothing of ours loaded: the front end needs one fp32 eager engine
        front = engines.get(("torch", "float32", False))
    load_s = time.perf_counter() - t_load
    ref_audio = plan.model_dir / "prompts" / "demo.wav"
    ref_text = (plan.model_dir / "prompts" / "demo.txt").read_text(encoding="utf-8").strip()
    voice = front.prepare_voice(str(ref_audio), ref_text)
    texts = {s: text_for_seconds(front, voice, s) for s in plan.seconds}

    def run(cfg: Config, seconds: float, nfe: int | None = None) -> RunResult:
        eng = engines.engines[cfg.engine_key]
        opts = {"nfe_step": nfe or cfg.nfe, "schedule": cfg.schedule}
        if cfg.backend == "upstream":
            gen = as_engine_sees_it(texts[seconds], voice)
            return run_upstream(eng, front, ref_audio, ref_text, gen, plan.seed, **opts)
        return run_ours(eng, ref_audio, ref_text, texts[seconds], plan.seed, **opts)

    live = [c for c in plan.configs if c.engine_key in engines.engines]
    warmups: dict[tuple, float] = {}
    for key in dict.fromkeys(c.engine_key for c in live):
        cfg = next(c for c in live if c.engine_key == key)
        for s in plan.seconds:  # short run on the real shapes: primitive caches, compile
            say(f"warm-up {cfg.label} {s:g}s")
            t0, before = time.perf_counter(), rss_mb()
            run(cfg, s, nfe=2)
            warmups[(key, s)] = time.perf_counter() - t0
            engine_mb[key] += rss_mb() - before

    peaks: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    if device.type == "cuda":
        peaks["float16"] = []
    results: dict[tuple[Config, float], list[RunResult]] = {(c, s): [] for c in live for s in plan.seconds}
    # CPU time this process got / (wall time x threads): other work on the machine lowers it
    shares: dict[tuple[Config, float], list[float]] = {k: [] for k in results}
    order = list(results)
    for rep in range(plan.repeats):
        for dt in peaks:
            peaks[dt].append(matmul_gflops(getattr(torch, dt), device))
        for cfg, s in order if rep % 2 == 0 else order[::-1]:
            if rep >= (cfg.repeats or plan.repeats):
                continue
            say(f"run {rep + 1}/{plan.repeats}: {cfg.label} {s:g}s")
            cpu0, wall0 = time.process_time(), time.perf_counter()
            results[(cfg, s)].append(run(cfg, s))
            wall = (time.perf_counter() - wall0) * torch.get_num_threads()
            shares[(cfg, s)].append((time.process_time() - cpu0) / max(wall, 1e-9))

    # fidelity reference: ours torch fp32 eager, same NFE/schedule/length/seed (else upstream fp32)
    def reference(cfg: Config, s: float) -> tuple[str, RunResult] | None:
        for backend in ("torch", "upstream"):
            for (c, s2), runs in results.items():
                same = (c.backend, c.dtype, c.compile, c.nfe, c.schedule, s2)
                if runs and same == (backend, "float32", False, cfg.nfe, cfg.schedule, s):
                    return c.label, runs[0]
        return None

    peak = {dt: _median(v) for dt, v in peaks.items()}
    dit_args = _dit_args(front, plan.model_dir)
    rows = []
    for (cfg, s), runs in results.items():
        if not runs:
            continue
        e2e = _median([r.e2e_s for r in runs])
        stages = {k: _median([r.stages[k] for r in runs]) for k in runs[0].stages}
        flops = sum(dit_forward_flops(dit_args, n, b) for b, n in runs[0].passes)
        dit_gflops = flops / stages["dit"] / 1e9 if stages["dit"] > 0 else float("nan")
        row = {
            "label": cfg.label,
            **asdict(cfg),
            "target_seconds": s,
            "audio_seconds": runs[0].audio_s,
            "text": texts[s],
            "runs": len(runs),
            "e2e_s": e2e,
            "e2e_all_s": [r.e2e_s for r in runs],
            "rtf": e2e / runs[0].audio_s,
            "stages_s": stages,
            "warmup_s": warmups.get((cfg.engine_key, s)),
            "peak_mem_mb": max(r.peak_mem_mb for r in runs),
            "peak_delta_mb": max(r.peak_delta_mb for r in runs),
            "engine_mb": engine_mb.get(cfg.engine_key),
            "cpu_share": [round(x, 3) for x in shares[(cfg, s)]],
            # CPU share < 80 % of this configuration's best run: other work took the cores
            "disturbed_runs": _disturbed(shares[(cfg, s)]) if device.type == "cpu" else 0,
            "dit_passes": len(runs[0].passes),
            "dit_gflop": flops / 1e9,
            "dit_gflops_per_s": dit_gflops,
            # the peak is torch's GEMM: ONNX Runtime's and OpenVINO's own GEMMs (and int8) are
            # other kernels (their fp32 beats torch's on some CPUs), so no percentage for them
            "dit_pct_of_peak": 100 * dit_gflops / peak[cfg.dtype]
            if cfg.dtype in peak and cfg.backend in ("torch", "upstream")
            else None,
        }
        ref = reference(cfg, s)
        if ref is not None:
            row["fidelity_ref"] = ref[0]
            row.update(mel_fidelity(runs[0].mel, ref[1].mel))
        rows.append(row)
    _add_speedups(rows)
    ttfa = _ttfa_rows(plan, engines, live, front, voice, ref_audio, ref_text, say) if plan.ttfa_text else []
    unavailable = [
        {"label": c.label, **asdict(c), "reason": engines.unavailable[c.engine_key]}
        for c in plan.configs
        if c.engine_key in engines.unavailable
    ]
    return {
        "machine": machine_info(device),
        "model": str(plan.model_dir),
        "dit_args": dit_args.to_dict(),
        "seed": plan.seed,
        "repeats": plan.repeats,
        "frame_bucket": plan.engine.frame_bucket,
        "load_s": load_s,
        "reference_seconds": voice.seconds,
        "matmul_peak_gflops": peak,
        "matmul_peak_samples": peaks,
        "rows": rows,
        "ttfa": ttfa,
        "unavailable": unavailable,
        **plan.extra,
    }


def _ttfa_rows(
    plan: Plan, engines: Engines, live: list[Config], front, voice, ref_audio, ref_text, say
) -> list:
    """Time to first audio of one sentence (a prepared voice, as a server has it): ours through
    ``synthesize_stream`` (the first chunk), upstream's whole synthesis (it does not stream).
    Median of ``plan.repeats`` after one untimed run."""
    out = []
    for cfg in live:
        eng = engines.engines[cfg.engine_key]
        opts = {"nfe_step": cfg.nfe, "schedule": cfg.schedule}
        say(f"ttfa {cfg.label}")
        times, audio = [], float("nan")
        for rep in range(plan.repeats + 1):
            if cfg.backend == "upstream":
                gen = as_engine_sees_it(plan.ttfa_text, voice)
                r = run_upstream(eng, front, ref_audio, ref_text, gen, plan.seed, **opts)
                first, audio = r.e2e_s - r.stages["frontend"], r.audio_s
            else:
                first, audio = ttfa_ours(eng, voice, plan.ttfa_text, plan.seed, **opts)
            if rep:  # the first run is a warm-up for this sentence's shapes
                times.append(first)
        out.append(
            {
                "label": cfg.label,
                **asdict(cfg),
                "text": plan.ttfa_text,
                "audio_seconds": audio,
                "ttfa_s": _median(times),
                "ttfa_all_s": times,
                "streamed": cfg.backend != "upstream",
            }
        )
    return out


def _add_speedups(rows: list[dict]) -> None:
    """speedup = upstream e2e / ours, same length. 'vs_default' divides by upstream at IndicF5's
    own setting (NFE 32, uniform); 'same_nfe' by upstream at the row's own NFE and schedule."""
    up = {
        (r["nfe"], r["schedule"], r["target_seconds"]): r["e2e_s"] for r in rows if r["backend"] == "upstream"
    }
    for r in rows:
        s = r["target_seconds"]
        base = up.get((32, "uniform", s))
        same = up.get((r["nfe"], r["schedule"], s))
        r["speedup_vs_upstream_default"] = base / r["e2e_s"] if base else None
        r["speedup_vs_upstream_same_nfe"] = same / r["e2e_s"] if same else None


def _dit_args(tts, model_dir: Path):
    args = getattr(getattr(tts.backend, "dit", None), "args", None)
    if args is None:
        from indicf5_fast.model.checkpoint import load_checkpoint

        args = load_checkpoint(model_dir).dit_args
    return args
