"""One configuration: flags and environment variables derived from the EngineConfig fields, the
engine's sampling defaults coming from its config (issue 10 bug 1), one table of bounds shared by
config, HTTP protocol and Triton tensors, and the Backend contract."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

import indicf5_fast
from indicf5_fast.config import (
    ALIASES,
    BOUNDS,
    EngineConfig,
    SamplingOptions,
    add_config_args,
    config_from_args,
    env_name,
    flag,
)
from indicf5_fast.errors import InputError

TEXT = "नमस्ते, आप कैसे हैं?"


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_args(p, **kw)
    return p


def _config(argv: list[str], env: dict | None = None, **kw) -> EngineConfig:
    return config_from_args(_parser(**kw).parse_args(argv), env=env or {})


# ------------------------------------------------------------------ flags and environment
def test_every_field_has_its_flag_and_env_var():
    p = _parser()
    options = {s for a in p._actions for s in a.option_strings}
    names = EngineConfig.field_names() - {"sampling"}
    for name in names:
        assert flag(name) in options, name
        assert name.replace("_", "-") in flag(name) and env_name(name) == "INDICF5_" + name.upper()
    assert {"--nfe", "--cfg", "--sway", "--preset"} <= options  # the documented aliases + preset
    assert set(ALIASES) <= names


def test_flag_beats_env_beats_default():
    env = {"INDICF5_NFE_STEP": "9", "INDICF5_DEVICE": "cpu", "INDICF5_COMPILE": "yes"}
    cfg = _config(["--nfe-step", "5", "--model", "m"], env)
    assert (cfg.sampling.nfe_step, cfg.device, cfg.compile, cfg.model) == (5, "cpu", True, "m")
    cfg = _config(["--model", "m"], env)
    assert cfg.sampling.nfe_step == 9
    assert _config(["--nfe", "4"]).sampling.nfe_step == 4  # alias
    assert _config(["--no-compile"], env).compile is False  # a flag can switch an env bool off
    assert _config([]) == EngineConfig()


def test_env_types_and_bad_values():
    env = {
        "INDICF5_PROVIDERS": "cuda, cpu",
        "INDICF5_SWAY_SAMPLING_COEF": "none",
        "INDICF5_THREADS": "3",
        "INDICF5_BATCH_WAIT_MS": "2.5",
    }
    cfg = _config([], env)
    assert cfg.providers == ["cuda", "cpu"] and cfg.sampling.sway_sampling_coef is None
    assert cfg.threads == 3 and cfg.batch_wait_ms == 2.5
    with pytest.raises(InputError, match="INDICF5_NFE_STEP: expected an integer"):
        _config([], {"INDICF5_NFE_STEP": "many"})
    with pytest.raises(InputError, match="nfe_step"):
        _config([], {"INDICF5_NFE_STEP": "0"})
    with pytest.raises(InputError, match="INDICF5_COMPILE"):
        _config([], {"INDICF5_COMPILE": "maybe"})


def test_preset_is_the_base_that_fields_override():
    assert _config(["--preset", "fast"]).sampling == SamplingOptions.preset("fast")
    cfg = _config(["--preset", "fast", "--nfe-step", "10"])
    assert (cfg.sampling.nfe_step, cfg.sampling.schedule) == (10, "epss")
    cfg = _config([], {"INDICF5_PRESET": "fast", "INDICF5_SPEED": "1.5"})
    assert (cfg.sampling.nfe_step, cfg.sampling.speed) == (7, 1.5)


def test_only_exposed_fields_are_read():
    """A command reads flags/env only for the fields it exposes (bench's --compile is its own)."""
    p = argparse.ArgumentParser()
    p.add_argument("--compile", default="off,on")
    add_config_args(p, only=("device",), defaults={"device": "cpu"})
    args = p.parse_args([])
    cfg = config_from_args(args, env={"INDICF5_COMPILE": "1", "INDICF5_NFE_STEP": "3"}, defaults={"device": "cpu"})
    assert cfg.compile is False and cfg.sampling.nfe_step == 32 and cfg.device == "cpu"
    cfg = config_from_args(args, env={"INDICF5_DEVICE": "cuda"}, defaults={"device": "cpu"})
    assert cfg.device == "cuda"


def test_bad_flag_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["--nfe-step", "x"])
    assert e.value.code == 2 and "--nfe-step: expected an integer" in capsys.readouterr().err


