"""Fuzz the HTTP API with hypothesis-generated malformed requests (200 here; set
INDICF5_FUZZ_EXAMPLES for a full run): no 5xx, no hang, the server healthy afterwards."""

import os

import pytest

from indicf5_fast.bench.stress.spawn import ServerProcess, free_port, serve_command

pytest.importorskip("hypothesis")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    port = free_port()
    data = tmp_path_factory.mktemp("fuzz-voices")
    extra = ["--preset", "fast", "--device", "cpu", "--data-dir", str(data), "--log-level", "warning"]
    with ServerProcess(serve_command(str(tiny_ckpt), port, extra), port, ready_timeout=180) as srv:
        yield srv


def test_fuzz_http_api(server):
    from indicf5_fast.bench.stress.fuzz import run_fuzz

    n = int(os.environ.get("INDICF5_FUZZ_EXAMPLES", "200"))
    result = run_fuzz(server.url, examples=n, timeout=30.0, seed=0)
    assert result["sent"] == n
    assert result["server_errors"] == 0, result["samples"]
    assert result["hangs_or_dropped"] == 0, result["samples"]
    assert result["health_after"]["ok"], result["health_after"]
    assert result["passed"]
    # the generator is not degenerate: rejections of several kinds, and some requests get through
    codes = set(result["status_counts"])
    assert "200" in codes and len(codes & {"400", "404", "405", "413", "422"}) >= 3, codes
    assert server.proc.poll() is None
