"""A workflow's `agent` node (Dify's, with the strategies of its official agent plugin,
`langgenius/agent/agent`: `function_calling` and `ReAct`): the agent of agent-chat apps
(`core/apps/agent.py`) as one node of a graph. The model answers in rounds, calling the
node's tools between them, until it answers without a call or its rounds run out.

Its settings are Dify's `agent_parameters`, each `{type, value}`: `model` (a constant:
`{provider, name | model, mode, completion_params}`), `tools` (a constant list, each
`{enabled, type, provider_name, tool_name, settings, parameters}`: a built-in tool or a
workspace's custom API tool; a parameter with `auto: 0` takes its `value` and the model is not
asked for it), `instruction` and `query` (text with `{{#node.var#}}` references, or a
selector), `maximum_iterations` (rounds that may call tools; one more answers), and an
optional `context` (a selector: a knowledge-retrieval node's passages). The node's `memory`
(a chatflow's) puts the conversation's earlier turns before the query.

`parse` runs when the graph is parsed (a draft saved, an import) and again when the node
runs: what this server does not serve (another strategy provider, MCP or plugin tools) or a
wrong setting is a `ToolError` naming the node and the field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conduit.core.apps.agent import MAX_ITERATION, AgentTool, Strategy
from conduit.core.tools import builtin
from conduit.core.tools.base import Tool, ToolError
from conduit.core.workflow.variables import selector_of

# Dify's official agent strategy plugin (its id as the DSL names it; without the version).
OFFICIAL_PROVIDER = "langgenius/agent/agent"
STRATEGIES: Mapping[str, Strategy] = {
    "function_calling": "function_call",
    "function_call": "function_call",
    "functioncalling": "function_call",
    "react": "react",
    "cot": "react",
}
DEFAULT_ROUNDS = 3  # the official strategies' default `maximum_iterations`
MAX_TOOLS = 50
ENTRY_TYPES = ("constant", "mixed", "variable", "mention")
TOOL_TYPES = ("builtin", "api")
API = "api"


@dataclass(frozen=True)
class AgentNodeSpec:
    """An agent node's settings, checked. `instruction`, `query` and `context` are their
    `{type, value}` entries, read from the run when the node runs."""

    strategy: Strategy
    model: Mapping[str, Any]
    tools: tuple[AgentTool, ...]
    max_iteration: int  # rounds in all, as Dify counts them (the last one calls no tool)
    instruction: Mapping[str, Any] | None
    query: Mapping[str, Any] | None
    context: Mapping[str, Any] | None

    def read(self, entry: Mapping[str, Any] | None, render: Any, find: Any) -> Any:
        """An entry's value in the run: a selector's variable, a text's references filled."""
        if entry is None:
            return None
        kind, value = entry.get("type"), entry.get("value")
        if kind == "variable":
            return find(selector_of(value, field="agent_parameters"))
        if isinstance(value, str):
            return render(value)
        return value


def _entry(parameters: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any] | None:
    """One of `agent_parameters`: `{type, value}` (a bare value is a constant)."""
    entry = parameters.get(name)
    if entry is None:
        return None
    if not isinstance(entry, Mapping) or "value" not in entry:
        return {"type": "constant", "value": entry}
    kind = entry.get("type") or "constant"
    if kind not in ENTRY_TYPES:
        raise ToolError(
            f"{where}.agent_parameters.{name}.type: must be one of the following: "
            f"[{', '.join(ENTRY_TYPES)}]"
        )
    if kind == "variable":
        try:
            selector_of(entry.get("value"), field=f"{where}.agent_parameters.{name}.value")
        except ValueError as error:
            raise ToolError(str(error)) from None
    return {"type": kind, "value": entry.get("value")}


def _constant(entry: Mapping[str, Any] | None, name: str, where: str) -> Any:
    if entry is None:
        return None
    if entry["type"] == "variable":
        raise ToolError(f"{where}.agent_parameters.{name}: must be a constant")
    return entry["value"]


# A run's reading of a value: `render` fills a text's `{{#node.var#}}` references, `find`
# reads a selector's variable. Without them (a graph parsed before any run) the values its
# tools take from the run are not known, and not checked yet.
Render = Callable[[str], str]
Find = Callable[[Any], Any]


