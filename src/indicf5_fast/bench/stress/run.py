"""What `indicf5-fast stress` does with its arguments: build the config, optionally start a server,
run the sweep / soak / fuzz, write the reports, print the summary."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

from indicf5_fast.bench.stress.client import check_loopback
from indicf5_fast.bench.stress.load import StressConfig, run_stress
from indicf5_fast.bench.stress.texts import load_texts, soak_texts
from indicf5_fast.errors import InputError, require


def config_from_args(args: argparse.Namespace, url: str) -> StressConfig:
    soak = bool(args.soak)
    requests = args.requests
    if requests is None and args.duration is None:
        requests = 1000 if soak else 20
    concurrency = args.concurrency or ([4] if soak else [1, 2, 4, 8])
    if soak and not (args.texts or args.langs or args.kinds):
        texts = soak_texts()
    else:
        texts = load_texts(args.texts, args.langs, args.kinds)
    return StressConfig(
        url=url,
        texts=texts,
        concurrency=concurrency,
        open_loop=args.open_loop,
        rates=args.rate or [],
        arrival=args.arrival,
        requests=requests,
        duration=args.duration,
        warmup=args.warmup,
        voice=args.voice,
        model=args.model_name,
        response_format=args.response_format,
        stream=args.stream,
        preset=args.preset,
        nfe_step=args.nfe_step,
        speed=args.speed,
        seed=args.seed,
        chunking=getattr(args, "chunking", None),
        timeout=args.timeout,
        max_total_seconds=args.max_time,
        max_inflight=args.max_inflight,
        metrics=not args.no_metrics,
        metrics_interval=args.metrics_interval,
        api_key=args.api_key,
        progress=not args.no_progress,
        triton_url=args.triton,
        metrics_url=args.metrics_url,
    )


def run_from_args(args: argparse.Namespace) -> int:
    if not args.triton:
        require("httpx", "bench", "indicf5-fast stress")
    if args.triton and (args.soak or args.fuzz is not None or args.spawn_server):
        raise InputError(
            "--triton works with the load sweep only (not --soak, --fuzz, --spawn-server)", "triton"
        )
    if args.soak and args.open_loop:
        raise InputError("--soak is a closed-loop run; drop --open-loop", "soak")
    if args.open_loop and not args.rate:
        raise InputError("--open-loop needs --rate R[,R...]", "rate")
    with contextlib.ExitStack() as stack:
        url, pid = check_loopback(args.url), args.server_pid
        if args.spawn_server:
            url, pid = _spawn(args, stack)
        if args.fuzz is not None:
            return _fuzz(args, url)
        cfg = config_from_args(args, url)
        if args.soak:
            return _soak(args, cfg, pid)
        report = run_stress(cfg, wait_ready=args.wait_ready)
    from indicf5_fast.bench.stress.report import console_table, write_reports

    paths = write_reports(report, args.output_dir, records=args.save_records)
    print(console_table(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _spawn(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[str, int]:
    from indicf5_fast.bench.stress.spawn import ServerProcess, free_port, serve_command

    if not args.model:
        raise InputError("--spawn-server needs --model DIR", "model")
    port = free_port()
    cmd = serve_command(args.model, port, shlex.split(args.server_args))
    print(f"starting: {shlex.join(cmd)}", file=sys.stderr)
    server = stack.enter_context(ServerProcess(cmd, port, ready_timeout=max(args.wait_ready, 180.0)))
    return server.url, server.pid


def _soak(args: argparse.Namespace, cfg: StressConfig, pid: int | None) -> int:
    from indicf5_fast.bench.stress.report import soak_markdown, write_soak_reports
    from indicf5_fast.bench.stress.soak import run_soak

    if pid is None:
        raise InputError(
            "--soak needs the server's pid: --server-pid PID, or --spawn-server --model DIR", "server_pid"
        )
    report = run_soak(
        cfg, pid, warmup=args.soak_warmup, max_rss_growth=args.max_rss_growth, wait_ready=args.wait_ready
    )
    paths = write_soak_reports(report, args.output_dir)
    print(soak_markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if report["verdict"]["passed"] else 1


def _fuzz(args: argparse.Namespace, url: str) -> int:
    import json
    from pathlib import Path

    from indicf5_fast.bench.stress.fuzz import run_fuzz

    result = run_fuzz(
        url,
        examples=args.fuzz,
        timeout=min(args.timeout, 60.0),
        api_key=args.api_key,
        wait_ready=args.wait_ready,
        seed=args.fuzz_seed,
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2, ensure_ascii=False))
    return 0 if result["passed"] else 1
