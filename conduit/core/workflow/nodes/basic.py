"""Nodes that move values around: start, end, answer, template-transform, variable-aggregator,
the conversation-variable assigner, and the helpers inside containers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from conduit.core.workflow.engine import NodeCall, NodeFailed, NodeResult
from conduit.core.workflow.variables import CONVERSATION, VariableNotFound, selector_of

MAX_TEMPLATE_OUTPUT = 400_000  # characters a template-transform may produce


class _Sandbox(ImmutableSandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja's sandbox renders a refused attribute (`{{ ''.__class__ }}`) as an empty
        # value; a template that reaches for Python's internals fails instead.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe."
        )


# One environment for every template: sandboxed (no attribute access to internals, no
# mutation of the values given), autoescape off (the output is text, not HTML).
_JINJA = _Sandbox(autoescape=False, keep_trailing_newline=True)


def render_jinja(template: str, values: Mapping[str, Any]) -> str:
    """A Jinja2 template rendered in the sandbox (`TemplateError` when it cannot be)."""
    return _JINJA.from_string(template).render(**values)


async def start(call: NodeCall) -> NodeResult:
    inputs = dict(call.run.inputs)
    return NodeResult(outputs=inputs, inputs=inputs)


async def end(call: NodeCall) -> NodeResult:
    outputs = {
        str(item.get("variable")): call.pool.find(_selector(item, "outputs", position))
        for position, item in enumerate(call.spec.data.get("outputs") or ())
    }
    return NodeResult(outputs=outputs, inputs=outputs)


async def answer(call: NodeCall) -> NodeResult:
    text = call.pool.render(str(call.spec.data.get("answer") or ""))
    return NodeResult(outputs={"answer": text, "files": []})


async def passthrough(call: NodeCall) -> NodeResult:
    """`iteration-start`, `loop-start`: where a container's children begin."""
    return NodeResult(outputs={})


async def template_transform(call: NodeCall) -> NodeResult:
    values = _variables(call)
    try:
        output = render_jinja(str(call.spec.data.get("template") or ""), values)
    except SecurityError as error:
        raise NodeFailed(f"The template did something it may not: {error}") from error
    except TemplateError as error:
        raise NodeFailed(f"The template could not be rendered: {error}") from error
    if len(output) > MAX_TEMPLATE_OUTPUT:
        raise NodeFailed(
            f"The template's output is {len(output)} characters, more than the "
            f"{MAX_TEMPLATE_OUTPUT} allowed."
        )
    return NodeResult(outputs={"output": output}, inputs=values)


async def variable_aggregator(call: NodeCall) -> NodeResult:
    """The first of its variables that has a value (a join of branches where only one ran);
    with groups, one such value per group, under the group's name."""
    data = call.spec.data
    settings = data.get("advanced_settings") or {}
    if settings.get("group_enabled"):
        outputs: dict[str, Any] = {}
        for group in settings.get("groups") or ():
            outputs[str(group.get("group_name"))] = {
                "output": _first(call, group.get("variables") or ())
            }
        return NodeResult(outputs=outputs)
    return NodeResult(outputs={"output": _first(call, data.get("variables") or ())})


async def assigner(call: NodeCall) -> NodeResult:
    """Changes conversation variables (Dify's variable assigner, versions 1 and 2)."""
    data = call.spec.data
    items = data.get("items")
    if items is None:  # version 1: one variable, one operation
        items = [
            {
                "variable_selector": data.get("assigned_variable_selector"),
                "operation": {"over-write": "over-write", "append": "append", "clear": "clear"}.get(
                    str(data.get("write_mode") or "over-write"), "over-write"
                ),
                "input_type": "variable",
                "value": data.get("input_variable_selector"),
            }
        ]
    changed: dict[str, Any] = {}
    for position, item in enumerate(items):
        target = selector_of(item.get("variable_selector"), field=f"items[{position}]")
        owner = call.run.graph.nodes.get(target[0])
        if target[0] != CONVERSATION and (owner is None or owner.type != "loop"):
            raise NodeFailed(
                f"items[{position}]: only conversation and loop variables can be assigned "
                f"({'.'.join(target)} is neither)"
            )
        values = call.pool.namespace(target[0])
        name = target[1]
        if values is None or name not in values:
            raise NodeFailed(f"Variable {'.'.join(target[:2])} does not exist.")
        value = _operand(call, item)
        values[name] = _apply(str(item.get("operation")), values[name], value, name)
        changed[".".join(target[:2])] = values[name]
    return NodeResult(outputs={}, process_data={"updated_variables": changed})


def _operand(call: NodeCall, item: Mapping[str, Any]) -> Any:
    if item.get("input_type") == "constant":
        return item.get("value")
    raw = item.get("value")
    if raw in (None, "", []):
        return None
    return call.pool.find(selector_of(raw, field="value"))


def _apply(operation: str, current: Any, value: Any, name: str) -> Any:
    match operation:
        case "over-write" | "set":
            return value
        case "clear":
            if isinstance(current, list):
                return []
            if isinstance(current, dict):
                return {}
            if isinstance(current, str):
                return ""
            return None if not isinstance(current, int | float) else 0
        case "append" | "extend":
            if not isinstance(current, list):
                raise NodeFailed(f"Variable {name} is not an array: cannot append.")
            if operation == "extend":
                return [*current, *(value or [])]
            return [*current, value]
        case "remove-first" | "remove-last":
            if not isinstance(current, list):
                raise NodeFailed(f"Variable {name} is not an array.")
            return current[1:] if operation == "remove-first" else current[:-1]
        case "+=" | "-=" | "*=" | "/=":
            if not isinstance(current, int | float) or not isinstance(value, int | float):
                raise NodeFailed(f"Variable {name}: {operation} needs numbers.")
            if operation == "/=" and value == 0:
                raise NodeFailed(f"Variable {name}: division by zero.")
            return {
                "+=": current + value,
                "-=": current - value,
                "*=": current * value,
                "/=": current / value if value else current,
            }[operation]
    raise NodeFailed(f"Unknown assigner operation {operation!r}.")


def _first(call: NodeCall, selectors: Sequence[Any]) -> Any:
    for position, raw in enumerate(selectors):
        try:
            return call.pool.get(selector_of(raw, field=f"variables[{position}]"))
        except (VariableNotFound, ValueError):
            continue
    return None


def _variables(call: NodeCall) -> dict[str, Any]:
    return {
        str(item.get("variable")): call.pool.find(_selector(item, "variables", position))
        for position, item in enumerate(call.spec.data.get("variables") or ())
    }


def _selector(item: Mapping[str, Any], field: str, position: int) -> tuple[str, ...]:
    try:
        return selector_of(item.get("value_selector"), field=f"{field}[{position}].value_selector")
    except ValueError as error:
        raise NodeFailed(str(error)) from error
