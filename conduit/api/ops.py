"""Operations endpoints: /health (alive), /ready (dependencies), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from conduit.api.responses import OrjsonResponse
from conduit.db.models import utcnow
from conduit.infra import metrics
from conduit.infra.db import Database
from conduit.infra.outbox import waiting_by_queue
from conduit.infra.settings import Settings
from conduit.tasks.celery_app import QUEUES

logger = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
CHECK_TIMEOUT = 3.0


@router.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok"}


class Readiness:
    """A server's readiness checks (name → a blocking call that raises when the dependency
    fails), run concurrently, each within `CHECK_TIMEOUT`.

    On threads of their own: a check waiting on a dependency that is down (a broker's connect,
    up to its own timeout) never holds a thread that requests need (the loop's default executor
    serves the database and the cache). At most one round at a time: a /ready asked while one
    runs gets its answer, so an orchestrator probing often costs no more threads, and a check
    that outlives its timeout queues the next round's call behind it instead of adding threads.
    """

    def __init__(self, checks: dict[str, Callable[[], None]]) -> None:
        self._checks = checks
        self._threads = ThreadPoolExecutor(
            max_workers=max(1, len(checks)), thread_name_prefix="conduit-ready"
        )
        self._round: asyncio.Future[dict[str, dict[str, Any]]] | None = None

    async def components(self) -> dict[str, dict[str, Any]]:
        """Each check's result: `{"status": "ok", "latency_ms"}` or `{"status": "fail",
        "error"}`."""
        if self._round is None:
            self._round = asyncio.ensure_future(self._run_all())
            self._round.add_done_callback(self._ended)
        return await asyncio.shield(self._round)

    def _ended(self, _: asyncio.Future[dict[str, dict[str, Any]]]) -> None:
        self._round = None

    async def _run_all(self) -> dict[str, dict[str, Any]]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, check: Callable[[], None]) -> dict[str, Any]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._threads, check), CHECK_TIMEOUT)
        except TimeoutError:
            return {"status": "fail", "error": f"no answer within {CHECK_TIMEOUT:.0f}s"}
        except Exception as error:
            return {"status": "fail", "error": f"{type(error).__name__}: {error}"[:300]}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    def close(self) -> None:
        """Let the check threads go (one still waiting on a dependency ends with its timeout)."""
        self._threads.shutdown(wait=False, cancel_futures=True)


@router.get("/ready")
async def ready(request: Request) -> Response:
    readiness: Readiness = request.app.state.readiness
    components = await readiness.components()
    failing = [name for name, result in components.items() if result["status"] != "ok"]
    if failing:
        body = {
            "code": "not_ready",
            "message": "Unavailable: " + ", ".join(failing),
            "status": 503,
            "components": components,
        }
        return OrjsonResponse(body, status_code=503)
    return OrjsonResponse({"status": "ok", "components": components})


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    runs = getattr(request.app.state, "runs", None)
    if runs is not None:
        try:
            depths = await asyncio.to_thread(_queue_depths, runs.db, runs.settings)
        except Exception:
            logger.debug("queue depths unavailable (database)", exc_info=True)
        else:
            metrics.set_queue_depths(depths, QUEUES)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def _queue_depths(db: Database, settings: Settings) -> dict[str, tuple[int, int]]:
    stale_before = utcnow() - timedelta(seconds=settings.runs.async_stale_seconds)
    with db.sessions() as session:
        return waiting_by_queue(session, stale_before=stale_before)
