"""Conditions as Dify's DSL writes them: the if-else node's cases, a loop's break conditions and
the list-operator's filters all compare a variable with a value through one operator.

The operators keep Dify's spellings (with `≠ ≥ ≤` as the symbols) so an exported workflow
runs unchanged. `actual` is the variable's value, `expected` the condition's `value` after its
`{{#node.var#}}` references are rendered. Comparisons are case-sensitive and never strip
whitespace. "error" below is a `ConditionError`; `check` adds the variable's name to it.

=================  =============================================================================
operator           behaviour by the type of `actual`
=================  =============================================================================
contains           str: `str(expected)` is a substring. list: `expected` is an item (a number
                   given as a string matches a numeric item; "true"/"false" a boolean item).
                   None / "" / []: false. array[file] with a `sub_variable_condition`: see
                   below. Anything else: error.
not contains       The negation of `contains`, except None / "" / [] give true.
start with         str: starts with `expected` (which must be a string). None / "": false.
end with           str: ends with `expected`. None / "": false. Other types: error.
is / is not        str: equal / different. bool: `expected` read as a boolean ("true", "false",
                   "1", "0", true, 1...). None: false for both. Numbers, lists, objects: error.
empty              Falsy: None, "", [], {}, 0 and false are all empty (as in Dify).
not empty          Truthy: the negation of `empty`.
= / ≠              number: numeric equality; `expected` "3", "3.0" or 3 all equal 3. bool:
                   `expected` read as a boolean. None: false for both. Other types (a string
                   holding digits included): error. `expected` not a number: error.
> < ≥ ≤            number: numeric order against `expected` as a number. None: false.
                   bool, str and others: error, as is an `expected` that is not a number.
null / not null    `actual is None` / `is not None` (the UI spells them "is null" / "is not
                   null" too; both spellings are read).
exists/not exists  `actual is not None` / `is None`; a file variable's check. `expected` unused.
in / not in        `actual` is an item of the list `expected` (exact equality). A falsy
                   `actual` gives false / true. `expected` not a list: error.
all of             list or str: every item of the list `expected` is in `actual`. A falsy
                   `actual`: false. `expected` not a list: error.
=================  =============================================================================

A boolean variable (or array[boolean]) has its `expected` read as a boolean before any
operator, so `is "true"` and `contains "false"` work on real booleans.

Files are dicts (`dify_model_identity: "__dify__file__"`). A file's attributes go by Dify's
names: `type`, `size`, `name` (the dict's `filename`), `extension`, `mime_type`,
`transfer_method`, `url` (the remote URL, else the served one), `related_id`. An array[file]
variable under `contains`, `not contains` or `all of` is checked through its
`sub_variable_condition` (`{logical_operator, conditions: [{key, comparison_operator,
value}]}`): each sub-condition compares that attribute of every file; one whose operator has
"not" in its name must hold for every file, any other for at least one file; the results are
joined by the sub_variable_condition's `logical_operator`. As in Dify the outer operator only
selects this path: `not contains` does not negate it. Extensions are compared with a leading dot on
both sides (`pdf` matches `.pdf`). A selector `[node, file_var, attribute]` on a single file
reads that attribute.

Absent variables read as None. `check` stops at the first condition that settles the result
(`and` at a false one, `or` at a true one), as Dify does, so a later condition's error does not
surface.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FILE_ATTRIBUTES",
    "LOGICAL_OPERATORS",
    "OPERATORS",
    "CheckResult",
    "Condition",
    "ConditionError",
    "SubCondition",
    "SubVariableCondition",
    "canonical_operator",
    "check",
    "compare",
    "evaluate",
    "extension_with_dot",
    "file_attribute",
    "is_file",
    "to_bool",
    "to_number",
]

# Dify's `SupportedComparisonOperator`, in its order.
OPERATORS = frozenset(
    {
        "contains",
        "not contains",
        "start with",
        "end with",
        "is",
        "is not",
        "empty",
        "not empty",
        "in",
        "not in",
        "all of",
        "=",
        "≠",
        ">",
        "<",
        "≥",
        "≤",
        "null",
        "not null",
        "exists",
        "not exists",
    }
)
# The web UI's enum spells the null checks this way; read them as the backend's names.
_ALIASES = {"is null": "null", "is not null": "not null"}
LOGICAL_OPERATORS = frozenset({"and", "or"})
FILE_ATTRIBUTES = frozenset(
    {"type", "size", "name", "extension", "mime_type", "transfer_method", "url", "related_id"}
)
FILE_IDENTITY = "__dify__file__"
_FILE_ARRAY_OPERATORS = frozenset({"contains", "not contains", "all of"})
_BOOLEAN_TYPES = frozenset({"boolean", "array[boolean]"})
# Operators that ignore `expected` (its value is neither rendered nor converted).
_UNARY_OPERATORS = frozenset({"empty", "not empty", "null", "not null", "exists", "not exists"})


class ConditionError(Exception):
    """A condition that cannot be evaluated; `message` says why in words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def canonical_operator(operator: str) -> str:
    """Dify's name for `operator`; `ConditionError` naming it when it is not one."""
    name = _ALIASES.get(operator, operator)
    if name not in OPERATORS:
        known = ", ".join(sorted(OPERATORS))
        raise ConditionError(f"unknown comparison operator {operator!r} (known: {known})")
    return name


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (None)"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:80]!r}"
    if is_file(value):
        return "a file"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_bool(value: Any) -> bool:
    """`value` read as a boolean the way Dify reads a boolean condition's value: a bool, an
    integer, or a string holding JSON `true`/`false`/an integer."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    if isinstance(value, str):
        try:
            loaded = json.loads(value.strip().lower())
        except ValueError:
            loaded = None
        if isinstance(loaded, bool | int):
            return bool(loaded)
    raise ConditionError(f"{_describe(value)} cannot be read as a boolean (true or false)")


def to_number(value: Any) -> int | float:
    """`value` as a number: numbers as they are, strings parsed (surrounding whitespace is
    allowed); `ConditionError` for anything else."""
    if _is_number(value):
        number: int | float = value
        return number
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            parsed = float(value)
        except ValueError:
            raise ConditionError(f"{_describe(value)} is not a number") from None
        return int(parsed) if parsed.is_integer() else parsed
    raise ConditionError(f"{_describe(value)} is not a number")


def is_file(value: Any) -> bool:
    """Whether `value` is a file as Dify serialises one."""
    return isinstance(value, Mapping) and value.get("dify_model_identity") == FILE_IDENTITY


def file_attribute(file: Mapping[str, Any], key: str) -> Any:
    """A file's attribute by Dify's name (`name` is the dict's `filename`; `url` its remote
    URL, else the URL it is served at). None when the file has no such value."""
    if key not in FILE_ATTRIBUTES:
        known = ", ".join(sorted(FILE_ATTRIBUTES))
        raise ConditionError(f"unknown file attribute {key!r} (known: {known})")
    if key == "name":
        return file.get("filename", file.get("name"))
    if key == "url":
        return file.get("remote_url") or file.get("url")
    return file.get(key)


def extension_with_dot(extension: Any) -> Any:
    """A file extension with its leading dot (`pdf` -> `.pdf`), as Dify compares them."""
    if isinstance(extension, str) and extension and not extension.startswith("."):
        return "." + extension
    return extension


def _bool_actual(actual: Any) -> bool:
    if isinstance(actual, bool):
        return True
    return (
        isinstance(actual, list | tuple)
        and bool(actual)
        and all(isinstance(item, bool) for item in actual)
    )


def _prepare_boolean_expected(expected: Any) -> Any:
    if expected is None:
        return None
    if isinstance(expected, list | tuple):
        return [to_bool(item) for item in expected]
    return to_bool(expected)


def _list_has(items: Sequence[Any], expected: Any) -> bool:
    """`expected in items`, reading a numeric string as a number for numeric items (the DSL
    stores condition values as strings)."""
    if expected in items:
        return True
    if isinstance(expected, str) and any(_is_number(item) for item in items):
        try:
            number = to_number(expected)
        except ConditionError:
            return False
        return any(_is_number(item) and item == number for item in items)
    return False


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return (expected if isinstance(expected, str) else str(expected)) in actual
    if isinstance(actual, list | tuple):
        return _list_has(actual, expected)
    raise ConditionError(f"contains needs a string or an array, got {_describe(actual)}")


def _affix(operator: str, actual: Any, expected: Any) -> bool:
    if not actual:
        return False
    if not isinstance(actual, str):
        raise ConditionError(f"{operator} needs a string, got {_describe(actual)}")
    if not isinstance(expected, str):
        raise ConditionError(f"{operator} needs a string value, got {_describe(expected)}")
    return actual.startswith(expected) if operator == "start with" else actual.endswith(expected)


def _equal(operator: str, actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool):
        return actual == to_bool(expected)
    if _is_number(actual):
        return bool(actual == to_number(expected))
    raise ConditionError(f"{operator} needs a number or a boolean, got {_describe(actual)}")


def _order(operator: str, actual: Any, expected: Any) -> bool:
    if not _is_number(actual):
        raise ConditionError(f"{operator} needs a number, got {_describe(actual)}")
    number = to_number(expected)
    if math.isnan(number):
        return False
    if operator == ">":
        return bool(actual > number)
    if operator == "<":
        return bool(actual < number)
    if operator == "≥":
        return bool(actual >= number)
    return bool(actual <= number)


def compare(operator: str, actual: Any, expected: Any) -> bool:
    """Whether `actual <operator> expected` holds, by Dify's rules (the module's table)."""
    name = canonical_operator(operator)
    if name not in _UNARY_OPERATORS and _bool_actual(actual):
        expected = _prepare_boolean_expected(expected)
    match name:
        case "contains":
            return bool(actual) and _contains(actual, expected)
        case "not contains":
            return not actual or not _contains(actual, expected)
        case "start with" | "end with":
            return _affix(name, actual, expected)
        case "is" | "is not":
            if actual is None:
                return False
            if not isinstance(actual, str | bool):
                raise ConditionError(f"{name} needs a string or a boolean, got {_describe(actual)}")
            return bool(actual == expected) == (name == "is")
        case "empty":
            return not actual
        case "not empty":
            return bool(actual)
        case "=" | "≠":
            if actual is None:
                return False
            return _equal(name, actual, expected) == (name == "=")
        case ">" | "<" | "≥" | "≤":
            if actual is None:
                return False
            return _order(name, actual, expected)
        case "null" | "not exists":
            return actual is None
        case "not null" | "exists":
            return actual is not None
        case "in" | "not in":
            if not actual:
                return name == "not in"
            if not isinstance(expected, list | tuple):
                raise ConditionError(f"{name} needs an array value, got {_describe(expected)}")
            return (actual in expected) == (name == "in")
        case "all of":
            if not isinstance(expected, list | tuple):
                raise ConditionError(f"all of needs an array value, got {_describe(expected)}")
            if not actual:
                return False
            if isinstance(actual, str):
                return all(str(item) in actual for item in expected)
            if isinstance(actual, list | tuple):
                return all(_list_has(actual, item) for item in expected)
            raise ConditionError(f"all of needs an array or a string, got {_describe(actual)}")
    raise AssertionError(name)  # pragma: no cover - every name in OPERATORS is matched above


@dataclass(frozen=True)
class SubCondition:
    """One check on an attribute (`key`) of each file of an array[file] variable."""

    key: str
    comparison_operator: str
    value: Any = None

    @classmethod
    def from_dsl(cls, data: Mapping[str, Any]) -> SubCondition:
        if not isinstance(data, Mapping):
            raise ConditionError(f"a file sub-condition must be an object, got {_describe(data)}")
        key = data.get("key")
        if key not in FILE_ATTRIBUTES:
            known = ", ".join(sorted(FILE_ATTRIBUTES))
            raise ConditionError(f"unknown file attribute {key!r} (known: {known})")
        operator = canonical_operator(str(data.get("comparison_operator")))
        return cls(key=str(key), comparison_operator=operator, value=data.get("value"))


@dataclass(frozen=True)
class SubVariableCondition:
    """The checks on the files of an array[file] variable, joined by `logical_operator`."""

    logical_operator: str
    conditions: tuple[SubCondition, ...] = ()

    @classmethod
    def from_dsl(cls, data: Mapping[str, Any]) -> SubVariableCondition:
        if not isinstance(data, Mapping):
            raise ConditionError(f"sub_variable_condition must be an object, got {data!r}")
        logical = _logical_name(data.get("logical_operator", "and"))
        items = data.get("conditions") or []
        if not isinstance(items, list | tuple):
            raise ConditionError("sub_variable_condition.conditions must be a list")
        return cls(logical, tuple(SubCondition.from_dsl(item) for item in items))


def _logical_name(value: Any) -> str:
    if value not in LOGICAL_OPERATORS:
        raise ConditionError(f"unknown logical operator {value!r} (use 'and' or 'or')")
    return str(value)


@dataclass(frozen=True)
class Condition:
    """One condition of an if-else case, a loop's break conditions or a list filter."""

    variable_selector: tuple[str, ...]
    comparison_operator: str
    value: Any = None
    var_type: str | None = None
    sub_variable_condition: SubVariableCondition | None = None

    @property
    def name(self) -> str:
        return ".".join(self.variable_selector)

    @classmethod
    def from_dsl(cls, data: Mapping[str, Any]) -> Condition:
        """A condition from its DSL dict (`variable_selector`, `comparison_operator`, `value`,
        `varType`, `sub_variable_condition`); an unknown operator is refused here, by name."""
        if not isinstance(data, Mapping):
            raise ConditionError(f"a condition must be an object, got {_describe(data)}")
        selector = data.get("variable_selector")
        if (
            not isinstance(selector, list | tuple)
            or len(selector) < 2
            or not all(isinstance(part, str | int) for part in selector)
        ):
            raise ConditionError(
                f"a condition's variable_selector must be like [node_id, variable], "
                f"got {selector!r}"
            )
        operator = data.get("comparison_operator")
        if not isinstance(operator, str):
            raise ConditionError(f"a condition needs a comparison_operator, got {operator!r}")
        var_type = data.get("varType", data.get("var_type"))
        sub = data.get("sub_variable_condition")
        return cls(
            variable_selector=tuple(str(part) for part in selector),
            comparison_operator=canonical_operator(operator),
            value=data.get("value"),
            var_type=str(var_type) if var_type else None,
            sub_variable_condition=SubVariableCondition.from_dsl(sub) if sub else None,
        )


