"""The condition evaluator: each operator on each value type, and/or, rendering, files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from conduit.core.workflow.conditions import (
    Condition,
    ConditionError,
    SubVariableCondition,
    check,
    compare,
    evaluate,
    file_attribute,
    to_bool,
)


def make_file(**overrides: Any) -> dict[str, Any]:
    file = {
        "dify_model_identity": "__dify__file__",
        "id": "f1",
        "type": "document",
        "transfer_method": "local_file",
        "remote_url": None,
        "related_id": "u1",
        "filename": "report.pdf",
        "extension": ".pdf",
        "mime_type": "application/pdf",
        "size": 2048,
        "url": "/files/u1/file-preview",
    }
    file.update(overrides)
    return file


IMAGE = make_file(
    id="f2",
    type="image",
    filename="cat.PNG",
    extension="png",
    mime_type="image/png",
    size=512,
    transfer_method="remote_url",
    remote_url="https://example.com/cat.PNG",
)
DOC = make_file()


def make_lookup(values: dict[str, Any]) -> Any:
    def lookup(selector: Sequence[str]) -> Any:
        return values[".".join(selector)]  # KeyError when absent, like the pool

    return lookup


def fake_render(text: str) -> str:
    return text.replace("{{#start.name#}}", "Ada").replace("{{#start.limit#}}", "10")


def cond(selector: str, operator: str, value: Any = None, **extra: Any) -> Condition:
    return Condition.from_dsl(
        {
            "variable_selector": selector.split("."),
            "comparison_operator": operator,
            "value": value,
            **extra,
        }
    )


# ---------------------------------------------------------------- compare: one row per case

STRING_CASES = [
    ("contains", "hello world", "world", True),
    ("contains", "Hello", "hello", False),  # case-sensitive
    ("contains", "", "a", False),
    ("contains", None, "a", False),
    ("contains", "n=5", 5, True),  # the expected value is read as text
    ("not contains", "hello", "x", True),
    ("not contains", "hello", "ell", False),
    ("not contains", None, "x", True),
    ("not contains", "", "x", True),
    ("start with", "hello", "he", True),
    ("start with", "hello", "lo", False),
    ("start with", " hello", "he", False),  # no stripping
    ("start with", None, "he", False),
    ("end with", "hello", "lo", True),
    ("end with", "hello", "he", False),
    ("end with", "", "", False),
    ("is", "abc", "abc", True),
    ("is", "abc", "ABC", False),
    ("is", "abc ", "abc", False),
    ("is", None, "abc", False),
    ("is", "", "", True),
    ("is not", "abc", "abd", True),
    ("is not", "abc", "abc", False),
    ("is not", None, "abc", False),  # None is neither
    ("empty", "", None, True),
    ("empty", "a", None, False),
    ("empty", None, None, True),
    ("not empty", "a", None, True),
    ("not empty", "", None, False),
    ("not empty", None, None, False),
]

NUMBER_CASES = [
    ("=", 5, "5", True),
    ("=", 5, "5.0", True),
    ("=", 5, " 5 ", True),
    ("=", 5, 5, True),
    ("=", 2.5, "2.5", True),
    ("=", 5, "6", False),
    ("=", 3, "3.5", False),
    ("=", None, "5", False),
    ("≠", 5, "6", True),
    ("≠", 5, "5", False),
    ("≠", None, "5", False),  # None is never compared
    (">", 5, "3", True),
    (">", 5, "5", False),
    (">", 2.5, "2", True),
    (">", 3, "2.5", True),
    (">", -1, "0", False),
    (">", None, "0", False),
    ("<", 2, "3", True),
    ("<", 3, "3", False),
    ("<", 1.5, 2, True),
    ("≥", 5, "5", True),
    ("≥", 4.9, "5", False),
    ("≤", 5, "5", True),
    ("≤", 6, "5", False),
    ("≤", 10**20, "100000000000000000000", True),
    ("empty", 0, None, True),  # Dify: 0 is empty
    ("not empty", 7, None, True),
    ("null", None, None, True),
    ("null", 0, None, False),
    ("null", "", None, False),
    ("not null", 0, None, True),
    ("not null", None, None, False),
    ("is null", None, None, True),  # the web UI's spelling
    ("is not null", 1, None, True),
]

ARRAY_CASES = [
    ("contains", ["a", "b"], "a", True),
    ("contains", ["a", "b"], "c", False),
    ("contains", ["ab"], "a", False),  # an item, not a substring
    ("contains", [1, 2], "2", True),  # a numeric string finds a number
    ("contains", [1, 2], 2, True),
    ("contains", [1.5], "1.5", True),
    ("contains", [1, 2], "x", False),
    ("contains", [], "a", False),
    ("not contains", ["a"], "a", False),
    ("not contains", ["a"], "b", True),
    ("not contains", [], "a", True),
    ("in", "a", ["a", "b"], True),
    ("in", "c", ["a", "b"], False),
    ("in", "", ["", "a"], False),  # a falsy value is in nothing
    ("in", None, ["a"], False),
    ("not in", "c", ["a", "b"], True),
    ("not in", "a", ["a", "b"], False),
    ("not in", None, ["a"], True),
    ("all of", ["a", "b", "c"], ["a", "c"], True),
    ("all of", ["a"], ["a", "b"], False),
    ("all of", [], ["a"], False),
    ("all of", [1, 2, 3], ["1", "3"], True),
    ("all of", "abc", ["a", "c"], True),
    ("empty", [], None, True),
    ("empty", {}, None, True),
    ("not empty", [0], None, True),
    ("not empty", {"k": 1}, None, True),
]

BOOLEAN_CASES = [
    ("is", True, "true", True),
    ("is", True, True, True),
    ("is", False, "false", True),
    ("is", True, "false", False),
    ("is", True, "1", True),
    ("is", False, "0", True),
    ("is", True, " TRUE ", True),
    ("is", True, 1, True),
    ("is not", True, "false", True),
    ("is not", True, "true", False),
    ("is not", None, "true", False),
    ("=", True, "true", True),
    ("=", False, "true", False),
    ("≠", True, "false", True),
    ("contains", [True, False], "false", True),
    ("contains", [True], "false", False),
    ("not contains", [True], "false", True),
    ("all of", [True, False], ["true", "false"], True),
    ("all of", [True], [True, False], False),
    ("empty", False, "ignored", True),  # Dify: false is empty; the value is not read
    ("not empty", True, "", True),
]

FILE_CASES = [
    ("exists", DOC, None, True),
    ("exists", None, None, False),
    ("not exists", None, None, True),
    ("not exists", DOC, None, False),
    ("empty", [], None, True),
    ("not empty", [DOC], None, True),
]


@pytest.mark.parametrize(("operator", "actual", "expected", "result"), STRING_CASES)
def test_compare_strings(operator: str, actual: Any, expected: Any, result: bool) -> None:
    assert compare(operator, actual, expected) is result


@pytest.mark.parametrize(("operator", "actual", "expected", "result"), NUMBER_CASES)
def test_compare_numbers(operator: str, actual: Any, expected: Any, result: bool) -> None:
    assert compare(operator, actual, expected) is result


@pytest.mark.parametrize(("operator", "actual", "expected", "result"), ARRAY_CASES)
def test_compare_arrays(operator: str, actual: Any, expected: Any, result: bool) -> None:
    assert compare(operator, actual, expected) is result


@pytest.mark.parametrize(("operator", "actual", "expected", "result"), BOOLEAN_CASES)
def test_compare_booleans(operator: str, actual: Any, expected: Any, result: bool) -> None:
    assert compare(operator, actual, expected) is result


@pytest.mark.parametrize(("operator", "actual", "expected", "result"), FILE_CASES)
def test_compare_files(operator: str, actual: Any, expected: Any, result: bool) -> None:
    assert compare(operator, actual, expected) is result


@pytest.mark.parametrize(
    ("operator", "actual", "expected", "words"),
    [
        (">", "7", "1", "needs a number, got the string '7'"),  # a string is not a number
        ("=", "7", "7", "needs a number or a boolean"),
        (">", 5, "abc", "the string 'abc' is not a number"),
        (">", 5, None, "nothing (None) is not a number"),
        (">", True, "0", "needs a number, got the boolean true"),
        ("is", 5, "5", "needs a string or a boolean, got the number 5"),
        ("is", True, "maybe", "cannot be read as a boolean"),
        ("contains", {"a": 1}, "a", "needs a string or an array, got an object"),
        ("contains", 5, "5", "needs a string or an array"),
        ("start with", ["a"], "a", "needs a string, got an array"),
        ("start with", "abc", None, "needs a string value"),
        ("in", "a", "abc", "in needs an array value"),
        ("all of", ["a"], "a", "all of needs an array value"),
        ("all of", 5, ["5"], "needs an array or a string"),
    ],
)
def test_compare_refuses_values_it_cannot_compare(
    operator: str, actual: Any, expected: Any, words: str
) -> None:
    with pytest.raises(ConditionError) as raised:
        compare(operator, actual, expected)
    assert words in raised.value.message


def test_unknown_operator_is_named() -> None:
    with pytest.raises(ConditionError, match="'like'") as raised:
        compare("like", "a", "a")
    assert "unknown comparison operator 'like'" in raised.value.message
    assert "start with" in raised.value.message  # and the known ones are listed


@pytest.mark.parametrize(
    ("value", "result"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("False", False),
        ("1", True),
    ],
)
def test_to_bool_reads_dify_boolean_values(value: Any, result: bool) -> None:
    assert to_bool(value) is result


@pytest.mark.parametrize("value", ["yes", "", None, 1.5, [True]])
def test_to_bool_refuses_other_values(value: Any) -> None:
    with pytest.raises(ConditionError):
        to_bool(value)


# ---------------------------------------------------------------- Condition.from_dsl


def test_from_dsl_reads_a_dify_condition() -> None:
    condition = Condition.from_dsl(
        {
            "id": "c1",
            "varType": "array[file]",
            "variable_selector": ["start", "docs"],
            "comparison_operator": "contains",
            "value": "",
            "sub_variable_condition": {
                "logical_operator": "or",
                "conditions": [
                    {"key": "type", "comparison_operator": "in", "value": ["image"]},
                    {"key": "size", "comparison_operator": "≥", "value": "100"},
                ],
            },
        }
    )
    assert condition.variable_selector == ("start", "docs")
    assert condition.comparison_operator == "contains"
    assert condition.var_type == "array[file]"
    assert condition.sub_variable_condition == SubVariableCondition.from_dsl(
        {
            "logical_operator": "or",
            "conditions": [
                {"key": "type", "comparison_operator": "in", "value": ["image"]},
                {"key": "size", "comparison_operator": "≥", "value": "100"},
            ],
        }
    )
    assert condition.sub_variable_condition is not None
    assert [c.key for c in condition.sub_variable_condition.conditions] == ["type", "size"]


def test_from_dsl_accepts_var_type_and_the_ui_null_spelling() -> None:
    condition = Condition.from_dsl(
        {"variable_selector": ["n", "x"], "comparison_operator": "is null", "var_type": "number"}
    )
    assert condition.comparison_operator == "null"
    assert condition.var_type == "number"
    assert condition.value is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            {"variable_selector": ["a", "b"], "comparison_operator": "~="},
            "unknown comparison operator '~='",
        ),
        ({"variable_selector": ["a", "b"]}, "needs a comparison_operator"),
        ({"variable_selector": ["a"], "comparison_operator": "is"}, "variable_selector"),
        ({"variable_selector": "a.b", "comparison_operator": "is"}, "variable_selector"),
        (
            {
                "variable_selector": ["a", "b"],
                "comparison_operator": "contains",
                "sub_variable_condition": {"logical_operator": "xor", "conditions": []},
            },
            "unknown logical operator 'xor'",
        ),
        (
            {
                "variable_selector": ["a", "b"],
                "comparison_operator": "contains",
                "sub_variable_condition": {
                    "logical_operator": "and",
                    "conditions": [{"key": "colour", "comparison_operator": "is", "value": "x"}],
                },
            },
            "unknown file attribute 'colour'",
        ),
        (["a", "b"], "a condition must be an object"),
    ],
)
def test_from_dsl_refuses_bad_conditions_in_words(data: Any, words: str) -> None:
    with pytest.raises(ConditionError) as raised:
        Condition.from_dsl(data)
    assert words in raised.value.message


# ---------------------------------------------------------------- check: and / or, lookup, render

VALUES = {"n.age": 30, "n.name": "Ada Lovelace", "n.flag": True, "n.tags": ["x", "y"]}


@pytest.mark.parametrize(
    ("operators", "logical", "result"),
    [
        ([(">", "18"), ("start with", "Ada")], "and", True),
        ([(">", "40"), ("start with", "Ada")], "and", False),
        ([(">", "40"), ("start with", "Ada")], "or", True),
        ([(">", "40"), ("start with", "Bob")], "or", False),
        ([(">", "18"), ("start with", "Bob")], "and", False),
    ],
)
def test_and_or(operators: list[tuple[str, str]], logical: str, result: bool) -> None:
    selectors = ["n.age", "n.name"]
    conditions = [cond(s, op, v) for s, (op, v) in zip(selectors, operators, strict=True)]
    assert check(conditions, logical, make_lookup(VALUES), fake_render) is result


def test_no_conditions_is_true_under_and_false_under_or() -> None:
    assert check([], "and", make_lookup({}), fake_render) is True
    assert check([], "or", make_lookup({}), fake_render) is False


def test_unknown_logical_operator_is_named() -> None:
    with pytest.raises(ConditionError, match="'nand'"):
        check([cond("n.age", ">", "1")], "nand", make_lookup(VALUES), fake_render)


@pytest.mark.parametrize(
    ("operator", "result"),
    [
        ("null", True),
        ("not null", False),
        ("empty", True),
        ("not empty", False),
        ("exists", False),
        ("not exists", True),
        ("contains", False),
        ("not contains", True),
        ("is", False),
        ("is not", False),
        ("=", False),
        (">", False),
        ("start with", False),
        ("in", False),
        ("not in", True),
    ],
)
def test_an_absent_variable_reads_as_none(operator: str, result: bool) -> None:
    value = ["a"] if operator in ("in", "not in") else "a"
    assert (
        check([cond("n.missing", operator, value)], "and", make_lookup(VALUES), fake_render)
        is result
    )


def test_condition_values_are_rendered() -> None:
    conditions = [
        cond("n.name", "start with", "{{#start.name#}}"),
        cond("n.age", ">", "{{#start.limit#}}"),
    ]
    assert check(conditions, "and", make_lookup(VALUES), fake_render) is True
    assert (
        check([cond("n.name", "is", "{{#start.name#}}")], "and", make_lookup(VALUES), fake_render)
        is False
    )


def test_list_values_are_not_rendered() -> None:
    rendered: list[str] = []

    def render(text: str) -> str:
        rendered.append(text)
        return text

    condition = cond("n.name", "in", ["{{#start.name#}}"])
    assert check([condition], "and", make_lookup(VALUES), render) is False
    assert rendered == []


def test_unary_operators_neither_render_nor_convert_the_value() -> None:
    def render(text: str) -> str:
        raise AssertionError("rendered")

    condition = cond("n.flag", "not empty", "", varType="boolean")
    assert check([condition], "and", make_lookup(VALUES), render) is True


def test_an_error_names_the_variable() -> None:
    with pytest.raises(ConditionError) as raised:
        check([cond("n.name", ">", "3")], "and", make_lookup(VALUES), fake_render)
    assert raised.value.message.startswith("condition on n.name: ")
    assert "needs a number, got the string 'Ada Lovelace'" in raised.value.message


def test_a_value_that_is_not_a_number_is_named() -> None:
    with pytest.raises(ConditionError, match="the string 'ten' is not a number"):
        check([cond("n.age", "≥", "ten")], "and", make_lookup(VALUES), fake_render)


def test_and_stops_at_the_first_false_and_or_at_the_first_true() -> None:
    failing = cond("n.name", ">", "3")  # would raise
    lookup = make_lookup(VALUES)
    assert check([cond("n.age", "<", "18"), failing], "and", lookup, fake_render) is False
    assert check([cond("n.age", ">", "18"), failing], "or", lookup, fake_render) is True
    with pytest.raises(ConditionError):
        check([cond("n.age", ">", "18"), failing], "and", lookup, fake_render)


def test_boolean_variables_read_the_value_as_a_boolean() -> None:
    lookup = make_lookup(VALUES)
    assert check([cond("n.flag", "is", "true", varType="boolean")], "and", lookup, fake_render)
    assert check([cond("n.flag", "is", True, varType="boolean")], "and", lookup, fake_render)
    assert not check([cond("n.flag", "is", "false", varType="boolean")], "and", lookup, fake_render)
    assert check([cond("n.flag", "is not", False)], "and", lookup, fake_render)


def test_array_variables() -> None:
    lookup = make_lookup(VALUES)
    assert check([cond("n.tags", "contains", "x")], "and", lookup, fake_render)
    assert check([cond("n.tags", "not contains", "z")], "and", lookup, fake_render)
    assert check([cond("n.tags", "all of", ["y", "x"])], "and", lookup, fake_render)
    assert not check([cond("n.tags", "empty")], "and", lookup, fake_render)


def test_evaluate_reports_inputs_and_results() -> None:
    result = evaluate(
        [cond("n.age", ">", "{{#start.limit#}}"), cond("n.name", "contains", "Love")],
        "and",
        make_lookup(VALUES),
        fake_render,
    )
    assert result.final_result is True
    assert result.group_results == [True, True]
    assert result.inputs[0] == {
        "actual_value": 30,
        "expected_value": "10",
        "comparison_operator": ">",
    }


# ---------------------------------------------------------------- files

FILES = {"start.docs": [DOC, IMAGE], "start.none": [], "start.doc": DOC}


def files_condition(
    operator: str, logical: str, *subs: tuple[str, str, Any], **extra: Any
) -> Condition:
    return cond(
        "start.docs",
        operator,
        "",
        sub_variable_condition={
            "logical_operator": logical,
            "conditions": [{"key": k, "comparison_operator": op, "value": v} for k, op, v in subs],
        },
        **extra,
    )


@pytest.mark.parametrize(
    ("subs", "logical", "result"),
    [
        ([("type", "in", ["image"])], "and", True),
        ([("type", "in", ["video"])], "and", False),
        ([("type", "not in", ["image"])], "and", False),  # "not": every file must pass
        ([("type", "not in", ["video"])], "and", True),
        ([("transfer_method", "in", ["remote_url"])], "and", True),
        ([("extension", "is", "pdf")], "and", True),  # dots added on both sides
        ([("extension", "is", ".png")], "and", True),  # the file's "png" has no dot
        ([("extension", "is not", "pdf")], "and", False),
        ([("size", ">", "1000")], "and", True),
        ([("size", "<", "100")], "and", False),
        ([("name", "contains", "cat")], "and", True),
        ([("name", "start with", "Cat")], "and", False),  # case-sensitive
        ([("name", "is", "report.pdf")], "and", True),
        ([("mime_type", "start with", "image/")], "and", True),
        ([("url", "contains", "example.com")], "and", True),
        ([("url", "not empty", None)], "and", True),
        ([("type", "in", ["image"]), ("size", ">", "1000")], "and", True),  # per attribute
        ([("type", "in", ["video"]), ("size", ">", "1000")], "and", False),
        ([("type", "in", ["video"]), ("size", ">", "1000")], "or", True),
        ([("name", "contains", "{{#start.name#}}")], "and", False),  # rendered: "Ada"
    ],
)
def test_file_arrays_are_checked_by_their_sub_conditions(
    subs: list[tuple[str, str, Any]], logical: str, result: bool
) -> None:
    condition = files_condition("contains", logical, *subs)
    assert check([condition], "and", make_lookup(FILES), fake_render) is result


def test_the_outer_operator_on_file_arrays_only_selects_the_sub_conditions() -> None:
    lookup = make_lookup(FILES)
    for operator in ("contains", "not contains", "all of"):
        condition = files_condition(operator, "and", ("type", "in", ["image"]))
        assert check([condition], "and", lookup, fake_render) is True


def test_an_empty_file_array_declared_by_var_type_uses_its_sub_conditions() -> None:
    condition = cond(
        "start.none",
        "not contains",
        "",
        varType="array[file]",
        sub_variable_condition={
            "logical_operator": "and",
            "conditions": [{"key": "type", "comparison_operator": "in", "value": ["image"]}],
        },
    )
    assert check([condition], "and", make_lookup(FILES), fake_render) is False


def test_a_file_array_without_sub_conditions_is_refused() -> None:
    with pytest.raises(ConditionError, match=r"start\.docs: contains on an array of files needs"):
        check([cond("start.docs", "contains", "x")], "and", make_lookup(FILES), fake_render)


def test_file_arrays_with_other_operators_compare_the_list() -> None:
    lookup = make_lookup(FILES)
    assert check([cond("start.docs", "not empty")], "and", lookup, fake_render)
    assert check([cond("start.none", "empty")], "and", lookup, fake_render)


def test_a_single_file_exists_and_its_attributes_read_by_dify_names() -> None:
    lookup = make_lookup(FILES)
    assert check([cond("start.doc", "exists")], "and", lookup, fake_render)
    assert check([cond("start.other", "not exists")], "and", lookup, fake_render)
    assert check([cond("start.doc.name", "end with", ".pdf")], "and", lookup, fake_render)
    assert check([cond("start.doc.size", "≥", "2048")], "and", lookup, fake_render)
    assert check([cond("start.doc.type", "is", "document")], "and", lookup, fake_render)
    assert check([cond("start.doc.url", "start with", "/files/")], "and", lookup, fake_render)


def test_file_attribute_names() -> None:
    assert file_attribute(IMAGE, "name") == "cat.PNG"
    assert file_attribute(IMAGE, "url") == "https://example.com/cat.PNG"
    assert file_attribute(DOC, "url") == "/files/u1/file-preview"
    assert file_attribute(DOC, "related_id") == "u1"
    with pytest.raises(ConditionError, match="unknown file attribute 'colour'"):
        file_attribute(DOC, "colour")