def parse(
    data: Mapping[str, Any],
    where: str,
    render: Render | None = None,
    find: Find | None = None,
) -> AgentNodeSpec:
    """The node's settings, checked (a `ToolError` naming the field otherwise); with the
    run's `render` and `find`, its tools' settings and fixed values read from the run."""
    provider = str(data.get("agent_strategy_provider_name") or OFFICIAL_PROVIDER)
    if provider.split(":", 1)[0] != OFFICIAL_PROVIDER:
        raise ToolError(
            f"{where}.agent_strategy_provider_name: the strategies of {provider!r} are not "
            f"served; Dify's official ones are ({OFFICIAL_PROVIDER}: function_calling, ReAct)"
        )
    name = str(data.get("agent_strategy_name") or "function_calling")
    strategy = STRATEGIES.get(name.replace(" ", "").lower())
    if strategy is None:
        raise ToolError(
            f"{where}.agent_strategy_name: must be one of the following: [function_calling, ReAct]"
        )
    parameters = data.get("agent_parameters") or {}
    if not isinstance(parameters, Mapping):
        raise ToolError(f"{where}.agent_parameters: must be an object")
    given = parameters.get("model")
    model = given.get("value") if isinstance(given, Mapping) and "value" in given else None
    if not isinstance(model, Mapping) or not isinstance(model.get("provider"), str):
        raise ToolError(
            f"{where}.agent_parameters.model: must name the model ({{type: constant, value: "
            "{provider, name, mode, completion_params}})"
        )
    if not model.get("name") and isinstance(model.get("model"), str):
        model = {**model, "name": model["model"]}
    rounds_entry = next(
        (
            _entry(parameters, key, where)
            for key in ("maximum_iterations", "max_iterations")
            if key in parameters
        ),
        None,
    )
    rounds = _constant(rounds_entry, "maximum_iterations", where)
    if rounds is None:
        rounds = data.get("max_iteration", DEFAULT_ROUNDS)
    if isinstance(rounds, float) and rounds.is_integer():
        rounds = int(rounds)
    elif isinstance(rounds, str):
        with contextlib.suppress(ValueError):
            rounds = int(rounds.strip())
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= MAX_ITERATION:
        raise ToolError(
            f"{where}.agent_parameters.maximum_iterations: must be a whole number from 1 "
            f"to {MAX_ITERATION}"
        )
    listed = _constant(_entry(parameters, "tools", where), "tools", where)
    tools = _tools(listed, f"{where}.agent_parameters.tools", render, find)
    query = _entry(parameters, "query", where)
    if query is None:
        raise ToolError(f"{where}.agent_parameters.query: is required (what the agent answers)")
    context = _entry(parameters, "context", where)
    if context is not None and context["type"] != "variable":
        context = None if not context["value"] else context
    return AgentNodeSpec(
        strategy=strategy,
        model=model,
        tools=tools,
        max_iteration=rounds,
        instruction=_entry(parameters, "instruction", where),
        query=query,
        context=context,
    )


