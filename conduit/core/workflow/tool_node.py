"""A workflow's `tool` node (Dify's): calls a built-in tool (the agents' tools:
`core/tools/builtin.py`) with the values its `tool_parameters` give — each `{type, value}`:
`mixed` (text with `{{#node.variable#}}` references), `variable` (a selector) or `constant` —
and its `tool_configurations` (the settings the tool takes from the app, e.g. a time zone:
a value, or a `{type, value}` of the same kinds, read when the node runs).
Its outputs are Dify's: `text` (the tool's answer), `files` and `json` (empty: these tools
answer text). A tool that cannot answer fails the node, which its error strategy may take.

`check` runs when the graph is parsed (a draft saved, an import): a tool this server does not
serve, or a setting it refuses, is a 400 naming the node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from conduit.core.tools import builtin
from conduit.core.tools.base import TOOL_SECONDS, Tool, ToolError, in_thread
from conduit.core.workflow.variables import selector_of

PARAMETER_TYPES = ("mixed", "variable", "constant", "mention")
API = "api"  # a workspace's custom API tool


def _value(
    entry: Any,
    render: Callable[[str], str] | None,
    find: Callable[[Any], Any] | None,
) -> Any:
    """A setting as Dify writes it: the value itself, or `{type, value}` (newer files), whose
    `variable` and `mixed` kinds are read from the run (None before it: only checked)."""
    if not (isinstance(entry, Mapping) and "value" in entry and set(entry) <= {"type", "value"}):
        return entry
    kind, value = entry.get("type"), entry["value"]
    if kind == "variable":
        return find(value) if find is not None else None
    if kind in ("mixed", "mention") and isinstance(value, str) and "{{#" in value:
        return render(value) if render is not None else None
    return value


def settings(
    tool: Tool,
    data: Mapping[str, Any],
    render: Callable[[str], str] | None = None,
    find: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """The node's `tool_configurations`, checked (`ToolError` naming what is wrong); without
    the run's `render` and `find`, the settings given by its variables are not checked yet."""
    raw = data.get("tool_configurations") or {}
    if not isinstance(raw, Mapping):
        raise ToolError("must be an object")
    given = {str(name): _value(entry, render, find) for name, entry in raw.items()}
    return tool.settings(given)


def check(data: Mapping[str, Any], where: str) -> Tool | None:
    """The built-in tool a node names, its settings and its parameters' forms checked; None
    for a workspace's custom API tool (`provider_type` api: its provider is checked when the
    draft is saved, and read when the node runs)."""
    tool: Tool | None = None
    if data.get("provider_type") == API:
        provider = data.get("provider_id") or data.get("provider_name")
        name = data.get("tool_name")
        if not isinstance(provider, str) or not isinstance(name, str) or not name:
            raise ToolError(
                f"{where}: a custom API tool names its provider (provider_id or provider_name) "
                "and its tool_name"
            )
    else:
        _, tool = builtin.served(
            data.get("provider_type"),
            data.get("provider_id") or data.get("provider_name"),
            data.get("tool_name"),
            where,
        )
        try:
            settings(tool, data)
            for name, entry in (data.get("tool_configurations") or {}).items():
                if isinstance(entry, Mapping) and entry.get("type") == "variable":
                    selector_of(entry.get("value"), field=f"{name}.value")
        except (ToolError, ValueError) as error:
            raise ToolError(f"{where}.tool_configurations: {error}") from None
    parameters = data.get("tool_parameters") or {}
    if not isinstance(parameters, Mapping):
        raise ToolError(f"{where}.tool_parameters: must be an object")
    for name, entry in parameters.items():
        if not isinstance(entry, Mapping):
            continue
        if entry.get("type") not in (None, *PARAMETER_TYPES):
            raise ToolError(
                f"{where}.tool_parameters.{name}.type: must be one of the following: "
                f"[{', '.join(PARAMETER_TYPES)}]"
            )
        if entry.get("type") == "variable":
            try:
                selector_of(entry.get("value"), field=f"{where}.tool_parameters.{name}.value")
            except ValueError as error:
                raise ToolError(str(error)) from None
    return tool


def arguments(
    data: Mapping[str, Any],
    render: Callable[[str], str],
    find: Callable[[Any], Any],
) -> dict[str, Any]:
    """The values the node's `tool_parameters` give, read from the run's variables."""
    given: dict[str, Any] = {}
    for name, entry in (data.get("tool_parameters") or {}).items():
        if not isinstance(entry, Mapping):
            given[str(name)] = entry
            continue
        kind, value = entry.get("type"), entry.get("value")
        if kind == "variable":
            given[str(name)] = find(value)
        elif kind in ("mixed", "mention") and isinstance(value, str):
            given[str(name)] = render(value)
        else:
            given[str(name)] = value
    return given


async def call(tool: Tool, given: Mapping[str, Any], configured: Mapping[str, Any]) -> str:
    """The tool's answer (in a thread, at most `TOOL_SECONDS`); `ToolError` when it has none."""
    checked = tool.arguments(given, configured)
    try:
        return await asyncio.wait_for(
            in_thread(tool.invoke, checked, built_in=tool.built_in), TOOL_SECONDS
        )
    except TimeoutError:
        raise ToolError(f"{tool.name} took longer than {TOOL_SECONDS:g} seconds.") from None
