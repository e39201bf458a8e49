"""backend="onnx": end-to-end parity with the torch backend, manifest refusal, providers,
fp16 and int8 variants; CUDA/TensorRT tests run only where those providers exist."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import indicf5_fast  # noqa: E402
from indicf5_fast.backends.onnx_backend import (  # noqa: E402
    CPU,
    CUDA,
    TRT,
    pick_variant,
    resolve_providers,
    trt_profile,
)
from indicf5_fast.errors import BackendUnavailableError, CheckpointError, InputError  # noqa: E402
from indicf5_fast.export.onnx import MANIFEST  # noqa: E402
from onnx_helpers import cosine  # noqa: E402

HAS_CUDA = CUDA in ort.get_available_providers() and torch.cuda.is_available()
HAS_TRT = TRT in ort.get_available_providers() and torch.cuda.is_available()
TEXTS = ["नमस्ते दुनिया", "यह एक लंबा वाक्य है, जिसमें कई शब्द हैं। और एक दूसरा वाक्य भी।"]


@pytest.fixture(scope="module")
def onnx_tts(tiny_ckpt, export_dir):
    # no onnx_dir: the backend finds (ensure_onnx_export) the default export made above
    return indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cpu", dtype="float32")


def test_backend_uses_the_default_export(onnx_tts, export_dir):
    info = onnx_tts.backend.describe()
    assert info["backend"] == "onnx" and info["variant"] == "fp32"
    assert info["onnx_dir"] == str(export_dir) and info["providers"] == [CPU]


def test_sample_mel_matches_torch(tiny_tts, onnx_tts, demo_voice):
    voice = tiny_tts.prepare_voice(*demo_voice)
    for text, duration, seed in ((TEXTS[0], 230, 1), (TEXTS[1], 330, 7)):
        ref = tiny_tts.sample_mel(voice.mel, voice.text + text, duration, nfe_step=8, seed=seed)
        got = onnx_tts.sample_mel(voice.mel, voice.text + text, duration, nfe_step=8, seed=seed)
        assert got.shape == ref.shape == (duration, 100)
        gen = slice(voice.mel.shape[0], duration)  # the generated frames (the rest is the copied ref)
        assert cosine(got[gen], ref[gen]) >= 0.9999
        assert np.abs(got - ref).max() < 1e-3


def test_synthesize_matches_torch(tiny_tts, onnx_tts, demo_voice):
    for text in TEXTS:
        ref = tiny_tts.synthesize(text, *demo_voice, nfe_step=8, seed=3)
        got = onnx_tts.synthesize(text, *demo_voice, nfe_step=8, seed=3)
        assert got.shape == ref.shape and got.size > 0
        assert cosine(got, ref) >= 0.9999
        assert np.abs(got - ref).max() < 1e-3


def test_batch_matches_one_by_one(onnx_tts, tiny_tts, demo_voice):
    voice = onnx_tts.prepare_voice(*demo_voice)
    reqs = [onnx_tts.make_request(t, voice=voice, seed=i, nfe_step=6) for i, t in enumerate(TEXTS)]
    batched = onnx_tts.synthesize_batch(reqs)  # padded batch of 2 through the mask input
    for r, got in zip(reqs, batched, strict=True):
        alone = tiny_tts.synthesize(r.text, voice=voice, seed=r.seed, nfe_step=6)
        assert cosine(got, alone) >= 0.9999


def test_manifest_mismatch_is_refused(tiny_ckpt, export_dir, tmp_path):
    from indicf5_fast.model.random_checkpoint import write_random_checkpoint

    other = write_random_checkpoint(tmp_path / "other", arch="tiny", seed=1)  # same shapes, other weights
    with pytest.raises(CheckpointError, match="does not match the checkpoint"):
        indicf5_fast.load(str(other), backend="onnx", device="cpu", dtype="float32", onnx_dir=str(export_dir))
    with pytest.raises(CheckpointError, match="flavour"):
        indicf5_fast.load(
            str(tiny_ckpt), backend="onnx", device="cpu", flavour="v1", onnx_dir=str(export_dir)
        )
    edited = tmp_path / "edited"
    shutil.copytree(export_dir, edited)
    manifest = json.loads((edited / MANIFEST).read_text())
    manifest["format_version"] = 999
    (edited / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format version"):
        indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cpu", onnx_dir=str(edited))


def test_missing_provider_is_a_clear_error(tiny_ckpt, export_dir):
    if not HAS_CUDA:
        with pytest.raises(BackendUnavailableError, match=r"CUDAExecutionProvider.*onnx-gpu"):
            indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cpu", providers=["cuda"])
    with pytest.raises(BackendUnavailableError, match="NoSuchExecutionProvider"):
        indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cpu", providers=["NoSuchExecutionProvider"])


def test_provider_resolution():
    cpu_dev, cuda_dev = torch.device("cpu"), torch.device("cuda")
    gpu_build = [TRT, CUDA, CPU]
    assert resolve_providers(None, cpu_dev, [CPU]) == [CPU]
    assert resolve_providers(None, cuda_dev, gpu_build) == [CUDA, CPU]
    assert resolve_providers(["trt"], cuda_dev, gpu_build) == [TRT, CUDA, CPU]
    assert resolve_providers(["CUDAExecutionProvider", "cpu"], cuda_dev, gpu_build) == [CUDA, CPU]
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider"):
        resolve_providers(["tensorrt"], cuda_dev, [CUDA, CPU])
    assert pick_variant("auto", [CPU]) == "fp32"
    assert pick_variant("auto", [CUDA, CPU]) == "fp16"
    assert pick_variant("float32", [CUDA, CPU]) == "fp32"
    assert pick_variant("auto", [TRT, CUDA, CPU]) == "fp32"  # TensorRT builds fp16 itself
    with pytest.raises(InputError):
        pick_variant("bfloat16", [CPU])
    with pytest.raises(InputError):
        pick_variant("float16", [CPU])


def test_trt_profile_strings(export_dir):
    from indicf5_fast.export.onnx import read_manifest

    io = read_manifest(export_dir)["graphs"]["velocity"]
    p = trt_profile(io, max_batch=16, max_frames=4096, opt_frames=512, opt_batch=2)
    assert p["trt_profile_min_shapes"].startswith("x:1x2x100,cond:1x2x100,text_emb:1x2x32,t:1,mask:1x2")
    assert "x:2x512x100" in p["trt_profile_opt_shapes"] and "mask:2x512" in p["trt_profile_opt_shapes"]
    assert p["trt_profile_max_shapes"].endswith("t:16,mask:16x4096")


def test_fp16_variant_on_cpu(tiny_ckpt, tmp_path, tiny_tts, demo_voice):
    """The GPU variant's graph is valid and close (ORT CPU has the fp16 kernels, slowly)."""
    import onnx

    from indicf5_fast.export.onnx import ensure_onnx_export, read_manifest

    out = ensure_onnx_export(tiny_ckpt, tmp_path / "fp16", fp16=True)
    m = read_manifest(out)
    assert m["variant"] == "fp16" and m["graphs"]["velocity"]["compute_dtype"] == "float16"
    dit = onnx.load(str(out / "dit.onnx"))
    sizes = {onnx.TensorProto.FLOAT16: 0, onnx.TensorProto.FLOAT: 0}
    for init in dit.graph.initializer:
        if init.data_type in sizes:
            sizes[init.data_type] += int(np.prod(init.dims))
    # the weights really are fp16 (a few small fp32 constants remain, e.g. timestep freqs)
    assert sizes[onnx.TensorProto.FLOAT16] > 50 * sizes[onnx.TensorProto.FLOAT]
    tts = indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cpu", onnx_dir=str(out))
    voice = tiny_tts.prepare_voice(*demo_voice)
    ref = tiny_tts.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2)
    got = tts.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2)
    assert cosine(got, ref) >= 0.999