def model_of(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The model an agent node's settings name (None when they name none)."""
    parameters = data.get("agent_parameters")
    entry = parameters.get("model") if isinstance(parameters, Mapping) else None
    model = entry.get("value") if isinstance(entry, Mapping) and "value" in entry else entry
    return model if isinstance(model, Mapping) else None


def api_tools(data: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An agent node's custom API tools that are on, as its `tools` list holds them (the
    same objects: `services/api_tools.py` writes the workspace's provider ids in), each with
    its place (`.agent_parameters.tools[i]`)."""
    parameters = data.get("agent_parameters")
    entry = parameters.get("tools") if isinstance(parameters, Mapping) else None
    listed = entry.get("value") if isinstance(entry, Mapping) and "value" in entry else entry
    return [
        (f".agent_parameters.tools[{index}]", item)
        for index, item in enumerate(listed if isinstance(listed, list) else [])
        if isinstance(item, dict)
        and item.get("enabled") is True
        and (item.get("type") or item.get("provider_type")) == API
    ]


def _tools(
    value: Any, where: str, render: Render | None, find: Find | None
) -> tuple[AgentTool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise ToolError(f"{where}: must be a list of at most {MAX_TOOLS}")
    tools: list[AgentTool] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        field = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise ToolError(f"{field}: must be an object")
        if item.get("enabled") is not True:
            continue  # (Dify's: a tool without `enabled: true` is off)
        kind = str(item.get("type") or item.get("provider_type") or "builtin")
        provider = item.get("provider_id") or item.get("provider_name")
        tool_name = item.get("tool_name")
        if kind == API:
            if not isinstance(provider, str) or not isinstance(tool_name, str) or not tool_name:
                raise ToolError(
                    f"{field}: a custom API tool names its provider (provider_name) and its "
                    "tool_name"
                )
            fixed, _ = fixed_given(item, field, render, find)
            tool = AgentTool(provider, tool_name, {}, API, fixed)
        elif kind == "builtin":
            _, found = builtin.served(kind, item.get("provider_name") or provider, tool_name, field)
            tool = AgentTool(
                found.provider,
                found.name,
                _settings(found, item.get("settings"), f"{field}.settings", render, find),
                "builtin",
                _fixed(found, item, field, render, find),
            )
        else:
            raise ToolError(
                f"{field}.type: {kind!r} tools are not served; an agent node's tools are "
                f"built-in (builtin: {', '.join(builtin.PROVIDERS)}) or the workspace's custom "
                "API tools (api)"
            )
        if tool.tool_name in names:
            raise ToolError(
                f"{field}.tool_name: another of the node's tools is called {tool_name!r}"
            )
        names.add(tool.tool_name)
        tools.append(tool)
    return tuple(tools)


def _read(value: Any, field: str, render: Render | None, find: Find | None) -> tuple[bool, Any]:
    """A tool's setting or fixed value as Dify writes it — `{type, value}` (`constant`,
    `mixed`: text with `{{#node.var#}}` references, `variable`: a selector), or a bare value —
    as (known, value): known False before the run for what the run gives."""
    if not (isinstance(value, Mapping) and "value" in value and set(value) <= {"type", "value"}):
        return True, value
    kind, inner = value.get("type"), value.get("value")
    if kind == "variable":
        try:
            selector_of(inner, field=f"{field}.value")
        except ValueError as error:
            raise ToolError(str(error)) from None
        return (True, find(inner)) if find is not None else (False, None)
    if kind in ("mixed", "mention") and isinstance(inner, str) and "{{#" in inner:
        return (True, render(inner)) if render is not None else (False, None)
    return True, inner


def _settings(
    tool: Tool, raw: Any, field: str, render: Render | None, find: Find | None
) -> dict[str, Any]:
    """A built-in tool's settings (`{name: {value: …}}`, Dify 1.x's `{name: {value: {type,
    value}}}`, or bare values), checked; before the run, only those the run does not give."""
    known: dict[str, Any] = {}
    later = False
    for name, entry in (raw if isinstance(raw, Mapping) else {}).items():
        if isinstance(entry, Mapping) and set(entry) == {"value"}:
            entry = entry["value"]
        found, value = _read(entry, f"{field}.{name}", render, find)
        if found:
            known[str(name)] = value
        else:
            later = True
    try:
        if not later:
            return tool.settings(known)
        for parameter in tool.parameters:  # (the rest is checked when the node runs)
            if parameter.form == "form" and known.get(parameter.name) not in (None, ""):
                parameter.coerce(known[parameter.name])
    except ToolError as error:
        raise ToolError(f"{field}: {error}") from None
    return {}


def fixed_given(
    item: Mapping[str, Any], field: str, render: Render | None = None, find: Find | None = None
) -> tuple[dict[str, Any], bool]:
    """The values a tool's entry sets for parameters the model would fill (`parameters`:
    `{name: {auto: 0, value}}`, the value bare or `{type, value}`; an empty one sets none),
    as given, and whether some come from the run (not known before it)."""
    raw = item.get("parameters")
    given: dict[str, Any] = {}
    later = False
    for name, entry in (raw if isinstance(raw, Mapping) else {}).items():
        if not isinstance(entry, Mapping) or entry.get("auto") not in (0, False, "0"):
            continue
        found, value = _read(entry.get("value"), f"{field}.parameters.{name}", render, find)
        if not found:
            later = True
        elif value not in (None, ""):
            given[str(name)] = value
    return given, later


def _fixed(
    tool: Tool, item: Mapping[str, Any], field: str, render: Render | None, find: Find | None
) -> dict[str, Any]:
    """`fixed_given`, checked against the tool (a custom API tool's where its provider is
    read: when the draft is saved, and when the node runs)."""
    given, _ = fixed_given(item, field, render, find)
    try:
        return fixed_values(tool, given)
    except ToolError as error:
        raise ToolError(f"{field}.parameters: {error}") from None


def fixed_values(tool: Tool, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` checked as values of `tool`'s parameters the model would fill."""
    asked = {p.name: p for p in tool.parameters if p.form == "llm"}
    checked: dict[str, Any] = {}
    for name, value in given.items():
        parameter = asked.get(name)
        if parameter is None:
            raise ToolError(
                f"{tool.name} has no parameter {name!r} the model fills; its parameters: "
                f"{', '.join(asked) or 'none'}"
            )
        checked[name] = parameter.coerce(value)
    return checked
