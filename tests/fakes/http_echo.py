"""A real HTTP server for the workflow http-request node's tests (aiohttp, in a thread, on
127.0.0.1 and a free port). It records every request and answers by path:

    /echo, /echo/...   any method: 200, JSON of what it got {method, path, query, headers,
                       body (text), form (urlencoded fields, else null), json (else null)}
    /flaky/<token>     500 the first time a token is seen, then 200 {"attempt": n}
    /status/<code>     that status, body "status <code>"
    /files/<name>      GET or HEAD: a file given to `serve(name, body, content_type, **headers)`
                       (404 for another name): a file on the web, for uploads by URL
    /redirect/<name>   302 to /files/<name>

    with http_echo() as server:
        server.base_url        # http://127.0.0.1:N
        server.received        # [Received(method, path, headers, body), ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class HttpEcho:
    def __init__(self) -> None:
        self.port = 0
        self._received: list[Received] = []
        self._attempts: Counter[str] = Counter()
        self._files: dict[str, tuple[bytes, str, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def serve(self, name: str, body: bytes, content_type: str, **headers: str) -> str:
        """Serve `body` at /files/<name> (header names: `_` for `-`); its URL."""
        with self._lock:
            named = {key.replace("_", "-"): value for key, value in headers.items()}
            self._files[name] = (body, content_type, named)
        return f"{self.base_url}/files/{name}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_route("*", "/echo/{tail:.*}", self._echo)  # any path under /echo
        app.router.add_route("*", "/flaky/{token}", self._flaky)
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_route("*", "/files/{name}", self._file)
        app.router.add_route("*", "/redirect/{name}", self._redirect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self.port = int(listener.getsockname()[1])
        await web.SockSite(self._runner, listener).start()

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        with self._lock:
            self._received.append(
                Received(
                    request.method,
                    request.path_qs,
                    {name.lower(): value for name, value in request.headers.items()},
                    body,
                )
            )
        return body

    async def _echo(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        text = body.decode("utf-8", "replace")
        kind = request.content_type
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(text) if kind == "application/json" else None
        form = dict(parse_qsl(text)) if kind == "application/x-www-form-urlencoded" else None
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path.split("?", 1)[0],  # as sent (percent-encoded)
                "query": dict(request.query),
                "headers": {name.lower(): value for name, value in request.headers.items()},
                "body": text,
                "form": form,
                "json": parsed,
            }
        )

    async def _flaky(self, request: web.Request) -> web.Response:
        await self._record(request)
        token = request.match_info["token"]
        with self._lock:
            self._attempts[token] += 1
            attempt = self._attempts[token]
        if attempt == 1:
            return web.Response(status=500, text="try again")
        return web.json_response({"attempt": attempt})

    async def _file(self, request: web.Request) -> web.Response:
        await self._record(request)
        with self._lock:
            found = self._files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="no such file")
        body, content_type, headers = found
        return web.Response(body=body, headers={"Content-Type": content_type, **headers})

    async def _redirect(self, request: web.Request) -> web.Response:
        await self._record(request)
        raise web.HTTPFound(f"/files/{request.match_info['name']}")

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")


@contextlib.contextmanager
def http_echo() -> Iterator[HttpEcho]:
    server = HttpEcho()
    server.start()
    try:
        yield server
    finally:
        server.stop()
