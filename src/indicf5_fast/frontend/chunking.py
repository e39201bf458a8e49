"""Chunk planning: which pieces of a text the model speaks one at a time.

Flow matching is not autoregressive: a chunk gives no audio until all of its sampler steps and
its vocoder pass are done, so the first chunk's size is the time to first audio. Two policies:

- ``"upstream"``: IndicF5's own split (``text.chunk_text``: after ``; : , . ! ?`` + whitespace,
  packed up to the byte budget), unchanged whenever each of its chunks fits the budget. A chunk
  that does not fit (one long sentence: upstream never splits at a danda) is split further by
  ``split_oversize``, so no chunk's duration is ever clipped with text left over.
- ``"stream"``: latency-aware. The first chunk is short (aimed at 1-2 s of speech, at least three
  words, cut at a sentence or clause mark where there is one); each later chunk is at most twice
  the previous one and grows back towards the budget, so the compute stays close to the unchunked
  run and the next chunk is ready before the listener runs out.

Every length here is UTF-8 bytes: the engine sizes a chunk's output frames from its byte length
(as upstream does), so bytes are speech time (``bytes_per_second`` converts). Cuts, strongest
first: sentence marks (danda ``।``, double danda ``॥``, ``|`` typed for a danda, ``. ! ? …`` +
whitespace, ``。！？``, a line break), clause marks (``, ; :`` and dashes + whitespace, ``，；：、``),
word ends, grapheme-cluster ends (the last resort, for a word longer than the budget). A chunk is
a slice of the text with its edge whitespace stripped: never empty, never cut inside a word while
the word fits the budget.
"""

from __future__ import annotations

import bisect
import unicodedata
from dataclasses import dataclass

from indicf5_fast.errors import InputError
from indicf5_fast.frontend.text import chunk_text, utf8_len

POLICIES = ("upstream", "stream")

SENTENCE, CLAUSE, WORD = 0, 1, 2  # cut strengths (smaller = stronger)
_ALWAYS_SENTENCE = "।॥|。！？"  # a cut even without whitespace after it
_LATIN_SENTENCE = ".!?…"  # a cut when whitespace (or the end) follows
_ALWAYS_CLAUSE = "，；：、"
_LATIN_CLAUSE = ",;:—–"
_MARKS = _ALWAYS_SENTENCE + _LATIN_SENTENCE + _ALWAYS_CLAUSE + _LATIN_CLAUSE
_CLOSERS = "\"'”’)]}»›"  # a cut goes after the quotes/brackets that close the marked phrase
_ZWJ, _ZWNJ = "\u200d", "\u200c"
MIN_CHUNK_BYTES = 4  # one code point is at most 4 bytes: below this nothing can be placed


@dataclass(frozen=True)
class StreamShape:
    """How the ``stream`` policy shapes its chunks (defaults from the issue's targets)."""

    first_min_seconds: float = 1.0  # first chunk aimed at [min, max] seconds of speech
    first_max_seconds: float = 2.0
    first_cap_seconds: float = 4.0  # a mark up to here beats cutting the first clause at a word
    first_min_words: int = 3  # prosody: no one- or two-word first chunk
    growth: float = 2.0  # each chunk at most this times the previous one
    fill: float = 0.5  # a later chunk prefers a cut in the last (1 - fill) of its window


def plan_chunks(
    text: str,
    policy: str,
    max_bytes: int,
    bytes_per_second: float,
    upstream_bytes: int | None = None,
    shape: StreamShape | None = None,
) -> list[str]:
    """The text's chunks under ``policy``; none longer than ``max_bytes`` UTF-8 bytes.

    ``upstream_bytes``: the budget upstream's own split packs with (default ``max_bytes``). The
    engine passes IndicF5's budget there and the smaller of it and the frame maximum as
    ``max_bytes``, so upstream's packing is kept and only a chunk that does not fit is split.
    """
    if policy not in POLICIES:
        raise InputError(f"chunking must be one of {POLICIES}, got {policy!r}", "chunking")
    if max_bytes < MIN_CHUNK_BYTES:
        raise InputError(f"chunk budget of {max_bytes} bytes is too small to place any text", "text")
    text = text.strip()
    if not text:
        return []
    if policy == "upstream":
        pieces = chunk_text(text, upstream_bytes or max_bytes) or [text]
        return [c for piece in pieces for c in split_oversize(piece, max_bytes)]
    return stream_chunks(text, max_bytes, bytes_per_second, shape or StreamShape())


def split_oversize(text: str, max_bytes: int) -> list[str]:
    """``text`` if it fits, else consecutive pieces that do: packed at danda / sentence marks
    first, then clause marks, then word ends, then grapheme clusters (a word over the budget)."""
    text = text.strip()
    if utf8_len(text) <= max_bytes:
        return [text] if text else []
    cuts = _Cuts(text)
    spans, a = [], cuts.skip_space(0)
    while a < len(text):
        b = cuts.best_cut(a, max_bytes, max_bytes, fill=0.0)
        spans.append((a, b))
        a = cuts.skip_space(b)
    return [text[a:b] for a, b in spans]


