"""Triton requests -> engine calls, shared by the PyTriton binding and the classic repository's
python-backend ``model.py`` (both hand us a list of requests, each a dict of numpy arrays)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indicf5_fast.deploy.triton import tensors
from indicf5_fast.errors import InputError

if TYPE_CHECKING:
    from indicf5_fast.engine import TTS, Voice

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4", ".aac", ".webm", ".opus")


@dataclass
class CallStats:
    """What the model calls looked like (tests prove batching with it; the CLI logs it)."""

    batch_sizes: list[int] = field(default_factory=list)  # engine items per batched model call
    requests_per_call: list[int] = field(default_factory=list)  # Triton requests per model call
    stream_chunks: int = 0
    last_chunk_at: float = 0.0  # time.monotonic() when the latest stream chunk was handed over
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_call(self, requests: int, items: int) -> None:
        with self._lock:
            self.requests_per_call.append(requests)
            self.batch_sizes.append(items)

    def record_chunk(self) -> None:
        with self._lock:
            self.stream_chunks += 1
            self.last_chunk_at = time.monotonic()

    @property
    def calls(self) -> int:
        return len(self.batch_sizes)


class SynthesisHandler:
    """Owns nothing but references: the engine (thread-safe) and the registered voices."""

    def __init__(self, tts: TTS, voices: Mapping[str, Voice] | None = None):
        self.tts = tts
        self.voices = dict(voices or {})
        self.stats = CallStats()

    def infer(self, requests: list[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """All items of all requests of one model call go to one ``synthesize_batch``."""
        parsed = [tensors.parse_items(self.tts, data, self.voices) for data in requests]
        valid = [p for items in parsed for p in items if not isinstance(p, InputError)]
        self.stats.record_call(len(requests), len(valid))
        waves = iter(self.tts.synthesize_batch(valid) if valid else [])
        return [
            tensors.pack_outputs([p if isinstance(p, InputError) else next(waves) for p in items])
            for items in parsed
        ]

    def stream(self, data: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """One request of batch size 1 -> the outputs of one response per audio chunk, as each
        text chunk is done; an input error is the stream's only response."""
        try:
            items = tensors.parse_items(self.tts, data, self.voices)
            if len(items) != 1:
                raise InputError(f"the streaming model takes one item per request, got {len(items)}", "text")
            if isinstance(items[0], InputError):
                raise items[0]
            chunks = self.tts.synthesize_stream(items[0])
            first = next(chunks, None)  # planning errors surface here, before any audio
        except InputError as e:
            yield tensors.stream_error_outputs(e)
            return
        for chunk in itertools.chain([first] if first is not None else [], chunks):
            self.stats.record_chunk()
            yield tensors.stream_outputs(chunk)  # Triton sends it before the next one is made


def load_voices(tts: TTS, voice_dir: str | Path | None) -> dict[str, Voice]:
    """``NAME.wav`` + ``NAME.txt`` (its transcript) pairs in a directory -> registered voices.
    An audio file without a transcript is an error (a silent skip would hide a typo)."""
    if voice_dir is None:
        return {}
    root = Path(voice_dir)
    if not root.is_dir():
        raise InputError(f"voice directory {root} does not exist", "voice_dir")
    voices: dict[str, Voice] = {}
    for audio in sorted(p for p in root.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            raise InputError(f"voice {audio.name} has no transcript {transcript.name}", "voice_dir")
        voices[audio.stem] = tts.prepare_voice(audio, transcript.read_text(encoding="utf-8").strip())
    return voices
