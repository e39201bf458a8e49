"""Our upstream chunk plan equals upstream f5-tts's own ``chunk_text`` (the IndicF5 split: after
``; : , . ! ?`` + whitespace and the CJK marks, never at a danda; packed by UTF-8 bytes)."""

from __future__ import annotations

from importlib import resources

import pytest

from indicf5_fast.frontend.text import chunk_text
from upstream_oracle import upstream_chunk_text


def _bundled() -> dict[str, list[str]]:
    root = resources.files("indicf5_fast") / "data" / "texts"
    out = {}
    for p in sorted(root.iterdir(), key=lambda p: p.name):
        if p.name.endswith(".txt"):
            lines = p.read_text(encoding="utf-8").splitlines()
            out[p.name[:-4]] = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return out


TEXTS = _bundled()
# the demo voice's IndicF5 budget is ~750 bytes; smaller budgets force real packing decisions
BUDGETS = (20, 60, 135, 300, 750)


def test_bundled_texts_cover_all_eleven_languages():
    assert len(TEXTS) == 11 and all(len(v) >= 10 for v in TEXTS.values())


@pytest.mark.parametrize("lang", sorted(TEXTS))
def test_chunk_text_equals_upstream_on_bundled_texts(lang):
    upstream = upstream_chunk_text()
    lines = TEXTS[lang]
    cases = [*lines, " ".join(lines), "\n".join(lines)]  # each line, and the file as paragraphs
    for text in cases:
        for budget in BUDGETS:
            assert chunk_text(text, budget) == upstream(text, max_chars=budget), (lang, budget, text[:40])
