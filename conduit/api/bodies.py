"""JSON request bodies, read alike on every route: declared as JSON (else 415, as Dify), strict
JSON (orjson: no NaN, no lone surrogate), and holding only what the database and the encoder
can store (else 400 naming the value): no NUL in a string or a key (PostgreSQL text and JSONB
refuse it; SQLite must refuse it too), no integer beyond 64 bits (orjson reads it as a float,
a changed value, and cannot write it back)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request

from conduit.api.errors import INVALID_JSON
from conduit.errors import InvalidParam, UnsupportedMediaType

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson reads and writes as an integer
# A body can hold an unstorable value only if its bytes hold an escaped NUL (JSON text cannot
# carry a raw one) or a run of 19+ digits (as every integer out of range does). Two C scans of
# the bytes (a substring search; digits mapped to "9", then one) cost about 0.5 us for a chat
# body and 1 ms for 1 MB; only suspect bodies pay for a second parse and a walk. (A regular
# expression for the digit run costs 15 times as much.)
_ESCAPED_NUL = b"\\u0000"
_DIGITS = bytes(0x39 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_DIGIT_RUN = b"9" * 19


def _suspect(raw: bytes) -> bool:
    return _ESCAPED_NUL in raw or _DIGIT_RUN in raw.translate(_DIGITS)


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/<x>+json`, parameters allowed (werkzeug's rule)."""
    if content_type is None:
        return False
    if content_type == "application/json":
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def loads_json(raw: bytes, content_type: str | None) -> Any:
    """A non-empty request body as JSON, checked (see the module docstring)."""
    if not is_json_media_type(content_type):
        raise UnsupportedMediaType()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidParam(INVALID_JSON) from None
    if _suspect(raw):
        try:
            exact = json.loads(raw)  # integers as written (orjson made the large ones floats)
        except RecursionError:
            raise InvalidParam("body: nested too deeply") from None
        refuse_unstorable(exact)
    return body


def refuse_unstorable(value: Any) -> None:
    """400 naming the first string or key holding a NUL, or integer beyond 64 bits, in `value`
    (paths as `inputs.name`, `user_input_form[0].select`)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # iterative: a deep body must not exhaust the recursion limit
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidParam(f"{path or 'body'}: must not contain NUL characters (\\u0000)")
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if "\x00" in key:
                    raise InvalidParam(
                        f"{path or 'body'}: keys must not contain NUL characters (\\u0000)"
                    )
                children.append((f"{path}.{key}" if path else key, child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))
        elif isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            raise InvalidParam(f"{path or 'body'}: integer out of range (64 bits at most)")


async def check_declared_body(request: Request) -> None:
    """For routes whose body FastAPI reads and parses itself (typed console bodies), before
    their other dependencies: the same checks as `loads_json`. Routes that read their body
    with `conduit.api.v1.schemas.json_body` declare none, and are skipped here."""
    if getattr(request.scope.get("route"), "body_field", None) is None:
        return
    raw = await request.body()  # already read by FastAPI
    if raw:
        loads_json(raw, request.headers.get("content-type"))
