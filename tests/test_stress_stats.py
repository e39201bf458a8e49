"""Unit tests of the stress tool's pieces: statistics, Prometheus parsing, WAV parsing, the
loopback guard, the text set, the soak verdict and the CLI's refusals (no server needed)."""

import io
import json
import random
import struct

import numpy as np
import pytest
import soundfile as sf

from indicf5_fast.bench.stress.client import check_loopback, wav_data_layout
from indicf5_fast.bench.stress.metrics import (
    diff_counters,
    diff_histograms,
    gauges,
    histogram_quantile,
    parse_prometheus,
    server_summary,
)
from indicf5_fast.bench.stress.soak import ProcSample, soak_verdict
from indicf5_fast.bench.stress.stats import RequestRecord, distribution, percentile, summarize_level
from indicf5_fast.bench.stress.texts import KINDS, LANGUAGE_NAMES, bundled_languages, load_texts
from indicf5_fast.errors import InputError
from indicf5_fast.frontend.audio import wav_stream_header


# ------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_percentile_matches_numpy(n):
    rng = random.Random(n)
    xs = [rng.expovariate(1.0) for _ in range(n)]
    for q in (0, 1, 50, 90, 95, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_distribution_fields():
    d = distribution([3.0, 1.0, 2.0])
    assert d["p50"] == 2.0 and d["min"] == 1.0 and d["max"] == 3.0 and d["mean"] == 2.0 and d["n"] == 3
    assert distribution([]) is None


def _rec(i, status, latency, ttfa=None, audio=1.0, complete=True, error=None, kind="short"):
    return RequestRecord(
        i,
        0.0,
        status=status,
        complete=complete,
        ttfa=ttfa,
        latency=latency,
        audio_seconds=audio,
        error=error,
        kind=kind,
    )


def test_summarize_level_counts_and_rates():
    records = [
        _rec(0, 200, 0.5, ttfa=0.1, audio=2.0),
        _rec(1, 200, 1.0, ttfa=0.2, audio=2.0, kind="paragraph"),
        _rec(2, 500, 0.1, audio=0.0, error="HTTP 500: boom"),
        _rec(3, None, 30.0, audio=0.0, complete=False, error="timeout"),
        _rec(4, 200, 2.0, audio=0.0, complete=False, error="RemoteProtocolError: cut"),  # cut stream
        _rec(5, 429, 0.01, audio=0.0, error="HTTP 429: slow down"),
    ]
    s = summarize_level(records, wall_seconds=4.0)
    assert s["requests"] == 6 and s["succeeded"] == 2
    assert s["success_rate"] == pytest.approx(2 / 6)
    assert s["status_counts"] == {"200": 2, "200_incomplete": 1, "429": 1, "500": 1, "timeout": 1}
    assert s["server_errors"] == 1
    assert s["lost"] == 2  # the timeout and the cut stream; answered errors are not lost
    assert s["requests_per_second"] == pytest.approx(0.5)
    assert s["audio_seconds_per_wall_second"] == pytest.approx(1.0)
    assert s["ttfa"]["p50"] == pytest.approx(0.15)
    assert s["latency"]["max"] == 1.0
    assert s["rtf"]["min"] == pytest.approx(0.25) and s["rtf"]["max"] == pytest.approx(0.5)
    assert "HTTP 500: boom" in s["errors"] and "timeout" in s["errors"]
    assert s["by_kind"] == {
        "paragraph": {"succeeded": 1, "ttfa_p50": 0.2, "latency_p50": 1.0},
        "short": {"succeeded": 1, "ttfa_p50": 0.1, "latency_p50": 0.5},
    }


# ------------------------------------------------------------------------------ /metrics
def _registry_text(latencies, batches, queue):
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    r = CollectorRegistry()
    h = Histogram("t_latency_seconds", "x", ("route",), buckets=(0.1, 0.2, 0.5, 1.0, 2.0), registry=r)
    b = Histogram("t_batch_size", "x", buckets=(1, 2, 4, 8), registry=r)
    c = Counter("t_requests_total", "x", ("status",), registry=r)
    g = Gauge("t_queue_depth", "x", registry=r)
    for i, x in enumerate(latencies):
        h.labels("a" if i % 2 else "b").observe(x)
        c.labels("200").inc()
    for x in batches:
        b.observe(x)
    g.set(queue)
    return generate_latest(r).decode()


def test_prometheus_diff_against_prometheus_client():
    before = parse_prometheus(_registry_text([0.15, 0.3], [1], 0))
    lat = [0.15, 0.3, 0.05, 0.15, 0.15, 0.7, 1.5, 0.15]
    after = parse_prometheus(_registry_text(lat, [1, 2, 4, 4], 3))
    hist = diff_histograms(before, after)
    # the two observations present before are subtracted; labels summed over
    assert hist["t_latency_seconds"]["count"] == 6
    assert hist["t_latency_seconds"]["sum"] == pytest.approx(sum(lat) - 0.45)
    assert hist["t_batch_size"]["count"] == 3 and hist["t_batch_size"]["mean"] == pytest.approx(10 / 3)
    # the quantile lies in the bucket holding the median of the new observations
    assert 0.1 <= hist["t_latency_seconds"]["p50"] <= 0.2
    assert diff_counters(before, after) == {'t_requests_total{status="200"}': 6.0}
    assert gauges(after) == {"t_queue_depth": 3.0}
    summary = server_summary(before, after, {"t_queue_depth": 5.0}, wall_seconds=2.0)
    assert summary["batch_size"]["mean"] == pytest.approx(10 / 3)
    assert summary["queue_depth_max"] == 5.0


def test_histogram_quantile_interpolates():
    buckets = [(1.0, 0.0), (2.0, 10.0), (float("inf"), 10.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(1.5)
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 4.0)], 0.5) == 1.0  # above the last bound
    assert histogram_quantile([], 0.5) is None


