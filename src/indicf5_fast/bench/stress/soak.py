"""`stress --soak`: many requests at one concurrency against one server process, watching the
server's resident memory and open file descriptors (from /proc/<pid>) after every response.

Verdict (all must hold): no request lost (every one answered in full), no 5xx, and the server's
RSS after warm-up grows by at most `max_rss_growth` (default 5 %). RSS is compared as the median
over a window of responses right after warm-up against the median over the last window, so both
sides are measured in the same (loaded) state and a single transient allocation does not decide.
File descriptors are recorded and a growth is reported as a warning.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass

from indicf5_fast.bench.stress.load import LoadRunner, StressConfig, wait_for_server
from indicf5_fast.errors import InputError


@dataclass
class ProcSample:
    t: float  # seconds since the soak started
    completed: int  # responses received so far
    rss_kib: int
    fds: int


def read_rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise InputError(f"no VmRSS for pid {pid} (a kernel thread or a zombie?)", "server_pid")


def count_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def check_pid(pid: int) -> None:
    try:
        read_rss_kib(pid)
        count_fds(pid)
    except FileNotFoundError as e:
        raise InputError(f"no process with pid {pid}", "server_pid") from e
    except PermissionError as e:
        raise InputError(f"cannot read /proc/{pid} (another user's process?)", "server_pid") from e


def _window(samples: list[ProcSample], lo: int, hi: int) -> list[ProcSample]:
    return [s for s in samples if lo <= s.completed <= hi]


def soak_verdict(
    samples: list[ProcSample], total: int, warmup: int, summary: dict, max_rss_growth: float
) -> dict:
    """Pass/fail and the memory figures from the per-response samples."""
    win = max(5, (total - warmup) // 10)
    first = _window(samples, warmup + 1, warmup + win) or samples[:1]
    last = _window(samples, total - win + 1, total) or samples[-1:]
    rss0 = statistics.median(s.rss_kib for s in first)
    rss1 = statistics.median(s.rss_kib for s in last)
    fd0 = statistics.median(s.fds for s in first)
    fd1 = statistics.median(s.fds for s in last)
    growth = (rss1 - rss0) / rss0 if rss0 else 0.0
    # diagnostic, not judged: growth over the second half only. A plateau (per-shape caches filling
    # up early) shows a small late growth; a steady per-request leak shows about half the total.
    mid_at = warmup + (total - warmup) // 2
    mid = _window(samples, mid_at - win // 2, mid_at + win // 2) or first
    rss_mid = statistics.median(s.rss_kib for s in mid)
    late = (rss1 - rss_mid) / rss_mid if rss_mid else 0.0
    failures, warnings = [], []
    if summary["lost"]:
        failures.append(f"{summary['lost']} request(s) lost (no complete response)")
    if summary["server_errors"]:
        failures.append(f"{summary['server_errors']} response(s) with a 5xx status")
    if growth > max_rss_growth:
        failures.append(f"server RSS grew {growth:.1%} after warm-up (limit {max_rss_growth:.0%})")
    if len(samples) < total:
        failures.append(f"only {len(samples)} of {total} requests completed before the time limit")
    if fd1 > fd0 + 4:
        warnings.append(f"open file descriptors grew from {fd0:g} to {fd1:g}")
    return {
        "passed": not failures,
        "failures": failures,
        "warnings": warnings,
        "window": win,
        "rss_baseline_mib": rss0 / 1024,
        "rss_final_mib": rss1 / 1024,
        "rss_growth": growth,
        "rss_late_growth": late,
        "rss_max_mib": max(s.rss_kib for s in samples) / 1024,
        "fds_baseline": fd0,
        "fds_final": fd1,
        "fds_max": max(s.fds for s in samples),
    }


async def run_soak_async(
    cfg: StressConfig,
    pid: int,
    warmup: int | None = None,
    max_rss_growth: float = 0.05,
    wait_ready: float = 0.0,
) -> dict:
    """Soak the server at cfg.url (process `pid`) with cfg.requests requests at
    cfg.concurrency[0]; the first `warmup` responses (default 10 %, at least 20) are not judged."""
    import httpx

    from indicf5_fast import __version__

    cfg.warmup = 0  # the soak's own warm-up is the first part of the run, measured
    cfg.validate()
    if cfg.requests is None or cfg.open_loop or len(cfg.concurrency) != 1:
        raise InputError("--soak needs --requests N and one --concurrency value", "soak")
    total = cfg.requests
    warmup = max(20, total // 10) if warmup is None else warmup
    if not 0 <= warmup < total:
        raise InputError(f"soak warm-up {warmup} must be below the request count {total}", "soak_warmup")
    check_pid(pid)
    samples: list[ProcSample] = []
    t0 = time.perf_counter()
    bar = None
    if cfg.progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=total, unit="req", desc="soak", file=sys.stderr, dynamic_ncols=True)

    def on_record(_rec) -> None:
        # /proc reads take microseconds: sample after every response, so the windows scale
        # with the request count whatever the server's speed
        samples.append(
            ProcSample(time.perf_counter() - t0, len(samples) + 1, read_rss_kib(pid), count_fds(pid))
        )
        if bar:
            bar.update(1)

    limits = httpx.Limits(max_connections=cfg.concurrency[0] + 2)
    try:
        async with (
            httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(cfg.timeout), trust_env=False) as client,
            httpx.AsyncClient(timeout=10.0, trust_env=False) as metrics_client,
        ):
            run = LoadRunner(cfg, client, metrics_client, on_record)
            await wait_for_server(client, cfg.url, run.headers, wait_ready)
            start_sample = ProcSample(0.0, 0, read_rss_kib(pid), count_fds(pid))
            level = await run.level(cfg.concurrency[0], 0)
    finally:
        if bar:
            bar.close()
    records = level.pop("records")
    summary = {k: v for k, v in level.items() if k not in ("server",)}
    verdict = (
        soak_verdict(samples, total, warmup, summary, max_rss_growth)
        if samples
        else {
            "passed": False,
            "failures": ["no request completed"],
            "warnings": [],
        }
    )
    alive = os.path.exists(f"/proc/{pid}")
    if not alive:
        verdict["passed"] = False
        verdict["failures"].append("the server process is gone")
    return {
        "tool": "indicf5-fast stress --soak",
        "version": __version__,
        "target": {"kind": "http", "url": cfg.url, "pid": pid},
        "config": {
            "requests": total,
            "concurrency": cfg.concurrency[0],
            "warmup": warmup,
            "max_rss_growth": max_rss_growth,
            "voice": cfg.voice,
            "stream": cfg.stream,
            "response_format": cfg.response_format,
            "preset": cfg.preset,
            "nfe_step": cfg.nfe_step,
        },
        "start": {"rss_mib": start_sample.rss_kib / 1024, "fds": start_sample.fds},
        "summary": summary,
        "server": level.get("server", {}),
        "verdict": verdict,
        "samples": [s.__dict__ for s in samples],
        "records": records,
    }


def run_soak(cfg: StressConfig, pid: int, **kwargs) -> dict:
    return asyncio.run(run_soak_async(cfg, pid, **kwargs))
