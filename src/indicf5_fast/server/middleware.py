"""Pure ASGI middlewares (no BaseHTTPMiddleware: it buffers and breaks streaming).

Order, outermost first: metrics (sees every status, 401/413 included) -> API key -> body limit.
The key is checked before the body is read, so unauthenticated clients learn nothing else.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indicf5_fast.server.errors import BodyTooLarge, error_response
from indicf5_fast.server.metrics import Metrics

PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], list]):
        self.app, self.metrics, self.routes = app, metrics, routes

    def _route(self, scope: Scope) -> str:
        for route in self.routes():
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", "other")
        return "unmatched"  # a label per raw path would let clients blow up the series count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, method, t0 = self._route(scope), scope["method"], time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(time.perf_counter() - t0)


class ApiKeyMiddleware:
    """``Authorization: Bearer <key>`` (what OpenAI clients send) or ``X-API-Key: <key>``."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        public_paths: frozenset[str] = PUBLIC_PATHS,
        public_prefixes: tuple[str, ...] = (),
    ):
        # public_prefixes: mounted apps with their own login (the web playground under /ui/)
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None
        self.public_paths, self.public_prefixes = public_paths, public_prefixes

    def _public(self, path: str) -> bool:
        return path in self.public_paths or any(path.startswith(p) for p in self.public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given is None:
            response = error_response(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                None,
                "missing_api_key",
                {"WWW-Authenticate": "Bearer"},
            )
        elif not hmac.compare_digest(given, self.key):
            response = error_response(
                401, "invalid API key", None, "invalid_api_key", {"WWW-Authenticate": "Bearer"}
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit (before reading anything); for chunked
    bodies the count is kept while reading and ``BodyTooLarge`` ends the read."""

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int | None = None):
        self.app, self.max_bytes = app, max_bytes
        # bodies up to this size are read and dropped before the 413; bigger ones get the 413 and
        # a closed connection (the client may then only see a reset)
        self.drain_bytes = drain_bytes if drain_bytes is not None else max(64 << 20, 4 * max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0 or size > self.max_bytes:
                msg = (
                    f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes"
                    if size >= 0
                    else "invalid Content-Length header"
                )
                if 0 <= size <= self.drain_bytes:
                    await _drain(receive)  # so the client finishes sending and can read the 413
                await error_response(413 if size >= 0 else 400, msg, None, "body_too_large")(
                    scope, receive, send
                )
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
