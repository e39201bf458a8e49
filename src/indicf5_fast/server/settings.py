"""Server-only settings (limits, auth, storage). Engine settings stay in ``EngineConfig``."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from indicf5_fast.errors import InputError

# Voice names become directory names: ASCII letters, digits, "_" and "-", starting with a letter or
# digit, so "..", "/", "\\", NUL and dots can never reach the file system.
VOICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
API_KEY_ENV = "INDICF5_API_KEY"
UI_PATH = "/ui"  # where `serve --ui` mounts the web playground


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # checked on every route but /health and the API docs
    data_dir: str | None = None  # voices persist under <data_dir>/voices; None = in memory only
    prompts_dir: str | None = None  # built-in voices: <name>.wav + <name>.txt (checkpoint prompts/)
    default_voice: str = "demo"  # used when a speech request names no voice
    max_input_chars: int = 4096  # OpenAI's limit for /v1/audio/speech
    max_ref_bytes: int = 10 * 2**20  # uploaded reference audio file
    max_ref_seconds: float = 30.0  # uploaded reference duration (the engine clips to 15 s at silences)
    max_voices: int = 256  # stored voices (each prepared voice stays in memory, ~2 MB)
    max_queue: int = 64  # admitted requests (queued + running); more -> 503 + Retry-After
    request_timeout_s: float = 300.0  # queue wait + synthesis (504 after); per chunk when streaming
    retry_after_s: int = 1
    warmup: bool = True
    shutdown_timeout_s: float = 120.0  # graceful shutdown: wait this long for admitted requests
    log_level: str = "info"
    ui: bool = False  # mount the Gradio playground at /ui (needs the ui extra)

    def validate(self) -> ServerSettings:
        positive = {
            "port": self.port,
            "max_input_chars": self.max_input_chars,
            "max_ref_bytes": self.max_ref_bytes,
            "max_ref_seconds": self.max_ref_seconds,
            "max_voices": self.max_voices,
            "max_queue": self.max_queue,
            "request_timeout_s": self.request_timeout_s,
        }
        for name, value in positive.items():
            if not value or value <= 0:
                raise InputError(f"{name} must be > 0, got {value!r}", name)
        if not 0 < self.port < 65536:
            raise InputError(f"port must be in 1..65535, got {self.port}", "port")
        if self.default_voice and not VOICE_NAME_RE.match(self.default_voice):
            raise InputError(f"invalid default voice name {self.default_voice!r}", "default_voice")
        if self.api_key is not None and not self.api_key.strip():
            self.api_key = None
        if self.ui and importlib.util.find_spec("gradio") is None:  # fail before loading a model
            raise InputError("the web playground needs the ui extra: pip install 'indicf5-fast[ui]'", "ui")
        return self

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted at all: a reference file plus form fields / JSON text."""
        return self.max_ref_bytes + max(1 << 20, self.max_input_chars * 8)

    def voices_dir(self) -> Path | None:
        return Path(self.data_dir) / "voices" if self.data_dir else None


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "indicf5-fast")
