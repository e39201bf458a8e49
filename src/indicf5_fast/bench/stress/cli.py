"""`indicf5-fast stress`: argument parsing only (import-light; the work is in run_stress_cli)."""

from __future__ import annotations

import argparse
import os


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "stress",
        help="load-test a running speech server (loopback only): TTFA, latency, throughput; soak; fuzz",
        description="Load-test an indicf5-fast server on this machine. Closed loop (a fixed number of "
        "concurrent clients) or open loop (arrivals at a fixed rate). Writes JSON, Markdown and PNG.",
    )
    t = p.add_argument_group("target")
    t.add_argument(
        "--url", default="http://127.0.0.1:8000", help="server base URL (127.0.0.0/8, ::1, localhost)"
    )
    t.add_argument(
        "--triton", default=None, help="load a Triton server instead (grpc://127.0.0.1:8001 or http://...)"
    )
    t.add_argument(
        "--metrics-url",
        default=None,
        help="Prometheus endpoint (default <url>/metrics; Triton: :8002/metrics)",
    )
    t.add_argument(
        "--api-key", default=os.environ.get("INDICF5_API_KEY"), help="bearer token (env INDICF5_API_KEY)"
    )
    t.add_argument("--wait-ready", type=float, default=60.0, help="seconds to wait for /ready before failing")
    t.add_argument(
        "--spawn-server", action="store_true", help="start `indicf5-fast serve` on a free port first"
    )
    t.add_argument("--model", default=None, help="with --spawn-server: the checkpoint directory")
    t.add_argument(
        "--server-args", default="", help='with --spawn-server: extra serve flags, e.g. "--preset fast"'
    )
    t.add_argument("--server-pid", type=int, default=None, help="pid of the server (for --soak)")

    load = p.add_argument_group("load")
    load.add_argument(
        "--concurrency", type=_int_list, default=None, help="closed-loop levels (default 1,2,4,8)"
    )
    n = load.add_mutually_exclusive_group()
    n.add_argument("--requests", type=int, default=None, help="requests per level (default 20; soak 1000)")
    n.add_argument("--duration", type=float, default=None, help="seconds per level instead of a count")
    load.add_argument("--open-loop", action="store_true", help="send at --rate regardless of completions")
    load.add_argument(
        "--rate", type=_float_list, default=None, help="open-loop arrival rates (req/s), e.g. 1,2,4"
    )
    load.add_argument("--arrival", choices=("poisson", "uniform"), default="poisson")
    load.add_argument("--max-inflight", type=int, default=256, help="open loop: drop arrivals beyond this")
    load.add_argument("--warmup", type=int, default=2, help="requests before the first level (not counted)")
    load.add_argument("--timeout", type=float, default=120.0, help="per-request timeout (s)")
    load.add_argument("--max-time", type=float, default=3600.0, help="total time budget (s)")

    req = p.add_argument_group("requests")
    req.add_argument(
        "--texts", default=None, help="texts file (.txt one per line, or .jsonl); default: bundled set"
    )
    req.add_argument(
        "--langs", type=_str_list, default=None, help="bundled languages, e.g. hi,ta (default all 10)"
    )
    req.add_argument("--kinds", type=_str_list, default=None, help="short,long,paragraph (default all)")
    req.add_argument("--voice", default="demo")
    req.add_argument("--model-name", default="indicf5", help='the request body\'s "model"')
    req.add_argument("--format", dest="response_format", choices=("wav", "pcm", "flac"), default="wav")
    req.add_argument("--stream", action="store_true", help="streamed responses (TTFA = first audio chunk)")
    req.add_argument("--preset", choices=("quality", "fast"), default=None)
    req.add_argument("--nfe-step", type=int, default=None)
    req.add_argument("--speed", type=float, default=None)
    req.add_argument("--seed", type=int, default=None, help="noise seed sent with every request")
    req.add_argument(
        "--chunking",
        choices=("upstream", "stream"),
        default=None,
        help="text chunking sent with every request (default: the server's; streams chunk for latency)",
    )

    out = p.add_argument_group("output")
    out.add_argument("--output-dir", default="artifacts/stress")
    out.add_argument("--save-records", action="store_true", help="keep every request in the JSON")
    out.add_argument("--no-metrics", action="store_true", help="do not scrape the server's /metrics")
    out.add_argument(
        "--metrics-interval", type=float, default=0.5, help="/metrics poll period during a level"
    )
    out.add_argument("--no-progress", action="store_true")

    s = p.add_argument_group("soak and fuzz")
    s.add_argument(
        "--soak",
        action="store_true",
        help="reliability soak: RSS/fd growth, lost requests, 5xx (default load: 2 fixed short texts)",
    )
    s.add_argument("--soak-warmup", type=int, default=None, help="responses not judged (default 10%%, >= 20)")
    s.add_argument("--max-rss-growth", type=float, default=0.05, help="soak fails above this RSS growth")
    s.add_argument("--fuzz", type=int, default=None, metavar="N", help="send N generated malformed requests")
    s.add_argument("--fuzz-seed", type=int, default=0, help="hypothesis seed of the fuzz run")
    p.set_defaults(func=run_stress_cli)


def run_stress_cli(args: argparse.Namespace) -> int:
    from indicf5_fast.bench.stress.run import run_from_args

    return run_from_args(args)
