"""The list-operator's steps (filter, extract, order, limit) and their combination."""

from __future__ import annotations

from typing import Any

import pytest

from conduit.core.workflow.conditions import ConditionError
from conduit.core.workflow.list_ops import apply, extract_by, filter_by, limit, order_by


def make_file(name: str, **overrides: Any) -> dict[str, Any]:
    file = {
        "dify_model_identity": "__dify__file__",
        "id": name,
        "type": "document",
        "transfer_method": "local_file",
        "remote_url": None,
        "related_id": f"id-{name}",
        "filename": name,
        "extension": "." + name.rsplit(".", 1)[-1],
        "mime_type": "application/pdf",
        "size": 100,
        "url": f"/files/{name}",
    }
    file.update(overrides)
    return file


REPORT = make_file("report.pdf", size=3000)
NOTES = make_file("notes.txt", mime_type="text/plain", size=10, type="document")
CAT = make_file(
    "cat.png",
    type="image",
    mime_type="image/png",
    size=500,
    transfer_method="remote_url",
    remote_url="https://example.com/cat.png",
)
FILES = [REPORT, NOTES, CAT]


def fake_render(text: str) -> str:
    return text.replace("{{#start.word#}}", "an").replace("{{#start.n#}}", "2")


def node(
    *,
    filters: list[dict[str, Any]] | None = None,
    serial: Any = None,
    order: tuple[str, str] | None = None,
    size: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "variable": ["start", "items"],
        "filter_by": {"enabled": filters is not None, "conditions": filters or []},
        "extract_by": {"enabled": serial is not None, "serial": serial or "1"},
        "order_by": {
            "enabled": order is not None,
            "key": order[0] if order else "",
            "value": order[1] if order else "asc",
        },
        "limit": {"enabled": size is not None, "size": size if size is not None else -1},
    }
    data.update(extra)
    return data


def run(value: Any, **config: Any) -> list[Any]:
    return list(apply(node(**config), value, fake_render)["result"])


def where(operator: str, value: Any, key: str = "") -> dict[str, Any]:
    return {"key": key, "comparison_operator": operator, "value": value}


# ---------------------------------------------------------------- input and output


def test_nothing_enabled_returns_the_list_with_first_and_last() -> None:
    assert apply(node(), ["a", "b", "c"], fake_render) == {
        "result": ["a", "b", "c"],
        "first_record": "a",
        "last_record": "c",
    }


@pytest.mark.parametrize("value", [None, []])
def test_an_empty_input_gives_an_empty_result_whatever_is_configured(value: Any) -> None:
    data = node(filters=[where("nonsense", "x")], serial="9", size=-5)
    assert apply(data, value, fake_render) == {
        "result": [],
        "first_record": None,
        "last_record": None,
    }


@pytest.mark.parametrize("value", ["abc", 5, {"a": 1}, True])
def test_a_value_that_is_not_a_list_is_refused(value: Any) -> None:
    with pytest.raises(ConditionError, match="the input must be an array"):
        apply(node(), value, fake_render)


def test_a_filter_that_leaves_nothing_has_no_first_or_last_record() -> None:
    assert apply(node(filters=[where("is", "zzz")]), ["a"], fake_render) == {
        "result": [],
        "first_record": None,
        "last_record": None,
    }


# ---------------------------------------------------------------- filter_by

WORDS = ["banana", "Apple", "cherry", "", "grape ", "an"]


@pytest.mark.parametrize(
    ("operator", "value", "kept"),
    [
        ("contains", "an", ["banana", "an"]),
        ("contains", "a", ["banana", "grape ", "an"]),  # not "Apple": case-sensitive
        ("not contains", "an", ["Apple", "cherry", "", "grape "]),
        ("start with", "a", ["an"]),  # case-sensitive
        ("start with", "A", ["Apple"]),
        ("end with", "e", ["Apple"]),  # "grape " ends with a space
        ("is", "grape", []),  # no stripping
        ("is", "grape ", ["grape "]),
        ("is not", "banana", ["Apple", "cherry", "", "grape ", "an"]),
        ("in", ["an", "cherry", "kiwi"], ["cherry", "an"]),
        ("not in", ["an", "cherry"], ["banana", "Apple", "", "grape "]),
        ("in", "banana split", ["banana", "", "an"]),  # a string value: substrings of it
        ("empty", "", [""]),
        ("not empty", "", ["banana", "Apple", "cherry", "grape ", "an"]),
        ("contains", "{{#start.word#}}", ["banana", "an"]),  # rendered
    ],
)
def test_filter_strings(operator: str, value: Any, kept: list[str]) -> None:
    assert run(WORDS, filters=[where(operator, value)]) == kept


