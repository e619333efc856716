"""The agent of an agent-chat app: the model answers in rounds, calling the app's tools
between them, until it answers without a call or its rounds run out.

Two strategies, Dify's: `function_call` (the model is given the tools as functions and asks
for calls by name: OpenAI's tool calls) and `react` (the tools are described in the prompt and
the model writes `Thought:` / `Action:` JSON / `Final Answer:`, every model can; the local
model always runs so). A run has `max_iteration` rounds that may call tools and one more
that may not (as Dify's), so it always ends with an answer.

Events (Dify's): each round opens with an `agent_thought` (its position, nothing filled in),
the answer's pieces stream as `agent_message` events, and the same `agent_thought` (same id)
is sent again as its thought, tool calls (`tool`: the names joined by ";", `tool_input`: a JSON
object of each name's input) and observation (a JSON object of each name's result) fill in.
A tool that fails or is called wrongly answers its error as the observation: the model reads
it and carries on (as Dify's); only the model's own failures end the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from conduit.core.llm.provider import (
    ChatMessage,
    ChatModel,
    Delta,
    Finished,
    GenerationParams,
    ToolCall,
    ToolCalls,
    Usage,
)
from conduit.core.tools import builtin
from conduit.core.tools.base import TOOL_SECONDS, Tool, ToolError, in_thread
from conduit.core.tools.builtin import provider_key

logger = logging.getLogger(__name__)

Strategy = Literal["function_call", "react"]
STRATEGIES: tuple[Strategy, ...] = ("function_call", "react")
DEFAULT_MAX_ITERATION = 5
MAX_ITERATION = 99
MAX_OBSERVATION = 8000  # characters of a tool's answer the model reads
MAX_STOP = 4  # stop sequences a model takes (OpenAI's limit)
# Dify's other names of the strategies (older configs and exports).
STRATEGY_NAMES: dict[str, Strategy] = {
    "function_call": "function_call",
    "router": "function_call",
    "react": "react",
    "cot": "react",
    "react_router": "react",
}


@dataclass(frozen=True)
class AgentTool:
    """One of the app's tools: a built-in provider's tool and the app's settings of it (the
    parameters the app fills, checked when the app was saved)."""

    provider_id: str
    tool_name: str
    settings: dict[str, Any] = field(default_factory=dict)
    provider_type: str = "builtin"  # or "api": a workspace's custom API tool
    # Values of parameters the model would fill, set by the config instead (a workflow agent
    # node's `auto: 0`), checked when the tool is called.
    fixed: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {
            "provider_type": self.provider_type,
            "provider_id": self.provider_id,
            "tool_name": self.tool_name,
            "settings": self.settings,
        }
        if self.fixed:
            data["fixed"] = self.fixed
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentTool:
        settings = dict(data.get("settings") or {})
        kind = str(data.get("provider_type") or "builtin")
        fixed = dict(data.get("fixed") or {})
        return cls(str(data["provider_id"]), str(data["tool_name"]), settings, kind, fixed)


@dataclass(frozen=True)
class AgentPlan:
    """What an agent-chat run may do: its strategy, its rounds at most and its tools."""

    strategy: Strategy
    max_iteration: int
    tools: tuple[AgentTool, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "max_iteration": self.max_iteration,
            "tools": [tool.to_json() for tool in self.tools],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentPlan:
        strategy: Strategy = "react" if data.get("strategy") == "react" else "function_call"
        return cls(
            strategy=strategy,
            max_iteration=int(data.get("max_iteration") or DEFAULT_MAX_ITERATION),
            tools=tuple(AgentTool.from_json(t) for t in data.get("tools") or []),
        )


def agent_plan(config: dict[str, Any], *, function_calling: bool = True) -> AgentPlan:
    """An agent-chat app's plan from its `agent_mode` (checked when saved): its enabled
    tools that exist (an unknown one is left out), its strategy (`react` on a model without
    function calling) and its rounds."""
    mode = config.get("agent_mode")
    mode = mode if isinstance(mode, dict) else {}
    named = STRATEGY_NAMES.get(str(mode.get("strategy") or ""), "function_call")
    strategy: Strategy = named if function_calling else "react"
    rounds = mode.get("max_iteration")
    tools = []
    for item in mode.get("tools") or []:
        if not isinstance(item, dict) or item.get("enabled") is not True:
            continue  # (Dify's: a tool without `enabled` is off)
        if item.get("provider_type") == "api":  # read when the run starts
            tools.append(
                AgentTool(str(item.get("provider_id")), str(item.get("tool_name")), {}, "api")
            )
            continue
        tool = builtin.find(provider_key(item.get("provider_id")), str(item.get("tool_name") or ""))
        if tool is None:
            continue
        values = item.get("tool_parameters")
        try:
            settings = tool.settings(values if isinstance(values, dict) else {})
        except ToolError:
            continue  # (refused when the app was saved; an older app's is left out)
        tools.append(AgentTool(tool.provider, tool.name, settings))
    return AgentPlan(
        strategy=strategy,
        max_iteration=(
            min(MAX_ITERATION, max(1, rounds))
            if isinstance(rounds, int) and not isinstance(rounds, bool)
            else DEFAULT_MAX_ITERATION
        ),
        tools=tuple(tools),
    )


@dataclass
class Thought:
    """One round of the agent, as Dify's `agent_thought` reports it."""

    id: str
    position: int
    created_at: int
    thought: str = ""
    tool: str = ""
    tool_labels: dict[str, Any] = field(default_factory=dict)
    tool_input: str = ""
    observation: str = ""
    # The round's calls and their answers, in order (what `tool_input` and `observation` sum
    # up by name), for a reporter that shows each call.
    calls: tuple[ToolCall, ...] = ()
    results: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: dict[str, Any]) -> Thought:
        """A round as an `agent_thought` event or a message's `agent_thoughts` holds it."""
        return cls(
            id=str(data.get("id")),
            position=int(data.get("position") or 0),
            created_at=int(data.get("created_at") or 0),
            thought=str(data.get("thought") or ""),
            tool=str(data.get("tool") or ""),
            tool_labels=dict(data.get("tool_labels") or {}),
            tool_input=str(data.get("tool_input") or ""),
            observation=str(data.get("observation") or ""),
        )

    def fields(self) -> dict[str, Any]:
        """The event's own fields."""
        return {
            "id": self.id,
            "position": self.position,
            "thought": self.thought,
            "observation": self.observation,
            "tool": self.tool,
            "tool_labels": self.tool_labels,
            "tool_input": self.tool_input,
            "message_files": [],
        }

    def stored(self, message_id: str) -> dict[str, Any]:
        """As a message's `agent_thoughts` lists it."""
        return {
            "id": self.id,
            "chain_id": None,
            "message_id": message_id,
            "position": self.position,
            "thought": self.thought,
            "tool": self.tool,
            "tool_labels": self.tool_labels,
            "tool_input": self.tool_input,
            "observation": self.observation,
            "files": [],
            "created_at": self.created_at,
        }


