"""The one place errors become `{"code", "message", "status"}`."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from conduit.api.responses import OrjsonResponse
from conduit.errors import (
    ConduitError,
    RedisUnavailable,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)

logger = logging.getLogger(__name__)

# What the Redis clients raise when Redis is down, restarting or hung (after their one retry on
# a fresh connection): a 503 `redis_unavailable`, never a 500.
REDIS_OUTAGE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)

INVALID_JSON = "Invalid JSON payload received or JSON payload is empty."
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_entity_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


_OUTAGE_LOG_INTERVAL = 10.0  # seconds: an outage logs a line this often, not one per request


class _OncePer:
    """Says when a recurring event is due for a log line again: at most once per `interval`
    seconds, with how many occurrences that line stands for."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -interval
        self._count = 0

    def due(self) -> int | None:
        self._count += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return None
        count, self._count, self._last = self._count, 0, now
        return count


def envelope(
    code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse(
        {"code": code, "message": message, "status": status}, status_code=status, headers=headers
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts)


def describe_validation(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return INVALID_JSON
        field = _field(tuple(item.get("loc", ())))
        message = str(item.get("msg", "invalid"))
        if field:
            problems.append(f"{field}: {message}")
        elif item.get("type") == "missing":
            return INVALID_JSON
        else:
            problems.append(message)
    return "; ".join(problems) or "Invalid parameter."


def error_response(error: ConduitError) -> OrjsonResponse:
    """The envelope of an expected error (also for ASGI middleware, outside the handlers)."""
    headers: dict[str, str] = {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if isinstance(error, TooManyRequests | ServiceUnavailable):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return envelope(error.code, error.message, error.status, headers or None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConduitError)
    async def _conduit_error(_: Request, error: ConduitError) -> OrjsonResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> OrjsonResponse:
        return envelope("invalid_param", describe_validation(error), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> OrjsonResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        message = str(error.detail) if error.detail else code.replace("_", " ").capitalize()
        if error.status_code == 404 and message == "Not Found":
            message = "The requested URL was not found on the server."
        if error.status_code == 405:
            message = "The method is not allowed for the requested URL."
        return envelope(code, message, error.status_code, dict(error.headers or {}) or None)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_: Request, error: OperationalError) -> OrjsonResponse:
        # The database is down, or (SQLite) stayed locked past the busy timeout under load:
        # the request was not applied (its transaction rolled back) and may be retried.
        logger.warning("database unavailable: %s", error.orig)
        return envelope(
            "service_unavailable",
            "The database is busy or unavailable; retry shortly.",
            503,
            {"Retry-After": "1"},
        )

    outage_log = _OncePer(_OUTAGE_LOG_INTERVAL)

    async def _redis_unavailable(_: Request, error: Exception) -> OrjsonResponse:
        # Redis is down, restarting, or did not answer within the clients' timeouts: whatever
        # the request needed it for (a run's limits, log or stop flag, a stream's events), it
        # may be retried. The cache never gets here: it falls back to the database.
        refused = outage_log.due()
        if refused is not None:
            logger.warning("redis unavailable (%d requests refused since): %r", refused, error)
        return error_response(RedisUnavailable())

    for outage in REDIS_OUTAGE:
        app.add_exception_handler(outage, _redis_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> OrjsonResponse:
        logger.exception("unhandled error")
        return envelope("internal_server_error", "The server met an unexpected error.", 500)
