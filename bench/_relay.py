"""The bare relay the SSE benchmark compares Conduit with: Starlette + one aiohttp session.

    python bench/_relay.py --port N --upstream http://127.0.0.1:M/v1

`POST /v1/chat-messages` (the body of Conduit's Service API: `query`, `user`, ...) opens a
streaming chat completion upstream with one shared `aiohttp.ClientSession` (connector limit 0),
and relays every upstream chunk that carries text as one SSE frame `id: <n>\\ndata: {json}\\n\\n`
with Dify's `message` envelope (the same fields, hence about the same bytes, as Conduit's), then
one `message_end` frame. Nothing else: no auth, no database, no event log, no ids to resume by.
Served like `conduit serve`: uvicorn with uvloop and httptools, one process, backlog 4096.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Relay:
    def __init__(self, upstream: str, model: str = "fake-model") -> None:
        self.url = upstream.rstrip("/") + "/chat/completions"
        self.model = model
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        query = str(body.get("query", ""))
        upstream_body = orjson.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": query}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        assert self.session is not None
        response = await self.session.post(
            self.url,
            data=upstream_body,
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        if response.status != 200:
            text = await response.text()
            response.release()
            return JSONResponse({"code": "upstream", "message": text}, status_code=502)
        return StreamingResponse(
            self.frames(response), media_type="text/event-stream", headers=SSE_HEADERS
        )

    async def frames(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        ids = {
            "conversation_id": str(uuid.uuid4()),
            "message_id": str(uuid.uuid4()),
            "created_at": int(time.time()),
            "task_id": str(uuid.uuid4()),
        }
        envelope: dict[str, Any] = {"event": "message", **ids, "id": ids["message_id"]}
        seq = 0
        partial = b""
        try:
            async for chunk in response.content.iter_any():
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    choices = orjson.loads(data).get("choices") or [{}]
                    text = (choices[0].get("delta") or {}).get("content")
                    if text:
                        seq += 1
                        envelope["answer"] = text
                        yield b"id: %d\ndata: %s\n\n" % (seq, orjson.dumps(envelope))
            seq += 1
            end = {"event": "message_end", **ids, "id": ids["message_id"], "metadata": {}}
            yield b"id: %d\ndata: %s\n\n" % (seq, orjson.dumps(end))
        finally:
            with contextlib.suppress(Exception):
                response.close()


def build_app(upstream: str) -> Starlette:
    relay = Relay(upstream)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/chat-messages", relay.chat, methods=["POST"]),
            Route("/health", health),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The bare SSE relay of the benchmark.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake's base URL, with /v1")
    args = parser.parse_args(argv)
    uvicorn.run(
        build_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
