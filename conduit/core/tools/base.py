"""A tool: its parameters, the function the model sees, and its call with checked arguments.

Parameters are Dify's: each is filled by the model (`form: llm`) or set once with the app
(`form: form`, e.g. the time zone of `current_time`). A call's arguments are checked and
coerced here; what is wrong is a `ToolInputError` naming the parameter, which the agent hands
back to the model as the call's observation (as Dify does), never a failed run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")

ParameterType = Literal["string", "number", "boolean", "select", "json"]
MAX_SETTING = 1000  # characters of a setting's text


# Tools' calls run on pools of their own, not on the event loop's default pool: a slow
# service holds these threads, never the ones the runs' database and DNS work waits for; and
# the built-in tools (the clock, arithmetic: quick) have theirs, so that slow services never
# hold them up. A call given up on (its run stopped, its time out) is left to finish there.
TOOL_SECONDS = 30.0  # a tool's call longer than this is given up on (an agent's, a node's)
_SERVICES = ThreadPoolExecutor(max_workers=16, thread_name_prefix="conduit-tool")
_BUILT_IN = ThreadPoolExecutor(max_workers=4, thread_name_prefix="conduit-builtin-tool")


async def in_thread(call: Callable[..., T], *args: Any, built_in: bool = False) -> T:
    """`call(*args)` on the tools' threads (`built_in`: the built-in tools' pool)."""
    pool = _BUILT_IN if built_in else _SERVICES
    return await asyncio.get_running_loop().run_in_executor(pool, call, *args)


class ToolError(Exception):
    """A tool could not answer: the message says why (the model reads it)."""


class ToolInputError(ToolError):
    """A call's arguments are not what the tool takes."""


@dataclass(frozen=True)
class ToolParameter:
    name: str
    type: ParameterType
    label: str
    description: str
    required: bool = False
    form: Literal["llm", "form"] = "llm"
    default: Any = None
    options: tuple[str, ...] = ()
    # Checks a value beyond its type (raises `ToolInputError` naming what is wrong).
    check: Callable[[Any], object] | None = None

    def schema(self) -> dict[str, Any]:
        """The parameter in the JSON Schema of the model's function."""
        schema: dict[str, Any] = {"description": self.description}
        if self.type != "json":  # (any JSON value: no type)
            schema["type"] = {"string": "string", "select": "string", "number": "number"}.get(
                self.type, "boolean"
            )
        if self.options:
            schema["enum"] = list(self.options)
        return schema

    def coerce(self, value: Any) -> Any:
        """`value` as this parameter's type, checked; a `ToolInputError` naming it otherwise."""
        coerced = self._typed(value)
        if self.check is not None:
            self.check(coerced)
        return coerced

    def _typed(self, value: Any) -> Any:
        if self.type == "json":  # an object or list as it is; a text of JSON read
            if isinstance(value, str):
                try:
                    return json.loads(value)
                except (ValueError, RecursionError):
                    return value
            return value
        if self.type in ("string", "select"):
            if isinstance(value, (dict, list)):
                raise ToolInputError(f"{self.name} must be a string")
            text = str(value)
            if self.options and text not in self.options:
                raise ToolInputError(
                    f"{self.name} must be one of the following: [{', '.join(self.options)}]"
                )
            return text
        if self.type == "number":
            if isinstance(value, bool):
                raise ToolInputError(f"{self.name} must be a number")
            if isinstance(value, (int, float)):
                return value
            try:
                number = float(str(value).strip())
            except ValueError:
                raise ToolInputError(f"{self.name} must be a number") from None
            return int(number) if number.is_integer() else number
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in ("true", "1", "yes"):
            return True
        if str(value).strip().lower() in ("false", "0", "no"):
            return False
        raise ToolInputError(f"{self.name} must be true or false")

    def to_json(self) -> dict[str, Any]:
        """As Dify's console lists a tool's parameters."""
        return {
            "name": self.name,
            "label": {"en_US": self.label},
            "human_description": {"en_US": self.description},
            "llm_description": self.description,
            "type": self.type,
            "form": self.form,
            "required": self.required,
            "default": self.default,
            "options": [{"value": o, "label": {"en_US": o}} for o in self.options],
        }


@dataclass(frozen=True)
class Tool:
    """One tool of a provider: `invoke` takes the checked arguments (the model's and the
    app's settings together) and answers text."""

    provider: str
    name: str
    label: str
    description: str
    invoke: Callable[[dict[str, Any]], str]
    parameters: tuple[ToolParameter, ...] = ()
    built_in: bool = True  # (a workspace's API tool: False)

    def function(self) -> dict[str, Any]:
        """The tool as a function the model may call (OpenAI's `tools` item): the parameters
        the model fills."""
        asked = [p for p in self.parameters if p.form == "llm"]
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {p.name: p.schema() for p in asked},
                    "required": [p.name for p in asked if p.required],
                },
            },
        }

    def settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The app's values of the parameters it sets (`form`), checked: what is missing
        takes its default; raises `ToolInputError` naming a wrong one."""
        checked: dict[str, Any] = {}
        for parameter in self.parameters:
            if parameter.form != "form":
                continue
            value = values.get(parameter.name)
            if isinstance(value, str) and len(value) > MAX_SETTING:
                raise ToolInputError(f"{parameter.name} must be at most {MAX_SETTING} characters")
            if value in (None, ""):
                if parameter.default is None and parameter.required:
                    raise ToolInputError(f"{parameter.name} is required")
                value = parameter.default
            if value is not None:
                checked[parameter.name] = parameter.coerce(value)
        return checked

    def arguments(self, given: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments: the model's (checked) and the app's settings (which the
        model cannot change)."""
        checked: dict[str, Any] = {}
        for parameter in self.parameters:
            if parameter.form == "form":
                if parameter.name in settings:
                    checked[parameter.name] = settings[parameter.name]
                elif parameter.default is not None:
                    checked[parameter.name] = parameter.default
                continue
            value = given.get(parameter.name)
            if value in (None, ""):
                if parameter.required:
                    raise ToolInputError(f"{parameter.name} is required")
                if parameter.default is not None:
                    checked[parameter.name] = parameter.default
                continue
            checked[parameter.name] = parameter.coerce(value)
        return checked

    def to_json(self) -> dict[str, Any]:
        """As Dify's console lists a provider's tools."""
        return {
            "author": "Conduit",
            "name": self.name,
            "label": {"en_US": self.label},
            "description": {"en_US": self.description},
            "parameters": [p.to_json() for p in self.parameters],
            "labels": [],
        }


@dataclass(frozen=True)
class ToolProvider:
    """A provider of tools (Dify's built-in provider): its id, label and icon (an emoji on a
    colour, as Dify's `tool_icons` gives one)."""

    id: str
    label: str
    description: str
    icon: str
    background: str
    tools: tuple[Tool, ...] = field(default_factory=tuple)

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def icon_json(self) -> dict[str, str]:
        return {"background": self.background, "content": self.icon}

    def to_json(self) -> dict[str, Any]:
        """As Dify's console lists providers (`/workspaces/current/tool-providers`)."""
        return {
            "id": self.id,
            "author": "Conduit",
            "name": self.id,
            "description": {"en_US": self.description},
            "icon": self.icon_json(),
            "label": {"en_US": self.label},
            "type": "builtin",
            "team_credentials": {},
            "is_team_authorization": True,
            "allow_delete": False,
            "tools": [t.to_json() for t in self.tools],
            "labels": [],
        }