def test_int8_variant_reports_its_fidelity(tiny_ckpt, tmp_path, tiny_tts, demo_voice):
    import onnx

    from indicf5_fast.export.onnx import ensure_onnx_export, read_manifest

    out = ensure_onnx_export(tiny_ckpt, tmp_path / "int8", quantize="int8")
    m = read_manifest(out)
    assert m["variant"] == "int8" and m["verify_max_abs_error"]["velocity"] > 0  # reported, not hidden
    ops = {n.op_type for n in onnx.load(str(out / "dit.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    tts = indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cpu", onnx_dir=str(out))
    voice = tiny_tts.prepare_voice(*demo_voice)
    ref = tiny_tts.sample_mel(voice.mel, voice.text + TEXTS[1], 300, nfe_step=8, seed=4)
    got = tts.sample_mel(voice.mel, voice.text + TEXTS[1], 300, nfe_step=8, seed=4)
    gen = slice(voice.mel.shape[0], 300)
    fidelity = cosine(got[gen], ref[gen])
    print(f"int8 mel cosine vs fp32 (tiny random weights): {fidelity:.5f}")
    assert 0.98 <= fidelity < 1.0  # close, and really quantized (not the fp32 graph)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="CUDA provider not available")
def test_cuda_io_binding_matches_torch(tiny_ckpt, tiny_tts, demo_voice):
    tts = indicf5_fast.load(
        str(tiny_ckpt), backend="onnx", device="cuda", dtype="float32", providers=["cuda"]
    )
    be = tts.backend
    assert be.bind and be.describe()["providers"][0] == CUDA
    x = torch.randn(2, 50, 100, device="cuda")
    emb = be.text_embed(torch.ones(2, 50, dtype=torch.int64, device="cuda"), torch.tensor([False, True]))
    v = be.velocity(x, x, emb, torch.rand(2, device="cuda"), None)
    assert v.device.type == "cuda" and v.shape == (2, 50, 100)  # stays on the GPU between steps
    voice = tiny_tts.prepare_voice(*demo_voice)
    ref = tiny_tts.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2)
    got = tts.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2)
    assert cosine(got, ref) >= 0.9999
    fp16 = indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cuda", providers=["cuda"])
    assert fp16.backend.variant == "fp16"
    assert cosine(fp16.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2), ref) >= 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT provider not available")