def test_parse_prometheus_skips_garbage():
    s = parse_prometheus('# TYPE x gauge\nx 1\nnot a sample line\ny{a="b\\"c"} NaN\nz{le="+Inf"} +Inf\n')
    assert s.get("x") == 1.0
    assert s.get("z", le="+Inf") == float("inf")
    assert np.isnan(s.get("y", a='b\\"c'))


# ------------------------------------------------------------------------------ client pieces
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.8.9.10:1/",
        "http://localhost:8000",
        "http://LOCALHOST.",
        "http://[::1]:8000",
        "http://[::ffff:127.0.0.1]:80",
        "https://127.0.0.1",
    ],
)
def test_loopback_accepted(url):
    assert check_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8000",
        "http://0.0.0.0:8000",
        "http://192.168.1.5",
        "http://example.com",
        "http://127.0.0.1.nip.io",
        "http://localhost.evil.com",
        "http://[::2]:80",
        "ftp://127.0.0.1",
        "127.0.0.1:8000",
        "http://127.0.0.1:99999",
    ],
)
def test_non_loopback_refused(url):
    with pytest.raises(InputError):
        check_loopback(url)


def test_wav_layout_stream_header_and_extra_chunks():
    assert wav_data_layout(wav_stream_header(24_000)) == (44, 48_000, None)
    assert wav_data_layout(wav_stream_header(24_000)[:30]) is None  # need more bytes
    # a WAV with a LIST chunk before the data: the data offset moves, the size is declared
    buf = io.BytesIO()
    sf.write(buf, np.zeros(2400, dtype=np.int16), 16_000, format="WAV", subtype="PCM_16")
    plain = buf.getvalue()
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"  # odd size -> pad byte
    riff = plain[:12] + plain[12:36] + extra + plain[36:]
    offset, rate, size = wav_data_layout(riff)
    assert riff[offset - 8 : offset - 4] == b"data" and rate == 32_000 and size == 4800
    with pytest.raises(ValueError):
        wav_data_layout(b"ID3\x03" + b"\x00" * 40)


# ------------------------------------------------------------------------------ texts
def test_bundled_texts_cover_all_eleven_languages_and_all_kinds():
    langs = bundled_languages()
    assert set(langs) == set(LANGUAGE_NAMES) and len(langs) == 11  # IndicF5's 11 languages
    items = load_texts()
    for code in langs:
        kinds = {t.kind for t in items if t.lang == code}
        assert kinds == set(KINDS), (code, kinds)
    # each language is written in its own script: most letters fall in the expected block
    blocks = {"hi": 0x900, "mr": 0x900, "bn": 0x980, "as": 0x980, "pa": 0xA00, "gu": 0xA80, "or": 0xB00}
    blocks |= {"ta": 0xB80, "te": 0xC00, "kn": 0xC80, "ml": 0xD00}
    for t in items:
        letters = [c for c in t.text if c.isalpha() or (0x900 <= ord(c) < 0xD80 and c not in "।॥")]
        inside = sum(blocks[t.lang] <= ord(c) < blocks[t.lang] + 0x80 for c in letters)
        assert inside / len(letters) > 0.95, t.text
    # Assamese, not Bengali: every Assamese text uses its own letters ৰ / ৱ, no Bengali one does
    assert all(any(c in t.text for c in "ৰৱ") for t in items if t.lang == "as")
    assert not any(any(c in t.text for c in "ৰৱ") for t in items if t.lang == "bn")