NUMBERS = [3, 1.5, 10, -2, 2]


@pytest.mark.parametrize(
    ("operator", "value", "kept"),
    [
        ("=", "2", [2]),
        ("=", "2.0", [2]),
        ("=", 10, [10]),
        ("≠", "2", [3, 1.5, 10, -2]),
        (">", "2", [3, 10]),
        ("<", "1.5", [-2]),
        ("≥", "1.5", [3, 1.5, 10, 2]),
        ("≤", "-2", [-2]),
        (">", "{{#start.n#}}", [3, 10]),
    ],
)
def test_filter_numbers(operator: str, value: Any, kept: list[float]) -> None:
    assert run(NUMBERS, filters=[where(operator, value)]) == kept


@pytest.mark.parametrize(
    ("operator", "value", "kept"),
    [
        ("is", True, [True, True]),
        ("is", "false", [False]),
        ("is not", True, [False]),
        ("is not", "0", [True, True]),
    ],
)
def test_filter_booleans(operator: str, value: Any, kept: list[bool]) -> None:
    assert run([True, False, True], filters=[where(operator, value)]) == kept


@pytest.mark.parametrize(
    ("key", "operator", "value", "kept"),
    [
        ("type", "in", ["image"], [CAT]),
        ("type", "not in", ["image"], [REPORT, NOTES]),
        ("type", "in", ["image", "document"], FILES),
        ("transfer_method", "in", ["remote_url"], [CAT]),
        ("transfer_method", "not in", ["remote_url"], [REPORT, NOTES]),
        ("extension", "is", "pdf", [REPORT]),  # compared with the dot added
        ("extension", "is", ".txt", [NOTES]),
        ("extension", "is not", "pdf", [NOTES, CAT]),
        ("name", "contains", "at", [CAT]),
        ("name", "start with", "re", [REPORT]),
        ("name", "end with", ".txt", [NOTES]),
        ("name", "is", "cat.png", [CAT]),
        ("mime_type", "start with", "image/", [CAT]),
        ("mime_type", "not contains", "pdf", [NOTES, CAT]),
        ("url", "contains", "example.com", [CAT]),  # the remote URL
        ("url", "start with", "/files/", [REPORT, NOTES]),
        ("related_id", "is", "id-notes.txt", [NOTES]),
        ("size", ">", "400", [REPORT, CAT]),
        ("size", "≤", "500", [NOTES, CAT]),
        ("size", "=", "10", [NOTES]),
        ("name", "contains", "{{#start.word#}}", []),  # rendered: "an"
    ],
)
def test_filter_files_by_attribute(key: str, operator: str, value: Any, kept: list[Any]) -> None:
    assert run(FILES, filters=[where(operator, value, key)], var_type="array[file]") == kept


def test_filter_conditions_are_all_applied() -> None:
    filters = [where("contains", "e"), where("not contains", "n"), where("not empty", "")]
    assert run(WORDS, filters=filters) == ["Apple", "cherry", "grape "]


def test_filter_files_by_several_attributes() -> None:
    filters = [where("in", ["document"], "type"), where(">", "50", "size")]
    assert run(FILES, filters=filters) == [REPORT]


def test_filter_objects_by_key() -> None:
    people = [{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}, {"name": "Grace"}]
    assert run(people, filters=[where(">", "40", "age")]) == [{"name": "Alan", "age": 41}]
    assert run(people, filters=[where("start with", "A", "name")]) == people[:2]
    assert run(people, filters=[where("null", None, "age")]) == [{"name": "Grace"}]


