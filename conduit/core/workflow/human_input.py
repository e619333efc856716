"""Dify's `human-input` node: the run pauses until a person fills in a form or its time runs out.

The node's `data` (Dify 1.13+): `form_content` (Markdown with `{{#node.var#}}` references,
filled in when the run pauses, and `{{#$output.<name>#}}` ones, filled with what was submitted),
`inputs` (the fields: `output_variable_name`, `type` `text_input` | `paragraph` | `select`,
an optional `default` `{type: constant | variable, value, selector}`; `select`'s choices in
`option_source`), `user_actions` (the buttons: `id`, `title`, `button_style`; each action leaves
through the edge whose `sourceHandle` is its id), `delivery_methods` (`webapp`: the form is
reached by its token, through the Service API, the web tier or its page), `timeout` with
`timeout_unit` (`hour` | `day`; then the node leaves through `__timeout`).

How a pause runs here: the node, finding no answer to its form, raises `NodePaused` with the
form it built (`PendingForm`); the engine lets the run's other branches go on and, once nothing
else can run, ends the scope with `RunPaused`. The runner stores the run as `paused` with its
forms (their tokens are valid from that commit), and ends its stream with
`human_input_required` and `workflow_paused`. A submitted form (or one whose time ran out)
resumes the run as a new execution that takes up the nodes that ended: this node runs again,
finds its form answered (`Answer`), reports `human_input_form_filled` (or
`human_input_form_timeout`) and leaves through the chosen action's edge.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conduit.core.workflow.events import NodeExecution
from conduit.core.workflow.variables import as_text, selector_of

NODE_TYPE = "human-input"
TIMEOUT_HANDLE = "__timeout"
INPUT_TYPES = ("text_input", "paragraph", "select")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,29}$")
ACTION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,19}$")
BUTTON_STYLES = ("primary", "default", "accent", "ghost")
UNITS = {"hour": 3600, "day": 86400}
DEFAULT_TIMEOUT = 36  # hours, as Dify
MAX_TIMEOUT_SECONDS = 366 * 86400
MAX_FORM_CONTENT = 100_000  # characters
MAX_VALUE = 20_000  # characters of one submitted value
OUTPUT_REFERENCE = re.compile(r"\{\{#\$output\.([A-Za-z_][A-Za-z0-9_]{0,29})#\}\}")
DELIVERY_TYPES = ("webapp", "email")


class HumanInputError(ValueError):
    """The node's settings are not valid; the message names what is wrong."""


class FormDataError(ValueError):
    """What was submitted does not fit the form; the message says how."""


@dataclass(frozen=True)
class FormInput:
    name: str
    type: str
    default: Mapping[str, Any] | None
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "output_variable_name": self.name}
        if self.default is not None:
            data["default"] = dict(self.default)
        if self.type == "select":
            data["option_source"] = {"type": "constant", "value": list(self.options)}
        return data


@dataclass(frozen=True)
class FormAction:
    id: str
    title: str
    button_style: str = "default"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "button_style": self.button_style}


