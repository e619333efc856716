"""JSON responses rendered with orjson (compact, UTF-8, like Dify's current server)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def page_body(data: list[Any], *, page: int, limit: int, total: int) -> dict[str, Any]:
    """Dify's page-based list: `{data, has_more, limit, total, page}`."""
    return {
        "data": data,
        "has_more": page * limit < total,
        "limit": limit,
        "total": total,
        "page": page,
    }