def test_replace_rejects_unknown_names():
    with pytest.raises(InputError, match="nfe_steps"):
        EngineConfig().replace(nfe_steps=3)
    with pytest.raises(InputError, match="bogus"):
        SamplingOptions().replace(bogus=1)
    assert EngineConfig().replace(nfe_step=3, dtype="float32").sampling.nfe_step == 3


# ------------------------------------------------------------------ one table of bounds
def test_bounds_shared_by_config_protocol_and_triton():
    from indicf5_fast.deploy.triton import tensors
    from indicf5_fast.deploy.triton.pytriton_server import TritonServeConfig
    from indicf5_fast.server.protocol import SpeechRequest

    props = SpeechRequest.model_json_schema()["properties"]
    for name in ("nfe_step", "speed", "seed"):
        b = BOUNDS[name]
        schema = next(s for s in props[name]["anyOf"] if s.get("type") in ("integer", "number"))
        assert (schema["minimum"], schema["maximum"]) == (b.lo, b.hi), name
    hi = BOUNDS["nfe_step"].hi
    SamplingOptions(nfe_step=hi).validate()
    with pytest.raises(InputError):
        SamplingOptions(nfe_step=hi + 1).validate()
    with pytest.raises(InputError, match="nfe_step"):  # before the value reaches an int32 tensor
        tensors.encode_request("x", voice="demo", nfe_step=2**40)
    with pytest.raises(InputError, match="seed"):
        tensors.encode_request("x", voice="demo", seed=-5)
    TritonServeConfig(max_batch=BOUNDS["max_batch_size"].hi).validate()
    with pytest.raises(InputError):
        TritonServeConfig(max_batch=BOUNDS["max_batch_size"].hi + 1).validate()
    with pytest.raises(InputError, match="max_batch_size"):
        EngineConfig(max_batch_size=0).validate()


def test_no_sway_is_zero_sway():
    """sway_sampling_coef None means "engine default" in calls; 0.0 gives exactly the unswayed grid."""
    from indicf5_fast.sampling import time_grid

    for nfe, schedule in ((32, "uniform"), (7, "epss"), (5, "uniform")):
        assert torch.equal(time_grid(nfe, schedule, None), time_grid(nfe, schedule, 0.0))


# ------------------------------------------------------------------ bug 1: config defaults apply
class Counting:
    """Backend proxy counting DiT passes (CFG packs cond + uncond into one pass per step)."""

    def __init__(self, inner):
        self.inner, self.passes = inner, 0

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def velocity(self, *args):
        self.passes += 1
        return self.inner.velocity(*args)


@pytest.fixture(scope="module")
def tts7(tiny_ckpt):
    tts = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32", nfe_step=7, schedule="epss")
    tts.backend = Counting(tts.backend)
    return tts


def test_load_sampling_options_are_the_defaults_of_synthesize(tts7, tiny_tts, demo):
    assert tts7.config.sampling.nfe_step == 7
    tts7.backend.passes = 0
    got = tts7.synthesize(TEXT, voice=demo, seed=2)
    assert tts7.backend.passes == 7
    want = tiny_tts.synthesize(TEXT, voice=demo, seed=2, nfe_step=7, schedule="epss")
    np.testing.assert_array_equal(got, want)
    tts7.backend.passes = 0
    tts7.synthesize(TEXT, voice=demo, seed=2, nfe_step=3)  # an explicit argument overrides
    assert tts7.backend.passes == 3
    req = tts7.make_request(TEXT, voice=demo, nfe_step=None, speed=None)
    assert (req.options.nfe_step, req.options.schedule, req.options.speed) == (7, "epss", 1.0)
    assert tts7.make_request(TEXT, voice=demo, preset="quality").options.nfe_step == 32


def test_sample_mel_defaults_come_from_config(tts7, tiny_tts, demo):
    text = demo.text + TEXT
    tts7.backend.passes = 0
    got = tts7.sample_mel(demo.mel.numpy(), text, demo.frames + 40, seed=1)
    assert tts7.backend.passes == 7
    want = tiny_tts.sample_mel(demo.mel.numpy(), text, demo.frames + 40, nfe_step=7, schedule="epss", seed=1)
    np.testing.assert_array_equal(got, want)