@dataclass(frozen=True)
class HumanInputSpec:
    """A human-input node's settings, checked."""

    form_content: str
    inputs: tuple[FormInput, ...]
    actions: tuple[FormAction, ...]
    timeout_seconds: int
    display_in_ui: bool

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> HumanInputSpec:
        content = data.get("form_content") or ""
        if not isinstance(content, str):
            raise HumanInputError("form_content must be text")
        if len(content) > MAX_FORM_CONTENT:
            raise HumanInputError(f"form_content is longer than {MAX_FORM_CONTENT} characters")
        inputs = tuple(_input(raw, position) for position, raw in enumerate(_list(data, "inputs")))
        names = [field.name for field in inputs]
        for name in names:
            if names.count(name) > 1:
                raise HumanInputError(f"inputs: output_variable_name {name!r} is used twice")
        actions = tuple(
            _action(raw, position) for position, raw in enumerate(_list(data, "user_actions"))
        )
        if not actions:
            raise HumanInputError("user_actions: the form needs at least one action (a button)")
        ids = [action.id for action in actions]
        for action_id in ids:
            if ids.count(action_id) > 1:
                raise HumanInputError(f"user_actions: id {action_id!r} is used twice")
        display = False
        for position, raw in enumerate(_list(data, "delivery_methods")):
            if not isinstance(raw, Mapping):
                raise HumanInputError(f"delivery_methods[{position}]: must be an object")
            kind = raw.get("type")
            if kind not in DELIVERY_TYPES:
                raise HumanInputError(
                    f"delivery_methods[{position}]: type {kind!r} is not one of webapp, email"
                )
            if raw.get("enabled", True) is False:
                continue
            if kind == "email":
                raise HumanInputError(
                    f"delivery_methods[{position}]: email delivery is not served by this "
                    "server (it sends no mail); use webapp, or disable it"
                )
            display = True
        return cls(
            form_content=content,
            inputs=inputs,
            actions=actions,
            timeout_seconds=_timeout(data),
            display_in_ui=display,
        )

    def action(self, action_id: str) -> FormAction | None:
        return next((action for action in self.actions if action.id == action_id), None)

    @property
    def handles(self) -> frozenset[str]:
        return frozenset({*(action.id for action in self.actions), TIMEOUT_HANDLE})


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise HumanInputError(f"{key} must be a list")
    return value


def _input(raw: Any, position: int) -> FormInput:
    where = f"inputs[{position}]"
    if not isinstance(raw, Mapping):
        raise HumanInputError(f"{where}: must be an object")
    name = raw.get("output_variable_name")
    if not isinstance(name, str) or not NAME.match(name):
        raise HumanInputError(
            f"{where}: output_variable_name must be a name of letters, digits and _ (at most "
            "30, not starting with a digit)"
        )
    kind = raw.get("type") or "text_input"
    if kind not in INPUT_TYPES:
        raise HumanInputError(
            f"{where} ({name}): type {kind!r} is not served (served: {', '.join(INPUT_TYPES)})"
        )
    default = raw.get("default") if raw.get("default") is not None else raw.get("placeholder")
    if default is not None:
        if not isinstance(default, Mapping) or default.get("type") not in ("constant", "variable"):
            raise HumanInputError(
                f"{where} ({name}): default must be {{type: constant | variable, ...}}"
            )
        if default.get("type") == "variable":
            try:
                selector_of(default.get("selector"), field=f"{where}.default.selector")
            except ValueError as error:
                raise HumanInputError(str(error)) from None
    options: tuple[str, ...] = ()
    if kind == "select":
        source = raw.get("option_source")
        values = source.get("value") if isinstance(source, Mapping) else None
        if (
            not isinstance(source, Mapping)
            or source.get("type", "constant") != "constant"
            or not isinstance(values, list)
            or not values
        ):
            raise HumanInputError(
                f"{where} ({name}): a select needs option_source {{type: constant, value: "
                "[choices]}}"
            )
        options = tuple(str(value) for value in values)
    return FormInput(name=name, type=str(kind), default=default, options=options)


def _action(raw: Any, position: int) -> FormAction:
    where = f"user_actions[{position}]"
    if not isinstance(raw, Mapping):
        raise HumanInputError(f"{where}: must be an object")
    action_id = raw.get("id")
    if not isinstance(action_id, str) or not ACTION_ID.match(action_id):
        raise HumanInputError(
            f"{where}: id must be letters, digits and _ (at most 20, not starting with a digit)"
        )
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 100:
        raise HumanInputError(f"{where} ({action_id}): title must be 1 to 100 characters")
    style = raw.get("button_style") or "default"
    if style not in BUTTON_STYLES:
        raise HumanInputError(
            f"{where} ({action_id}): button_style {style!r} is not one of "
            + ", ".join(BUTTON_STYLES)
        )
    return FormAction(id=action_id, title=title, button_style=str(style))


