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


# Optional packages -> the extra of pyproject.toml that installs them (import name -> extra).
EXTRAS: dict[str, str] = {
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "fastapi": "server",
    "uvicorn": "server",
    "multipart": "server",
    "python_multipart": "server",
    "prometheus_client": "server",
    "httpx": "bench",
    "pytriton": "triton",
    "tritonclient": "triton",
    "matplotlib": "bench",
    "hypothesis": "dev",
}


class MissingExtraError(BackendUnavailableError):
    """An optional package is not installed: says which extra installs it."""

    def __init__(self, module: str, extra: str, what: str | None = None, detail: str | None = None) -> None:
        self.module, self.extra = module, extra
        needs = f"{what} needs" if what else "this needs"
        state = f"cannot be imported here ({detail})" if detail else "not installed here"
        super().__init__(f"{needs} the optional package {module!r}, {state}: pip install 'indicf5-fast[{extra}]'")


def require(module: str, extra: str | None = None, what: str | None = None):
    """Import an optional package, or raise MissingExtraError naming the extra that installs it.
    The one way this package imports optional dependencies at the entry of a backend or command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = missing_extra(e, what)
        if missing is not None:
            raise missing from e
        root = module.split(".")[0]
        detail = None if isinstance(e, ModuleNotFoundError) else str(e).splitlines()[0][:200]
        raise MissingExtraError(root, extra or EXTRAS.get(root, "all"), what, detail) from e


def missing_extra(error: BaseException, what: str | None = None) -> MissingExtraError | None:
    """A ModuleNotFoundError of a known optional package -> its MissingExtraError, else None
    (a missing core module is a broken install, not a missing extra)."""
    name = getattr(error, "name", None)
    if not isinstance(error, ModuleNotFoundError) or not name:
        return None
    root = name.split(".")[0]
    return MissingExtraError(root, EXTRAS[root], what) if root in EXTRAS else None


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
