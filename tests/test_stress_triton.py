"""`stress --triton`: the load generator against a real (PyTriton) Triton server with the tiny
model; runs only where the triton extra is installed."""

import pytest

from indicf5_fast.bench.stress.load import StressConfig, run_stress
from indicf5_fast.bench.stress.texts import load_texts

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("tritonclient.http")

from triton_harness import pytriton  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_tts, demo_voice):
    wav, text = demo_voice
    with pytriton(
        tiny_tts, {"demo": tiny_tts.prepare_voice(str(wav), text)}, max_batch=8, queue_delay_ms=50
    ) as s:
        yield s


def _url(server, scheme):
    url = server.grpc_url if scheme == "grpc" else server.http_url
    return url if "://" in url else f"{scheme}://{url}"


@pytest.mark.parametrize("scheme,stream", [("http", False), ("grpc", False), ("grpc", True)])
def test_stress_triton(server, scheme, stream):
    cfg = StressConfig(
        triton_url=_url(server, scheme),
        metrics_url=f"http://127.0.0.1:{server.config.metrics_port}/metrics",
        texts=load_texts(langs=["hi"], kinds=["short"]),
        concurrency=[1, 4],
        requests=4,
        stream=stream,
        nfe_step=4,
        warmup=1,
        progress=False,
    )
    report = run_stress(cfg, wait_ready=60)
    assert report["target"]["kind"] == "triton"
    for lv in report["levels"]:
        assert lv["succeeded"] == 4 and lv["lost"] == 0, lv["errors"]
        assert 0 < lv["ttfa"]["p50"] <= lv["latency"]["p50"] + 1e-9 and lv["audio_seconds"] > 0
    four = report["levels"][1]
    if not stream:  # Triton's own counters: 4 items in at most 4 model executions
        assert 1.0 <= four["server"]["batch_size"]["mean"] <= 4.0, four["server"]


def test_stream_over_http_is_refused():
    from indicf5_fast.errors import InputError

    cfg = StressConfig(
        triton_url="http://127.0.0.1:1", texts=load_texts(langs=["hi"]), stream=True, progress=False
    )
    with pytest.raises(InputError, match="grpc"):
        run_stress(cfg)