def _timeout(data: Mapping[str, Any]) -> int:
    amount = data.get("timeout", DEFAULT_TIMEOUT)
    unit = data.get("timeout_unit") or "hour"
    if unit not in UNITS:
        raise HumanInputError(f"timeout_unit {unit!r} is not one of hour, day")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise HumanInputError("timeout must be a positive number")
    seconds = int(amount * UNITS[str(unit)])
    if seconds > MAX_TIMEOUT_SECONDS:
        raise HumanInputError("timeout must be at most 366 days")
    return max(seconds, 1)


def check(data: Mapping[str, Any], where: str, edges: Sequence[str]) -> None:
    """A node's settings and the handles of its out-edges (each an action's id or
    `__timeout`), checked when the graph is parsed; `HumanInputError` names the node."""
    try:
        spec = HumanInputSpec.parse(data)
    except HumanInputError as error:
        raise HumanInputError(f"{where}: {error}") from None
    for handle in edges:
        if handle not in spec.handles:
            raise HumanInputError(
                f"{where}: an edge leaves through {handle!r}, which is neither one of its "
                f"actions ({', '.join(a.id for a in spec.actions)}) nor {TIMEOUT_HANDLE}"
            )


@dataclass
class PendingForm:
    """A form the run waits on: what its page shows and what checks an answer."""

    id: str
    token: str
    node_id: str
    node_title: str
    form_content: str  # its references to the run's variables filled in
    inputs: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    resolved_default_values: dict[str, Any]
    display_in_ui: bool
    expiration_time: int  # Unix seconds
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "token": self.token,
            "node_id": self.node_id,
            "node_title": self.node_title,
            "form_content": self.form_content,
            "inputs": self.inputs,
            "actions": self.actions,
            "resolved_default_values": self.resolved_default_values,
            "display_in_ui": self.display_in_ui,
            "expiration_time": self.expiration_time,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingForm:
        return cls(
            id=str(data["id"]),
            token=str(data["token"]),
            node_id=str(data["node_id"]),
            node_title=str(data.get("node_title") or ""),
            form_content=str(data.get("form_content") or ""),
            inputs=[dict(i) for i in data.get("inputs") or ()],
            actions=[dict(a) for a in data.get("actions") or ()],
            resolved_default_values=dict(data.get("resolved_default_values") or {}),
            display_in_ui=bool(data.get("display_in_ui")),
            expiration_time=int(data["expiration_time"]),
            created_at=float(data.get("created_at") or time.time()),
        )

    def required(self) -> dict[str, Any]:
        """`human_input_required`'s data (and a `workflow_paused` reason's, with `TYPE`)."""
        return {
            "form_id": self.id,
            "node_id": self.node_id,
            "node_title": self.node_title,
            "form_content": self.form_content,
            "inputs": self.inputs,
            "actions": self.actions,
            "display_in_ui": self.display_in_ui,
            "form_token": self.token,
            "resolved_default_values": self.resolved_default_values,
            "expiration_time": self.expiration_time,
        }

    def view(self) -> dict[str, Any]:
        """What `GET …/form/human_input/{token}` answers (Dify: default values as text)."""
        return {
            "form_content": self.form_content,
            "inputs": self.inputs,
            "resolved_default_values": {
                name: _as_form_text(value) for name, value in self.resolved_default_values.items()
            },
            "user_actions": self.actions,
            "expiration_time": self.expiration_time,
        }

    def checked(self, values: Any, action_id: Any) -> tuple[str, dict[str, str]]:
        """A submission's action and values, checked against the form (`FormDataError`)."""
        actions = {str(action.get("id")): action for action in self.actions}
        if not isinstance(action_id, str) or action_id not in actions:
            raise FormDataError(f"Invalid action: {action_id}")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise FormDataError("inputs must be an object of the form's fields")
        names = [str(field.get("output_variable_name")) for field in self.inputs]
        missing = [name for name in names if name not in values]
        if missing:
            raise FormDataError(f"Missing required inputs: {', '.join(missing)}")
        unknown = sorted(set(map(str, values)) - set(names))
        if unknown:
            raise FormDataError(f"Unknown inputs: {', '.join(unknown)}")
        checked: dict[str, str] = {}
        for field_def in self.inputs:
            name = str(field_def.get("output_variable_name"))
            value = values[name]
            if not isinstance(value, str):
                raise FormDataError(f"Input {name} must be text")
            if len(value) > MAX_VALUE:
                raise FormDataError(f"Input {name} is longer than {MAX_VALUE} characters")
            choices = (field_def.get("option_source") or {}).get("value")
            if field_def.get("type") == "select" and value not in (choices or ()):
                raise FormDataError(f"Input {name}: {value!r} is not one of its choices")
            checked[name] = value
        return action_id, checked