def test_text_filters_and_user_files(tmp_path):
    hi_short = load_texts(langs=["hi"], kinds=["short"])
    assert hi_short and all(t.lang == "hi" and t.kind == "short" for t in hi_short)
    with pytest.raises(InputError):
        load_texts(langs=["xx"])
    with pytest.raises(InputError):
        load_texts(kinds=["huge"])
    txt = tmp_path / "t.txt"
    txt.write_text("# comment\n\nएक\n" + "द" * 300 + "\n", encoding="utf-8")
    assert [t.kind for t in load_texts(str(txt))] == ["short", "paragraph"]
    jl = tmp_path / "t.jsonl"
    jl.write_text(json.dumps({"text": "வணக்கம்", "lang": "ta"}) + "\n", encoding="utf-8")
    assert load_texts(str(jl))[0].lang == "ta"
    jl.write_text('{"txt": 1}\n', encoding="utf-8")
    with pytest.raises(InputError):
        load_texts(str(jl))


# ------------------------------------------------------------------------------ soak verdict
def _samples(n, rss_fn, fds=10):
    return [ProcSample(float(i), i + 1, int(rss_fn(i)), fds) for i in range(n)]


def _ok_summary(lost=0, server_errors=0):
    return {"lost": lost, "server_errors": server_errors}


def test_soak_verdict_flat_memory_passes():
    # warm-up grows memory, then it stays flat (with noise): pass
    samples = _samples(200, lambda i: 100_000 + min(i, 20) * 1000 + (i % 3) * 200)
    v = soak_verdict(samples, 200, 20, _ok_summary(), 0.05)
    assert v["passed"] and abs(v["rss_growth"]) < 0.01


def test_soak_verdict_catches_leak_lost_and_5xx():
    leak = _samples(200, lambda i: 100_000 + i * 100)  # +100 KiB per request: ~18 % over the run
    v = soak_verdict(leak, 200, 20, _ok_summary(), 0.05)
    assert not v["passed"] and "RSS grew" in v["failures"][0]
    assert v["rss_late_growth"] == pytest.approx(v["rss_growth"] / 2, rel=0.25)  # a leak keeps going
    plateau = _samples(200, lambda i: 100_000 + min(i, 80) * 500)  # caches fill until request 80
    v = soak_verdict(plateau, 200, 20, _ok_summary(), 0.05)
    assert not v["passed"] and v["rss_late_growth"] == 0.0
    flat = _samples(200, lambda i: 100_000)
    v = soak_verdict(flat, 200, 20, _ok_summary(lost=1, server_errors=2), 0.05)
    assert not v["passed"] and len(v["failures"]) == 2
    v = soak_verdict(flat[:150], 200, 20, _ok_summary(), 0.05)  # stopped early
    assert not v["passed"]
    v = soak_verdict(
        _samples(200, lambda i: 100_000, fds=10) + [ProcSample(0, 201, 100_000, 40)] * 30,
        230,
        20,
        _ok_summary(),
        0.05,
    )
    assert v["warnings"]  # fds grew


# ------------------------------------------------------------------------------ CLI refusals
def test_cli_refuses_remote_targets(capsys):
    from indicf5_fast.cli import main

    assert main(["stress", "--url", "http://10.1.2.3:8000", "--requests", "1", "--no-progress"]) == 2
    assert "refusing" in capsys.readouterr().err
    from indicf5_fast.bench.stress.spawn import free_port

    triton = ["stress", "--triton", f"grpc://127.0.0.1:{free_port()}", "--wait-ready", "0", "--no-progress"]
    assert main(triton) == 2
    try:
        import tritonclient.grpc  # noqa: F401

        expected = "no ready Triton"  # the client exists; nothing listens there
    except ImportError:
        expected = "not available"
    assert expected in capsys.readouterr().err
    assert main(["stress", "--triton", "grpc://8.8.8.8:8001"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert main(["stress", "--soak", "--requests", "5", "--no-progress"]) == 2
    assert "pid" in capsys.readouterr().err


def test_cli_unreachable_server_is_a_clear_error(capsys):
    from indicf5_fast.bench.stress.spawn import free_port
    from indicf5_fast.cli import main

    port = free_port()  # nothing listens there
    argv = [
        "stress",
        "--url",
        f"http://127.0.0.1:{port}",
        "--requests",
        "1",
        "--no-progress",
        "--wait-ready",
        "0",
    ]
    assert main(argv) == 2
    assert "no ready server" in capsys.readouterr().err


def test_chunking_option_travels_in_every_request_body():
    from indicf5_fast.bench.stress.cli import add_parser
    from indicf5_fast.bench.stress.load import StressConfig, request_body
    from indicf5_fast.bench.stress.texts import TextItem

    item = TextItem("नमस्ते दुनिया।", "hi", "short")
    cfg = StressConfig(texts=[item], chunking="stream", stream=True)
    assert request_body(cfg, item)["chunking"] == "stream"
    assert "chunking" not in request_body(StressConfig(texts=[item]), item)  # server default
    import argparse

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    assert p.parse_args(["stress", "--chunking", "upstream"]).chunking == "upstream"
    with pytest.raises(SystemExit):
        p.parse_args(["stress", "--chunking", "fastest"])
