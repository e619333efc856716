"""The list-operator node's work on a list value, apart from the node: filter, extract, order,
limit, in that order, each when its DSL section is `enabled` — Dify's `list-operator`.

Node data (Dify's DSL):

    variable: [node_id, var]          the list (read by the node, passed here as `value`)
    var_type: array[string]           array[string|number|boolean|file|object]; optional
    item_var_type: string             the items' type; optional (else from var_type, else seen)
    filter_by:  {enabled, conditions: [{key, comparison_operator, value}]}
    extract_by: {enabled, serial}     the serial-th item, counted from 1 ("2" or a {{#ref#}})
    order_by:   {enabled, key, value: asc | desc}
    limit:      {enabled, size}       the first `size` items

Output: `{result, first_record, last_record}`; an empty input (or None) gives `{result: [],
first_record: None, last_record: None}` whatever is configured, as in Dify.

Filters keep the items every condition accepts (conditions are joined by "and"). A string
condition value is rendered first (`{{#node.var#}}`). By item type:

- string: contains, not contains, start with, end with, is, is not (exact, case-sensitive),
  in / not in (a list value: membership; a string value: substring of it, as Dify does),
  empty / not empty (`== ""`).
- number: = ≠ > < ≥ ≤ against the value read as a number ("3", "2.5", 3).
- boolean: is / is not against the value read as a boolean (true, "false", 1...).
- file: by `key` — name, extension, mime_type, url, related_id with the string operators;
  type and transfer_method with in / not in (e.g. ["image", "document"]); size with the number
  operators. Extensions compare with a leading dot on both sides, as the if-else does.
- object (a Conduit addition; Dify refuses arrays of objects): `key` picks a field of each
  item, compared as the if-else compares a variable (`conditions.compare`).

Order: strings, numbers and booleans by value; files by `key` (a string attribute, or size);
objects by `key` (items without it last). Bad configuration, an operator the item type has no
use for, or a serial out of range raise `ConditionError` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conduit.core.workflow.conditions import (
    FILE_ATTRIBUTES,
    ConditionError,
    canonical_operator,
    compare,
    extension_with_dot,
    file_attribute,
    is_file,
    to_bool,
    to_number,
)

__all__ = ["ITEM_TYPES", "apply", "extract_by", "filter_by", "limit", "order_by"]

ITEM_TYPES = frozenset({"string", "number", "boolean", "file", "object"})
_STRING_OPERATORS = (
    "contains",
    "not contains",
    "start with",
    "end with",
    "is",
    "is not",
    "in",
    "not in",
    "empty",
    "not empty",
)
_NUMBER_OPERATORS = ("=", "≠", ">", "<", "≥", "≤")
_BOOLEAN_OPERATORS = ("is", "is not")
_SEQUENCE_OPERATORS = ("in", "not in")
_FILE_STRING_KEYS = frozenset({"name", "extension", "mime_type", "url", "related_id"})
_FILE_CHOICE_KEYS = frozenset({"type", "transfer_method"})

Predicate = Callable[[Any], bool]


def _describe_item(item: Any) -> str:
    if is_file(item):
        return "a file"
    if isinstance(item, Mapping):
        return "an object"
    if isinstance(item, bool):
        return "a boolean"
    if isinstance(item, int | float):
        return "a number"
    if isinstance(item, str):
        return "a string"
    if item is None:
        return "null"
    return f"a {type(item).__name__}"


def _type_of(item: Any) -> str | None:
    if isinstance(item, str):
        return "string"
    if isinstance(item, bool):
        return "boolean"
    if isinstance(item, int | float):
        return "number"
    if is_file(item):
        return "file"
    if isinstance(item, Mapping):
        return "object"
    return None


def _item_type(node_data: Mapping[str, Any], items: Sequence[Any]) -> str | None:
    """The items' type: declared by `item_var_type` / `var_type` when they name one Conduit
    filters, else the one type all items share (None when they are mixed)."""
    declared = node_data.get("item_var_type")
    var_type = node_data.get("var_type")
    if declared not in ITEM_TYPES and isinstance(var_type, str) and var_type.startswith("array["):
        declared = var_type[len("array[") : -1]
    if declared in ITEM_TYPES:
        for position, item in enumerate(items, start=1):
            if _type_of(item) != declared:
                raise ConditionError(
                    f"list operator: item {position} is {_describe_item(item)}, "
                    f"not a {declared} as the list's type says"
                )
        return str(declared)
    seen = {_type_of(item) for item in items}
    if len(seen) == 1:
        return seen.pop()
    return None


def _section(node_data: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """A step's DSL section when it is enabled."""
    section = node_data.get(name)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ConditionError(f"list operator: {name} must be an object, got {section!r}")
    return section if section.get("enabled") else None


