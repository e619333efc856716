"""The run-starting routes, dispatched ahead of FastAPI's routing: a fast path derived from
the one router, not a second one.

`POST /v1/chat-messages` and `POST /v1/completion-messages` are the server's hot path: each
stream starts with one. FastAPI's routing, its dependency solving and its inner middleware
layers (exception, exit-stack, per-send wrappers) cost about as much CPU as the rest of the
start. A route declared in the router whose endpoint is marked with a plain controller
(`api/runs.py:plain_endpoint`) and whose path has no parameters is looked up here by
(method, path) and served by that controller on a plain `Request`; an exception goes to the
handler the app registered for it (the one `install_error_handlers` installed), so the wire
behaviour is the same. The table is read from the app's routes at the first request, so a
route exists once, in the router (OpenAPI included).

Installed as the innermost user middleware: request context (ids, metrics), CORS and the
body limit still apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from conduit.api.runs import PLAIN_ATTRIBUTE, PlainEndpoint


@dataclass(frozen=True)
class HotRoute:
    """What the request-context middleware reads for its metrics label."""

    path: str
    endpoint: PlainEndpoint


def hot_routes(routes: list[Any]) -> dict[tuple[str, str], HotRoute]:
    """The marked routes of a router's table, by (method, path)."""
    table: dict[tuple[str, str], HotRoute] = {}
    for route in _flattened(routes):
        plain = getattr(getattr(route, "endpoint", None), PLAIN_ATTRIBUTE, None)
        if plain is None or getattr(route, "param_convertors", None):
            continue
        for method in getattr(route, "methods", None) or ():
            table[(method, route.path)] = HotRoute(route.path, plain)
    return table


def _flattened(routes: list[Any]) -> Iterator[Any]:
    """Every route of the table, those of included routers too: FastAPI keeps an included
    router as one entry whose routes (with the prefixes applied) it lists on demand."""
    for route in routes:
        included = getattr(route, "effective_route_contexts", None)
        if included is not None:
            yield from included()
        else:
            yield route


class HotRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], HotRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routes = self.routes
        if routes is None:
            routes = self.routes = hot_routes(scope["app"].routes)
        route = routes.get((scope.get("method", ""), scope.get("path", "")))
        if route is None:
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
