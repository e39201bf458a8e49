"""`indicf5-fast bench --stream`: time to first audio, total time and playback stalls of
streamed synthesis, chunking policy off (IndicF5's split) vs on (latency-aware), same run.

For each text kind (short = the paragraph's first sentence alone, long = one long sentence,
paragraph = three sentences) and each policy, ``synthesize_stream`` runs with the same seed; the
runs are interleaved round by round (alternating order), medians reported. "Stall seconds" is
the playback gap a listener would hear if each piece were played the moment it arrived: playback
starts with the first piece, and every later piece that arrives after the audio before it has
run out adds the wait. The progressive first chunk's fidelity is the mel cosine of the first
chunk sampled with its few steps vs the same chunk at the request's steps (same seed).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 24_000
# Hindi: the short text is the paragraph's first sentence, so the TTFA target compares like for like
FIRST_SENTENCE = "मानसून के आते ही गाँव की तस्वीर बदल जाती है।"
PARAGRAPH = (
    f"{FIRST_SENTENCE} खेतों में हरियाली छा जाती है, तालाब पानी से भर जाते हैं और बच्चे बारिश में "
    "खेलते हैं। शाम होते ही मेंढकों की आवाज़ें पूरे गाँव में गूँजने लगती हैं।"
)
LONG = (
    "अगर आप कल सुबह जल्दी निकलेंगे तो दोपहर से पहले पहाड़ों तक पहुँच जाएंगे, और रास्ते में भीड़ भी "
    "कम मिलेगी क्योंकि छुट्टी का दिन नहीं है।"
)
TEXTS = {"short": FIRST_SENTENCE, "long": LONG, "paragraph": PARAGRAPH}
# policy label -> request options
POLICIES: dict[str, dict] = {"off": {"chunking": "upstream"}, "on": {"chunking": "stream"}}


@dataclass
class StreamPlan:
    model_dir: Path
    kinds: list[str]
    dtype: str = "auto"
    device: str = "cpu"
    compile: bool = False
    nfe_step: int = 7
    schedule: str = "epss"
    first_chunk_nfe: int | None = 5  # the progressive row; None = no such row
    repeats: int = 2
    seed: int = 0
    threads: int | None = None
    extra: dict = field(default_factory=dict)


def stall_seconds(arrivals: list[float], samples: list[int], sr: int = SAMPLE_RATE) -> float:
    """Playback gaps if each piece were played on arrival (playback starts with the first)."""
    stall, audio_end = 0.0, None
    for t, n in zip(arrivals, samples, strict=True):
        if audio_end is not None and t > audio_end:
            stall += t - audio_end
            audio_end = t
        audio_end = (t if audio_end is None else audio_end) + n / sr
    return stall


def measure(tts, request) -> dict:
    """One streamed synthesis: arrival time and size of every piece, CPU time."""
    arrivals, samples = [], []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for piece in tts.synthesize_stream(request):
        arrivals.append(time.perf_counter() - t0)
        samples.append(int(piece.shape[0]))
    return {
        "ttfa_s": arrivals[0],
        "total_s": arrivals[-1],
        # CPU seconds of this process (all threads): the compute, even when other jobs take cores
        "cpu_s": time.process_time() - cpu0,
        "audio_s": sum(samples) / SAMPLE_RATE,
        "pieces": len(samples),
        "stall_s": stall_seconds(arrivals, samples),
    }


def planned_dit_gflop(tts, request, args) -> float:
    """DiT compute of a streamed request from its plan: every chunk's sampler passes (CFG =
    batch 2 except the skipped last steps) at its frame count. Independent of machine load."""
    from indicf5_fast.bench.flops import dit_forward_flops

    total = 0.0
    for c in tts.plan(request, 0, streaming=True):
        o = c.options
        cfg_passes = o.nfe_step - o.cfg_skip_last if o.cfg_strength >= 1e-5 else 0
        total += cfg_passes * dit_forward_flops(args, c.duration, 2)
        total += (o.nfe_step - cfg_passes) * dit_forward_flops(args, c.duration, 1)
    return total / 1e9


def first_chunk_fidelity(tts, voice, text: str, seed: int, options: dict, first_nfe: int) -> dict:
    """Mel cosine of the stream policy's first chunk at ``first_nfe`` (EPSS) steps vs the same
    chunk at the request's steps, same seed and duration (generated frames only)."""
    from indicf5_fast.bench.measure import mel_fidelity
    from indicf5_fast.engine_stream import PROGRESSIVE_SCHEDULE, plan_text

    req = tts.make_request(text, voice=voice, seed=seed, chunking="stream", **options)
    chunk = tts.plan(req, 0, streaming=True)[0]
    piece = plan_text(voice, text, "stream", req.options.speed, tts.max_frames)[0]
    common = {"seed": chunk.seed, "cfg_strength": req.options.cfg_strength}
    common["sway_sampling_coef"] = req.options.sway_sampling_coef
    cond, full_text = voice.mel.numpy(), voice.text + piece
    full = tts.sample_mel(
        cond,
        full_text,
        chunk.duration,
        nfe_step=req.options.nfe_step,
        schedule=req.options.schedule,
        **common,
    )
    fast = tts.sample_mel(
        cond, full_text, chunk.duration, nfe_step=first_nfe, schedule=PROGRESSIVE_SCHEDULE, **common
    )
    out = mel_fidelity(fast[voice.frames :], full[voice.frames :])
    out["first_chunk_seconds"] = (chunk.duration - voice.frames) * 256 / SAMPLE_RATE
    return out


