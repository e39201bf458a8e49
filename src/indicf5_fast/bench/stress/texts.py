"""The load-test text set: bundled Indic texts (IndicF5's 11 languages) or a user file.

A text file holds one request text per line; blank lines and lines starting with '#' are
skipped. A `.jsonl` file holds one object per line with a "text" key (optional "lang", "kind").
The kind (short sentence / long sentence / paragraph) is derived from the length, so user files
need no markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from indicf5_fast.errors import InputError

KINDS = ("short", "long", "paragraph")
SHORT_MAX_CHARS = 60  # below: a short sentence
LONG_MAX_CHARS = 200  # below: a long sentence; at or above: a paragraph
MAX_TEXTS = 100_000  # bound on what a user file may load
LANGUAGE_NAMES = {
    "as": "Assamese",
    "hi": "Hindi",
    "mr": "Marathi",
    "bn": "Bengali",
    "ta": "Tamil",
    "te": "Telugu",
    "kn": "Kannada",
    "ml": "Malayalam",
    "gu": "Gujarati",
    "pa": "Punjabi",
    "or": "Odia",
}


@dataclass(frozen=True)
class TextItem:
    text: str
    lang: str  # ISO 639-1 code, or "" when unknown
    kind: str  # one of KINDS


def classify(text: str) -> str:
    n = len(text)
    if n < SHORT_MAX_CHARS:
        return "short"
    return "long" if n < LONG_MAX_CHARS else "paragraph"


def bundled_languages() -> list[str]:
    root = resources.files("indicf5_fast") / "data" / "texts"
    return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".txt"))


def _parse_lines(raw: str, lang: str, source: str) -> list[TextItem]:
    items = []
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        items.append(TextItem(line, lang, classify(line)))
        if len(items) > MAX_TEXTS:
            raise InputError(f"{source}: more than {MAX_TEXTS} texts", "texts")
    return items


def _parse_jsonl(raw: str, source: str) -> list[TextItem]:
    items = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{source}:{n}: not JSON ({e.msg})", "texts") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
            raise InputError(f'{source}:{n}: expected an object with a non-empty "text"', "texts")
        text = obj["text"].strip()
        kind = obj.get("kind") if obj.get("kind") in KINDS else classify(text)
        items.append(TextItem(text, str(obj.get("lang", "")), kind))
        if len(items) > MAX_TEXTS:
            raise InputError(f"{source}: more than {MAX_TEXTS} texts", "texts")
    return items


def load_texts(
    path: str | None = None,
    langs: list[str] | None = None,
    kinds: list[str] | None = None,
) -> list[TextItem]:
    """Texts for the load. `path` None = the bundled set; `langs`/`kinds` filter it."""
    if kinds:
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise InputError(f"unknown text kind(s) {bad} (expected {list(KINDS)})", "kinds")
    if path is None:
        available = bundled_languages()
        wanted = langs or available
        missing = [code for code in wanted if code not in available]
        if missing:
            raise InputError(f"no bundled texts for {missing} (available: {available})", "langs")
        root = resources.files("indicf5_fast") / "data" / "texts"
        items = []
        for code in wanted:
            items += _parse_lines((root / f"{code}.txt").read_text(encoding="utf-8"), code, code)
    else:
        p = Path(path)
        try:
            raw = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read texts file {path}: {e}", "texts") from e
        items = _parse_jsonl(raw, path) if p.suffix == ".jsonl" else _parse_lines(raw, "", path)
        if langs:
            items = [t for t in items if t.lang in langs]
    if kinds:
        items = [t for t in items if t.kind in kinds]
    if not items:
        raise InputError("the text set is empty after filtering", "texts")
    return items


def soak_texts(langs: tuple[str, ...] = ("hi", "ta")) -> list[TextItem]:
    """The soak's default load: the first short sentence of each of `langs`. A fixed, small set on
    purpose: the soak looks for per-request leaks, and a varied load would also measure the
    per-shape caches of the CPU kernels (oneDNN) filling up, which grow RSS until every request
    length has been seen (see the README's Reliability section)."""
    items = load_texts(langs=list(langs), kinds=["short"])
    return [next(t for t in items if t.lang == code) for code in langs]
