"""Chunk planner (frontend/chunking.py): budgets, word and grapheme integrity, the stream shape."""

from __future__ import annotations

import re
import unicodedata

import pytest

from indicf5_fast.errors import InputError
from indicf5_fast.frontend.chunking import (
    StreamShape,
    grapheme_clusters,
    plan_chunks,
    split_oversize,
)
from indicf5_fast.frontend.text import chunk_text, utf8_len
from test_chunk_parity import TEXTS

BPS = 35.0  # the demo voice: ~84 bytes of reference text in 2.4 s
BUDGET = 750  # its IndicF5 budget
# one paragraph per IndicF5 language (the 10 bundled + Assamese), with each script's marks
PARAGRAPHS = {
    "as": "আজি বতৰ বৰ ভাল। আমি নদীৰ পাৰলৈ খোজ কাঢ়ি গ'লোঁ, তাত বহুত মানুহ আছিল। সন্ধিয়া আমি ঘৰলৈ উভতি আহিলোঁ॥",
    **{lang: lines[-1] for lang, lines in TEXTS.items()},
}
HINDI_PARAGRAPH = (
    "मानसून के आते ही गाँव की तस्वीर बदल जाती है। खेतों में हरियाली छा जाती है, तालाब पानी से भर "
    "जाते हैं और बच्चे बारिश में खेलते हैं। शाम होते ही मेंढकों की आवाज़ें पूरे गाँव में गूँजने लगती हैं।"
)
# ~2 800 characters of Hindi without one sentence mark: upstream makes it a single chunk
UNPUNCTUATED = " ".join(["यह एक बहुत लंबा वाक्य है जिसमें कोई विराम चिह्न नहीं है और यह चलता रहता है"] * 37)
GIANT_WORD = "क्षत्रियस्त्रीद्वारा" * 150  # no space at all


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _check_plan(text: str, chunks: list[str], budget: int) -> None:
    """No chunk empty or over the budget, nothing dropped or reordered, no word cut while it
    fits the budget, no grapheme cluster cut."""
    assert chunks and all(c and c == c.strip() for c in chunks)
    assert max(utf8_len(c) for c in chunks) <= budget
    assert _squash("".join(chunks)) == _squash(text)
    # upstream's split re-joins its sentences with one space, so compare on single-spaced text
    text, chunks = re.sub(r"\s+", " ", text), [re.sub(r"\s+", " ", c) for c in chunks]
    pos = 0
    for left, right in zip(chunks, chunks[1:], strict=False):
        pos = text.index(left, pos) + len(left)
        gap = text[pos : text.index(right, pos)]
        assert gap.strip() == ""
        if gap:  # a cut at whitespace
            continue
        # no whitespace at the cut: after a mark, or inside a word longer than the budget
        word = text[:pos].split()[-1] + text[pos:].split()[0]
        assert left[-1] in "।॥|。！？" or utf8_len(word) > budget, (left[-8:], right[:8])
        if unicodedata.category(right[0]).startswith("M"):  # inside a cluster: only a huge one
            cluster = grapheme_clusters(left[-12:] + right[:12])
            assert max(utf8_len(c) for c in cluster) > budget, "cut inside a grapheme cluster"


@pytest.mark.parametrize("lang", sorted(TEXTS))
@pytest.mark.parametrize("budget", [60, 135, 300, BUDGET])
def test_upstream_policy_is_chunk_text_when_every_piece_fits(lang, budget):
    for text in [*TEXTS[lang], " ".join(TEXTS[lang])]:
        upstream = chunk_text(text, budget)
        got = plan_chunks(text, "upstream", budget, BPS)
        if max(utf8_len(c) for c in upstream) <= budget:
            assert got == upstream
        else:  # upstream left a sentence over the budget: only that chunk is split further
            _check_plan(text, got, budget)
            fitting = [c for c in upstream if utf8_len(c) <= budget]
            assert all(c in got for c in fitting)