# -- ReAct -----------------------------------------------------------------------------------

REACT_INSTRUCTIONS = """Answer the user as well as you can. You have these tools:

{tools}

To use a tool, write what you think, then a JSON object naming the tool ("action", one of: \
{names}) and its input ("action_input"), in this format:

Thought: what you think about doing
Action:
```
{{"action": "tool name", "action_input": {{"parameter": "value"}}}}
```

Then stop: the tool's result comes back as "Observation: ...". Use tools as many times as you \
need. When you know the answer, write:

Thought: I know the answer
Final Answer: the answer for the user"""

LAST_ROUND = "You cannot use tools any more: write your Final Answer now."
OBSERVATION = "Observation:"
_MARKERS = ("thought:", "action:", "final answer:", "```")
_FINAL = re.compile(r"^[\s*_#]*final answer[*_]*:[*_]*", re.IGNORECASE | re.MULTILINE)
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_BARE = re.compile(r"action:\s*(\{.*\})", re.DOTALL | re.IGNORECASE)
_THOUGHT = re.compile(r"^[\s*_#]*thought[*_]*:\s*", re.IGNORECASE)
_EMPHASIS = re.compile(r"[*_#]")  # Markdown around a marker ("**Thought:**")


def react_prompt(messages: Sequence[ChatMessage], tools: Sequence[Tool]) -> list[ChatMessage]:
    """The prompt with the ReAct instructions and the tools in its system message."""
    described = "\n".join(
        f"- {t.name}: {t.description} Input: "
        f"{json.dumps(t.function()['function']['parameters'], ensure_ascii=False)}"
        for t in tools
    )
    instructions = REACT_INSTRUCTIONS.format(
        tools=described or "(none)", names=", ".join(t.name for t in tools) or "none"
    )
    if messages and messages[0].role == "system":
        system = ChatMessage("system", f"{messages[0].content}\n\n{instructions}")
        return [system, *messages[1:]]
    return [ChatMessage("system", instructions), *messages]


