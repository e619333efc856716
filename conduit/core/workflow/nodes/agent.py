"""The agent node (`core/workflow/agent_node.py`): the agent loop of agent-chat apps
(`core/apps/agent.py`) run as a node. Its answer streams as its `text` output (a chatflow's
answer node or a workflow's `text_chunk` shows it live); each round and each tool call is an
`agent_log` event as it goes (Dify's: `ROUND n`, then `CALL <tool>` under it, `start` then
`success` or `error`), and the rounds are kept in the node's `process_data`.

A model without function calling (the local one) runs the ReAct strategy whatever the node
asks (as an agent-chat app does). A stop cancels the node: its model stream is closed; a tool
call under way is left to finish in its thread.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from conduit.core.apps.agent import AgentLoop, AgentPlan, Phase, Thought, loaded
from conduit.core.llm.errors import ModelError
from conduit.core.llm.provider import ChatMessage, Usage
from conduit.core.tools.base import ToolError
from conduit.core.workflow import agent_node
from conduit.core.workflow.engine import NodeCall, NodeFailed, NodeResult
from conduit.core.workflow.events import AgentLog
from conduit.core.workflow.nodes.model import params_of, passages_text, usage_of
from conduit.core.workflow.services import WorkflowServices
from conduit.core.workflow.variables import as_text, selector_of

ERROR_TYPE = "AgentNodeError"


class _NodeReporter:
    """The loop's output as the node's: pieces of `text` to the answer stream, rounds as
    `agent_log` events (and kept for `process_data`)."""

    def __init__(self, call: NodeCall) -> None:
        self._call = call
        self.text: list[str] = []
        self.logs: dict[str, dict[str, Any]] = {}  # by log id, in the order they began
        self._calls: dict[str, list[str]] = {}  # a round's id → its calls' log ids

    async def pieces(self, pieces: list[str]) -> None:
        for piece in pieces:
            self.text.append(piece)
            self._call.chunk("text", piece)

    async def thought(self, thought: Thought, phase: Phase) -> None:
        if phase == "started":
            self._log(thought.id, f"ROUND {thought.position}", None, "start", {})
        elif phase == "called":
            ids = []
            for call in thought.calls:
                log_id = str(uuid.uuid4())
                ids.append(log_id)
                data = {"tool_name": call.name, "tool_input": loaded(call.arguments)}
                self._log(log_id, f"CALL {call.name}", thought.id, "start", data)
            self._calls[thought.id] = ids
        elif phase == "observed":
            ids = self._calls.pop(thought.id, [])
            for log_id, output in zip(ids, thought.results, strict=False):
                entry = self.logs[log_id]
                failed = output.startswith("Error:")
                data = {**entry["data"], "tool_response": output}
                self._log(
                    log_id,
                    entry["label"],
                    thought.id,
                    "error" if failed else "success",
                    data,
                    error=output if failed else None,
                )
            self._end_round(thought)
        else:
            self._end_round(thought)

    def _end_round(self, thought: Thought) -> None:
        # (Each call's input and answer are in its own log, under the round.)
        data = {"thought": thought.thought, "tool": thought.tool}
        self._log(thought.id, f"ROUND {thought.position}", None, "success", data)

    def _log(
        self,
        log_id: str,
        label: str,
        parent_id: str | None,
        status: str,
        data: dict[str, Any],
        *,
        error: str | None = None,
    ) -> None:
        now = time.time()
        started = self.logs.get(log_id, {}).get("metadata", {}).get("started_at", now)
        metadata: dict[str, Any] = {"started_at": started}
        if status != "start":
            metadata.update(finished_at=now, elapsed_time=round(now - started, 6))
        entry = {
            "id": log_id,
            "label": label,
            "parent_id": parent_id,
            "status": status,
            "error": error,
            "data": data,
            "metadata": metadata,
        }
        self.logs[log_id] = entry
        execution = self._call.execution
        self._call.emit(
            AgentLog(
                {
                    "node_execution_id": execution.id,
                    "node_id": execution.node_id,
                    **entry,
                }
            )
        )


async def agent(call: NodeCall) -> NodeResult:
    where = f"node {call.spec.id!r} ({call.spec.title})"

    def find(value: Any) -> Any:
        return call.pool.find(selector_of(value, field="agent_parameters"))

    try:
        # (Checked when the graph was parsed; now its tools' values from the run are read.)
        spec = agent_node.parse(call.spec.data, where, call.pool.render, find)
    except ToolError as error:
        raise NodeFailed(str(error), error_type=ERROR_TYPE) from error
    services: WorkflowServices = call.run.services
    instruction = as_text(spec.read(spec.instruction, call.pool.render, call.pool.find) or "")
    query = as_text(spec.read(spec.query, call.pool.render, call.pool.find) or "")
    context = passages_text(spec.read(spec.context, call.pool.render, call.pool.find))
    messages = _messages(call, services, instruction, context, query)
    try:
        model = await services.chat_model(spec.model)
        params = params_of(spec.model)
        if not params.model:
            params = replace(params, model=services.model_name(spec.model))
        strategy = spec.strategy if services.function_calling(spec.model) else "react"
        # Dify's `maximum_iterations` counts every round; the loop's, those that may call tools.
        loop = AgentLoop(AgentPlan(strategy, spec.max_iteration - 1, spec.tools))
        for tool in spec.tools:
            if tool.provider_type != agent_node.API:
                continue
            found = await services.api_tool(tool.provider_id, tool.tool_name)
            if found is None:
                raise NodeFailed(
                    f"The custom tool {tool.provider_id!r} has no operation "
                    f"{tool.tool_name!r} any more.",
                    error_type=ERROR_TYPE,
                )
            try:
                fixed = agent_node.fixed_values(found, tool.fixed)
            except ToolError as error:
                raise NodeFailed(f"{where}: {error}", error_type=ERROR_TYPE) from error
            loop.add({found.name: found}, {found.name: fixed})
        reporter = _NodeReporter(call)
        await loop.run(model, messages, params, reporter)
    except ModelError as error:
        raise NodeFailed(error.message, error_type=type(error).__name__) from error
    text = "".join(reporter.text)
    usage = loop.usage
    if usage.total_tokens == 0 and text:
        usage = Usage(
            prompt_tokens=max(1, sum(len(m.content) for m in messages) // 4),
            completion_tokens=max(1, len(text) // 4),
        )
    return NodeResult(
        outputs={"text": text, "usage": usage_of(usage), "files": [], "json": []},
        inputs={"instruction": instruction, "query": query},
        process_data={
            "strategy": "function_calling" if strategy == "function_call" else "ReAct",
            "model_provider": spec.model.get("provider"),
            "model_name": params.model,
            "tools": [tool.tool_name for tool in spec.tools],
            "rounds": [thought.fields() for thought in loop.thoughts],
        },
        # (Dify's console reads a node's agent log from its execution metadata.)
        metadata={"total_tokens": usage.total_tokens, "agent_log": list(reporter.logs.values())},
    )


def _messages(
    call: NodeCall,
    services: WorkflowServices,
    instruction: str,
    context: str,
    query: str,
) -> list[ChatMessage]:
    """The instruction (with the context's passages), a chatflow's earlier turns (the node's
    `memory`), then the query."""
    system = instruction
    if context:
        system = (
            f"{system}\n\n" if system else ""
        ) + f"Use the following context:\n<context>\n{context}\n</context>"
    messages = [ChatMessage("system", system)] if system.strip() else []
    memory = call.spec.data.get("memory")
    if isinstance(memory, Mapping):
        window = memory.get("window") or {}
        size = int(window.get("size") or 0) if window.get("enabled") else None
        messages.extend(services.history(size))
    if not query.strip():
        raise NodeFailed("The agent node's query is empty.", error_type=ERROR_TYPE)
    messages.append(ChatMessage("user", query))
    return messages
