"""What the ONNX Runtime and OpenVINO backends share: the exported graphs (found or made once),
their warm-up, and the CPU core count both size their thread pools by.

Both backends run the same three exported graphs (``indicf5_fast.export.onnx``); only the runtime
differs. Kept apart from either backend so neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from indicf5_fast.backends.base import Backend
from indicf5_fast.config import N_MELS

if TYPE_CHECKING:
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.model.checkpoint import Checkpoint
    from indicf5_fast.model.dit import DiT
    from indicf5_fast.model.vocos import Vocos


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads slow the runtimes' GEMMs down)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        phys = core = ""
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                    cores.add((phys, core))
    except OSError:
        pass
    return max(1, min(usable, len(cores) or usable))


def exported_graphs(
    config: EngineConfig, ckpt: Checkpoint, dit: DiT, vocos: Vocos, fp16: bool = False
) -> tuple[Path, dict]:
    """``config.onnx_dir`` if given, else the export next to the checkpoint (made once, reused
    afterwards) -> (directory, manifest checked against the checkpoint)."""
    from indicf5_fast.export.onnx import check_manifest, ensure_onnx_export, read_manifest

    if config.onnx_dir:
        onnx_dir = Path(config.onnx_dir)
    else:
        onnx_dir = Path(ensure_onnx_export(ckpt.source, fp16=fp16, checkpoint=ckpt, modules=(dit, vocos)))
    manifest = read_manifest(onnx_dir)
    check_manifest(manifest, ckpt, onnx_dir)
    return onnx_dir, manifest


class GraphBackend(Backend):
    """A backend running the three exported graphs: one warm-up for both runtimes."""

    def warmup(
        self, frame_lengths: list[int], batch_sizes: tuple[int, ...] = (1,), cfg_free: bool = False
    ) -> None:
        """One pass per (length, batch): sizes the runtime's memory arenas (and builds TensorRT
        engines, cached on disk) before the first request."""
        dev = self.device
        for n in sorted(set(frame_lengths)):
            emb = self.text_embed(torch.zeros(2, n, dtype=torch.int64), torch.tensor([False, True]))
            for b in batch_sizes:
                for rows in (2 * b, b) if cfg_free else (2 * b,):
                    x = torch.zeros(rows, n, N_MELS, device=dev)
                    self.velocity(x, x, emb[:1].expand(rows, -1, -1), torch.zeros(rows, device=dev), None)
            self.vocode(torch.zeros(1, N_MELS, n, device=dev))
