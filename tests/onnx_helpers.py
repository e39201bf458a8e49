"""Shared helpers of the ONNX tests: one fp32 export of the tiny checkpoint per session.

The export goes to the default location (``<tiny_ckpt>/onnx``) through ``ensure_onnx_export``,
so the first test module pays for it and every later call (and ``load(backend="onnx")`` without
``onnx_dir``) reuses it: the reuse path is exercised on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_export(tiny_ckpt: Path) -> Path:
    from indicf5_fast.export import ensure_onnx_export

    return ensure_onnx_export(tiny_ckpt)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