def test_tensorrt_engine_cache(tiny_ckpt, export_dir, tiny_tts, demo_voice):
    tts = indicf5_fast.load(str(tiny_ckpt), backend="onnx", device="cuda", providers=["tensorrt"])
    assert tts.backend.describe()["providers"][0] == TRT
    voice = tiny_tts.prepare_voice(*demo_voice)
    ref = tiny_tts.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2)
    got = tts.sample_mel(voice.mel, voice.text + TEXTS[0], 250, nfe_step=8, seed=2)
    assert cosine(got, ref) >= 0.999
    assert any((export_dir / "trt-cache").iterdir())  # engines cached on disk for the next load


def test_cli_synth_with_onnx_backend(tiny_ckpt, export_dir, demo_voice, tmp_path, capsys):
    import soundfile as sf

    from indicf5_fast.cli import main

    out = tmp_path / "onnx.wav"
    ref_audio, ref_text = demo_voice
    argv = ["synth", "--model", str(tiny_ckpt), "--backend", "onnx", "--device", "cpu", "--dtype", "float32"]
    argv += ["--text", TEXTS[0], "--ref-audio", str(ref_audio), "--ref-text", ref_text]
    argv += ["--out", str(out), "--nfe", "4", "--seed", "1", "--no-progress"]
    assert main(argv) == 0
    wave, sr = sf.read(out)
    assert sr == 24_000 and wave.size > 0 and np.abs(wave).max() > 0
    assert "'backend': 'onnx'" in capsys.readouterr().out