def run_stream_plan(plan: StreamPlan, progress: Callable[[str], None] | None = None) -> dict:
    import torch

    import indicf5_fast
    from indicf5_fast.bench.runner import _dit_args, machine_info

    say = progress or (lambda msg: None)
    say("loading")
    t0 = time.perf_counter()
    tts = indicf5_fast.load(
        str(plan.model_dir),
        backend="torch",
        device=plan.device,
        dtype=plan.dtype,
        compile=plan.compile,
        threads=plan.threads,
    )
    load_s = time.perf_counter() - t0
    prompts = plan.model_dir / "prompts"
    voice = tts.prepare_voice(
        str(prompts / "demo.wav"), (prompts / "demo.txt").read_text(encoding="utf-8").strip()
    )
    options = {"nfe_step": plan.nfe_step, "schedule": plan.schedule}
    policies = dict(POLICIES)
    if plan.first_chunk_nfe is not None:
        policies["on+progressive"] = {"chunking": "stream", "first_chunk_nfe": plan.first_chunk_nfe}

    def request(kind: str, policy: str, nfe: int | None = None):
        opts = {**options, **policies[policy]} | ({"nfe_step": nfe} if nfe else {})
        return tts.make_request(TEXTS[kind], voice=voice, seed=plan.seed, **opts)

    cells = [(k, p) for k in plan.kinds for p in policies]
    chunk_counts = {(k, p): len(tts.plan(request(k, p), 0, streaming=True)) for k, p in cells}
    dit_args = _dit_args(tts, plan.model_dir)
    dit_gflops = {c: planned_dit_gflop(tts, request(*c), dit_args) for c in cells}
    t_warm = time.perf_counter()
    for k, p in cells:  # every chunk shape once (primitive caches, compile), 2 steps
        say(f"warm-up {k} {p}")
        for _ in tts.synthesize_stream(request(k, p, nfe=2)):
            pass
    warmup_s = time.perf_counter() - t_warm
    runs: dict[tuple[str, str], list[dict]] = {c: [] for c in cells}
    for rep in range(plan.repeats):
        for k, p in cells if rep % 2 == 0 else cells[::-1]:
            say(f"run {rep + 1}/{plan.repeats}: {k} {p}")
            runs[(k, p)].append(measure(tts, request(k, p)))
    rows = []
    for (k, p), rs in runs.items():
        med = {
            m: float(statistics.median(r[m] for r in rs)) for m in ("ttfa_s", "total_s", "stall_s", "cpu_s")
        }
        rows.append(
            {
                "kind": k,
                "policy": p,
                "text": TEXTS[k],
                "chunks": chunk_counts[(k, p)],
                "dit_gflop": dit_gflops[(k, p)],
                "audio_s": rs[0]["audio_s"],
                **med,
                "ttfa_all_s": [r["ttfa_s"] for r in rs],
                "total_all_s": [r["total_s"] for r in rs],
            }
        )
    fidelity = None
    if plan.first_chunk_nfe is not None and "paragraph" in plan.kinds:
        say("fidelity of the progressive first chunk")
        fidelity = first_chunk_fidelity(tts, voice, PARAGRAPH, plan.seed, options, plan.first_chunk_nfe)
    device = torch.device(
        plan.device if plan.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    return {
        "mode": "stream",
        "machine": machine_info(device),
        "engine": tts.backend.describe(),
        "model": str(plan.model_dir),
        "reference_seconds": voice.seconds,
        "nfe_step": plan.nfe_step,
        "schedule": plan.schedule,
        "first_chunk_nfe": plan.first_chunk_nfe,
        "repeats": plan.repeats,
        "seed": plan.seed,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "rows": rows,
        "ratios": ratios(rows),
        "progressive_fidelity": fidelity,
        **plan.extra,
    }


def ratios(rows: list[dict]) -> dict[str, float]:
    """The issue's targets, where the rows allow them."""
    by = {(r["kind"], r["policy"]): r for r in rows}
    out: dict[str, float] = {}
    short = by.get(("short", "off"))
    for kind in ("paragraph", "long"):
        for policy in POLICIES if short else ():
            if (kind, policy) in by:
                out[f"{kind}_ttfa_{policy}_vs_short"] = by[(kind, policy)]["ttfa_s"] / short["ttfa_s"]
        if (kind, "on") in by and (kind, "off") in by:
            on, off = by[(kind, "on")], by[(kind, "off")]
            out[f"{kind}_total_on_vs_off"] = on["total_s"] / off["total_s"]
            out[f"{kind}_cpu_on_vs_off"] = on["cpu_s"] / off["cpu_s"]
            out[f"{kind}_dit_gflop_on_vs_off"] = on["dit_gflop"] / off["dit_gflop"]
            out[f"{kind}_ttfa_off_vs_on"] = by[(kind, "off")]["ttfa_s"] / by[(kind, "on")]["ttfa_s"]
    return out


def markdown(results: dict) -> str:
    m = results["machine"]
    e = results["engine"]
    lines = [
        f"**Machine:** {m['cpu']} ({m['cpu_count']} cores); device `{m['device']}`; engine "
        f"{e.get('backend', '')} {e.get('dtype', '')}; NFE {results['nfe_step']} {results['schedule']}; "
        f"reference {results['reference_seconds']:.2f} s; medians of {results['repeats']} interleaved runs.  ",
        "Policy off = IndicF5's chunking (`chunking: upstream`), on = latency-aware (`chunking: stream`"
        + (
            f"), on+progressive = on with `first_chunk_nfe: {results['first_chunk_nfe']}`."
            if results.get("first_chunk_nfe")
            else ")."
        ),
        "",
        "| text | policy | chunks | speech s | TTFA s | total s | stall s | CPU s | DiT GFLOP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['kind']} | {r['policy']} | {r['chunks']} | {r['audio_s']:.2f} | {r['ttfa_s']:.2f} "
            f"| {r['total_s']:.2f} | {r['stall_s']:.2f} | {r['cpu_s']:.1f} | {r['dit_gflop']:.0f} |"
        )
    if results["ratios"]:
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in results["ratios"].items()]
    fid = results.get("progressive_fidelity")
    if fid:
        lines += [
            "",
            f"Progressive first chunk ({fid['first_chunk_seconds']:.2f} s of speech): mel cosine "
            f"{fid['mel_cosine']:.6f} vs the same chunk at NFE {results['nfe_step']} "
            f"(max abs diff {fid['mel_max_abs_diff']:.3f}).",
        ]
    return "\n".join(lines) + "\n"


def write_outputs(results: dict, output_dir: Path | None, output_json: Path | None) -> list[Path]:
    import json

    written = []
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    if output_json is not None:
        output_json.parent.mkdir(parents=True, exist_ok=True)
        output_json.write_text(text, encoding="utf-8")
        written.append(output_json)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        if output_json is None:
            (output_dir / "stream.json").write_text(text, encoding="utf-8")
            written.append(output_dir / "stream.json")
        (output_dir / "stream.md").write_text(markdown(results), encoding="utf-8")
        written.append(output_dir / "stream.md")
    return written