def _as_form_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return as_text(value)


@dataclass(frozen=True)
class Answer:
    """How a form was answered: an action and the values given, or its time ran out."""

    action_id: str
    values: Mapping[str, str]
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "values": dict(self.values),
            "timed_out": self.timed_out,
        }


class NodePaused(Exception):
    """A human-input node waits on its form: the engine pauses the run there (and gives
    it the node's execution, `paused`)."""

    def __init__(self, form: PendingForm) -> None:
        super().__init__(f"node {form.node_id} waits on form {form.id}")
        self.form = form
        self.execution: NodeExecution | None = None


class RunPaused(Exception):
    """The run cannot go on until its forms are answered (one per waiting node)."""

    def __init__(self, waiting: Sequence[NodePaused]) -> None:
        super().__init__(f"the run waits on {len(waiting)} form(s)")
        self.waiting = list(waiting)

    @property
    def forms(self) -> list[PendingForm]:
        return [paused.form for paused in self.waiting]


def new_form(
    spec: HumanInputSpec,
    *,
    node_id: str,
    node_title: str,
    render: Any,
    find: Any,
    now: float | None = None,
) -> PendingForm:
    """The form a node shows when it first runs: its content's references filled in from the
    run (`render`), each field's default resolved (`find` for a variable one)."""
    created = time.time() if now is None else now
    defaults: dict[str, Any] = {}
    for form_input in spec.inputs:
        default = form_input.default
        if default is None:
            continue
        if default.get("type") == "variable":
            defaults[form_input.name] = find(list(default.get("selector") or ()))
        else:
            defaults[form_input.name] = default.get("value")
    return PendingForm(
        id=str(uuid.uuid4()),
        token=secrets.token_urlsafe(16),
        node_id=node_id,
        node_title=node_title,
        form_content=render(spec.form_content),
        inputs=[form_input.to_json() for form_input in spec.inputs],
        actions=[action.to_json() for action in spec.actions],
        resolved_default_values=defaults,
        display_in_ui=spec.display_in_ui,
        expiration_time=int(created + spec.timeout_seconds),
        created_at=created,
    )


def filled_content(form: PendingForm, values: Mapping[str, str]) -> str:
    """The form's content with its `{{#$output.<name>#}}` references filled in."""
    return OUTPUT_REFERENCE.sub(lambda match: values.get(match.group(1), ""), form.form_content)


def outputs_of(form: PendingForm, answer: Answer) -> dict[str, Any]:
    """The node's outputs once answered: each field by name, `__action_id`, `__action_value`
    (the action's title) and `__rendered_content` (as Dify)."""
    title = next(
        (str(a.get("title") or "") for a in form.actions if a.get("id") == answer.action_id), ""
    )
    return {
        **dict(answer.values),
        "__action_id": answer.action_id,
        "__action_value": title,
        "__rendered_content": filled_content(form, answer.values),
    }