def test_upstream_packing_kept_when_a_smaller_hard_budget_splits_one_piece():
    text = "छोटा वाक्य है, " + UNPUNCTUATED[:600] + ". आख़िरी वाक्य।"
    got = plan_chunks(text, "upstream", 200, BPS, upstream_bytes=BUDGET)
    _check_plan(text, got, 200)
    assert got[0].startswith("छोटा वाक्य है,")  # upstream packed it with the long sentence
    assert len(got) > 1


@pytest.mark.parametrize("policy", ["upstream", "stream"])
@pytest.mark.parametrize("budget", [40, 100, 300, BUDGET])
def test_no_chunk_over_budget_long_unpunctuated_text_and_giant_word(policy, budget):
    assert len(UNPUNCTUATED) > 2700 and len(chunk_text(UNPUNCTUATED, budget)) == 1  # upstream: one chunk
    for text in (UNPUNCTUATED, GIANT_WORD, UNPUNCTUATED[:500] + " " + GIANT_WORD[:900] + " अंत।"):
        chunks = plan_chunks(text, policy, budget, BPS)
        _check_plan(text, chunks, budget)


def test_giant_word_is_cut_at_grapheme_clusters_only():
    chunks = split_oversize(GIANT_WORD, 50)
    assert len(chunks) > 10
    clusters = grapheme_clusters(GIANT_WORD)
    edges = {0}
    for c in clusters:
        edges.add(max(edges) + len(c))
    pos = 0
    for c in chunks:
        pos += len(c)
        assert pos in edges  # every cut is a cluster edge
    assert grapheme_clusters("क्षत्रिय स्त्री") == ["क्ष", "त्रि", "य", " ", "स्त्री"]
    assert grapheme_clusters("ক্ষমা") == ["ক্ষ", "মা"]  # Bengali conjunct + vowel sign


def test_oversize_split_prefers_danda_then_clause_then_space():
    s1 = "पहला वाक्य यहाँ है और यह काफ़ी लंबा भी है।"
    s2 = "दूसरा वाक्य, जिसमें एक अल्पविराम है, यहाँ है॥"
    text = f"{s1} {s2} {s1}"
    budget = utf8_len(s1) + utf8_len(s2) + 1
    assert split_oversize(text, budget) == [f"{s1} {s2}", s1]  # packed at dandas
    assert split_oversize(s2, utf8_len("दूसरा वाक्य, जिसमें एक अल्पविराम है,") + 5) == [
        "दूसरा वाक्य, जिसमें एक अल्पविराम है,",
        "यहाँ है॥",
    ]
    words = split_oversize(s1, 30)
    assert all(w in s1.split() or " " in w for w in words) and " ".join(words) == s1


@pytest.mark.parametrize("lang", sorted(PARAGRAPHS))
def test_stream_plan_in_every_language(lang):
    text = PARAGRAPHS[lang]
    chunks = plan_chunks(text, "stream", BUDGET, BPS)
    _check_plan(text, chunks, BUDGET)
    assert len(chunks) >= 2
    shape = StreamShape()
    assert len(chunks[0].split()) >= shape.first_min_words
    assert utf8_len(chunks[0]) <= BPS * shape.first_cap_seconds
    # the bundled paragraphs all have a mark early on: the first chunk ends at one
    assert chunks[0][-1] in "।॥.,?!", chunks[0]
    for prev, cur in zip(chunks, chunks[1:], strict=False):
        assert utf8_len(cur) <= shape.growth * utf8_len(prev)


def test_stream_first_chunk_aims_at_one_to_two_seconds():
    text = "नमस्ते दोस्तों, आज हम एक नई जगह चलेंगे। " + HINDI_PARAGRAPH
    chunks = plan_chunks(text, "stream", BUDGET, BPS)
    assert chunks[0] == "नमस्ते दोस्तों, आज हम एक नई जगह चलेंगे।"  # ~2 s, a sentence end
    # a clause mark inside 1-2 s wins over a sentence mark past 2 s
    text = "मैं कल बाज़ार गया था, वहाँ बहुत भीड़ थी और मुझे कुछ भी नहीं मिला। " + HINDI_PARAGRAPH
    first = plan_chunks(text, "stream", BUDGET, BPS)[0]
    assert first == "मैं कल बाज़ार गया था," and BPS <= utf8_len(first) <= 2 * BPS
    # at least three words even when a mark comes sooner
    first = plan_chunks("हाँ, ठीक है, " + HINDI_PARAGRAPH, "stream", BUDGET, BPS)[0]
    assert len(first.split()) >= 3 and first.endswith(",")
    # no mark in reach: cut at a word end within 2 s (never inside a word)
    first = plan_chunks(UNPUNCTUATED, "stream", BUDGET, BPS)[0]
    assert utf8_len(first) <= 2 * BPS and UNPUNCTUATED.startswith(first + " ")


