"""The app factory and its lifespan: the process is wired by `conduit/bootstrap.py` (built once,
at start); this module only puts it behind HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import conduit
from conduit.api import console, ops, v1, web
from conduit.api.docs import install_docs
from conduit.api.errors import install_error_handlers
from conduit.api.guard import RequestGuard
from conduit.api.hot_routes import HotRoutes
from conduit.api.middleware import RequestContextMiddleware
from conduit.api.ops import Readiness
from conduit.api.responses import OrjsonResponse
from conduit.api.runs import RUN_HEADERS, WORKFLOW_RUN_HEADER
from conduit.api.ui import install_ui
from conduit.bootstrap import Server
from conduit.infra import heap
from conduit.infra.logging import configure_logging
from conduit.infra.settings import Settings, load_settings

logger = logging.getLogger("conduit")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app (uvicorn calls this with `factory=True`)."""
    settings = settings or load_settings()
    configure_logging(settings.log.level, settings.log.json_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server = await asyncio.to_thread(Server.start, settings)
        readiness: Readiness | None = None
        try:
            runs = await server.start_runs()
            state = app.state
            state.server = server
            state.resources = server.resources
            state.settings = settings
            state.celery = server.celery
            state.token_policy = server.token_policy
            state.readiness = readiness = Readiness(server.readiness_checks)
            state.storage = server.storage
            # The query side of knowledge bases (its model loads on the first search).
            state.retriever = server.retriever
            state.runs = runs
            heap.settle(switch_interval=settings.http.gil_switch_interval_ms / 1000)
            yield
        finally:
            if readiness is not None:
                readiness.close()
            await server.stop()

    app = FastAPI(
        title="Conduit",
        version=conduit.__version__,
        description="LLM application server speaking Dify's Service API.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    install_docs(app)
    # Innermost: the run-starting routes skip FastAPI's routing; the middlewares below wrap them.
    app.add_middleware(HotRoutes)
    # The request guard (body size, NUL in the path or query) inside CORS, so that a browser
    # sees its refusals, and inside the request context (ids, metrics) like any response.
    app.add_middleware(RequestGuard)
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Response-Time", *RUN_HEADERS, WORKFLOW_RUN_HEADER],
            allow_credentials="*" not in settings.http.cors_origins,
        )
    app.add_middleware(RequestContextMiddleware, slow_request_ms=settings.http.slow_request_ms)
    app.include_router(ops.router)
    app.include_router(console.router)
    app.include_router(v1.router)
    app.include_router(web.router)
    install_ui(app)  # last: `/` and `/ui/` after every API route
    return app