def _operator_for(operator: Any, allowed: Sequence[str], what: str) -> str:
    name = canonical_operator(str(operator))
    if name not in allowed:
        raise ConditionError(
            f"list operator: {name!r} cannot filter {what} (use one of: {', '.join(allowed)})"
        )
    return name


def _rendered(value: Any, render: Callable[[str], str]) -> Any:
    return render(value) if isinstance(value, str) else value


def _string_predicate(operator: str, value: Any) -> Predicate:
    name = _operator_for(operator, _STRING_OPERATORS, "strings")
    if name in ("empty", "not empty"):
        return (lambda text: text == "") if name == "empty" else (lambda text: text != "")
    if name in _SEQUENCE_OPERATORS:
        if not isinstance(value, str | list | tuple):
            raise ConditionError(f"list operator: {name} needs a string or a list, got {value!r}")
        return _sequence_predicate(name, value)
    if not isinstance(value, str):
        raise ConditionError(f"list operator: {name} needs a string value, got {value!r}")
    match name:
        case "contains":
            return lambda text: value in text
        case "not contains":
            return lambda text: value not in text
        case "start with":
            return lambda text: bool(text.startswith(value))
        case "end with":
            return lambda text: bool(text.endswith(value))
        case "is":
            return lambda text: bool(text == value)
    return lambda text: bool(text != value)


def _sequence_predicate(name: str, choices: str | Sequence[Any]) -> Predicate:
    if name == "in":
        return lambda item: item in choices
    return lambda item: item not in choices


def _number_predicate(operator: str, value: Any) -> Predicate:
    name = _operator_for(operator, _NUMBER_OPERATORS, "numbers")
    try:
        number = to_number(value)
    except ConditionError as error:
        raise ConditionError(f"list operator: {name} needs a number: {error.message}") from None
    match name:
        case "=":
            return lambda item: bool(item == number)
        case "≠":
            return lambda item: bool(item != number)
        case ">":
            return lambda item: bool(item > number)
        case "<":
            return lambda item: bool(item < number)
        case "≥":
            return lambda item: bool(item >= number)
    return lambda item: bool(item <= number)


def _boolean_predicate(operator: str, value: Any) -> Predicate:
    name = _operator_for(operator, _BOOLEAN_OPERATORS, "booleans")
    expected = to_bool(value)
    if name == "is":
        return lambda item: item is expected
    return lambda item: item is not expected


def _file_key(key: Any, allowed: frozenset[str], step: str) -> str:
    if key not in allowed:
        raise ConditionError(
            f"list operator: {step} key {key!r} is not a file attribute "
            f"(use one of: {', '.join(sorted(allowed))})"
        )
    return str(key)


def _file_predicate(key: Any, operator: str, value: Any) -> Predicate:
    attribute = _file_key(key, FILE_ATTRIBUTES, "filter")
    if attribute in _FILE_CHOICE_KEYS:
        name = _operator_for(operator, _SEQUENCE_OPERATORS, f"a file's {attribute}")
        if not isinstance(value, str | list | tuple):
            raise ConditionError(f"list operator: {name} needs a list, got {value!r}")
        choose = _sequence_predicate(name, value)
        return lambda file: choose(file_attribute(file, attribute))
    if attribute == "size":
        measure = _number_predicate(operator, value)
        return lambda file: measure(file_attribute(file, "size") or 0)
    if attribute == "extension" and isinstance(value, str):
        value = extension_with_dot(value)
    match_text = _string_predicate(operator, value)

    def matches(file: Mapping[str, Any]) -> bool:
        text = file_attribute(file, attribute)
        if attribute == "extension":
            text = extension_with_dot(text)
        return match_text(text if isinstance(text, str) else "")

    return matches


def _object_predicate(key: Any, operator: str, value: Any) -> Predicate:
    if not isinstance(key, str) or not key:
        raise ConditionError("list operator: a filter on objects needs the key of a field")
    name = canonical_operator(operator)
    return lambda item: compare(name, item.get(key), value)


