"""IndicF5 text front end: vocab file, character tokenizer, chunking of long text.

Tokens are single code points (matras and viramas are their own tokens, no grapheme
clustering), unknown characters map to 0 (the space), and upstream's two normalisations hold:
``;`` -> ``,`` plus ASCII quotes for curly ones, and an ASCII word longer than one character
gets a space inserted before it unless it follows one of `` :'"``. Word segmentation uses
rjieba, as upstream does, when it is installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from indicf5_fast.errors import CheckpointError, InputError

_PUNCT_MAP = str.maketrans({";": ",", "“": '"', "”": '"', "‘": "'", "’": "'"})
_NO_SPACE_AFTER = " :'\""
_FALLBACK_SEGMENTS = re.compile(r"[A-Za-z0-9]+|.", re.DOTALL)


def _segments(text: str) -> Iterator[str]:
    try:
        import rjieba
    except ImportError:  # the regex gives the same ASCII words for ordinary text
        return iter(_FALLBACK_SEGMENTS.findall(text))
    return iter(rjieba.cut(text))


def split_characters(text: str) -> list[str]:
    """Text -> list of single-character tokens, with upstream's normalisation and spacing."""
    chars: list[str] = []
    for seg in _segments(text.translate(_PUNCT_MAP)):
        is_ascii_word = len(seg.encode("utf-8")) == len(seg) and len(seg) > 1
        if is_ascii_word and chars and chars[-1] not in _NO_SPACE_AFTER:
            chars.append(" ")
        chars.extend(seg)
    return chars


class Tokenizer:
    """Vocab (one token per line, index 0 = space) -> ids."""

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != " ":
            raise CheckpointError("vocab: index 0 must be the space character")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"vocab file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"vocab file {path} is unreadable: {e}") from e
        # upstream drops exactly the trailing newline of every line (a token may be a space)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls(lines)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, 0) for c in split_characters(text)]

    def check(self, text: str, param: str = "text") -> None:
        """Raise InputError for empty text or text with no character the model knows."""
        if not text or not text.strip():
            raise InputError(f"{param} is empty", param)
        known = [c for c in split_characters(text) if c != " " and c in self.index]
        if not known:
            sample = text.strip()[:40]
            raise InputError(f"{param} has no character the model's vocabulary knows: {sample!r}", param)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


_SENTENCE_SPLIT = re.compile(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])")  # exactly upstream's


def chunk_text(text: str, max_bytes: int) -> list[str]:
    """Split after punctuation and pack sentences into chunks of at most ``max_bytes`` UTF-8
    bytes (upstream ``chunk_text``)."""
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_SPLIT.split(text):
        if not sentence:
            continue
        piece = sentence + " " if utf8_len(sentence[-1]) == 1 else sentence
        if utf8_len(current) + utf8_len(sentence) <= max_bytes:
            current += piece
        else:
            if current:
                chunks.append(current.strip())
            current = piece
    if current.strip():
        chunks.append(current.strip())
    return chunks


def max_chunk_bytes(ref_text: str, ref_seconds: float, speed: float = 1.0) -> int:
    """IndicF5's budget: bytes per second of the reference times the seconds left of 25 s."""
    return max(1, int(utf8_len(ref_text) / max(ref_seconds, 1e-3) * (25 - ref_seconds) * speed))