@dataclass(frozen=True)
class CheckResult:
    """What `evaluate` found: each evaluated condition's inputs and result, and the verdict
    (what Dify's if-else shows in its process data)."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    group_results: list[bool] = field(default_factory=list)
    final_result: bool = False


def _read(selector: Sequence[str], lookup: Callable[[Sequence[str]], Any]) -> Any:
    """The variable's value, None when absent; `[node, file, attribute]` reads a file's
    attribute by Dify's name."""
    if len(selector) > 2 and selector[-1] in FILE_ATTRIBUTES:
        try:
            parent = lookup(selector[:-1])
        except KeyError:
            parent = None
        if is_file(parent):
            return file_attribute(parent, selector[-1])
    try:
        return lookup(selector)
    except KeyError:
        return None


def _is_file_array(value: Any, var_type: str | None) -> bool:
    if not isinstance(value, list | tuple):
        return False
    if var_type == "array[file]":
        return True
    return bool(value) and all(is_file(item) for item in value)


def _check_files(
    files: Sequence[Mapping[str, Any]],
    sub: SubVariableCondition,
    render: Callable[[str], str],
) -> bool:
    results: list[bool] = []
    for condition in sub.conditions:
        expected = condition.value
        if isinstance(expected, str):
            expected = render(expected)
        values = [file_attribute(file, condition.key) for file in files]
        if condition.key == "extension":
            expected = extension_with_dot(expected)
            values = [extension_with_dot(value) for value in values]
        matches = [compare(condition.comparison_operator, value, expected) for value in values]
        negative = "not" in condition.comparison_operator
        results.append(all(matches) if negative else any(matches))
    return all(results) if sub.logical_operator == "and" else any(results)


