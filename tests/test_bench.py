"""`indicf5-fast bench` on the tiny checkpoint: outputs, per-stage numbers, fidelity columns,
the in-process upstream baseline, unavailable rows, FLOP counting and the quick/demo plans."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from indicf5_fast.bench.cli import add_parser, build_configs
from indicf5_fast.bench.flops import dit_forward_flops, matmul_gflops
from indicf5_fast.cli import main
from indicf5_fast.model.dit import DiT, DiTArgs


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


def test_dit_flop_count_matches_torch_flop_counter():
    args = DiTArgs.tiny(vocab_size=40)
    dit = DiT(args).eval().set_attention("matmul")  # explicit GEMMs: the counter sees attention too
    n, b = 37, 2
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        dit(torch.randn(b, n, 100), torch.randn(b, n, 100), torch.randn(b, n, args.text_dim), torch.rand(b))
    assert dit_forward_flops(args, n, b) == counter.get_total_flops()


def test_busy_machine_runs_are_flagged():
    from indicf5_fast.bench.runner import _disturbed

    assert _disturbed([0.98, 0.97, 0.45]) == 1  # one run got half the CPU it should have
    assert _disturbed([0.5, 0.49]) == 0  # a single-threaded workload is not "disturbed"


def test_matmul_peak_is_positive():
    assert matmul_gflops(torch.float32, size=256) > 0


def test_quick_and_demo_plans():
    configs, seconds, repeats = build_configs(_parse("--quick"))
    labels = [c.label for c in configs]
    assert "upstream f5-tts fp32 eager nfe32 uniform" in labels
    assert "torch bf16 compile nfe32 uniform" in labels and "torch bf16 compile nfe7 epss" in labels
    assert "torch fp32 eager nfe7 epss" in labels  # fidelity reference of the fast rows
    assert seconds == [2.0] and repeats >= 2
    configs, seconds, repeats = build_configs(_parse("--demo"))
    assert [c.label for c in configs] == [
        "upstream f5-tts fp32 eager nfe32 uniform",
        "torch bf16 eager nfe32 uniform",
        "torch bf16 eager nfe7 epss",
    ]
    grid, _, _ = build_configs(_parse("--backends", "torch,onnx", "--dtypes", "float32", "--steps", "8:epss"))
    assert {(c.backend, c.compile) for c in grid} == {
        ("upstream", False),
        ("torch", False),
        ("torch", True),
        ("onnx", False),
    }


def test_bench_writes_json_markdown_png_with_upstream_baseline(tiny_ckpt, tmp_path):
    from indicf5_fast.bench.upstream import upstream_unavailable_reason

    reason = upstream_unavailable_reason()
    if reason:  # the optional oracle packages (f5-tts, vocos) are absent
        pytest.skip(reason)
    out_json = tmp_path / "results" / "r.json"
    argv = ["bench", "--model", str(tiny_ckpt), "--dtypes", "float32,bfloat16,float16", "--compile", "off"]
    argv += ["--steps", "4:uniform", "--seconds", "0.6", "--repeats", "2", "--no-progress"]
    argv += ["--output-dir", str(tmp_path), "--output-json", str(out_json)]
    assert main(argv) == 0
    res = json.loads(out_json.read_text(encoding="utf-8"))
    rows = {r["label"]: r for r in res["rows"]}
    up = rows["upstream f5-tts fp32 eager nfe4 uniform"]
    up32 = rows["upstream f5-tts fp32 eager nfe32 uniform"]  # the baseline of every speedup
    f32 = rows["torch fp32 eager nfe4 uniform"]
    bf16 = rows["torch bf16 eager nfe4 uniform"]
    assert res["matmul_peak_gflops"]["bfloat16"] > 0 and res["machine"]["torch_threads"] >= 1
    for r in (up, f32, bf16):
        assert r["runs"] == 2 and len(r["e2e_all_s"]) == 2 and r["e2e_s"] > 0
        assert r["dit_passes"] == 4  # cond + uncond packed into one pass per step
        assert r["stages_s"]["dit"] > 0 and r["stages_s"]["vocoder"] > 0 and r["dit_gflop"] > 0
        assert r["audio_seconds"] > 0.3 and r["rtf"] == pytest.approx(r["e2e_s"] / r["audio_seconds"])
        assert r["warmup_s"] > 0 and r["peak_mem_mb"] > 0 and r["engine_mb"] is not None
        assert 0 <= r["disturbed_runs"] <= r["runs"]
    assert f32["stages_s"]["text_embed"] > 0 and f32["stages_s"]["frontend"] > 0
    # same weights, reference, text and seed: upstream's mel equals ours at fp32
    assert up["fidelity_ref"] == "torch fp32 eager nfe4 uniform"
    assert up["mel_max_abs_diff"] < 1e-3 and up["mel_cosine"] > 0.99999
    assert up["audio_seconds"] == f32["audio_seconds"] and up["dit_gflop"] == f32["dit_gflop"]  # same work
    assert bf16["fidelity_ref"] == f32["label"]
    assert 0.99 < bf16["mel_cosine"] < 1.0 and bf16["mel_max_abs_diff"] > 0
    assert f32["speedup_vs_upstream_default"] == pytest.approx(up32["e2e_s"] / f32["e2e_s"])
    assert f32["speedup_vs_upstream_same_nfe"] == pytest.approx(up["e2e_s"] / f32["e2e_s"])
    assert up32["dit_passes"] == 32
    assert [u["dtype"] for u in res["unavailable"]] == ["float16"]  # fp16 is refused on CPU
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "| configuration |" in md and f32["label"] in md and "unavailable" in md
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino"])
def test_bench_runs_export_backends_with_fidelity_against_torch_fp32(backend, tiny_ckpt, tmp_path):
    pytest.importorskip("openvino" if backend == "openvino" else "onnxruntime")
    out_json = tmp_path / "r.json"
    argv = ["bench", "--model", str(tiny_ckpt), "--backends", f"torch,{backend}"]
    argv += ["--dtypes", "float32,bfloat16", "--compile", "off", "--steps", "4:uniform"]
    argv += ["--seconds", "0.6", "--repeats", "1", "--no-upstream", "--no-progress"]
    argv += ["--output-json", str(out_json)]
    assert main(argv) == 0
    res = json.loads(out_json.read_text(encoding="utf-8"))
    rows = {(r["backend"], r["dtype"]): r for r in res["rows"]}
    dtype = "bfloat16" if backend == "openvino" else "float32"
    row, ref = rows[(backend, dtype)], rows[("torch", "float32")]
    assert row["runs"] == 1 and row["e2e_s"] > 0 and row["dit_passes"] == 4
    assert row["audio_seconds"] == ref["audio_seconds"] and row["dit_gflop"] == ref["dit_gflop"]
    assert row["fidelity_ref"] == ref["label"]
    exact = backend == "onnx"  # same fp32 maths, other kernels; int8 and bf16 cost some fidelity
    assert row["mel_cosine"] > (0.9999 if exact else 0.99)
    assert (row["mel_max_abs_diff"] < 1e-3) == exact
    assert row["dit_pct_of_peak"] is None and ref["dit_pct_of_peak"] > 0  # the peak is torch's GEMM
    if backend != "openvino":  # ONNX Runtime runs fp32 graphs only on a CPU: bf16 is a clear refusal
        assert [(u["backend"], u["dtype"]) for u in res["unavailable"]] == [(backend, "bfloat16")]


def test_stall_seconds_is_the_playback_gap():
    from indicf5_fast.bench.streaming import stall_seconds

    sr = 100
    assert stall_seconds([1.0], [50]) == 0.0
    # 1 s of audio at t=1, the next piece at t=2.5: 0.5 s of silence, then on time
    assert stall_seconds([1.0, 2.5, 2.6], [100, 100, 100], sr) == pytest.approx(0.5)
    assert stall_seconds([1.0, 1.5, 2.9], [100, 100, 100], sr) == pytest.approx(0.0)
    assert stall_seconds([0.0, 2.0, 5.0], [100, 100, 100], sr) == pytest.approx(1.0 + 2.0)


def test_stream_bench_on_the_tiny_checkpoint(tmp_path, tiny_ckpt):
    out = tmp_path / "stream"
    argv = ["bench", "--stream", "--model", str(tiny_ckpt), "--dtypes", "float32", "--steps", "4:epss"]
    assert main([*argv, "--repeats", "1", "--first-chunk-nfe", "2", "--output-dir", str(out), "--no-progress"]) == 0
    res = json.loads((out / "stream.json").read_text())
    rows = {(r["kind"], r["policy"]): r for r in res["rows"]}
    assert set(rows) == {(k, p) for k in ("short", "long", "paragraph") for p in ("off", "on", "on+progressive")}
    assert rows[("paragraph", "off")]["chunks"] == 1 and rows[("paragraph", "on")]["chunks"] >= 2
    for r in rows.values():
        assert 0 < r["ttfa_s"] <= r["total_s"] and r["stall_s"] >= 0 and r["audio_s"] > 0
    # same chunks, same audio length; a multi-chunk stream loses 0.15 s per seam to the cross-fade
    seams = rows[("paragraph", "on")]["chunks"] - 1
    assert rows[("paragraph", "on")]["audio_s"] < rows[("paragraph", "off")]["audio_s"] + 0.5
    assert seams >= 1
    assert {"paragraph_ttfa_on_vs_short", "paragraph_total_on_vs_off"} <= set(res["ratios"])
    fid = res["progressive_fidelity"]
    assert -1 <= fid["mel_cosine"] < 1 and fid["first_chunk_seconds"] > 0
    assert "| paragraph | on |" in (out / "stream.md").read_text()
