"""The routes every run starts on, dispatched ahead of FastAPI's router.

`POST /v1/chat-messages` and `POST /v1/completion-messages` are the server's hot path: each
stream starts with one. FastAPI's routing, its dependency solving and its inner middleware
layers (exception, exit-stack, per-send wrappers) cost about as much CPU as the rest of the
start; here a dict lookup on (method, path) calls the very same controller with a plain
`Request`, and an exception goes to the handler the app registered for it (the one
`install_error_handlers` installed), so the wire behaviour is the same. The routes stay declared
in FastAPI too (OpenAPI, and any path this table does not hold exactly).

Installed as the innermost user middleware: request context (ids, metrics), CORS and the
body limit still apply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class HotRoute:
    """What the request-context middleware reads for its metrics label."""

    path: str
    endpoint: Endpoint


class HotRoutes:
    def __init__(self, app: ASGIApp, *, routes: dict[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self.routes = {key: HotRoute(key[1], endpoint) for key, endpoint in routes.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope.get("method", ""), scope.get("path", "")))
        if route is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
        except Exception as error:
            response = await _handled(request, error)
        await response(scope, receive, send)


async def _handled(request: Request, error: Exception) -> Response:
    """The response of the app's exception handler for `error` (by its class's MRO)."""
    handlers = getattr(request.app, "exception_handlers", {})
    for kind in type(error).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            response: Response = await handler(request, error)
            return response
    raise error