def test_from_config_is_load(tiny_ckpt, tiny_tts, demo):
    from indicf5_fast.engine import TTS

    cfg = EngineConfig(model=str(tiny_ckpt), device="cpu", dtype="float32")
    tts = TTS.from_config(cfg)
    assert tts.config == tiny_tts.config
    np.testing.assert_array_equal(
        tts.synthesize(TEXT, voice=demo, seed=4, nfe_step=4), tiny_tts.synthesize(TEXT, voice=demo, seed=4, nfe_step=4)
    )
    with pytest.raises(InputError, match="model"):
        TTS.from_config(EngineConfig())


def test_remote_synthesize_takes_the_engine_arguments():
    from indicf5_fast.deploy.triton.remote import RemoteTTS
    from indicf5_fast.engine import TTS

    ours, theirs = inspect.signature(TTS.synthesize), inspect.signature(RemoteTTS.synthesize)
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]


# ------------------------------------------------------------------ bug 3: one reference decoding
def test_remote_decodes_a_stereo_reference_like_the_engine(tiny_tts, demo_voice):
    from indicf5_fast.deploy.triton.remote import RemoteTTS
    from indicf5_fast.frontend.audio import read_audio, read_reference

    wav, text = demo_voice
    mono, sr = read_audio(wav)
    stereo = np.stack([mono, 0.5 * mono])  # [2, n]
    remote = RemoteTTS(EngineConfig(backend="remote", triton_url="grpc://127.0.0.1:9"))  # never connects
    for given in (stereo, stereo.T.copy(), torch.from_numpy(stereo), (stereo, sr)):
        voice = remote.prepare_voice(given, text, sample_rate=sr)
        want, want_sr = read_reference(given, sr)
        assert voice.wave.shape == mono.shape and voice.sample_rate == want_sr == sr
        np.testing.assert_array_equal(voice.wave, want)
        np.testing.assert_allclose(voice.wave, 0.75 * mono, rtol=1e-6, atol=1e-7)
    # the engine sees the same wave: the same voice as the mono mix itself
    assert tiny_tts.prepare_voice((stereo, sr), text).key == tiny_tts.prepare_voice((0.75 * mono, sr), text).key


# ------------------------------------------------------------------ the Backend contract
def test_backend_contract_is_complete_and_uniform():
    from indicf5_fast.backends.base import Backend
    from indicf5_fast.backends.onnx_backend import OnnxBackend
    from indicf5_fast.backends.openvino_backend import OpenVINOBackend
    from indicf5_fast.backends.torch_backend import TorchBackend
    from indicf5_fast.bench.measure import StageTimer

    assert Backend.frame_bucket == 1 and Backend.device == torch.device("cpu")
    want = list(inspect.signature(Backend.warmup).parameters)
    for cls in (TorchBackend, OnnxBackend, OpenVINOBackend, StageTimer):
        assert list(inspect.signature(cls.warmup).parameters) == want, cls


def test_engine_uses_the_backend_contract_only(tiny_ckpt, demo):
    """A compiled-style backend (frame_bucket > 1) pads frames; the engine reads the attribute."""
    tts = indicf5_fast.load(str(tiny_ckpt), device="cpu", dtype="float32")
    plain = tts.synthesize(TEXT, voice=demo, seed=6, nfe_step=3)
    tts.backend.frame_bucket = 16
    frames: list[int] = []
    velocity = tts.backend.velocity
    tts.backend.velocity = lambda x, *a: (frames.append(x.shape[1]), velocity(x, *a))[1]
    bucketed = tts.synthesize(TEXT, voice=demo, seed=6, nfe_step=3)
    assert frames and all(n % 16 == 0 for n in frames)
    np.testing.assert_allclose(bucketed, plain, atol=1e-4)


def test_onnx_and_openvino_backends_do_not_import_each_other():
    code = (
        "import sys, indicf5_fast.backends.openvino_backend as ov, indicf5_fast.backends.onnx_backend as ox;"
        "import ast, inspect;"
        "names = lambda m: {n.module for n in ast.walk(ast.parse(inspect.getsource(m))) if isinstance(n, ast.ImportFrom)};"
        "assert 'indicf5_fast.backends.onnx_backend' not in names(ov), names(ov);"
        "assert 'indicf5_fast.backends.openvino_backend' not in names(ox), names(ox)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_dataclass_docstring_lists_every_field():
    import indicf5_fast.config as config

    doc = config.__doc__ or ""
    for f in dataclasses.fields(EngineConfig) + dataclasses.fields(SamplingOptions):
        assert f.name in doc, f.name