def test_stream_plan_short_texts_stay_whole():
    for text in ("नमस्ते।", "नमस्ते, आप कैसे हैं?", "धन्यवाद, फिर मिलेंगे।"):
        assert plan_chunks(text, "stream", BUDGET, BPS) == [text]
    # one sentence of ~3.3 s without a mark inside 2 s: not cut mid-way (within the 4 s cap)
    text = "मानसून के आते ही गाँव की तस्वीर बदल जाती है।"
    assert 2 * BPS < utf8_len(text) <= 4 * BPS
    assert plan_chunks(text, "stream", BUDGET, BPS) == [text]
    # a tail of one or two words is not worth a pass of its own
    text = "मानसून के आते ही गाँव की तस्वीर बदल जाती है। बहुत अच्छा।"
    assert plan_chunks(text, "stream", BUDGET, BPS) == [text]


def test_stream_plan_grows_back_to_the_budget():
    text = " ".join([HINDI_PARAGRAPH] * 12)
    chunks = plan_chunks(text, "stream", BUDGET, BPS)
    _check_plan(text, chunks, BUDGET)
    sizes = [utf8_len(c) for c in chunks]
    assert all(b <= 2 * a for a, b in zip(sizes, sizes[1:], strict=False))
    assert max(sizes) > BUDGET * 0.6  # the tail chunks are budget-sized again
    assert len(chunks) <= len(chunk_text(text, BUDGET)) + 4


def test_latin_marks_and_quotes():
    text = 'He said "wait." Then we left, quickly! Did it work? Yes: it did, mostly.'
    chunks = plan_chunks(text, "stream", 40, 10.0)
    _check_plan(text, chunks, 40)
    assert chunks[0] == 'He said "wait."'  # the closing quote stays with its sentence
    assert split_oversize("3.14 and 2.71 are numbers", 12) == ["3.14 and", "2.71 are", "numbers"]


def test_bad_policy_and_tiny_budget_are_input_errors():
    with pytest.raises(InputError, match="chunking"):
        plan_chunks("नमस्ते", "fastest", BUDGET, BPS)
    with pytest.raises(InputError, match="too small"):
        plan_chunks("नमस्ते", "stream", 3, BPS)
    assert plan_chunks("   ", "stream", BUDGET, BPS) == []


def test_property_random_texts_keep_every_invariant():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    alphabet = list("कखगतनमयरसह") + list("ािीुूेैोौंँ") + ["्", " ", " ", " ", "।", "॥", ",", ". ", "? ", "\n"]
    alphabet += list("abc ") + ["क्ष", "\u200d"]

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(
        st.lists(st.sampled_from(alphabet), min_size=1, max_size=400).map("".join),
        st.integers(4, 200),
        st.sampled_from(["upstream", "stream"]),
    )
    def check(text, budget, policy):
        chunks = plan_chunks(text, policy, budget, 20.0)
        if not text.strip():
            assert chunks == []
            return
        _check_plan(text.strip(), chunks, budget)

    check()


def test_stream_plan_leaves_no_one_word_tail():
    from indicf5_fast.bench.streaming import LONG

    chunks = plan_chunks(LONG, "stream", BUDGET, BPS)
    _check_plan(LONG, chunks, BUDGET)
    assert len(chunks[-1].split()) >= StreamShape().first_min_words  # not "है।" alone
    sizes = [utf8_len(c) for c in chunks]
    assert all(b <= 2 * a for a, b in zip(sizes, sizes[1:], strict=False))
