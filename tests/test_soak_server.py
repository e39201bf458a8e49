"""Reduced soak (200 requests) against the real server: no request lost, no 5xx, server RSS
after warm-up within 5 %, open fds recorded.

The load is the soak's default (two fixed short texts) and the server runs in float32. Why: on
CPU, oneDNN keeps per-shape state (primitives, JIT code) for every new tensor shape, most of all
in bfloat16, so RSS climbs with the *variety* of request lengths and batch compositions until
they have all been seen. That is not a per-request leak, and a 200-request run cannot cover the
variety; the full-size runs (README "Reliability") report a fixed-text and a varied-text soak."""

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
    extra = ["--preset", "fast", "--device", "cpu", "--dtype", "float32", "--data-dir", str(data)]
    extra += ["--log-level", "warning"]
    with ServerProcess(serve_command(str(tiny_ckpt), port, extra), port, ready_timeout=180) as srv:
        yield srv


def test_soak_200_requests(server, tmp_path):
    out = tmp_path / "out"
    argv = ["stress", "--soak", "--url", server.url, "--server-pid", str(server.pid), "--requests", "200"]
    argv += ["--concurrency", "4", "--output-dir", str(out), "--no-progress"]
    rc = main(argv)
    report = json.loads((out / "soak.json").read_text(encoding="utf-8"))
    verdict = report["verdict"]
    assert rc == 0 and verdict["passed"], verdict
    assert report["summary"]["succeeded"] == 200 and report["summary"]["lost"] == 0
    assert report["config"]["warmup"] == 20  # default: 10 %, at least 20
    assert report["summary"]["server_errors"] == 0
    assert len(report["samples"]) == 200 and abs(verdict["rss_growth"]) <= 0.05
    assert verdict["fds_max"] >= verdict["fds_baseline"] > 0
    assert (out / "soak.md").exists() and (out / "soak.png").exists()
    assert server.proc.poll() is None  # still serving