@dataclass(frozen=True)
class ReactStep:
    """What a ReAct round wrote: its thought, and the tool it asks for (None: it answered)
    with that tool's input; `rest`: the answer's text not streamed yet."""

    thought: str
    action: str | None = None
    action_input: Any = None
    rest: str = ""


class ReactParser:
    """Reads a ReAct round as it streams: the final answer (after `Final Answer:`, or the
    whole text when the model did not follow the format) streams as it comes; a thought and
    its action are held until the round ends."""

    def __init__(self) -> None:
        self.text = ""
        self._state: Literal["undecided", "thinking", "answering"] = "undecided"
        self._sent = 0  # characters of `text` streamed (or skipped) so far
        self._started = False  # the answer's first visible character was streamed

    def feed(self, piece: str) -> str:
        """Add the next piece; the answer's text to stream now."""
        self.text += piece
        if self._state == "undecided":
            head = _EMPHASIS.sub("", self.text).lstrip().lower()
            if any(m.startswith(head) or head.startswith(m) for m in _MARKERS):
                if any(head.startswith(m) for m in _MARKERS):
                    self._begin_thinking()
                else:
                    return ""  # maybe the start of a marker: wait for more
            else:
                self._state = "answering"  # not the format: the text is the answer
        if self._state == "thinking":
            found = _FINAL.search(self.text, self._sent)
            if found is None:
                return ""
            self._state = "answering"
            self._sent = found.end()
        return self._flush()

    def _begin_thinking(self) -> None:
        found = _FINAL.match(self.text)
        if found is not None:
            self._state = "answering"
            self._sent = found.end()
        else:
            self._state = "thinking"

    def _flush(self) -> str:
        out = self.text[self._sent :]
        if not self._started:
            out = out.lstrip()
            if not out:
                self._sent = len(self.text)
                return ""
            self._started = True
        self._sent = len(self.text)
        return out

    def end(self) -> ReactStep:
        """The round is over: what it asked for, and what is left to stream."""
        if self._state == "answering":
            return ReactStep(thought="", rest=self._flush())
        if self._state == "undecided":
            return ReactStep(thought="", rest=self.text.strip())
        found = _FENCED.search(self.text) or _BARE.search(self.text)
        action = _action(found.group(1)) if found else None
        before = self.text[: found.start()] if found else self.text
        thought = _THOUGHT.sub("", before.rsplit("Action:", 1)[0]).strip()
        if action is None:  # no action: what it wrote is its answer
            return ReactStep(thought="", rest=_THOUGHT.sub("", self.text).strip())
        name, given = action
        if name.lower() == "final answer":
            text = given if isinstance(given, str) else json.dumps(given, ensure_ascii=False)
            return ReactStep(thought=thought, rest=text.strip())
        return ReactStep(thought=thought, action=name, action_input=given)


def _action(blob: str) -> tuple[str, Any] | None:
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        return None
    return data["action"], data.get("action_input")


# -- the loop --------------------------------------------------------------------------------

# What a round reports, in this order: `started` (nothing filled in), then `called` (its tool
# calls) and `observed` (their answers), or `answered` (it called none: the run is over).
Phase = Literal["started", "called", "observed", "answered"]


class AgentReporter(Protocol):
    """Where a run's output goes: the answer's pieces as they stream, and each round as it
    fills in (an agent-chat run writes them to its event log; a workflow's agent node to
    its answer stream and `agent_log` events)."""

    async def pieces(self, pieces: list[str]) -> None: ...

    async def thought(self, thought: Thought, phase: Phase) -> None: ...


