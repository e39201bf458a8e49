"""`indicf5-fast bench`: offline speed benchmark against upstream f5-tts, in one process.

  indicf5-fast bench --quick --output-dir artifacts/bench-quick   # ~5 min on a 2-core CPU
  indicf5-fast bench --demo                                       # ~2 min: three rows, as ratios
  indicf5-fast bench --dtypes float32,bfloat16 --compile off,on --steps 32:uniform,7:epss \\
      --seconds 2,4 --repeats 3 --output-dir artifacts/bench    # the full grid
  indicf5-fast bench --stream --output-dir artifacts/bench-stream  # TTFA: chunking off vs on
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indicf5_fast.config import add_config_args, config_from_args
from indicf5_fast.errors import InputError, require

# import-light on purpose: torch and the engine are imported inside run()

# engine fields the bench exposes, with the bench's own defaults (CPU graphs are dynamic in
# length when compiled: a small frame bucket is enough)
ENGINE_DEFAULTS = {"device": "cpu", "frame_bucket": 16}
# one sentence (one text chunk, ~2.5 s of speech) for --ttfa
TTFA_SENTENCE = "नमस्ते, आज मौसम बहुत अच्छा है और हम बाज़ार जा रहे हैं।"

DEFAULTS = {
    "backends": "torch",
    "dtypes": "float32,bfloat16",
    "compile": "off,on",
    "steps": "32:uniform,7:epss",
    "seconds": "2,4",
    "repeats": 3,
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="offline benchmark: configurations x lengths vs upstream f5-tts (JSON + Markdown + PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", default=None, help="checkpoint dir (default: a random full-size one in --cache-dir)"
    )
    p.add_argument("--cache-dir", default="artifacts", help="where the random checkpoint is made if absent")
    p.add_argument("--arch", choices=("base", "tiny"), default="base", help="random checkpoint size")
    p.add_argument(
        "--backends", default=None, help="comma list of torch, onnx, onnx-int8, openvino (default torch)"
    )
    p.add_argument("--dtypes", default=None, help="comma list: float32, bfloat16, float16")
    p.add_argument("--compile", default=None, help="comma list of off, on (torch backend only)")
    p.add_argument("--steps", default=None, help="comma list of NFE:schedule, e.g. 32:uniform,7:epss")
    p.add_argument("--seconds", default=None, help="comma list of generated-speech lengths in seconds")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per configuration (median)")
    p.add_argument("--no-upstream", action="store_true", help="skip the upstream f5-tts baseline")
    p.add_argument(
        "--upstream-steps",
        default=None,
        help="NFE:schedule list for upstream (default: 32:uniform + --steps)",
    )
    add_config_args(p, only=("device", "threads", "frame_bucket"), defaults=ENGINE_DEFAULTS)
    p.add_argument(
        "--upstream-dtype",
        default="auto",
        choices=("auto", "float32", "float16", "bfloat16"),
        help="upstream baseline dtype; auto = upstream's own default (fp16 on CUDA, else fp32)",
    )
    p.add_argument(
        "--ttfa",
        action="store_true",
        help="also time to first audio of one streamed sentence per configuration (upstream: whole)",
    )
    p.add_argument("--ttfa-text", default=None, help="the sentence for --ttfa (default: a Hindi one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="one length, the headline configurations (< 5 min)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="~2 min: upstream fp32 vs ours bf16 (NFE 32) vs ours bf16 fast preset",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="streaming mode: TTFA, total and stall seconds of short/long/paragraph texts, chunking "
        "policy off (IndicF5's) vs on (latency-aware), in one run (first --dtypes/--steps/--compile "
        "entry; default auto dtype, 7:epss, off)",
    )
    p.add_argument("--kinds", default=None, help="--stream: comma list of short, long, paragraph")
    p.add_argument(
        "--first-chunk-nfe",
        type=int,
        default=5,
        help="--stream: steps of the progressive-first-chunk row (0 = no such row)",
    )
    p.add_argument("--output-json", default=None, help="write the full results here")
    p.add_argument("--output-dir", default=None, help="write bench.json, bench.md and bench.png here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _steps(value: str) -> list[tuple[int, str]]:
    out = []
    for item in _split(value):
        nfe, _, schedule = item.partition(":")
        try:
            out.append((int(nfe), schedule or "uniform"))
        except ValueError as e:
            raise InputError(f"--steps: expected NFE:schedule, got {item!r}", "steps") from e
        if out[-1][1] not in ("uniform", "epss") or out[-1][0] < 1:
            raise InputError(f"--steps: bad entry {item!r} (schedule uniform or epss)", "steps")
    return out


def upstream_dtype(args: argparse.Namespace, device: str | None = None) -> str:
    """--upstream-dtype, or upstream's own default on ``device`` (the engine's; else --device)."""
    choice = getattr(args, "upstream_dtype", "auto") or "auto"
    if choice != "auto":
        return choice
    device = str(device or getattr(args, "device", None) or "cpu")
    if not device.startswith("cuda"):
        return "float32"
    from indicf5_fast.bench.upstream import upstream_default_dtype

    return upstream_default_dtype(device)


def build_configs(args: argparse.Namespace, device: str | None = None) -> tuple[list, list[float], int]:
    """The configuration list, lengths and repeats for the chosen mode."""
    from indicf5_fast.bench.runner import Config

    up = upstream_dtype(args, device)
    if args.demo:
        configs = [
            Config("upstream", up, False, 32, "uniform"),
            Config("torch", "bfloat16", False, 32, "uniform"),
            Config("torch", "bfloat16", False, 7, "epss"),
        ]
        return configs, [float(args.seconds or 2)], args.repeats or 1
    if args.quick:
        configs = [
            Config("upstream", up, False, 32, "uniform"),
            Config("torch", "bfloat16", True, 32, "uniform"),
            Config("torch", "bfloat16", True, 7, "epss"),
            Config("torch", "bfloat16", False, 7, "epss"),
            Config("torch", "float32", False, 7, "epss", repeats=1),  # the fast rows' fidelity reference
        ]
        return configs, [float(args.seconds or 2)], args.repeats or 2
    backends = _split(args.backends or DEFAULTS["backends"])
    bad = set(backends) - {"torch", "onnx", "onnx-int8", "openvino"}
    if bad:
        raise InputError(f"--backends: unknown {sorted(bad)} (torch, onnx, onnx-int8, openvino)", "backends")
    dtypes = _split(args.dtypes or DEFAULTS["dtypes"])
    compiles = [c == "on" for c in _split(args.compile or DEFAULTS["compile"])]
    steps = _steps(args.steps or DEFAULTS["steps"])
    configs = []
    if not args.no_upstream:
        # IndicF5's default setting is always measured: it is the baseline of every speedup
        up_steps = [(32, "uniform"), *(_steps(args.upstream_steps) if args.upstream_steps else steps)]
        configs += [Config("upstream", up, False, n, s) for n, s in up_steps]
    for backend in backends:
        for dtype in dtypes:
            for comp in compiles if backend == "torch" else [False]:
                configs += [Config(backend, dtype, comp, n, s) for n, s in steps]
    configs = list(dict.fromkeys(configs))
    seconds = [float(s) for s in _split(args.seconds or DEFAULTS["seconds"])]
    return configs, seconds, args.repeats or DEFAULTS["repeats"]


def ensure_model(args: argparse.Namespace) -> Path:
    if args.model:
        path = Path(args.model)
        if not path.exists():
            raise InputError(f"--model {path} does not exist", "model")
        return path
    path = Path(args.cache_dir) / args.arch
    if not (path / "model.safetensors").exists():
        from indicf5_fast.model.random_checkpoint import write_random_checkpoint

        print(f"writing a random {args.arch} checkpoint to {path} (once)", file=sys.stderr)
        write_random_checkpoint(path, arch=args.arch, seed=0)
    return path


def run(args: argparse.Namespace) -> int:
    from indicf5_fast.bench.report import console_table, summary, write_outputs
    from indicf5_fast.bench.runner import Plan, run_plan

    if args.repeats is not None and args.repeats < 1:
        raise InputError("--repeats must be >= 1", "repeats")
    if getattr(args, "stream", False):
        return run_stream(args)
    if args.output_dir:  # bench.png: fail now, not after the benchmark
        require("matplotlib", "bench", "bench plots (--output-dir writes bench.png)")
    engine = config_from_args(args, defaults=ENGINE_DEFAULTS)
    configs, seconds, repeats = build_configs(args, engine.device)
    if args.no_upstream:
        configs = [c for c in configs if c.backend != "upstream"]
    mode = "demo" if args.demo else "quick" if args.quick else "grid"
    plan = Plan(
        model_dir=ensure_model(args),
        configs=configs,
        seconds=seconds,
        repeats=repeats,
        seed=args.seed,
        engine=engine,
        ttfa_text=(args.ttfa_text or TTFA_SENTENCE) if args.ttfa else None,
        extra={
            "mode": mode,
            "command": " ".join(["indicf5-fast", *sys.argv[sys.argv.index("bench") :]])
            if "bench" in sys.argv
            else "",
        },
    )
    engines = len({c.engine_key for c in configs})
    runs = sum(min(c.repeats or repeats, repeats) for c in configs)
    total = engines + engines * len(seconds) + runs * len(seconds) + (len(configs) if args.ttfa else 0)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="bench", unit="step", file=sys.stderr, dynamic_ncols=True)

    def progress(msg: str) -> None:
        if bar is not None:
            bar.set_postfix_str(msg[:60])
            bar.update(1)

    try:
        results = run_plan(plan, progress)
    finally:
        if bar is not None:
            bar.close()
    print(console_table(results))
    if args.demo:
        print(summary(results))
    out_dir = Path(args.output_dir) if args.output_dir else None
    out_json = Path(args.output_json) if args.output_json else None
    for path in write_outputs(results, out_dir, out_json):
        print(f"wrote {path}")
    return 0


def stream_plan(args: argparse.Namespace):
    """The streaming bench's plan from the shared flags (first entry of each list)."""
    from indicf5_fast.bench.streaming import TEXTS, StreamPlan

    kinds = _split(args.kinds or ",".join(TEXTS))
    bad = set(kinds) - set(TEXTS)
    if bad:
        raise InputError(f"--kinds: unknown {sorted(bad)} (short, long, paragraph)", "kinds")
    nfe, schedule = _steps(args.steps or "7:epss")[0]
    if args.first_chunk_nfe is not None and args.first_chunk_nfe < 0:
        raise InputError("--first-chunk-nfe must be >= 0", "first_chunk_nfe")
    engine = config_from_args(args, defaults=ENGINE_DEFAULTS)  # --device / --threads (+ env)
    return StreamPlan(
        model_dir=ensure_model(args),
        kinds=kinds,
        dtype=_split(args.dtypes or "auto")[0],
        device=engine.device,
        compile=_split(args.compile or "off")[0] == "on",
        nfe_step=nfe,
        schedule=schedule,
        first_chunk_nfe=args.first_chunk_nfe or None,
        repeats=args.repeats or 2,
        seed=args.seed,
        threads=engine.threads,
        extra={
            "command": " ".join(["indicf5-fast", *sys.argv[sys.argv.index("bench") :]])
            if "bench" in sys.argv
            else ""
        },
    )


def run_stream(args: argparse.Namespace) -> int:
    from indicf5_fast.bench.streaming import markdown, run_stream_plan, write_outputs

    plan = stream_plan(args)

    def progress(msg: str) -> None:
        if not args.no_progress:
            print(f"[bench --stream] {msg}", file=sys.stderr, flush=True)

    results = run_stream_plan(plan, progress)
    print(markdown(results))
    out_dir = Path(args.output_dir) if args.output_dir else None
    out_json = Path(args.output_json) if args.output_json else None
    for path in write_outputs(results, out_dir, out_json):
        print(f"wrote {path}")
    return 0
