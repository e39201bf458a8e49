"""``indicf5_fast.IndicF5``: the one-line switch for IndicF5 ``INF5Model`` users (issue 10 bug 6),
checked against the engine's own path."""

from __future__ import annotations

import numpy as np
import pytest

import indicf5_fast
from indicf5_fast.frontend.audio import postprocess_indicf5

TEXT = "नमस्ते, आप कैसे हैं?"


@pytest.fixture(scope="module")
def model(tiny_ckpt):
    # IndicF5's line, with only the class changed (dtype/device pinned for the test machine)
    return indicf5_fast.IndicF5.from_pretrained(
        str(tiny_ckpt), trust_remote_code=True, revision=None, device="cpu", dtype="float32"
    ).to("cpu")


def test_call_returns_inf5model_output(model, tiny_tts, demo_voice):
    wav, ref_text = demo_voice
    audio = model(TEXT, ref_audio_path=str(wav), ref_text=ref_text, seed=3, nfe_step=4)
    wave = tiny_tts.synthesize(TEXT, str(wav), ref_text, seed=3, nfe_step=4)
    assert audio.dtype == np.int16 and audio.ndim == 1
    np.testing.assert_array_equal(audio, postprocess_indicf5(wave, 24_000, remove_silence=True))
    # the engine's own remove_silence chain gives the same samples (as float32 / 32768)
    tts = indicf5_fast.load(model.tts.config.model, device="cpu", dtype="float32", remove_silence=True)
    np.testing.assert_array_equal(audio, tts.synthesize(TEXT, str(wav), ref_text, seed=3, nfe_step=4) * 32768)
    assert model.sampling_rate == 24_000
    # random weights speak below IndicF5's -50 dBFS silence threshold: without silence removal
    # the int16 output is the whole synthesis, normalised to -20 dBFS
    model.remove_silence = False
    try:
        loud = model(TEXT, str(wav), ref_text, seed=3, nfe_step=4)
    finally:
        model.remove_silence = True
    assert loud.dtype == np.int16 and loud.shape == wave.shape
    np.testing.assert_array_equal(loud, postprocess_indicf5(wave, 24_000, remove_silence=False))
    rms = np.sqrt(np.mean(loud.astype(np.float64) ** 2)) / 32768
    assert 20 * np.log10(rms) == pytest.approx(-20.0, abs=0.1)


def test_from_pretrained_options(tiny_ckpt, model):
    assert model.to("cpu") is model and model.eval() is model and str(model.device) == "cpu"
    cfg = model.tts.config
    assert cfg.remove_silence is False and cfg.revision is None and cfg.backend == "torch"
    fast = indicf5_fast.IndicF5.from_pretrained(
        str(tiny_ckpt), revision="abc123", device="cpu", dtype="float32", nfe_step=7, remove_silence=False
    )
    assert fast.tts.config.revision == "abc123" and fast.tts.config.sampling.nfe_step == 7
    assert fast.remove_silence is False


def test_revision_reaches_the_checkpoint_loader(monkeypatch, tiny_ckpt):
    """from_pretrained(hub id, revision=R) -> EngineConfig.revision -> load_checkpoint(revision=R)
    (the hub download itself is model/checkpoint.py's; here it is replaced by the local copy)."""
    from indicf5_fast.model import checkpoint

    real, calls = checkpoint.load_checkpoint, []

    def fake(model, **kw):
        calls.append((model, kw.get("revision")))
        return real(tiny_ckpt, **{k: v for k, v in kw.items() if k != "revision"})

    monkeypatch.setattr(checkpoint, "load_checkpoint", fake)
    model = indicf5_fast.IndicF5.from_pretrained(
        "ai4bharat/IndicF5", revision="b82d286", trust_remote_code=True, device="cpu", dtype="float32"
    )
    assert calls == [("ai4bharat/IndicF5", "b82d286")]
    assert model.tts.config.revision == "b82d286"


def test_top_level_import_stays_light():
    import subprocess
    import sys

    code = "import sys, indicf5_fast; assert 'torch' not in sys.modules; indicf5_fast.IndicF5; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