class AgentLoop:
    """One agent run's rounds (see the module's docstring): an agent-chat app's, or a
    workflow's agent node's."""

    def __init__(self, plan: AgentPlan, *, message_id: str = "") -> None:
        self._plan = plan
        self._message_id = message_id
        self._tools: dict[str, tuple[Tool, dict[str, Any]]] = {}
        for item in plan.tools:
            if item.provider_type != "builtin":
                continue  # (added once read: `add`)
            tool = builtin.find(item.provider_id, item.tool_name)
            if tool is not None:
                self._tools[tool.name] = (_fixed(tool, item.fixed), item.settings)
        self.thoughts: list[Thought] = []
        self.usage = Usage()

    def add(self, tools: dict[str, Tool], fixed: Mapping[str, Mapping[str, Any]] = {}) -> None:
        """More tools (a workspace's custom API tools, read when the run starts); `fixed`:
        the values some of their parameters take, by tool name (the model does not fill
        those)."""
        for name, tool in tools.items():
            self._tools.setdefault(name, (_fixed(tool, fixed.get(name) or {}), {}))

    def stored(self) -> list[dict[str, Any]]:
        return [thought.stored(self._message_id) for thought in self.thoughts]

    async def run(
        self,
        model: ChatModel,
        messages: list[ChatMessage],
        params: GenerationParams,
        reporter: AgentReporter,
    ) -> None:
        self._reporter = reporter
        # No round that may call tools (a workflow node's `maximum_iterations: 1`): the one
        # round is offered none, and ReAct's format is not asked for.
        rounds = self._plan.max_iteration
        tools = [tool for tool, _ in self._tools.values()] if rounds > 0 else []
        react = self._plan.strategy == "react"
        if react and rounds > 0:
            messages = react_prompt(messages, tools)
        for position in range(1, self._plan.max_iteration + 2):
            last = position == self._plan.max_iteration + 1 or not tools
            thought = Thought(id=str(uuid.uuid4()), position=position, created_at=int(time.time()))
            self.thoughts.append(thought)
            await reporter.thought(thought, "started")
            if react:
                asked = messages
                if last and position > 1:
                    asked = [*messages[:-1], _appended(messages[-1], LAST_ROUND)]
                text, calls, said = await self._react_round(model, asked, params, last)
            else:
                offered = replace(params, tools=() if last else tuple(t.function() for t in tools))
                text, calls = await self._call_round(model, messages, offered)
                said = text
                if last:
                    calls = ()  # offered none: a call now is not made
            thought.thought = text
            if not calls:
                await reporter.thought(thought, "answered")
                return
            thought.tool = ";".join(call.name for call in calls)
            thought.tool_labels = {
                call.name: {"en_US": self._label(call.name), "zh_Hans": self._label(call.name)}
                for call in calls
            }
            thought.tool_input = _by_name(calls, [loaded(call.arguments) for call in calls])
            thought.calls = tuple(calls)
            await reporter.thought(thought, "called")
            results = [await self._call(call) for call in calls]
            thought.observation = _by_name(calls, results)
            thought.results = tuple(results)
            await reporter.thought(thought, "observed")
            if react:
                messages = [
                    *messages,
                    ChatMessage("assistant", said),
                    ChatMessage("user", f"{OBSERVATION} {thought.observation}"),
                ]
            else:
                messages = [
                    *messages,
                    ChatMessage("assistant", text, tool_calls=tuple(calls)),
                    *(
                        ChatMessage("tool", result, tool_call_id=call.id)
                        for call, result in zip(calls, results, strict=True)
                    ),
                ]

    async def _call_round(
        self,
        model: ChatModel,
        messages: list[ChatMessage],
        params: GenerationParams,
    ) -> tuple[str, tuple[ToolCall, ...]]:
        """A function-calling round: its text streams as it comes."""
        text: list[str] = []
        calls: tuple[ToolCall, ...] = ()
        async for item in model.stream_chat(messages, params):
            if isinstance(item, Delta):
                pieces = [piece for piece in item.parts if piece]
                if pieces:
                    await self._reporter.pieces(pieces)
                    text.extend(pieces)
            elif isinstance(item, ToolCalls):
                calls = item.calls
            elif isinstance(item, Finished):
                self._count(item.usage)
        return "".join(text), calls

    async def _react_round(
        self,
        model: ChatModel,
        messages: list[ChatMessage],
        params: GenerationParams,
        last: bool,
    ) -> tuple[str, tuple[ToolCall, ...], str]:
        """A ReAct round: its thought, the call it asks for (none on the last round: what it
        wrote is the answer) and what it wrote up to its action (the next prompt's)."""
        parser = ReactParser()
        answered: list[str] = []
        stop = tuple(s for s in params.stop if s != OBSERVATION)[: MAX_STOP - 1]
        asked = replace(params, stop=(*stop, OBSERVATION))
        async for item in model.stream_chat(messages, asked):
            if isinstance(item, Delta):
                out = parser.feed(item.text)
                if out:
                    await self._reporter.pieces([out])
                    answered.append(out)
            elif isinstance(item, Finished):
                self._count(item.usage)
        step = parser.end()
        if step.action is None or last:
            rest = step.rest if step.action is None else step.thought
            if rest:
                await self._reporter.pieces([rest])
                answered.append(rest)
            return "".join(answered), (), parser.text
        arguments = (
            json.dumps(step.action_input, ensure_ascii=False)
            if isinstance(step.action_input, dict)
            else json.dumps({"__input": step.action_input}, ensure_ascii=False)
        )
        call = ToolCall(f"react-{len(self.thoughts)}", step.action, arguments)
        return step.thought, (call,), parser.text.split(OBSERVATION, 1)[0].rstrip()

    async def _call(self, call: ToolCall) -> str:
        """`_invoke` in a thread (a tool never holds up the event loop's other runs), its
        answer an error past `TOOL_SECONDS` (the thread is left to finish)."""
        try:
            found = self._tools.get(call.name)
            built_in = found is not None and found[0].built_in
            return await asyncio.wait_for(
                in_thread(self._invoke, call, built_in=built_in), TOOL_SECONDS
            )
        except TimeoutError:
            return f"Error: {call.name} took longer than {TOOL_SECONDS:g} seconds."

    def _invoke(self, call: ToolCall) -> str:
        """The call's answer, or the reason it could not be made (both for the model)."""
        found = self._tools.get(call.name)
        if found is None:
            names = ", ".join(self._tools) or "none"
            return f"Error: there is no tool named {call.name!r} (the tools: {names})."
        tool, settings = found
        try:
            given = json.loads(call.arguments) if call.arguments.strip() else {}
        except (ValueError, RecursionError):
            return f"Error: the input of {call.name} is not valid JSON: {call.arguments[:200]}"
        if isinstance(given, dict) and set(given) == {"__input"}:
            given = given["__input"]
        if not isinstance(given, dict):
            # A bare value (ReAct): the input of the one parameter the model fills.
            asked = [p.name for p in tool.parameters if p.form == "llm"]
            if len(asked) != 1:
                return f"Error: the input of {call.name} must be a JSON object."
            given = {asked[0]: given}
        try:
            answer = tool.invoke(tool.arguments(given, settings))
        except ToolError as error:
            return f"Error: {error}"
        except Exception as error:  # a tool's own bug: the model reads it, the run goes on
            logger.exception("tool %s.%s failed", tool.provider, tool.name)
            return f"Error: {call.name} failed: {error}"
        if len(answer) > MAX_OBSERVATION:
            return answer[:MAX_OBSERVATION] + " [cut]"
        return answer

    def _label(self, name: str) -> str:
        found = self._tools.get(name)
        return found[0].label if found else name

    def _count(self, usage: Usage) -> None:
        self.usage = Usage(
            self.usage.prompt_tokens + usage.prompt_tokens,
            self.usage.completion_tokens + usage.completion_tokens,
        )