def _check_one(
    condition: Condition,
    lookup: Callable[[Sequence[str]], Any],
    render: Callable[[str], str],
) -> tuple[bool, dict[str, Any] | None]:
    actual = _read(condition.variable_selector, lookup)
    operator = condition.comparison_operator
    if operator in _FILE_ARRAY_OPERATORS and _is_file_array(actual, condition.var_type):
        if condition.sub_variable_condition is None:
            raise ConditionError(f"{operator} on an array of files needs file sub-conditions")
        return _check_files(actual, condition.sub_variable_condition, render), None
    if operator in ("exists", "not exists"):
        return compare(operator, actual, None), None
    if operator in _UNARY_OPERATORS:
        inputs = {"actual_value": actual, "expected_value": None, "comparison_operator": operator}
        return compare(operator, actual, None), inputs
    expected = condition.value
    if isinstance(expected, str):
        expected = render(expected)
    if condition.var_type in _BOOLEAN_TYPES:
        expected = _prepare_boolean_expected(expected)
    inputs = {"actual_value": actual, "expected_value": expected, "comparison_operator": operator}
    return compare(operator, actual, expected), inputs


def evaluate(
    conditions: Sequence[Condition],
    logical_operator: str,
    lookup: Callable[[Sequence[str]], Any],
    render: Callable[[str], str],
) -> CheckResult:
    """Evaluate `conditions` joined by `logical_operator` ("and" / "or"), stopping once the
    verdict is settled. `lookup(selector)` reads a variable (KeyError when absent);
    `render(text)` fills a value's `{{#node.var#}}` references. An empty list is true under
    "and" and false under "or"."""
    logical = _logical_name(logical_operator)
    all_inputs: list[dict[str, Any]] = []
    results: list[bool] = []
    for condition in conditions:
        try:
            passed, inputs = _check_one(condition, lookup, render)
        except ConditionError as error:
            raise ConditionError(f"condition on {condition.name}: {error.message}") from None
        if inputs is not None:
            all_inputs.append(inputs)
        results.append(passed)
        if passed != (logical == "and"):
            return CheckResult(all_inputs, results, passed)
    return CheckResult(all_inputs, results, logical == "and")


def check(
    conditions: Sequence[Condition],
    logical_operator: str,
    lookup: Callable[[Sequence[str]], Any],
    render: Callable[[str], str],
) -> bool:
    """Whether `conditions` hold, joined by `logical_operator` (see `evaluate`)."""
    return evaluate(conditions, logical_operator, lookup, render).final_result
