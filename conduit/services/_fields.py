"""Checks of loosely typed input (a JSON config, a dataclass filled by any caller) shared by
services: a bad value is a 400 `invalid_param` naming the field."""

from __future__ import annotations

from typing import Any

from conduit.errors import InvalidParam


def text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidParam(f"{field}: must be a string")
    if len(value) > limit:
        raise InvalidParam(f"{field}: must be at most {limit} characters")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParam(f"{field}: must be true or false")
    return value
