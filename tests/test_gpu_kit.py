"""The one-call GPU kit (``scripts/gpu-check.sh``) in its CPU dry-run mode: the script itself is
tested here, on every CI run, so the day a GPU is available the proof takes one call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT_FILES = {
    "env.txt",
    "tests.log",
    "junit.xml",
    "bench.log",
    "bench.json",
    "bench.md",
    "bench.png",
    "summary.md",
}


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_part(tmp_path):
    pytest.importorskip("matplotlib")
    from indicf5_fast.bench.upstream import upstream_unavailable_reason

    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_CHECK_DEVICE": "cpu",
        "OUT": str(out),
        "GPU_CHECK_WORK": str(tmp_path / "work"),
        "PYTHON": sys.executable,
    }
    env.pop("PYTHONPATH", None)  # the script sets it up itself (src/ + carried wheels)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=450,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    assert files == KIT_FILES  # at most 8 files come back from the GPU machine
    assert "dry run" in (out / "env.txt").read_text() and "torch:" in (out / "env.txt").read_text()

    suite = ET.parse(out / "junit.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert len(cases) >= 10  # the GPU tests were collected (and skipped here, with a reason)
    assert all(any(c.tag == "skipped" for c in case) for case in cases)
    assert not any(c.tag in ("failure", "error") for case in cases for c in case)

    res = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    backends = {r["backend"] for r in res["rows"]}
    assert "torch" in backends
    if upstream_unavailable_reason() is None:
        assert "upstream" in backends
    assert res["ttfa"] and all(t["ttfa_s"] > 0 for t in res["ttfa"])
    assert (out / "bench.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "dry run" in summary and "TTFA" in summary and "0 failed" in summary
    assert "done in" in proc.stdout


def test_summary_reads_targets_from_a_gpu_bench(tmp_path):
    """The summary's target checks on a GPU-shaped bench result (no GPU needed)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check_summary as summary
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    def row(backend, dtype, e2e, seconds=10.0, nfe=32, compile_=False, speedup=None):
        label = f"{backend} {dtype} {'compile' if compile_ else 'eager'} nfe{nfe}"
        return {
            "label": label,
            "backend": backend,
            "dtype": dtype,
            "compile": compile_,
            "nfe": nfe,
            "schedule": "uniform",
            "target_seconds": seconds,
            "audio_seconds": seconds,
            "e2e_s": e2e,
            "rtf": e2e / seconds,
            "speedup_vs_upstream_same_nfe": speedup,
        }

    res = {
        "machine": {"gpu": "NVIDIA H200", "device": "cuda", "torch": "2.11"},
        "rows": [
            row("upstream", "float16", 0.9, speedup=1.0),
            row("torch", "float16", 0.08, compile_=True, speedup=0.9 / 0.08),
            row("torch", "bfloat16", 0.05, compile_=True, speedup=0.9 / 0.05),  # other dtype: not counted
        ],
        "ttfa": [{"label": "torch fp16 compile nfe32", "ttfa_s": 0.07, "streamed": True}],
        "unavailable": [],
    }
    (tmp_path / "bench.json").write_text(json.dumps(res))
    text = "\n".join(summary.bench_section(tmp_path))
    assert "| NFE 32 vs upstream eager, same dtype | 11.25 | >= 3 | yes |" in text
    assert "| RTF, NFE 32, longest length | 0.005 | <= 0.01 | yes |" in text
    assert "| TTFA of a sentence (s), best of ours | 0.07 | <= 0.1 | yes |" in text
    assert "no junit.xml" in "\n".join(summary.tests_section(tmp_path))


def test_bench_upstream_runs_at_its_own_gpu_dtype(monkeypatch):
    """`bench --device cuda`: the upstream baseline takes upstream's own GPU default (fp16 from
    compute capability 7), unless --upstream-dtype says otherwise; CPU keeps fp32."""
    import argparse

    import torch

    from indicf5_fast.bench.cli import add_parser, build_configs

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))

    def upstream_dtypes(*argv):
        configs, _, _ = build_configs(parser.parse_args(["bench", *argv]))
        return {c.dtype for c in configs if c.backend == "upstream"}

    assert upstream_dtypes("--device", "cuda", "--dtypes", "float16") == {"float16"}
    assert upstream_dtypes("--device", "cuda", "--upstream-dtype", "float32") == {"float32"}
    assert upstream_dtypes("--device", "cpu") == {"float32"}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    assert upstream_dtypes("--device", "cuda") == {"float32"}  # upstream: fp32 below cc 7
