"""On-disk voice store: ``<data_dir>/voices/<name>/{reference.<ext>, voice.json}``.

Built-in voices come from a prompts directory (a checkpoint's ``prompts/``: every ``<name>.wav``
with a ``<name>.txt`` transcript) and are read-only. Names must match ``VOICE_NAME_RE`` (letters,
digits, ``_``, ``-``), so a name can never escape the store; paths are checked again after
resolving. Writes go to a hidden temporary directory first and are renamed into place, so a crash
never leaves a half-written voice. This module only stores files; preparing a voice for the model
is the engine's job (the app keeps the prepared voices in memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from indicf5_fast.server.errors import ApiError
from indicf5_fast.server.settings import VOICE_NAME_RE, VOICE_NAME_RULE

log = logging.getLogger("indicf5_fast.server")

META = "voice.json"
# reference formats accepted on upload (libsndfile's names; M4A / WEBM / AAC come through PyAV)
AUDIO_EXTS = {
    "WAV": "wav",
    "WAVEX": "wav",
    "FLAC": "flac",
    "OGG": "ogg",
    "MP3": "mp3",
    "M4A": "m4a",
    "WEBM": "webm",
    "AAC": "aac",
}


@dataclass
class StoredVoice:
    name: str
    ref_text: str
    audio_path: Path | None  # None: kept in memory (no data dir)
    builtin: bool = False
    created_at: float | None = None
    duration_seconds: float | None = None
    sample_rate: int | None = None
    audio_bytes: bytes | None = None

    def read_audio(self) -> bytes:
        if self.audio_bytes is not None:
            return self.audio_bytes
        assert self.audio_path is not None
        return self.audio_path.read_bytes()

    def info(self) -> dict:
        return {
            "name": self.name,
            "ref_text": self.ref_text,
            "duration_seconds": self.duration_seconds,
            "sample_rate": self.sample_rate,
            "builtin": self.builtin,
            "created_at": self.created_at,
        }


def check_name(name: str, param: str = "name") -> str:
    if not isinstance(name, str) or not VOICE_NAME_RE.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        raise ApiError(
            400,
            f"invalid voice name {shown!r}: {VOICE_NAME_RULE}",
            param,
            "invalid_voice_name",
        )
    return name


class VoiceStore:
    def __init__(self, root: Path | None, prompts_dir: Path | None = None, max_voices: int = 256):
        self.root = Path(root).resolve() if root is not None else None
        self.prompts_dir = Path(prompts_dir) if prompts_dir is not None else None
        self.max_voices = max_voices
        self._voices: dict[str, StoredVoice] = {}

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Scan the prompts directory and the data directory (broken entries are skipped)."""
        self._voices.clear()
        if self.prompts_dir is not None and self.prompts_dir.is_dir():
            for wav in sorted(self.prompts_dir.glob("*.wav")):
                txt = wav.with_suffix(".txt")
                if not VOICE_NAME_RE.fullmatch(wav.stem) or not txt.is_file():
                    continue
                try:
                    text = txt.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as e:
                    log.warning("skipping built-in voice %s: %s", wav.stem, e)
                    continue
                if text:
                    self._voices[wav.stem] = _builtin(wav, text)
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") and d.is_dir():  # leftovers of an interrupted write
                shutil.rmtree(d, ignore_errors=True)
                continue
            if not d.is_dir() or not VOICE_NAME_RE.fullmatch(d.name) or d.name in self._voices:
                continue
            try:
                self._voices[d.name] = self._read_entry(d)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("skipping stored voice %s: %s", d.name, e)

    def _read_entry(self, d: Path) -> StoredVoice:
        meta = json.loads((d / META).read_text(encoding="utf-8"))
        audio = d / str(meta["audio"])
        if audio.parent != d or not audio.is_file():
            raise ValueError(f"audio file missing: {meta['audio']!r}")
        return StoredVoice(
            name=d.name,
            ref_text=str(meta["ref_text"]),
            audio_path=audio,
            created_at=float(meta.get("created_at") or 0) or None,
            duration_seconds=meta.get("duration_seconds"),
            sample_rate=meta.get("sample_rate"),
        )

    # ------------------------------------------------------------------ queries
    def names(self) -> list[str]:
        return sorted(self._voices)

    def get(self, name: str) -> StoredVoice | None:
        return self._voices.get(name)

    def list(self) -> list[StoredVoice]:
        return [self._voices[n] for n in self.names()]

    def __len__(self) -> int:
        return len(self._voices)

    # ------------------------------------------------------------------ changes
    def check_can_add(self, name: str, overwrite: bool) -> None:
        check_name(name)
        old = self._voices.get(name)
        if old is not None and old.builtin:
            raise ApiError(409, f"voice {name!r} is built in and cannot be replaced", "name", "voice_exists")
        if old is not None and not overwrite:
            raise ApiError(
                409,
                f"voice {name!r} already exists (send overwrite=true to replace it)",
                "name",
                "voice_exists",
            )
        if old is None and len(self._voices) >= self.max_voices:
            raise ApiError(
                400, f"voice limit reached ({self.max_voices}); delete one first", "name", "too_many"
            )

    def add(
        self,
        name: str,
        audio: bytes,
        audio_format: str,
        ref_text: str,
        duration_seconds: float,
        sample_rate: int,
        overwrite: bool = False,
    ) -> StoredVoice:
        self.check_can_add(name, overwrite)
        now = time.time()
        ext = AUDIO_EXTS.get(audio_format.upper(), "audio")
        voice = StoredVoice(name, ref_text, None, False, now, round(duration_seconds, 3), sample_rate)
        if self.root is None:
            voice.audio_bytes = audio
        else:
            final = self._path(name)
            tmp = self.root / f".tmp-{uuid.uuid4().hex}"
            tmp.mkdir()
            try:
                (tmp / f"reference.{ext}").write_bytes(audio)
                meta = voice.info() | {
                    "audio": f"reference.{ext}",
                    "sha256": hashlib.sha256(audio).hexdigest(),
                }
                (tmp / META).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
                if final.exists():
                    trash = self.root / f".old-{uuid.uuid4().hex}"
                    os.replace(final, trash)
                    os.replace(tmp, final)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            voice.audio_path = final / f"reference.{ext}"
        self._voices[name] = voice
        return voice

    def delete(self, name: str) -> None:
        check_name(name)
        voice = self._voices.get(name)
        if voice is None:
            raise ApiError(404, f"voice {name!r} not found", "name", "voice_not_found")
        if voice.builtin:
            raise ApiError(403, f"voice {name!r} is built in and cannot be deleted", "name", "voice_builtin")
        if self.root is not None:
            shutil.rmtree(self._path(name), ignore_errors=True)
        del self._voices[name]

    def _path(self, name: str) -> Path:
        assert self.root is not None
        path = (self.root / check_name(name)).resolve()
        if path.parent != self.root:  # belt and braces: the regex already forbids separators
            raise ApiError(400, f"invalid voice name {name!r}", "name", "invalid_voice_name")
        return path


def _builtin(wav: Path, text: str) -> StoredVoice:
    voice = StoredVoice(wav.stem, text, wav, builtin=True)
    try:
        import soundfile as sf

        info = sf.info(str(wav))
        voice.duration_seconds = round(info.frames / info.samplerate, 3)
        voice.sample_rate = int(info.samplerate)
    except Exception as e:  # listed anyway; preparing it will report the problem
        log.warning("built-in voice %s: %s", wav.stem, e)
    return voice
