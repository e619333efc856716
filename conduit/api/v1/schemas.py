"""Reading Dify's request shapes with Dify's exact validation messages (people grep for them)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from conduit.api.errors import INVALID_JSON
from conduit.errors import InvalidParam
from conduit.services.runs import ChatRequest

USER_REQUIRED = "Arg user must be provided."
RESPONSE_MODES = ("blocking", "streaming")


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidParam(INVALID_JSON) from None
    if not isinstance(body, dict):
        raise InvalidParam(INVALID_JSON)
    return body


async def optional_json_body(request: Request) -> dict[str, Any]:
    """The JSON body, or {} when there is none (DELETE with an optional `user`)."""
    if not await request.body():
        return {}
    return await json_body(request)


JsonBody = Annotated[dict[str, Any], Depends(json_body)]
OptionalJsonBody = Annotated[dict[str, Any], Depends(optional_json_body)]


def required_user(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParam(USER_REQUIRED)
    return value


def optional(value: str | None) -> str | None:
    """Dify's newer SDK sends absent query values as empty strings: treat them as absent."""
    return value if value not in (None, "") else None


def int_query(name: str, raw: str | None, *, default: int, low: int, high: int) -> int:
    raw = optional(raw)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InvalidParam(f"{name} must be between {low} and {high}")
    return value


def run_request(body: dict[str, Any], *, mode: str) -> ChatRequest:
    """A chat or completion request body → ChatRequest (user is read separately, first)."""
    inputs = body.get("inputs")
    if inputs is None:
        if mode == "chat" and "inputs" not in body:
            raise InvalidParam("inputs is required")
        inputs = {}
    if not isinstance(inputs, dict):
        raise InvalidParam("inputs must be an object")
    query = body.get("query")
    if mode == "chat":
        if query is None or query == "":
            raise InvalidParam("query is required")
        if not isinstance(query, str):
            raise InvalidParam("query must be a string")
    elif query is None:
        query = ""
    elif not isinstance(query, str):
        raise InvalidParam("query must be a string")
    response_mode = body.get("response_mode") or "blocking"
    if response_mode not in RESPONSE_MODES:
        raise InvalidParam("response_mode must be one of blocking, streaming")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise InvalidParam("conversation_id must be a valid UUID")
    files = body.get("files")
    if files is not None and not isinstance(files, list):
        raise InvalidParam("files must be a list")
    auto_name = body.get("auto_generate_name", True)
    if not isinstance(auto_name, bool):
        raise InvalidParam("auto_generate_name must be a boolean")
    return ChatRequest(
        mode="completion" if mode == "completion" else "chat",
        inputs=inputs,
        query=query,
        response_mode=response_mode,
        conversation_id=conversation_id or None,
        auto_generate_name=auto_name and mode == "chat",
        files=files or [],
    )