def stream_chunks(text: str, max_bytes: int, bytes_per_second: float, shape: StreamShape) -> list[str]:
    """The ``stream`` policy (see the module docstring)."""
    text = text.strip()
    cuts = _Cuts(text)
    a = cuts.skip_space(0)
    if a >= len(text):
        return []
    b = _first_cut(cuts, a, max_bytes, max(bytes_per_second, 1e-6), shape)
    spans = [(a, b)]
    a = cuts.skip_space(b)
    while a < len(text):
        prev = cuts.size(*spans[-1])
        soft = min(max_bytes, int(shape.growth * prev))
        b = cuts.best_cut(a, soft, max_bytes, fill=shape.fill, tail_words=shape.first_min_words)
        spans.append((a, b))
        a = cuts.skip_space(b)
    return [text[a:b] for a, b in spans]


def _first_cut(cuts: _Cuts, a: int, max_bytes: int, bps: float, shape: StreamShape) -> int:
    """End of the first chunk: the strongest mark within ``first_max_seconds`` (preferring one
    past ``first_min_seconds``), else the first mark within ``first_cap_seconds``, else the
    farthest word end within ``first_max_seconds``; never fewer than ``first_min_words`` words."""
    end = cuts.end
    hi = max(MIN_CHUNK_BYTES, min(max_bytes, int(bps * shape.first_max_seconds)))
    lo = min(hi, int(bps * shape.first_min_seconds))
    cap = max(hi, min(max_bytes, int(bps * shape.first_cap_seconds)))
    whole = cuts.size(a, end)
    if whole <= hi:
        return end
    enough = cuts.word_end_after(a, shape.first_min_words)  # end of the n-th word (or the text)
    marks = [p for p in cuts.between(a, cuts.last_end_within(a, cap), CLAUSE) if enough <= p < end]
    if whole <= cap:
        marks.append(end)  # the text's own end is the strongest mark of all
    near = [p for p in marks if cuts.size(a, p) <= hi]
    if near:
        in_range = [p for p in near if cuts.size(a, p) >= lo]
        sentences = [p for p in in_range if cuts.kind[p] == SENTENCE]
        b = (sentences or in_range or near)[-1]
    elif marks:  # a clause a little longer than wanted beats cutting one mid-way
        b = marks[0]
    else:  # no mark in reach: the farthest word end (at least n words), else the n-th word end
        words = [p for p in cuts.between(a, cuts.last_end_within(a, hi), WORD) if enough <= p < end]
        b = words[-1] if words else enough
    if cuts.size(a, b) > max_bytes:  # the first words alone are over the budget
        return cuts.best_cut(a, max_bytes, max_bytes, fill=0.0)
    # a remainder of fewer than n words would be a chunk costing a whole pass for a word or two
    if whole <= max_bytes and cuts.words(cuts.skip_space(b), end) < shape.first_min_words:
        return end
    return b


