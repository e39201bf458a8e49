"""Every failure becomes ``{"error": {"message", "type", "param", "code"}}`` (OpenAI style).

Bad input is always a 4xx with a reason; only real bugs are 500 (logged with a traceback).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from indicf5_fast.errors import AudioError, IndicF5Error, InputError
from indicf5_fast.server.settings import VOICE_NAME_RE, VOICE_NAME_RULE

log = logging.getLogger("indicf5_fast.server")

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    503: "service_unavailable",
    504: "timeout_error",
    500: "server_error",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


class BodyTooLarge(Exception):
    """Raised by the body-limit middleware while the body is being read (chunked uploads)."""

    def __init__(self, limit: int):
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param}}
    body["error"]["code"] = code
    return JSONResponse(body, status_code=status, headers=headers)


def from_engine_error(e: IndicF5Error) -> ApiError:
    """InputError -> 400, AudioError -> 422 (the file is valid HTTP but unusable audio)."""
    if isinstance(e, AudioError):
        return ApiError(422, str(e), e.param or "ref_audio", "invalid_audio")
    if isinstance(e, InputError):
        return ApiError(400, str(e), e.param, "invalid_value")
    return ApiError(500, f"engine error: {e}", None, "engine_error")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = next((p for p in reversed(loc) if not p.isdigit()), None)
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON: {reason}".rstrip(": "), None
    msg = first.get("msg", "invalid value")
    if first.get("type") == "string_pattern_mismatch" and (first.get("ctx") or {}).get("pattern") == (
        VOICE_NAME_RE.pattern
    ):  # the schema's voice-name pattern: say the rule in words, as check_name does
        msg = f"invalid voice name {str(first.get('input'))[:80]!r}: {VOICE_NAME_RULE}"
    where = ".".join(loc)
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return (f"{where}: {msg}{more}" if where else f"{msg}{more}"), param


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (GET and POST /v1/voices are two routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(IndicF5Error)
    async def _engine_error(request: Request, exc: IndicF5Error) -> JSONResponse:
        e = from_engine_error(exc)
        return error_response(e.status, e.message, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, (BodyTooLarge, UnicodeDecodeError)):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, BodyTooLarge):
            return error_response(413, str(cause), None, "body_too_large")
        if isinstance(cause, UnicodeDecodeError):
            return error_response(400, "request body is not valid UTF-8", None, "invalid_encoding")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:  # Starlette's Allow names one route's methods; a path has several
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, message, None, None, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}", None, "internal_error")
