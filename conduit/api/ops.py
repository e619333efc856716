"""Operations endpoints: /health (alive), /ready (dependencies), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from conduit.api.responses import OrjsonResponse
from conduit.infra import metrics

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT = 3.0


@router.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok"}


async def _run_check(check: Callable[[], None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT)
    except TimeoutError:
        return {"status": "fail", "error": f"no answer within {CHECK_TIMEOUT:.0f}s"}
    except Exception as error:
        return {"status": "fail", "error": f"{type(error).__name__}: {error}"[:300]}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


@router.get("/ready")
async def ready(request: Request) -> Response:
    checks: dict[str, Callable[[], None]] = request.app.state.readiness_checks
    names = list(checks)
    results = await asyncio.gather(*(_run_check(checks[name]) for name in names))
    components = dict(zip(names, results, strict=True))
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
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
