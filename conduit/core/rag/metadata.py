"""Metadata filters, free of I/O: Dify's `metadata_filtering_conditions` checked, and a
document's values (by field name) tested against them.

    {"logical_operator": "and" | "or",
     "conditions": [{"name": …, "comparison_operator": …, "value": …}, …]}

Operators by field type (Dify's): strings `contains`, `not contains`, `start with`,
`end with`, `is`, `is not`, `in`, `not in`; numbers `=`, `≠`, `>`, `<`, `≥`, `≤` (and their
ASCII spellings); times (Unix seconds) `before`, `after`; any type `empty`, `not empty`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STRING_OPERATORS = ("contains", "not contains", "start with", "end with", "is", "is not", "in",
                    "not in")  # fmt: skip
NUMBER_OPERATORS = {"=": "=", "≠": "≠", "!=": "≠", ">": ">", "<": "<", "≥": "≥", ">=": "≥",
                    "≤": "≤", "<=": "≤"}  # fmt: skip
TIME_OPERATORS = ("before", "after")
ANY_OPERATORS = ("empty", "not empty")


class FilterError(ValueError):
    """A filter that cannot be applied; its message names the condition."""


@dataclass(frozen=True)
class Condition:
    name: str
    operator: str
    value: Any


@dataclass(frozen=True)
class MetadataFilter:
    conditions: tuple[Condition, ...]
    any_of: bool  # "or"; else every condition must hold

    def matches(self, values: Mapping[str, Any]) -> bool:
        results = (_holds(c, values.get(c.name)) for c in self.conditions)
        return any(results) if self.any_of else all(results)


def parse_filter(value: Any, types: Mapping[str, str]) -> MetadataFilter | None:
    """The filter of a `retrieval_model.metadata_filtering_conditions`, checked against the
    dataset's field `types` (name → string | number | time); None when there is none."""
    if value is None:
        return None
    where = "retrieval_model.metadata_filtering_conditions"
    if not isinstance(value, dict):
        raise FilterError(f"{where} must be an object.")
    logical = value.get("logical_operator", "and")
    if logical not in ("and", "or"):
        raise FilterError(f"{where}.logical_operator must be and or or.")
    items = value.get("conditions") or []
    if not isinstance(items, list):
        raise FilterError(f"{where}.conditions must be a list.")
    conditions = []
    for index, item in enumerate(items):
        at = f"{where}.conditions[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise FilterError(f"{at} must be an object with a name.")
        name, operator = item["name"], item.get("comparison_operator")
        kind = types.get(name)
        if kind is None:
            raise FilterError(f"{at}.name: the dataset has no metadata field {name!r}.")
        conditions.append(Condition(name, _operator(kind, operator, at), item.get("value")))
        _check_value(kind, conditions[-1], at)
    return MetadataFilter(tuple(conditions), any_of=logical == "or") if conditions else None


def _operator(kind: str, operator: Any, at: str) -> str:
    if operator in ANY_OPERATORS:
        return str(operator)
    if kind == "string" and operator in STRING_OPERATORS:
        return str(operator)
    if kind == "number" and operator in NUMBER_OPERATORS:
        return NUMBER_OPERATORS[operator]
    if kind == "time" and operator in TIME_OPERATORS:
        return str(operator)
    raise FilterError(f"{at}.comparison_operator {operator!r} does not apply to a {kind} field.")


def _check_value(kind: str, condition: Condition, at: str) -> None:
    if condition.operator in ANY_OPERATORS:
        return
    value = condition.value
    if condition.operator in ("in", "not in"):
        if not isinstance(value, list | str):
            raise FilterError(f"{at}.value must be a list of strings.")
    elif kind == "string" and not isinstance(value, str):
        raise FilterError(f"{at}.value must be a string.")
    elif kind in ("number", "time") and _number(value) is None:
        raise FilterError(f"{at}.value must be a number.")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _holds(condition: Condition, actual: Any) -> bool:
    operator, expected = condition.operator, condition.value
    empty = actual is None or actual == ""
    if operator == "empty":
        return empty
    if operator == "not empty":
        return not empty
    if empty:
        return operator in ("not contains", "is not", "not in", "≠")
    if operator in STRING_OPERATORS:
        text = str(actual)
        if operator in ("in", "not in"):
            options = expected if isinstance(expected, list) else str(expected).split(",")
            inside = text in [str(o).strip() for o in options]
            return inside if operator == "in" else not inside
        return {
            "contains": lambda: str(expected) in text,
            "not contains": lambda: str(expected) not in text,
            "start with": lambda: text.startswith(str(expected)),
            "end with": lambda: text.endswith(str(expected)),
            "is": lambda: text == str(expected),
            "is not": lambda: text != str(expected),
        }[operator]()
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    return {
        "=": left == right,
        "≠": left != right,
        ">": left > right,
        "<": left < right,
        "≥": left >= right,
        "≤": left <= right,
        "before": left < right,
        "after": left > right,
    }[operator]
