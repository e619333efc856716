"""The request-context middleware's slow-request warning: a request is slow when its response
starts late; a stream that starts at once and then lasts (SSE, as long as its run) is not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from conduit.api.middleware import RequestContextMiddleware

SLOW_MS = 100


async def long_stream(_: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"data: {}\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def late_answer(_: Request) -> Response:
    await asyncio.sleep(0.15)
    return PlainTextResponse("late")


async def quick_answer(_: Request) -> Response:
    return PlainTextResponse("quick")


def app() -> Starlette:
    routes = [
        Route("/stream", long_stream),
        Route("/late", late_answer),
        Route("/quick", quick_answer),
    ]
    served = Starlette(routes=routes)
    served.add_middleware(RequestContextMiddleware, slow_request_ms=SLOW_MS)
    return served


def warnings_for(path: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    with caplog.at_level(logging.WARNING, logger="conduit.api.middleware"):
        response = asyncio.run(call())
    assert response.status_code == 200
    return [r.getMessage() for r in caplog.records if "slow request" in r.getMessage()]


def test_a_late_response_is_logged_as_slow(caplog: pytest.LogCaptureFixture) -> None:
    (message,) = warnings_for("/late", caplog)
    assert message.startswith("slow request: GET /late answered after ")
    assert message.endswith("(status 200)")


def test_a_long_stream_that_started_at_once_is_not_slow(caplog: pytest.LogCaptureFixture) -> None:
    assert warnings_for("/stream", caplog) == []


def test_a_quick_response_is_not_slow(caplog: pytest.LogCaptureFixture) -> None:
    assert warnings_for("/quick", caplog) == []