def test_an_object_filter_error_names_the_item() -> None:
    rows = [{"v": 1}, {"v": "x"}]
    with pytest.raises(ConditionError, match=r"item 2: .*needs a number"):
        run(rows, filters=[where(">", "0", "v")])


@pytest.mark.parametrize(
    ("items", "condition", "words"),
    [
        (["a"], where("like", "a"), "unknown comparison operator 'like'"),
        (["a"], where(">", "1"), "'>' cannot filter strings"),
        (["a"], where("is", ["a"]), "is needs a string value"),
        ([1, 2], where("contains", "1"), "'contains' cannot filter numbers"),
        ([1, 2], where(">", "two"), "> needs a number: the string 'two' is not a number"),
        ([True], where("=", "true"), "'=' cannot filter booleans"),
        ([True], where("is", "yes"), "cannot be read as a boolean"),
        (FILES, where("is", "x", "colour"), "filter key 'colour' is not a file attribute"),
        (FILES, where("is", "image", "type"), "'is' cannot filter a file's type"),
        (FILES, where("contains", "5", "size"), "'contains' cannot filter numbers"),
        (["a", 1], where("is", "a"), "items differ in type"),
        ([{"v": 1}], where("is", "a"), "needs the key of a field"),
    ],
)
def test_bad_filters_are_refused_in_words(
    items: list[Any], condition: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConditionError) as raised:
        run(items, filters=[condition])
    assert words in raised.value.message


def test_declared_type_is_checked_against_the_items() -> None:
    with pytest.raises(ConditionError, match="item 2 is a string, not a number"):
        run([1, "2"], filters=[where(">", "0")], var_type="array[number]")
    with pytest.raises(ConditionError, match="item 1 is a number, not a string"):
        run([1], item_var_type="string")


# ---------------------------------------------------------------- extract_by


@pytest.mark.parametrize(
    ("serial", "item"), [("1", "a"), ("3", "c"), (2, "b"), (" 2 ", "b"), ("{{#start.n#}}", "b")]
)
def test_extract_the_nth_item_counting_from_one(serial: Any, item: str) -> None:
    assert run(["a", "b", "c"], serial=serial) == [item]


@pytest.mark.parametrize(
    ("serial", "words"),
    [
        ("0", "must be 1 or more, got 0"),
        ("-1", "must be 1 or more"),
        ("4", "serial 4 is past the end of a list of 3 item(s)"),
        ("two", "must be a whole number, got 'two'"),
        ("1.5", "must be a whole number"),
        (None, "must be a whole number"),
    ],
)
def test_extract_refuses_a_serial_out_of_range(serial: Any, words: str) -> None:
    with pytest.raises(ConditionError) as raised:
        extract_by(["a", "b", "c"], serial, fake_render)
    assert words in raised.value.message


# ---------------------------------------------------------------- order_by


@pytest.mark.parametrize(
    ("items", "direction", "ordered"),
    [
        (["b", "C", "a"], "asc", ["C", "a", "b"]),  # by code point, as Python sorts
        (["b", "C", "a"], "desc", ["b", "a", "C"]),
        ([3, 1.5, 10, -2], "asc", [-2, 1.5, 3, 10]),
        ([3, 1.5, 10, -2], "desc", [10, 3, 1.5, -2]),
        ([True, False, True], "asc", [False, True, True]),
    ],
)
def test_order_values(items: list[Any], direction: str, ordered: list[Any]) -> None:
    assert run(items, order=("", direction)) == ordered


@pytest.mark.parametrize(
    ("key", "direction", "ordered"),
    [
        ("size", "asc", [NOTES, CAT, REPORT]),
        ("size", "desc", [REPORT, CAT, NOTES]),
        ("name", "asc", [CAT, NOTES, REPORT]),
        ("extension", "desc", [NOTES, CAT, REPORT]),
        ("type", "asc", [REPORT, NOTES, CAT]),  # stable among equals
    ],
)
def test_order_files_by_attribute(key: str, direction: str, ordered: list[Any]) -> None:
    assert run(FILES, order=(key, direction)) == ordered


