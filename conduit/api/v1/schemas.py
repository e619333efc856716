"""Reading Dify's request shapes with Dify's exact validation messages (people grep for them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from conduit.api.bodies import loads_json
from conduit.api.errors import INVALID_JSON
from conduit.errors import InvalidParam
from conduit.services.runs import ChatRequest

USER_REQUIRED = "Arg user must be provided."
USER_MAX_LENGTH = 255  # end_users.session_id
RESPONSE_MODES = ("blocking", "streaming", "async")
EVENT_POSITION_MAX = 2**63 - 1


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 415 unless declared JSON, 400 unless a storable object
    (`conduit.api.bodies`). Its size was bounded before (`conduit.api.guard`)."""
    raw = await request.body()
    body = loads_json(raw, request.headers.get("content-type")) if raw else None
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
    return _storable_user(value)


def optional_user(value: Any) -> str | None:
    """A `user` that may be absent (query, form or body): absent, empty or not a string is
    Dify's anonymous end user."""
    return _storable_user(value) if isinstance(value, str) and value else None


def _storable_user(value: str) -> str:
    if len(value) > USER_MAX_LENGTH:
        raise InvalidParam(f"user: must be at most {USER_MAX_LENGTH} characters")
    if "\x00" in value:
        raise InvalidParam("user: must not contain NUL characters (\\u0000)")
    return value


def optional(value: str | None) -> str | None:
    """Dify's newer SDK sends absent query values as empty strings: treat them as absent."""
    return value if value not in (None, "") else None


def event_position(after: str | None, last_event_id: str | None) -> int:
    """Where a resumed stream starts: `?after=`, else the `Last-Event-ID` header, else 0; a
    number of digits up to 2**63-1 (400 naming the one given, never a cut stream)."""
    name, raw = ("after", optional(after))
    if raw is None:
        name, raw = ("Last-Event-ID", optional(last_event_id))
    if raw is None:
        return 0
    digits = raw.isascii() and raw.isdigit() and len(raw) <= len(str(EVENT_POSITION_MAX))
    if not digits or int(raw) > EVENT_POSITION_MAX:
        raise InvalidParam(f"{name}: must be an event number from 0 to {EVENT_POSITION_MAX}")
    return int(raw)


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


def callback_url(body: dict[str, Any], response_mode: str) -> str | None:
    """The body's `callback_url`: only with `response_mode` async, a non-empty string (its
    target is checked against the SSRF rules by the run controller)."""
    found = body.get("callback_url")
    if found is None:
        return None
    if response_mode != "async":
        raise InvalidParam("callback_url is only accepted with response_mode async")
    if not isinstance(found, str) or not found:
        raise InvalidParam("callback_url must be an http or https URL")
    return found


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
        raise InvalidParam("response_mode must be one of blocking, streaming, async")
    callback = callback_url(body, response_mode)
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise InvalidParam("conversation_id must be a valid UUID")
    files = body.get("files")
    if files is not None and not isinstance(files, list):
        raise InvalidParam("files must be a list")
    auto_name = body.get("auto_generate_name", True)
    if not isinstance(auto_name, bool):
        raise InvalidParam("auto_generate_name must be a boolean")
    workflow_id = body.get("workflow_id")  # a chatflow's version (its planner checks it)
    if workflow_id is not None and not isinstance(workflow_id, str):
        raise InvalidParam("workflow_id must be a string")
    return ChatRequest(
        mode="completion" if mode == "completion" else "chat",
        inputs=inputs,
        query=query,
        response_mode=response_mode,
        conversation_id=conversation_id or None,
        auto_generate_name=auto_name and mode == "chat",
        files=files or [],
        callback_url=callback,
        workflow_id=(workflow_id or None) if mode == "chat" else None,
    )
