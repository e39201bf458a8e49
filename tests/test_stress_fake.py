"""The stress and soak tools against a fake server whose timing and faults are known in advance
(`tests.doubles.fake_server`): TTFA and latency measured right, faults counted, a memory
leak caught, reports written."""

import json
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from indicf5_fast.bench.stress.load import StressConfig, run_stress
from indicf5_fast.bench.stress.report import write_reports, write_soak_reports
from indicf5_fast.bench.stress.soak import run_soak
from indicf5_fast.bench.stress.spawn import ServerProcess, free_port
from indicf5_fast.bench.stress.texts import load_texts

FIRST, STEP, CHUNKS, CHUNK_S = 0.3, 0.2, 3, 0.5  # stream: header, +0.3 s first PCM, +0.2 s each next

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

FAKE_SERVER = Path(__file__).parent / "doubles" / "fake_server.py"


def _fake(stack: ExitStack, **opts) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, str(FAKE_SERVER), "--port", str(port)]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    return stack.enter_context(ServerProcess(cmd, port, ready_timeout=60))


@pytest.fixture(scope="module")
def fakes():
    with ExitStack() as stack:
        yield {
            "timed": _fake(stack, first_delay=FIRST, chunk_delay=STEP, chunks=CHUNKS, chunk_seconds=CHUNK_S),
            "faulty": _fake(stack, first_delay=0.02, chunk_delay=0.02, fail_every=3, hang_every=5),
            "leaky": _fake(stack, first_delay=0.01, chunk_delay=0.01, leak_kib=2048),
            "quick": _fake(stack, first_delay=0.01, chunk_delay=0.01),
        }


def _cfg(url, **kw):
    base = dict(url=url, texts=load_texts(langs=["hi", "ta"], kinds=["short"]), warmup=0, progress=False)
    return StressConfig(**{**base, **kw})


def test_streamed_ttfa_and_latency_are_measured(fakes, tmp_path):
    cfg = _cfg(fakes["timed"].url, concurrency=[1, 3], requests=6, stream=True, metrics_interval=0.1)
    report = run_stress(cfg)
    total = FIRST + STEP * (CHUNKS - 1)
    for lv in report["levels"]:
        assert lv["succeeded"] == 6 and lv["lost"] == 0
        # the first audio byte comes FIRST s after sending, not with the header at ~0 s
        # (upper bounds leave room for a loaded CI machine; the header alone would read ~0 s)
        assert FIRST <= lv["ttfa"]["p50"] < FIRST + 0.2
        assert FIRST <= lv["ttfa"]["p99"] < FIRST + 0.4
        assert total <= lv["latency"]["p50"] < total + 0.3
        assert lv["latency"]["p50"] - lv["ttfa"]["p50"] > STEP  # the rest of the stream came later
        assert lv["audio_seconds"] == pytest.approx(6 * CHUNKS * CHUNK_S)
        assert lv["rtf"]["p50"] == pytest.approx(lv["latency"]["p50"] / (CHUNKS * CHUNK_S), rel=0.2)
    # 3 clients in parallel: ~3x the requests per second of one client
    one, three = report["levels"]
    assert three["requests_per_second"] > 2.0 * one["requests_per_second"]
    assert three["server"]["queue_depth_max"] >= 2  # polled from /metrics during the level
    assert three["server"]["batch_size"]["batches"] == 6
    paths = write_reports(report, tmp_path)
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert set(data["levels"][0]["ttfa"]) >= {"p50", "p90", "p95", "p99"}
    assert "records" not in data["levels"][0]
    assert "| 3 | 6/6 |" in paths["markdown"].read_text(encoding="utf-8")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_non_streamed_ttfa_is_the_whole_response(fakes):
    report = run_stress(
        _cfg(fakes["timed"].url, concurrency=[2], requests=4, stream=False, response_format="pcm")
    )
    lv = report["levels"][0]
    total = FIRST + STEP * (CHUNKS - 1)
    assert lv["succeeded"] == 4
    assert lv["ttfa"]["p50"] == pytest.approx(lv["latency"]["p50"]) and lv["ttfa"]["p50"] >= total
    assert lv["audio_seconds"] == pytest.approx(4 * CHUNKS * CHUNK_S)  # pcm: bytes / 2 / 24000


def test_faults_are_counted_not_hidden(fakes):
    # every 3rd request a 500, every 5th hangs (-> client timeout)
    report = run_stress(_cfg(fakes["faulty"].url, concurrency=[2], requests=15, stream=True, timeout=1.0))
    lv = report["levels"][0]
    assert lv["requests"] == 15
    assert lv["server_errors"] == lv["status_counts"]["500"] == 5
    assert lv["status_counts"]["timeout"] == 2 and lv["lost"] == 2  # requests 5 and 10
    assert lv["succeeded"] == 8 and lv["success_rate"] == pytest.approx(8 / 15)
    assert any("injected failure" in e for e in lv["errors"])


def test_open_loop_sends_at_the_rate(fakes):
    cfg = _cfg(fakes["quick"].url, open_loop=True, rates=[20.0], arrival="uniform", requests=10)
    report = run_stress(cfg)
    lv = report["levels"][0]
    assert report["mode"] == "open" and lv["rate"] == 20.0 and lv["succeeded"] == 10
    starts = sorted(r["start"] for r in lv["records"])
    assert starts[-1] == pytest.approx(9 / 20.0, abs=0.1)  # uniform arrivals 50 ms apart


def test_duration_mode_is_bounded(fakes):
    report = run_stress(_cfg(fakes["quick"].url, concurrency=[2], requests=None, duration=1.0))
    lv = report["levels"][0]
    assert lv["requests"] >= 4 and 1.0 <= lv["wall_seconds"] < 2.0


def test_soak_passes_on_a_steady_server_and_catches_a_leak(fakes, tmp_path):
    ok = run_soak(_cfg(fakes["quick"].url, concurrency=[4], requests=60), fakes["quick"].pid, warmup=10)
    assert ok["verdict"]["passed"], ok["verdict"]
    assert len(ok["samples"]) == 60 and ok["summary"]["lost"] == 0
    paths = write_soak_reports(ok, tmp_path)
    assert "PASSED" in paths["markdown"].read_text(encoding="utf-8") and paths["png"].exists()
    leak = run_soak(_cfg(fakes["leaky"].url, concurrency=[4], requests=60), fakes["leaky"].pid, warmup=10)
    assert not leak["verdict"]["passed"]
    assert any("RSS grew" in f for f in leak["verdict"]["failures"])
    assert leak["verdict"]["rss_final_mib"] - leak["verdict"]["rss_baseline_mib"] > 40  # ~2 MiB x 45


def test_soak_fails_on_5xx_and_lost_requests(fakes):
    bad = run_soak(
        _cfg(fakes["faulty"].url, concurrency=[2], requests=30, timeout=1.0), fakes["faulty"].pid, warmup=5
    )
    failures = " ".join(bad["verdict"]["failures"])
    assert not bad["verdict"]["passed"] and "5xx" in failures and "lost" in failures
