"""indicf5-fast: fast, numerically faithful IndicF5 speech synthesis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "normalize_text", "__version__"]


def load(model: str, backend: str = "torch", device: str = "auto", dtype: str = "auto", **kwargs):
    """Load an IndicF5 checkpoint (IndicF5-layout dir, upstream checkpoint, or hub id).

    Returns an :class:`indicf5_fast.engine.TTS`. Extra keyword arguments are fields of
    :class:`indicf5_fast.config.EngineConfig`.
    """
    from indicf5_fast.engine import TTS

    return TTS.load(model, backend=backend, device=device, dtype=dtype, **kwargs)


def normalize_text(text: str, lang: str | None = None) -> str:
    """Numbers, amounts, percentages, units, dates and times written out as words in the language
    around them ("₹2,500" -> "दो हज़ार पाँच सौ भारतीय रुपए"); ``lang`` is an ISO 639-1 code (as bn
    gu hi kn ml mr or pa ta te en) or None to infer it from the script. Text without a digit is
    returned unchanged; the function is idempotent. See ``indicf5_fast.frontend.normalize``.
    """
    from indicf5_fast.frontend.normalize import normalize_text as _normalize_text

    return _normalize_text(text, lang)
