"""Reduced soak (200 requests) against the real server as served: dtype auto (bfloat16 where the
CPU has it), `fast` preset, varied texts (short and long, 10 languages). No request lost, no 5xx,
and server memory bounded: RSS after warm-up grows by at most 5 % (the soak's own rule) and ends
within 1.5x the RSS before the load.

Varied lengths are the hard case: oneDNN builds and caches per-shape kernels and glibc keeps the
largest batch's activations, so without `bound_native_memory` (the server's default, see
docs/reliability.md "Server memory") RSS climbs with every new length: this test fails then."""

import json

import pytest

from indicf5_fast.bench.stress.spawn import ServerProcess, free_port, serve_command
from indicf5_fast.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    port = free_port()
    data = tmp_path_factory.mktemp("soak-voices")
    extra = ["--preset", "fast", "--device", "cpu", "--data-dir", str(data), "--log-level", "info"]
    with ServerProcess(serve_command(str(tiny_ckpt), port, extra), port, ready_timeout=180) as srv:
        yield srv


def test_server_bounds_native_memory_at_start(server):
    log = server.log_tail(1 << 20)
    assert "native memory: ONEDNN_PRIMITIVE_CACHE_CAPACITY=" in log, log[-2000:]
    assert "LRU_CACHE_CAPACITY=" in log and "M_ARENA_MAX=2" in log
    assert "malloc_trim after each job: on" in log


def test_soak_200_varied_requests(server, tmp_path):
    # warm-up 50 responses, not the default 20: the capped kernel caches fill to their cap over
    # the first ~40 (measured), and the rule is about growth after that. Unbounded, this run
    # measured +24 % after warm-up and 2.5x the start RSS at the end; bounded: no growth, 1.03x.
    out = tmp_path / "out"
    argv = ["stress", "--soak", "--url", server.url, "--server-pid", str(server.pid), "--requests", "200"]
    argv += ["--soak-warmup", "50", "--concurrency", "4", "--kinds", "short,long"]
    argv += ["--output-dir", str(out), "--no-progress"]
    rc = main(argv)
    report = json.loads((out / "soak.json").read_text(encoding="utf-8"))
    verdict = report["verdict"]
    assert rc == 0 and verdict["passed"], verdict
    assert report["summary"]["succeeded"] == 200 and report["summary"]["lost"] == 0
    assert report["config"]["warmup"] == 50
    assert report["summary"]["server_errors"] == 0
    assert len(report["samples"]) == 200 and verdict["rss_growth"] <= 0.05
    assert verdict["rss_final_mib"] <= 1.5 * report["start"]["rss_mib"], (report["start"], verdict)
    assert verdict["fds_max"] >= verdict["fds_baseline"] > 0
    assert (out / "soak.md").exists() and (out / "soak.png").exists()
    assert server.proc.poll() is None  # still serving
