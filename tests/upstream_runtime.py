"""Upstream F5-TTS's inference loaders and its TensorRT-LLM Triton runtime, importable on a CPU
(test-only oracles for ``export f5tts`` and ``--triton-protocol upstream``).

- ``utils_infer()``: ``f5_tts.infer.utils_infer`` (``load_model``, ``load_vocoder``); it imports
  transformers (ASR only, unused here), torchaudio and vocos at module level: stubbed as the
  oracle does (``upstream_oracle``), transformers by a stand-in without ``pipeline``.
- ``convert_checkpoint()``: ``runtime/triton_trtllm/scripts/convert_checkpoint.py``; its only
  TensorRT-LLM needs at conversion time with one GPU (tp = 1) are ``str_dtype_to_torch``,
  ``Mapping`` and the tensor-parallel ``split`` helpers, given here for tp = 1 only.
- ``trtllm_runtime()``: ``model_repo_f5_tts/f5_tts/1/f5_tts_trtllm.py`` for its PyTorch parts
  (``TextEmbedding``, ``get_text_embed_dict``); tensorrt / tensorrt_llm are stubbed at import
  and nothing that needs them is called.
- ``triton_model(vocoder)``: upstream's python-backend ``model.py`` of the ``f5_tts`` Triton
  model, with ``triton_python_backend_utils`` replaced by a small in-process stand-in whose
  "vocoder" model calls ``vocoder``. Its ``execute`` runs unchanged.

Stubs are placed in ``sys.modules`` only while a module imports, then removed, so no other test
sees a fake tensorrt_llm or triton module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from upstream_oracle import install_torchaudio_standins


def runtime_dir() -> Path:
    spec = importlib.util.find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("upstream f5-tts is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "runtime" / "triton_trtllm"
    if not path.is_dir():
        pytest.skip(f"this f5-tts has no runtime/triton_trtllm ({path})")
    return path


def utils_infer():
    pytest.importorskip("x_transformers")
    pytest.importorskip("torchdiffeq")
    install_torchaudio_standins()  # skips without librosa
    pytest.importorskip("vocos")
    if "f5_tts.infer.utils_infer" in sys.modules:
        return sys.modules["f5_tts.infer.utils_infer"]
    mods = {}
    if importlib.util.find_spec("transformers") is None:  # ASR pipeline only: unused here
        mods["transformers"] = _module("transformers", pipeline=None)
    with _temporary_modules(mods):
        import f5_tts.infer.utils_infer as ui
    return ui


@contextlib.contextmanager
def _temporary_modules(mods: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _load(path: Path, name: str, mods: dict[str, types.ModuleType]) -> types.ModuleType:
    with _temporary_modules(mods):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


# ---------------------------------------------------------------------------- convert_checkpoint
class _Mapping:
    def __init__(self, world_size=1, rank=0, cp_size=1, tp_size=1, pp_size=1, **_):
        assert world_size == tp_size == cp_size == pp_size == 1, "stand-in supports one GPU only"
        self.world_size, self.rank, self.tp_size, self.tp_rank = 1, rank, 1, 0


def _split_tp1(v, tp_size, idx, dim=0):
    assert tp_size == 1 and idx == 0, "stand-in supports tp_size 1 only"
    return v


def convert_checkpoint() -> types.ModuleType:
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    mods = {
        "tensorrt_llm": _module("tensorrt_llm", str_dtype_to_torch=dtypes.__getitem__),
        "tensorrt_llm.mapping": _module("tensorrt_llm.mapping", Mapping=_Mapping),
        "tensorrt_llm.models": _module("tensorrt_llm.models"),
        "tensorrt_llm.models.convert_utils": _module(
            "tensorrt_llm.models.convert_utils",
            split=_split_tp1,
            split_matrix_tp=lambda v, tp, idx, dim=0: _split_tp1(v, tp, idx, dim),
        ),
    }
    return _load(runtime_dir() / "scripts" / "convert_checkpoint.py", "_up_convert_checkpoint", mods)


# ---------------------------------------------------------------------------- f5_tts_trtllm
def trtllm_runtime() -> types.ModuleType:
    trt_llm = _module("tensorrt_llm", mpi_rank=lambda: 0, Mapping=_Mapping)
    mods = {
        "tensorrt": _module("tensorrt", TensorIOMode=types.SimpleNamespace(OUTPUT=1)),
        "tensorrt_llm": trt_llm,
        "tensorrt_llm._utils": _module(
            "tensorrt_llm._utils", str_dtype_to_torch=None, trt_dtype_to_torch=None
        ),
        "tensorrt_llm.logger": _module("tensorrt_llm.logger", logger=None),
        "tensorrt_llm.runtime": _module("tensorrt_llm.runtime"),
        "tensorrt_llm.runtime.session": _module("tensorrt_llm.runtime.session", Session=None),
    }
    path = runtime_dir() / "model_repo_f5_tts" / "f5_tts" / "1" / "f5_tts_trtllm.py"
    return _load(path, "_up_f5_tts_trtllm", mods)


# ---------------------------------------------------------------------------- model.py (f5_tts)
class PbTensor:
    """``pb_utils.Tensor``: a name + a torch tensor (numbers) or a numpy object array (strings)."""

    def __init__(self, name: str, data):
        self._name, self._data = name, data

    @classmethod
    def from_dlpack(cls, name: str, capsule) -> PbTensor:
        return cls(name, torch.utils.dlpack.from_dlpack(capsule))

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        d = self._data
        return d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)

    def to_dlpack(self):
        d = self._data
        t = d if isinstance(d, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(d))
        return torch.utils.dlpack.to_dlpack(t)


class PbRequest:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.tensors = {k: PbTensor(k, v) for k, v in arrays.items()}


class PbResponse:
    def __init__(self, output_tensors=(), error=None):
        self._outputs, self._error = list(output_tensors), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return types.SimpleNamespace(message=lambda: str(self._error))

    def output_tensors(self) -> list[PbTensor]:
        return self._outputs


def _pb_utils(models: dict[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]]):
    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs):
            self.model_name, self.inputs = model_name, inputs

        def exec(self) -> PbResponse:  # BLS call of another model of the repository
            fn = models[self.model_name]
            tensors = {t.name(): torch.utils.dlpack.from_dlpack(t.to_dlpack()) for t in self.inputs}
            return PbResponse([PbTensor(k, v) for k, v in fn(tensors).items()])

    def by_name(obj, name):
        items = obj.tensors.values() if isinstance(obj, PbRequest) else obj.output_tensors()
        return next((t for t in items if t.name() == name), None)

    return _module(
        "triton_python_backend_utils",
        Tensor=PbTensor,
        InferenceRequest=InferenceRequest,
        InferenceResponse=PbResponse,
        TritonModelException=RuntimeError,
        get_input_tensor_by_name=by_name,
        get_output_tensor_by_name=by_name,
    )


def triton_model_module(vocoder: Callable[[torch.Tensor], torch.Tensor]) -> types.ModuleType:
    """Upstream's ``f5_tts`` python-backend module; its BLS "vocoder" model runs ``vocoder``
    (mel [b, 100, n] -> wave [b, samples]) in place of the TensorRT Vocos engine."""
    install_torchaudio_standins()
    pytest.importorskip("pypinyin")
    pytest.importorskip("rjieba")
    pb = _pb_utils({"vocoder": lambda t: {"waveform": vocoder(t["mel"])}})
    mods = {
        "triton_python_backend_utils": pb,
        "f5_tts_trtllm": _module("f5_tts_trtllm", F5TTS=None),  # the engine: given per instance
    }
    return _load(runtime_dir() / "model_repo_f5_tts" / "f5_tts" / "1" / "model.py", "_up_f5_tts_model", mods)


# ---------------------------------------------------------------------------- config.pbtxt
_TYPES = {"TYPE_FP32": np.float32, "TYPE_INT32": np.int32, "TYPE_STRING": np.bytes_}


def model_config(model: str = "f5_tts") -> dict:
    """Upstream's ``config.pbtxt`` of a model: name, max_batch_size, inputs, outputs (parsed)."""
    text = (runtime_dir() / "model_repo_f5_tts" / model / "config.pbtxt").read_text()

    def tensors(section: str) -> list[dict]:
        body = re.search(rf"\n{section}\s*\[(.*?)\n\]", text, re.S).group(1)
        out = []
        for block in re.findall(r"\{(.*?)\}", body, re.S):
            dims = re.search(r"dims:\s*\[([^\]]*)\]", block).group(1)
            out.append(
                {
                    "name": re.search(r'name:\s*"([^"]+)"', block).group(1),
                    "dtype": _TYPES[re.search(r"data_type:\s*(\w+)", block).group(1)],
                    "shape": tuple(int(d) for d in dims.split(",")),
                    "optional": bool(re.search(r"optional:\s*True", block, re.I)),
                }
            )
        return out

    return {
        "name": re.search(r'name:\s*"([^"]+)"', text).group(1),
        "max_batch_size": int(re.search(r"max_batch_size:\s*(\d+)", text).group(1)),
        "inputs": tensors("input"),
        "outputs": tensors("output"),
    }
