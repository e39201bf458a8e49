"""OpenVINO backend (CPU): the same exported ONNX graphs, compiled by OpenVINO with bf16
inference precision on CPUs that have fast bf16 (AVX512-BF16 / AMX), else fp32.

OpenVINO reads the ONNX files directly (dynamic batch and length stay dynamic) and converts
weights/activations to bf16 at compile time, so no separate bf16 export is needed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from indicf5_fast.backends.base import Backend, cpu_has_fast_bf16
from indicf5_fast.backends.onnx_common import GraphBackend, exported_graphs, physical_cores
from indicf5_fast.config import HOP_LENGTH
from indicf5_fast.errors import BackendUnavailableError, InputError, require

if TYPE_CHECKING:
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.model.checkpoint import Checkpoint
    from indicf5_fast.model.dit import DiT
    from indicf5_fast.model.vocos import Vocos


def inference_precision(dtype: str) -> str:
    if dtype in (None, "", "auto"):
        return "bf16" if cpu_has_fast_bf16() else "f32"
    if dtype == "bfloat16":
        return "bf16"
    if dtype == "float32":
        return "f32"
    raise InputError(
        "backend openvino runs float32 or bfloat16 on the CPU (float16 is not fast here)", "dtype"
    )


class OpenVINOBackend(GraphBackend):
    name = "openvino"

    def __init__(self, onnx_dir: Path, manifest: dict, precision: str, threads: int | None = None):
        ov = require("openvino", "openvino", "backend openvino")
        self.onnx_dir, self.manifest, self.precision = Path(onnx_dir), manifest, precision
        self.device = torch.device("cpu")
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.threads = threads or physical_cores()
        self.text_dim = manifest["dit_args"]["text_dim"]
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": 1,
        }
        self._compiled = {}
        self._requests = {}
        self._locks = {}
        for graph, info in manifest["graphs"].items():
            # the vocoder stays f32: its ISTFT basis matmul is sensitive and cheap
            cfg = {**config, "INFERENCE_PRECISION_HINT": "f32"} if graph == "vocoder" else config
            try:
                compiled = core.compile_model(core.read_model(str(self.onnx_dir / info["file"])), "CPU", cfg)
            except Exception as e:  # OpenVINO raises RuntimeError subclasses with long messages
                raise BackendUnavailableError(f"OpenVINO could not compile {info['file']}: {e}") from e
            self._compiled[graph] = compiled
            self._requests[graph] = compiled.create_infer_request()
            self._locks[graph] = threading.Lock()  # an infer request is not thread-safe

    def _run(self, graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in feeds.items()}
        with self._locks[graph]:
            result = self._requests[graph].infer(arrays)
            out = np.array(result[self._compiled[graph].output(0)], dtype=np.float32, copy=True)
        return torch.from_numpy(out)

    @torch.inference_mode()
    def text_embed(self, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        return self._run("text_embed", {"tokens": tokens.to(torch.int64), "drop": drop.to(torch.bool)})

    @torch.inference_mode()
    def velocity(self, x, cond, text_emb, t, mask):
        b, n, _ = x.shape
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool)
        feeds = {
            "x": x.float(),
            "cond": cond.float(),
            "text_emb": text_emb.float(),
            "t": t.float().reshape(-1).expand(b),
            "mask": mask.bool(),
        }
        return self._run("velocity", feeds)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        wave = self._run("vocoder", {"mel": mel.float()})
        return wave.reshape(mel.shape[0], max(0, mel.shape[-1] - 1) * HOP_LENGTH)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "precision": self.precision,
            "onnx_dir": str(self.onnx_dir),
            "variant": self.manifest["variant"],
            "threads": self.threads,
        }


def create_openvino_backend(
    config: EngineConfig, ckpt: Checkpoint, dit: DiT, vocos: Vocos, device: torch.device
) -> Backend:
    if device.type != "cpu" and config.device not in (None, "", "auto"):
        raise BackendUnavailableError("backend openvino runs on the CPU here (use --device cpu)")
    precision = inference_precision(config.dtype)
    require("openvino", "openvino", "backend openvino")  # fail before a possibly long export
    onnx_dir, manifest = exported_graphs(config, ckpt, dit, vocos)
    return OpenVINOBackend(onnx_dir, manifest, precision, threads=config.threads)
