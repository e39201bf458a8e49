"""`indicf5-fast stress` against the real server (tiny random model on 127.0.0.1): a 1,2,4
concurrency sweep finishes well within two minutes and writes JSON, Markdown and PNG with the
time-to-first-audio percentiles; server-side figures are scraped from /metrics."""

import json
import time

import pytest

from indicf5_fast.bench.stress.spawn import ServerProcess, free_port, serve_command
from indicf5_fast.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    port = free_port()
    data = tmp_path_factory.mktemp("stress-voices")
    extra = ["--preset", "fast", "--device", "cpu", "--data-dir", str(data), "--log-level", "warning"]
    with ServerProcess(serve_command(str(tiny_ckpt), port, extra), port, ready_timeout=180) as srv:
        yield srv


def test_stress_sweep_writes_reports_with_ttfa(server, tmp_path):
    argv = ["stress", "--url", server.url, "--concurrency", "1,2,4", "--requests", "6", "--stream"]
    argv += ["--kinds", "short,long", "--output-dir", str(tmp_path), "--no-progress", "--save-records"]
    t0 = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - t0 < 120
    report = json.loads((tmp_path / "stress.json").read_text(encoding="utf-8"))
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 2, 4]
    for lv in report["levels"]:
        assert lv["succeeded"] == lv["requests"] == 6, lv["errors"]
        assert lv["lost"] == 0 and lv["server_errors"] == 0
        ttfa, latency = lv["ttfa"], lv["latency"]
        assert all(ttfa[f"p{q}"] > 0 for q in (50, 90, 95, 99))
        assert ttfa["p50"] <= latency["p50"] and lv["audio_seconds"] > 0
        # every record's first audio came no later than its last byte
        assert all(r["ttfa"] <= r["latency"] for r in lv["records"])
        # the server saw the same 6 streamed syntheses (its own TTFA histogram, from /metrics)
        assert lv["server"]["server_ttfa"]["count"] == 6
    md = (tmp_path / "stress.md").read_text(encoding="utf-8")
    assert "TTFA p50" in md and "| 4 | 6/6 |" in md
    assert (tmp_path / "stress.png").read_bytes()[:4] == b"\x89PNG"


def test_non_streamed_requests_report_batches(server, tmp_path):
    argv = ["stress", "--url", server.url, "--concurrency", "4", "--requests", "8", "--format", "pcm"]
    argv += ["--kinds", "short", "--output-dir", str(tmp_path), "--no-progress", "--warmup", "0"]
    assert main(argv) == 0
    lv = json.loads((tmp_path / "stress.json").read_text(encoding="utf-8"))["levels"][0]
    assert lv["succeeded"] == 8
    assert lv["ttfa"]["p50"] == pytest.approx(lv["latency"]["p50"])  # whole body = first playable audio
    batch = lv["server"]["batch_size"]
    assert 1 <= batch["batches"] <= 8 and batch["mean"] * batch["batches"] == pytest.approx(8)
