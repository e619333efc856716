"""Metadata filters (`core/rag/metadata.py`): Dify's conditions checked against the dataset's
field types, and documents' values tested with every operator."""

from __future__ import annotations

from typing import Any

import pytest

from conduit.core.rag.metadata import FilterError, parse_filter

TYPES = {"team": "string", "year": "number", "published": "time"}
DOC = {"team": "Platform core", "year": 2025, "published": 1_700_000_000}


def holds(operator: str, value: Any, name: str = "team", values: dict[str, Any] = DOC) -> bool:
    found = parse_filter(
        {"conditions": [{"name": name, "comparison_operator": operator, "value": value}]}, TYPES
    )
    assert found is not None
    return found.matches(values)


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("contains", "core", True),
        ("contains", "edge", False),
        ("not contains", "edge", True),
        ("start with", "Platform", True),
        ("end with", "Platform", False),
        ("is", "Platform core", True),
        ("is not", "Platform core", False),
        ("in", ["Search", "Platform core"], True),
        ("in", "Search,Platform core", True),
        ("not in", ["Search"], True),
        ("empty", None, False),
        ("not empty", None, True),
    ],
)
def test_string_operators(operator: str, value: Any, expected: bool) -> None:
    assert holds(operator, value) is expected


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [("=", 2025, True), ("≠", 2025, False), ("!=", 2024, True), (">", 2024, True),
     ("<", 2024, False), ("≥", "2025", True), ("<=", 2024.5, False)],
)  # fmt: skip
def test_number_operators(operator: str, value: Any, expected: bool) -> None:
    assert holds(operator, value, name="year") is expected


def test_time_operators_and_missing_values() -> None:
    assert holds("before", 1_800_000_000, name="published")
    assert not holds("after", 1_800_000_000, name="published")
    assert holds("empty", None, name="year", values={})
    assert not holds("is", "x", values={})
    assert holds("is not", "x", values={})


def test_and_or() -> None:
    both = [
        {"name": "team", "comparison_operator": "contains", "value": "core"},
        {"name": "year", "comparison_operator": "<", "value": 2000},
    ]
    every = parse_filter({"logical_operator": "and", "conditions": both}, TYPES)
    either = parse_filter({"logical_operator": "or", "conditions": both}, TYPES)
    assert every is not None and not every.matches(DOC)
    assert either is not None and either.matches(DOC)
    assert parse_filter(None, TYPES) is None
    assert parse_filter({"conditions": []}, TYPES) is None


@pytest.mark.parametrize(
    ("conditions", "named"),
    [
        ("x", "must be an object"),
        ({"logical_operator": "xor", "conditions": []}, "logical_operator"),
        ({"conditions": [{"name": "owner", "comparison_operator": "is", "value": "a"}]},
         "no metadata field 'owner'"),
        ({"conditions": [{"name": "year", "comparison_operator": "contains", "value": "2"}]},
         "does not apply to a number field"),
        ({"conditions": [{"name": "year", "comparison_operator": ">", "value": "soon"}]},
         "conditions[0].value must be a number"),
        ({"conditions": [{"name": "team", "comparison_operator": "is", "value": 3}]},
         "must be a string"),
    ],
)  # fmt: skip
def test_bad_filters_name_the_condition(conditions: Any, named: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter(conditions, TYPES)
    assert named in str(raised.value)