class _Cuts:
    """Cut positions of one text. A cut p ends a chunk as ``text[a:p]``; ``text[p-1]`` is never
    whitespace, so a chunk's size is ``bytes[p] - bytes[a]`` for a chunk start ``a``."""

    def __init__(self, text: str):
        self.text, self.end = text, len(text)
        self.bytes = [0]  # prefix UTF-8 byte counts
        for ch in text:
            self.bytes.append(self.bytes[-1] + utf8_len(ch))
        self.kind: dict[int, int] = {}
        self.word_starts: list[int] = []
        for i, ch in enumerate(text):
            if not ch.isspace() and (i == 0 or text[i - 1].isspace()):
                self.word_starts.append(i)
            if ch.isspace():
                if i > 0 and not text[i - 1].isspace():
                    self._add(i, SENTENCE if "\n" in _run_of_space(text, i) else WORD)
                continue
            if ch in _MARKS:
                self._mark(i)
        if text and not text[-1].isspace():
            self._add(len(text), WORD)
        self.sorted = {
            k: sorted(p for p, kk in self.kind.items() if kk <= k) for k in (SENTENCE, CLAUSE, WORD)
        }

    def _add(self, p: int, kind: int) -> None:
        self.kind[p] = min(kind, self.kind.get(p, WORD))

    def _mark(self, i: int) -> None:
        text, j = self.text, i + 1
        while j < self.end and text[j] in _CLOSERS:
            j += 1
        if j < self.end and (text[j] in _MARKS or _extends(text, j)):
            return  # "?!", "।।", "...": the last mark of the run makes the cut
        ch, spaced = text[i], j == self.end or text[j].isspace()
        if ch in _ALWAYS_SENTENCE or (ch in _LATIN_SENTENCE and spaced):
            self._add(j, SENTENCE)
        elif ch in _ALWAYS_CLAUSE or (ch in _LATIN_CLAUSE and spaced):
            self._add(j, CLAUSE)

    # ------------------------------------------------------------------ queries
    def size(self, a: int, b: int) -> int:
        return self.bytes[b] - self.bytes[a]

    def words(self, a: int, b: int) -> int:
        return bisect.bisect_left(self.word_starts, b) - bisect.bisect_left(self.word_starts, a)

    def skip_space(self, p: int) -> int:
        while p < self.end and self.text[p].isspace():
            p += 1
        return p

    def last_end_within(self, a: int, limit: int) -> int:
        """The largest p with size(a, p) <= limit."""
        return bisect.bisect_right(self.bytes, self.bytes[a] + limit) - 1

    def between(self, a: int, b: int, kind: int) -> list[int]:
        """Cuts of strength <= kind in (a, b], ascending."""
        xs = self.sorted[kind]
        return xs[bisect.bisect_right(xs, a) : bisect.bisect_right(xs, b)]

    def word_end_after(self, a: int, n: int) -> int:
        """End of the n-th word from a, a word begun before a counting as the first (the
        text's end when there are fewer)."""
        k = bisect.bisect_right(self.word_starts, a) + max(1, n) - 1
        stop = self.word_starts[k] if k < len(self.word_starts) else self.end
        ends = self.between(a, stop, WORD)
        return ends[-1] if ends else self.end

    def best_cut(self, a: int, soft: int, hard: int, fill: float, tail_words: int = 0) -> int:
        """End of the chunk starting at ``a``: at most ``soft`` bytes, at the strongest cut in
        the last ``1 - fill`` of that window (``fill`` 0: sentence marks, then clause marks,
        then word ends, anywhere); a word longer than ``soft`` but within ``hard`` is kept
        whole; a word longer than ``hard`` is cut at grapheme clusters. With ``tail_words``,
        a cut leaving fewer words than that for the last chunk is avoided where possible (a
        chunk of a word or two costs a whole pass over the reference)."""
        soft = max(MIN_CHUNK_BYTES, min(soft, hard))
        if self.size(a, self.end) <= soft:
            return self.end
        last = self.last_end_within(a, soft)
        if 0 < tail_words <= len(self.word_starts):
            keep = self.word_starts[-tail_words]  # a cut at or before it leaves >= tail_words
            if self.between(a, min(last, keep), WORD):
                last = min(last, keep)
        # marks in the window's second half, then marks past its first quarter, then word ends
        # in its second half, then anything: a mark is worth a somewhat shorter chunk (prosody
        # at the seam), but not a much shorter one (each chunk re-reads the reference)
        tiers = (
            (SENTENCE, fill),
            (CLAUSE, fill),
            (CLAUSE, fill / 2),
            (WORD, fill),
            (CLAUSE, 0.0),
            (WORD, 0.0),
        )
        for kind, f in tiers:
            xs = self.between(a, last, kind)
            if xs and self.bytes[xs[-1]] >= self.bytes[a] + f * soft:
                return xs[-1]
        # not even one word fits the soft limit: keep the next word whole if it fits the budget
        nxt = self.word_end_after(a, 1)
        if self.size(a, nxt) <= hard:
            return nxt
        return self._grapheme_cut(a, self.last_end_within(a, hard))

    def _grapheme_cut(self, a: int, last: int) -> int:
        """The last grapheme-cluster end in (a, last]; a code point end if one cluster is
        longer than the budget (never happens for real scripts; it keeps the guarantee)."""
        for p in range(last, a, -1):
            if p == self.end or not _extends(self.text, p):
                return p
        return max(a + 1, last)


def _run_of_space(text: str, i: int) -> str:
    j = i
    while j < len(text) and text[j].isspace():
        j += 1
    return text[i:j]


def _extends(text: str, p: int) -> bool:
    """Whether ``text[p]`` continues the grapheme cluster of ``text[p - 1]``: combining marks
    (matras, nukta, anusvara, ...), ZWJ / ZWNJ, and a consonant after a virama or ZWJ (Indic
    conjuncts, Unicode's GB9c)."""
    ch, prev = text[p], text[p - 1]
    if ch in (_ZWJ, _ZWNJ) or unicodedata.category(ch) in ("Mn", "Mc", "Me"):
        return True
    if unicodedata.category(ch) == "Lo" and (unicodedata.combining(prev) == 9 or prev == _ZWJ):
        return True
    return False


def grapheme_clusters(text: str) -> list[str]:
    """``text`` split into the clusters ``split_oversize`` never cuts inside (tests, callers)."""
    out: list[str] = []
    for p, ch in enumerate(text):
        if p > 0 and _extends(text, p):
            out[-1] += ch
        else:
            out.append(ch)
    return out
