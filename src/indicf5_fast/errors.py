"""Error types. Every user-facing failure is one of these, so the CLI and the server can turn it
into a one-line message (CLI, exit code != 0) or a 4xx JSON reason (HTTP) instead of a traceback."""

from __future__ import annotations


class IndicF5Error(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(IndicF5Error, ValueError):
    """Bad request input: empty text, text with no known characters, bad option values.

    ``param`` names the offending field (used in the HTTP error body).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class AudioError(InputError):
    """Unreadable, empty, silent or too long reference audio."""

    def __init__(self, message: str, param: str | None = "ref_audio") -> None:
        super().__init__(message, param)


class CheckpointError(IndicF5Error):
    """Missing, corrupt or mismatched model files."""


class BackendUnavailableError(IndicF5Error):
    """A requested backend, device or execution provider is not available on this machine."""


class HubError(CheckpointError):
    """A model could not be fetched from the Hugging Face hub (the message says what to do)."""


class HubAccessError(HubError):
    """Gated or private repository, or a 401/403 answer: accept the terms and log in."""


class HubNotFoundError(HubError):
    """No such repository (or one the current token cannot see)."""


class HubRevisionError(HubError):
    """The repository exists but the requested branch, tag or commit does not."""


class HubOfflineError(HubError):
    """Offline (``HF_HUB_OFFLINE`` or no network) and the files are not in the local cache."""
