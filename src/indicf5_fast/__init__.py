"""indicf5-fast: fast, numerically faithful IndicF5 speech synthesis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "__version__"]


def load(model: str, backend: str = "torch", device: str = "auto", dtype: str = "auto", **kwargs):
    """Load an IndicF5 checkpoint (IndicF5-layout dir, upstream checkpoint, or hub id).

    Returns an :class:`indicf5_fast.engine.TTS`. Extra keyword arguments are fields of
    :class:`indicf5_fast.config.EngineConfig`.
    """
    from indicf5_fast.engine import TTS

    return TTS.load(model, backend=backend, device=device, dtype=dtype, **kwargs)
