"""indicf5-fast: fast, numerically faithful IndicF5 speech synthesis."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["IndicF5", "load", "normalize_text", "__version__"]

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


def normalize_text(text: str, lang: str | None = None) -> str:
    """Numbers, amounts, percentages, units, dates and times written out as words in the language
    around them ("₹2,500" -> "दो हज़ार पाँच सौ भारतीय रुपए"); ``lang`` is an ISO 639-1 code (as bn
    gu hi kn ml mr or pa ta te en) or None to infer it from the script. Text without a digit is
    returned unchanged; the function is idempotent. See ``indicf5_fast.frontend.normalize``.
    """
    from indicf5_fast.frontend.normalize import normalize_text as _normalize_text

    return _normalize_text(text, lang)
