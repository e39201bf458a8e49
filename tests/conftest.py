import sys
from pathlib import Path

import pytest

# tests import their helpers (upstream_oracle) by module name
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random-weight checkpoint in the exact IndicF5 layout (v0), with a demo voice."""
    from indicf5_fast.model.random_checkpoint import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", arch="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_tts(tiny_ckpt):
    import indicf5_fast

    return indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def demo_voice(tiny_ckpt):
    return tiny_ckpt / "prompts" / "demo.wav", (tiny_ckpt / "prompts" / "demo.txt").read_text().strip()


@pytest.fixture(scope="session")
def demo(tiny_tts, demo_voice):
    """The demo reference, preprocessed once (a ``Voice``)."""
    wav, text = demo_voice
    return tiny_tts.prepare_voice(str(wav), text)


@pytest.fixture(scope="session")
def export_dir(tiny_ckpt):
    """One fp32 ONNX export of the tiny checkpoint, at the default location (``<tiny_ckpt>/onnx``)
    through ``ensure_onnx_export``: the first user pays for it, every later call (and
    ``load(backend="onnx")`` without ``onnx_dir``) exercises the reuse path."""
    from indicf5_fast.export.onnx import ensure_onnx_export

    return ensure_onnx_export(tiny_ckpt)
