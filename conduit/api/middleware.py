"""Request context as pure ASGI middleware: request id in and out, X-Response-Time, metrics by
route template, in-flight gauge, and a warning for slow requests. Right inside it, the request
guard (`conduit.api.guard`): body size limit, NUL in the path or query."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conduit.api.guard import RequestGuard
from conduit.infra import metrics
from conduit.infra.tracing import (
    REQUEST_ID_HEADER,
    accept_request_id,
    reset_request_id,
    set_request_id,
)

logger = logging.getLogger("conduit.http")
_HEADER = REQUEST_ID_HEADER.lower().encode()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, slow_request_ms: int = 1000) -> None:
        # The guard wraps everything this middleware wraps (the router, the hot run routes),
        # and its refusals still get a request id and metrics.
        self.app = RequestGuard(app)
        self.slow_request_ms = slow_request_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER), None)
        request_id = accept_request_id(incoming)
        token = set_request_id(request_id)
        started = time.perf_counter()
        status_holder = [500]
        answered_at: list[float] = []  # when the response started (its headers went out)
        metrics.IN_FLIGHT.inc()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                answered_at.append(time.perf_counter())
                elapsed_ms = (answered_at[0] - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((_HEADER, request_id.encode()))
                headers.append((b"x-response-time", f"{elapsed_ms:.2f}ms".encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            metrics.IN_FLIGHT.dec()
            route = _route_template(scope)
            method = scope.get("method", "GET")
            metrics.REQUESTS.labels(route=route, method=method, status=str(status_holder[0])).inc()
            metrics.REQUEST_SECONDS.labels(route=route, method=method).observe(elapsed)
            # Slow to answer, not long: a stream (SSE) lasts as long as its run by design.
            waited = (answered_at[0] if answered_at else started + elapsed) - started
            if waited * 1000 >= self.slow_request_ms:
                logger.warning(
                    "slow request: %s %s answered after %.0f ms (status %d)",
                    method,
                    scope.get("path"),
                    waited * 1000,
                    status_holder[0],
                )
            reset_request_id(token)


def _route_template(scope: Scope) -> str:
    """The matched route's full path template (bounded label values), else "unmatched"."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    templates = _templates_of(scope.get("app"))
    return templates.get(id(route)) or str(getattr(route, "path", "unmatched"))


_TEMPLATES: dict[int, dict[int, str]] = {}


def _templates_of(app: object) -> dict[int, str]:
    """route object id -> full path template. FastAPI keeps included routers nested, so a
    route's own `.path` lacks the router prefixes; the effective route contexts have it."""
    found = _TEMPLATES.get(id(app))
    if found is not None:
        return found
    templates: dict[int, str] = {}
    for route in getattr(getattr(app, "router", None), "routes", []):
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                original = getattr(context, "original_route", None)
                path = getattr(context, "path_format", None)
                if original is not None and path:
                    templates[id(original)] = str(path)
        elif getattr(route, "path", None):
            templates[id(route)] = str(route.path)
    _TEMPLATES[id(app)] = templates
    return templates