def _fixed(tool: Tool, values: Mapping[str, Any]) -> Tool:
    """`tool` with some of the parameters the model fills given a value of their own (a
    workflow agent node's tool with `auto: 0`): the model is not asked for those, and its call
    takes them."""
    if not values:
        return tool
    invoke = tool.invoke
    kept = tuple(p for p in tool.parameters if p.name not in values)

    def call(arguments: dict[str, Any]) -> str:
        return invoke({**arguments, **values})

    return replace(tool, parameters=kept, invoke=call)


def _by_name(calls: Sequence[ToolCall], values: Sequence[Any]) -> str:
    """Each call's value under its tool's name, as JSON (Dify's `tool_input` and
    `observation`); a tool called more than once in the round has the list of its values."""
    named: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.name] = counts.get(call.name, 0) + 1
    for call, value in zip(calls, values, strict=True):
        if counts[call.name] > 1:
            named.setdefault(call.name, []).append(value)
        else:
            named[call.name] = value
    return json.dumps(named, ensure_ascii=False)


def loaded(arguments: str) -> Any:
    """A call's arguments as JSON (as written when they are not JSON)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except (ValueError, RecursionError):
        return arguments
    return value["__input"] if isinstance(value, dict) and set(value) == {"__input"} else value


def _appended(message: ChatMessage, text: str) -> ChatMessage:
    return replace(message, content=f"{message.content}\n\n{text}")
