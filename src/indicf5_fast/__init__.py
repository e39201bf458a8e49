"""indicf5-fast: fast, numerically faithful IndicF5 speech synthesis."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["IndicF5", "load", "__version__"]

if TYPE_CHECKING:
    from indicf5_fast.compat import IndicF5
    from indicf5_fast.engine import TTS


def load(model: str, backend: str = "torch", device: str = "auto", dtype: str = "auto", **kwargs) -> TTS:
    """Load an IndicF5 checkpoint (IndicF5-layout dir, upstream checkpoint, or hub id).

    Returns an :class:`indicf5_fast.engine.TTS`. Extra keyword arguments are fields of
    :class:`indicf5_fast.config.EngineConfig` or of its ``SamplingOptions`` (e.g. ``nfe_step=7``,
    ``revision="<commit>"``); sampling fields become the defaults of every synthesis call.
    """
    from indicf5_fast.engine import TTS

    return TTS.load(model, backend=backend, device=device, dtype=dtype, **kwargs)


def __getattr__(name: str):
    # IndicF5 (the drop-in for IndicF5's INF5Model) is imported on first use: `import indicf5_fast`
    # stays free of torch
    if name == "IndicF5":
        from indicf5_fast.compat import IndicF5

        return IndicF5
    raise AttributeError(f"module 'indicf5_fast' has no attribute {name!r}")
