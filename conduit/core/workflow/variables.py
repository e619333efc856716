"""The variable pool of a workflow run, its selectors and its `{{#node.var#}}` templates.

A selector is a list: `[node_id, variable, *path]` reads a node's output (and walks into it:
object keys, list indexes, a file's attributes); `["sys", name]`, `["env", name]` and
`["conversation", name]` read the run's system values, the workflow's environment and the
chatflow's conversation variables. Inside an iteration `[iteration_id, "item" | "index"]` is
the current item.

Each node's outputs are stored once, as a dict under its id. An iteration or loop item runs
in a `Scope`: its own layer over the run's pool, reading through to the parent for anything it
did not write (Dify deep-copies the whole pool per item; here an item costs one dict).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import orjson

SYSTEM, ENVIRONMENT, CONVERSATION = "sys", "env", "conversation"

# `{{#node.var#}}` and `{{#node.var.path#}}`: Dify's reference syntax in text fields.
TEMPLATE_REFERENCE = re.compile(r"\{\{#([a-zA-Z0-9_]{1,50}(?:\.[a-zA-Z0-9_]{1,100}){1,10})#\}\}")


class VariableNotFound(KeyError):
    """A selector names nothing in the pool."""

    def __init__(self, selector: Sequence[str]) -> None:
        super().__init__(".".join(selector))
        self.selector = tuple(selector)

    def __str__(self) -> str:
        return f"variable {'.'.join(self.selector)} is not set"


class VariablePool:
    """Outputs by node id, plus the `sys`, `env` and `conversation` namespaces."""

    def __init__(
        self,
        *,
        system: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
        conversation: MutableMapping[str, Any] | None = None,
    ) -> None:
        self._values: dict[str, dict[str, Any]] = {
            SYSTEM: dict(system or {}),
            ENVIRONMENT: dict(environment or {}),
        }
        self.conversation: MutableMapping[str, Any] = (
            conversation if conversation is not None else {}
        )

    def set_outputs(self, node_id: str, outputs: Mapping[str, Any]) -> None:
        self._values[node_id] = dict(outputs)

    def outputs(self, node_id: str) -> dict[str, Any] | None:
        return self._values.get(node_id)

    def namespace(self, name: str) -> MutableMapping[str, Any] | None:
        """The values under a selector's first part (a node's outputs, `sys`...), as stored:
        changing them changes the pool (the assigner does, for loop variables)."""
        if name == CONVERSATION:
            return self.conversation
        return self._values.get(name)

    def get(self, selector: Sequence[str]) -> Any:
        """The value `selector` names; `VariableNotFound` when nothing is there."""
        if len(selector) < 2:
            raise VariableNotFound(selector)
        root = self.namespace(str(selector[0]))
        if root is None or selector[1] not in root:
            raise VariableNotFound(selector)
        return walk(root[selector[1]], selector, 2)

    def find(self, selector: Sequence[str], default: Any = None) -> Any:
        try:
            return self.get(selector)
        except VariableNotFound:
            return default

    def render(self, text: str) -> str:
        """`text` with each `{{#…#}}` reference replaced by its value as text (a missing one
        becomes empty, as in Dify)."""
        if "{{#" not in text:
            return text
        return TEMPLATE_REFERENCE.sub(
            lambda match: as_text(self.find(match.group(1).split("."))), text
        )

    def scope(self) -> Scope:
        return Scope(self)


class Scope(VariablePool):
    """A layer over a pool for one iteration or loop item: writes stay in the layer, reads
    fall through to the parent. The conversation's variables are shared (an assigner inside
    an iteration changes the conversation's)."""

    def __init__(self, parent: VariablePool) -> None:
        self._parent = parent
        self._values = {}
        self.conversation = parent.conversation

    def namespace(self, name: str) -> MutableMapping[str, Any] | None:
        if name in self._values:
            return self._values[name]
        return self._parent.namespace(name)


def walk(value: Any, selector: Sequence[str], start: int) -> Any:
    """Follow `selector[start:]` into `value`: keys of objects, indexes of lists."""
    for part in selector[start:]:
        if isinstance(value, Mapping):
            if part not in value:
                raise VariableNotFound(selector)
            value = value[part]
        elif isinstance(value, list | tuple) and str(part).lstrip("-").isdigit():
            index = int(part)
            if not -len(value) <= index < len(value):
                raise VariableNotFound(selector)
            value = value[index]
        else:
            raise VariableNotFound(selector)
    return value


def as_text(value: Any) -> str:
    """A value as a template shows it: strings as they are, nothing as empty, numbers as
    numbers, objects and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping) and value.get("dify_model_identity") == "__dify__file__":
        return str(value.get("url") or value.get("filename") or "")
    return orjson.dumps(value, default=str).decode()


def json_type(value: object) -> str:
    """A value's JSON type, as messages name it (`string`, `number`, `array`...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


Segment = str | tuple[str, ...]


def segments(text: str) -> list[Segment]:
    """A template split into its constant text and its references (as selectors), in order:
    what the answer stream walks."""
    parts: list[Segment] = []
    position = 0
    for match in TEMPLATE_REFERENCE.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(tuple(match.group(1).split(".")))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return parts


def selector_of(value: Any, *, field: str) -> tuple[str, ...]:
    """A DSL `value_selector` as a tuple, or `ValueError` naming the field."""
    if (
        not isinstance(value, list | tuple)
        or len(value) < 2
        or not all(isinstance(part, str | int) for part in value)
    ):
        raise ValueError(f"{field}: must be a variable selector like [node_id, variable]")
    return tuple(str(part) for part in value)