def _predicate(
    item_type: str, condition: Mapping[str, Any], render: Callable[[str], str]
) -> Predicate:
    if not isinstance(condition, Mapping):
        raise ConditionError(f"list operator: a filter condition must be an object: {condition!r}")
    operator = str(condition.get("comparison_operator", "contains"))
    value = _rendered(condition.get("value", ""), render)
    key = condition.get("key", "")
    match item_type:
        case "string":
            return _string_predicate(operator, value)
        case "number":
            return _number_predicate(operator, value)
        case "boolean":
            return _boolean_predicate(operator, value)
        case "file":
            return _file_predicate(key, operator, value)
    return _object_predicate(key, operator, value)


def filter_by(
    items: Sequence[Any],
    item_type: str | None,
    conditions: Sequence[Mapping[str, Any]],
    render: Callable[[str], str],
) -> list[Any]:
    """The items every condition accepts."""
    if not isinstance(conditions, list | tuple):
        raise ConditionError("list operator: filter_by.conditions must be a list")
    if item_type is None:
        raise ConditionError("list operator: cannot filter a list whose items differ in type")
    kept = list(enumerate(items, start=1))
    for condition in conditions:
        accepts = _predicate(item_type, condition, render)
        passed: list[tuple[int, Any]] = []
        for position, item in kept:
            try:
                if accepts(item):
                    passed.append((position, item))
            except ConditionError as error:
                raise ConditionError(f"list operator: item {position}: {error.message}") from None
        kept = passed
    return [item for _, item in kept]


def extract_by(items: Sequence[Any], serial: Any, render: Callable[[str], str]) -> list[Any]:
    """A list of the `serial`-th item, counted from 1 (Dify's rule: 1 ≤ serial ≤ length)."""
    text = _rendered(serial, render)
    try:
        position = int(text.strip() if isinstance(text, str) else text)
    except (TypeError, ValueError):
        raise ConditionError(
            f"list operator: extract_by.serial must be a whole number, got {text!r}"
        ) from None
    if position < 1:
        raise ConditionError(f"list operator: extract_by.serial must be 1 or more, got {position}")
    if position > len(items):
        raise ConditionError(
            f"list operator: extract_by.serial {position} is past the end of a list of "
            f"{len(items)} item(s)"
        )
    return [items[position - 1]]


def order_by(items: Sequence[Any], item_type: str | None, key: Any, direction: Any) -> list[Any]:
    """The items sorted ascending or descending; files and objects by `key`."""
    if direction not in ("asc", "desc"):
        raise ConditionError(
            f"list operator: order_by.value must be asc or desc, got {direction!r}"
        )
    sort_key: Callable[[Any], Any] | None = None
    if item_type == "file":
        attribute = _file_key(key, FILE_ATTRIBUTES, "order_by")
        missing: Any = 0 if attribute == "size" else ""

        def sort_key(file: Any) -> Any:
            return file_attribute(file, attribute) or missing

    elif item_type == "object":
        if not isinstance(key, str) or not key:
            raise ConditionError("list operator: ordering objects needs order_by.key")

        def sort_key(item: Any) -> Any:
            # Items without the field go last when ascending.
            return (1, 0) if item.get(key) is None else (0, item[key])

    elif item_type is None:
        raise ConditionError("list operator: cannot order a list whose items differ in type")
    try:
        return sorted(items, key=sort_key, reverse=direction == "desc")
    except TypeError:
        raise ConditionError(
            f"list operator: cannot order by {key!r}: its values differ in type"
        ) from None


def limit(items: Sequence[Any], size: Any) -> list[Any]:
    """The first `size` items."""
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ConditionError(f"list operator: limit.size must be a whole number ≥ 0, got {size!r}")
    return list(items[:size])


def apply(node_data: Mapping[str, Any], value: Any, render: Callable[[str], str]) -> dict[str, Any]:
    """Run the enabled steps of a list-operator node on `value`; `render` fills `{{#…#}}`
    references in filter values and the extract serial."""
    if not value:
        return {"result": [], "first_record": None, "last_record": None}
    if not isinstance(value, list | tuple):
        raise ConditionError(
            f"list operator: the input must be an array, got {_describe_item(value)}"
        )
    items: list[Any] = list(value)
    item_type = _item_type(node_data, items)

    if section := _section(node_data, "filter_by"):
        items = filter_by(items, item_type, section.get("conditions") or [], render)
    if section := _section(node_data, "extract_by"):
        items = extract_by(items, section.get("serial", "1"), render)
    if section := _section(node_data, "order_by"):
        items = order_by(items, item_type, section.get("key", ""), section.get("value", "asc"))
    if section := _section(node_data, "limit"):
        items = limit(items, section.get("size"))

    return {
        "result": items,
        "first_record": items[0] if items else None,
        "last_record": items[-1] if items else None,
    }
