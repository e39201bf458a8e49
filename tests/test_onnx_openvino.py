"""backend="openvino": same graphs, OpenVINO CPU runtime (fp32 exact-ish, bf16 close)."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("openvino")

import indicf5_fast  # noqa: E402
from indicf5_fast.errors import CheckpointError, InputError  # noqa: E402
from onnx_helpers import cosine  # noqa: E402

TEXT = "यह एक लंबा वाक्य है, जिसमें कई शब्द हैं।"


@pytest.mark.parametrize("dtype, min_cos", [("float32", 0.9999), ("bfloat16", 0.999)])
def test_openvino_matches_torch(tiny_ckpt, export_dir, tiny_tts, demo_voice, dtype, min_cos):
    tts = indicf5_fast.load(str(tiny_ckpt), backend="openvino", device="cpu", dtype=dtype)
    info = tts.backend.describe()
    assert info["backend"] == "openvino" and info["onnx_dir"] == str(export_dir)
    assert info["precision"] == ("f32" if dtype == "float32" else "bf16")
    voice = tiny_tts.prepare_voice(*demo_voice)
    ref = tiny_tts.sample_mel(voice.mel, voice.text + TEXT, 320, nfe_step=8, seed=5)
    got = tts.sample_mel(voice.mel, voice.text + TEXT, 320, nfe_step=8, seed=5)
    gen = slice(voice.mel.shape[0], 320)
    assert cosine(got[gen], ref[gen]) >= min_cos
    wave_ref = tiny_tts.synthesize(TEXT, voice=voice, nfe_step=8, seed=5)
    wave = tts.synthesize(TEXT, voice=voice, nfe_step=8, seed=5)
    assert wave.shape == wave_ref.shape and cosine(wave, wave_ref) >= min_cos


def test_openvino_refuses_bad_dtype_and_foreign_export(tiny_ckpt, export_dir, tmp_path):
    with pytest.raises(InputError):
        indicf5_fast.load(str(tiny_ckpt), backend="openvino", device="cpu", dtype="float16")
    from indicf5_fast.model.random_checkpoint import write_random_checkpoint

    other = write_random_checkpoint(tmp_path / "other", arch="tiny", seed=2)
    with pytest.raises(CheckpointError):
        indicf5_fast.load(str(other), backend="openvino", device="cpu", onnx_dir=str(export_dir))