def test_order_objects_by_key_with_missing_fields_last() -> None:
    rows = [{"n": 2}, {"m": 1}, {"n": 1}]
    assert run(rows, order=("n", "asc")) == [{"n": 1}, {"n": 2}, {"m": 1}]


@pytest.mark.parametrize(
    ("items", "key", "direction", "words"),
    [
        (["a"], "", "up", "order_by.value must be asc or desc, got 'up'"),
        (FILES, "colour", "asc", "order_by key 'colour' is not a file attribute"),
        ([{"n": 1}], "", "asc", "ordering objects needs order_by.key"),
        ([{"n": 1}, {"n": "x"}], "n", "asc", "cannot order by 'n': its values differ in type"),
        (["a", 1], "", "asc", "items differ in type"),
    ],
)
def test_bad_orders_are_refused(items: list[Any], key: str, direction: str, words: str) -> None:
    with pytest.raises(ConditionError) as raised:
        run(items, order=(key, direction))
    assert words in raised.value.message


# ---------------------------------------------------------------- limit


@pytest.mark.parametrize(
    ("size", "kept"), [(2, ["a", "b"]), (0, []), (10, ["a", "b", "c"]), ("1", ["a"])]
)
def test_limit_keeps_the_first_items(size: Any, kept: list[str]) -> None:
    assert run(["a", "b", "c"], size=size) == kept


@pytest.mark.parametrize("size", [-1, 1.5, "many", True, None])
def test_limit_refuses_a_size_that_is_not_a_count(size: Any) -> None:
    with pytest.raises(ConditionError, match=r"limit.size must be a whole number ≥ 0"):
        limit(["a"], size)


def test_limit_and_extract_work_on_mixed_items() -> None:
    assert run(["a", 1, {"k": 2}], size=2) == ["a", 1]
    assert run(["a", 1, {"k": 2}], serial="3") == [{"k": 2}]


# ---------------------------------------------------------------- the steps together


def test_filter_then_order_then_limit() -> None:
    outputs = apply(
        node(filters=[where("≥", "1.5")], order=("", "desc"), size=2),
        [3, 1.5, 10, -2, 2],
        fake_render,
    )
    assert outputs == {"result": [10, 3], "first_record": 10, "last_record": 3}


def test_extract_runs_after_filter_and_before_order_and_limit() -> None:
    data = node(
        filters=[where("in", ["document"], "type")], serial="2", order=("size", "desc"), size=5
    )
    outputs = apply(data, FILES, fake_render)
    assert outputs == {"result": [NOTES], "first_record": NOTES, "last_record": NOTES}


def test_files_filtered_ordered_and_limited() -> None:
    data = node(
        filters=[where("not in", ["video"], "type"), where("≥", "100", "size")],
        order=("size", "asc"),
        size=1,
        var_type="array[file]",
        item_var_type="file",
    )
    outputs = apply(data, FILES, fake_render)
    assert outputs["result"] == [CAT]
    assert outputs["first_record"] is CAT
    assert outputs["last_record"] is CAT


def test_disabled_steps_are_ignored_even_when_misconfigured() -> None:
    data = node()
    data["filter_by"] = {"enabled": False, "conditions": [where("nonsense", "x")]}
    data["order_by"] = {"enabled": False, "key": "", "value": "sideways"}
    assert run(["b", "a"]) == ["b", "a"]
    assert apply(data, ["b", "a"], fake_render)["result"] == ["b", "a"]


def test_a_section_that_is_not_an_object_is_refused() -> None:
    data = node()
    data["limit"] = 3
    with pytest.raises(ConditionError, match="limit must be an object"):
        apply(data, ["a"], fake_render)


def test_the_input_list_is_not_changed() -> None:
    items = [3, 1, 2]
    apply(node(filters=[where(">", "1")], order=("", "asc")), items, fake_render)
    assert items == [3, 1, 2]


def test_the_steps_can_be_called_one_by_one() -> None:
    assert filter_by(["a", "b"], "string", [where("is", "b")], fake_render) == ["b"]
    assert order_by(["b", "a"], "string", "", "asc") == ["a", "b"]
    assert extract_by(["a", "b"], "{{#start.n#}}", fake_render) == ["b"]
    assert limit(("a", "b"), 1) == ["a"]
