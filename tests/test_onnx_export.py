"""ONNX export: graphs vs PyTorch on several lengths and batch sizes, manifest, reuse/staleness, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from indicf5_fast.errors import CheckpointError  # noqa: E402
from indicf5_fast.export.onnx import (  # noqa: E402
    MANIFEST,
    check_manifest,
    ensure_onnx_export,
    read_manifest,
)
from indicf5_fast.model.checkpoint import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def modules(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    dit, vocos = ckpt.build()
    return ckpt, dit, vocos


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("n", [9, 40, 131])
@pytest.mark.parametrize("b", [1, 2, 3])
def test_graphs_match_pytorch(export_dir, modules, b, n):
    """Every graph at several lengths and batch sizes (the examples at export were batch 2,
    37 frames): a length or batch frozen at export fails here."""
    _, dit, vocos = modules
    g = torch.Generator().manual_seed(b * 1000 + n)
    a = dit.args
    tokens = torch.randint(0, a.vocab_size + 1, (b, n), generator=g)
    tokens[:, n // 2 :] = 0  # filler tail, as the engine pads
    drop = torch.arange(b) % 2 == 1
    x, cond = torch.randn(b, n, 100, generator=g), torch.randn(b, n, 100, generator=g)
    emb_in = torch.randn(b, n, a.text_dim, generator=g)
    t = torch.rand(b, generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    if b > 1:
        mask[-1, n - n // 3 :] = False  # one padded item
    mel = torch.randn(b, 100, n, generator=g)
    with torch.no_grad():
        ref_emb = dit.text_embed(tokens, None, drop).numpy()
        ref_v = dit(x, cond, emb_in, t, mask).numpy()
        vocos.istft_impl = "torch"  # reference = the exact torch.istft path
        ref_wave = vocos.decode(mel).numpy()
    got_emb = _session(export_dir / "text_embed.onnx").run(
        None, {"tokens": tokens.numpy(), "drop": drop.numpy()}
    )[0]
    feeds = {
        "x": x.numpy(),
        "cond": cond.numpy(),
        "text_emb": emb_in.numpy(),
        "t": t.numpy(),
        "mask": mask.numpy(),
    }
    got_v = _session(export_dir / "dit.onnx").run(None, feeds)[0]
    got_wave = _session(export_dir / "vocoder.onnx").run(None, {"mel": mel.numpy()})[0]
    assert got_emb.shape == (b, n, a.text_dim)
    assert got_v.shape == (b, n, 100)
    assert got_wave.shape == (b, (n - 1) * 256)
    assert np.abs(got_emb - ref_emb).max() <= 1e-4
    assert np.abs(got_v - ref_v).max() <= 1e-4
    assert np.abs(got_wave - ref_wave).max() <= 1e-4
    assert np.abs(ref_v).max() > 1e-2 and np.abs(ref_wave).max() > 1e-4  # non-degenerate outputs


def test_graph_dims_are_symbolic(export_dir):
    for name, expect in (("text_embed.onnx", 2), ("dit.onnx", 5), ("vocoder.onnx", 1)):
        model = onnx.load(str(export_dir / name), load_external_data=False)
        assert len(model.graph.input) == expect
        for inp in model.graph.input:
            dims = inp.type.tensor_type.shape.dim
            assert dims[0].dim_param, f"{name}:{inp.name} has a fixed batch dim"
            if inp.name not in ("drop", "t"):
                assert any(d.dim_param for d in list(dims)[1:]), f"{name}:{inp.name} has a fixed length"


def test_velocity_graph_is_the_fast_form(export_dir, modules):
    """What the exporter does for speed stays done: one QKV GEMM per layer, the tanh GELU as one
    node, and no NaN guard / mask Where over the [b, h, n, n] attention scores."""
    _, dit, _ = modules
    graph = onnx.load(str(export_dir / "dit.onnx"), load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert "IsNaN" not in ops
    assert ops.count("Gelu") == dit.args.depth
    dims = {init.name: list(init.dims) for init in graph.initializer}
    qkv = [n for n in graph.node if n.op_type == "MatMul" and dims.get(n.input[1], [0])[-1] == 3 * dit.args.dim]
    assert len(qkv) == dit.args.depth


def test_manifest_ties_export_to_checkpoint(export_dir, tiny_ckpt):
    manifest = read_manifest(export_dir)
    ckpt = load_checkpoint(tiny_ckpt)
    assert manifest["source"]["fingerprint"] == ckpt.fingerprint
    assert manifest["dit_args"] == ckpt.dit_args.to_dict()
    assert manifest["flavour"] == "v0" and manifest["variant"] == "fp32" and manifest["opset"] == 20
    assert manifest["graphs"]["velocity"]["inputs"]["x"]["shape"] == ["batch", "frames", 100]
    for name, info in manifest["files"].items():
        data = (export_dir / name).read_bytes()
        assert len(data) == info["bytes"]
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
    assert {"dit.onnx", "dit.onnx.data"} <= set(manifest["files"])  # weights stored externally
    assert max(manifest["verify_max_abs_error"].values()) < 1e-4
    check_manifest(manifest, ckpt, export_dir)  # no error


def test_ensure_reuses_a_matching_export(export_dir, tiny_ckpt):
    before = (export_dir / "dit.onnx").stat().st_mtime_ns
    assert ensure_onnx_export(tiny_ckpt) == export_dir
    assert (export_dir / "dit.onnx").stat().st_mtime_ns == before


def test_ensure_reexports_a_stale_export(export_dir, tiny_ckpt, tmp_path):
    # int8 derives from the fp32 export (copy + quantize), so a re-export is cheap to test
    first = ensure_onnx_export(tiny_ckpt, tmp_path / "int8", quantize="int8")
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["variant"] == "int8"
    manifest["source"]["fingerprint"] = "0" * 16  # as if exported from another checkpoint
    (first / MANIFEST).write_text(json.dumps(manifest))
    ckpt = load_checkpoint(tiny_ckpt)
    with pytest.raises(CheckpointError, match="checkpoint"):
        check_manifest(read_manifest(first), ckpt, first)
    before = (first / "dit.onnx").stat().st_mtime_ns
    again = ensure_onnx_export(tiny_ckpt, first, quantize="int8")
    assert read_manifest(again)["source"]["fingerprint"] == ckpt.fingerprint
    assert (again / "dit.onnx").stat().st_mtime_ns != before  # really written again
    check_manifest(read_manifest(again), ckpt, again)


def test_damaged_file_is_detected(export_dir, tiny_ckpt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(export_dir, bad)
    with (bad / "vocoder.onnx.data").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="vocoder.onnx.data"):
        check_manifest(read_manifest(bad), load_checkpoint(tiny_ckpt), bad)
    (bad / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="not an ONNX export"):
        read_manifest(bad)


def test_export_cli_reuses(export_dir, tiny_ckpt, capsys):
    from indicf5_fast.cli import main

    assert main(["export", "onnx", "--model", str(tiny_ckpt), "--out", str(export_dir)]) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and str(export_dir) in out and "max abs error" in out
    assert main(["export", "onnx", "--model", str(tiny_ckpt), "--fp16", "--quantize", "int8"]) == 2
