"""Nodes that ask a model: llm, question-classifier, parameter-extractor.

They reach models through the run's services (`WorkflowServices.chat_model`: the DSL's
`model {provider, name, mode, completion_params}` resolved to a configured provider). An LLM
node streams: every piece goes to the answer stream as it arrives (`NodeCall.chunk`), so a
chatflow's answer or a workflow's `text_chunk` shows it live. Cancelling the node (a stop, a
time limit) closes the model's stream, which closes its HTTP response or stops local
generation (`core/llm/provider.py`).

The classifier and the extractor ask for JSON in the prompt (Dify's "prompt" reasoning mode)
for every model: the provider interface has no tool calls, so "function_call" mode is served
the same way.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from jinja2.exceptions import TemplateError

from conduit.core.llm.errors import ModelError
from conduit.core.llm.provider import (
    ChatMessage,
    Delta,
    Finished,
    GenerationParams,
    Usage,
)
from conduit.core.workflow.engine import NodeCall, NodeFailed, NodeResult
from conduit.core.workflow.nodes.basic import render_jinja
from conduit.core.workflow.services import WorkflowServices
from conduit.core.workflow.variables import as_text, selector_of

DEFAULT_QUERY_TEMPLATE = "{{#sys.query#}}"


def params_of(model: Mapping[str, Any]) -> GenerationParams:
    completion = model.get("completion_params") or {}
    stop = completion.get("stop") or ()
    max_tokens = completion.get("max_tokens")
    return GenerationParams(
        model=str(model.get("name") or ""),
        temperature=_number(completion.get("temperature")),
        top_p=_number(completion.get("top_p")),
        max_tokens=int(max_tokens) if isinstance(max_tokens, int | float) else None,
        stop=tuple(str(s) for s in stop) if isinstance(stop, list) else (),
    )


async def generate(
    call: NodeCall,
    model_config: Mapping[str, Any],
    messages: list[ChatMessage],
    *,
    stream_as: str | None = None,
) -> tuple[str, Usage, str | None]:
    """Ask the model; each piece goes to the answer stream as `stream_as` when given."""
    services: WorkflowServices = call.run.services
    pieces: list[str] = []
    usage, reason = Usage(), None
    try:
        model = await services.chat_model(model_config)
        params = params_of(model_config)
        if not params.model:
            params = replace(params, model=services.model_name(model_config))
        async for item in model.stream_chat(messages, params):
            if isinstance(item, Delta):
                for piece in item.parts:
                    if piece:
                        pieces.append(piece)
                        if stream_as is not None:
                            call.chunk(stream_as, piece)
            elif isinstance(item, Finished):
                usage, reason = item.usage, item.finish_reason
    except ModelError as error:
        raise NodeFailed(error.message, error_type=type(error).__name__) from error
    text = "".join(pieces)
    if usage.total_tokens == 0 and text:
        usage = Usage(
            prompt_tokens=max(1, sum(len(m.content) for m in messages) // 4),
            completion_tokens=max(1, len(text) // 4),
        )
    return text, usage, reason


def usage_of(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


async def llm(call: NodeCall) -> NodeResult:
    data = call.spec.data
    model_config = data.get("model") or {}
    context = _context(call)
    messages = _prompt(call, context)
    text, usage, reason = await generate(call, model_config, messages, stream_as="text")
    return NodeResult(
        outputs={"text": text, "usage": usage_of(usage), "finish_reason": reason or "stop"},
        inputs={},
        process_data={
            "model_mode": model_config.get("mode", "chat"),
            "prompts": [{"role": m.role, "text": m.content} for m in messages],
            "model_provider": model_config.get("provider"),
            "model_name": model_config.get("name"),
        },
        metadata={"total_tokens": usage.total_tokens},
    )


def _context(call: NodeCall) -> str:
    settings = call.spec.data.get("context") or {}
    if not settings.get("enabled") or not settings.get("variable_selector"):
        return ""
    return passages_text(
        call.pool.find(selector_of(settings["variable_selector"], field="context"))
    )


def passages_text(value: Any) -> str:
    """A context variable as text: a knowledge-retrieval node's passages (their `content`),
    one per line; any other value as text."""
    if value is None:
        return ""
    if isinstance(value, list):
        parts = [
            str(item.get("content", "")) if isinstance(item, Mapping) else as_text(item)
            for item in value
        ]
        return "\n".join(part for part in parts if part)
    return as_text(value)


def _fill(call: NodeCall, item: Mapping[str, Any], context: str) -> str:
    if item.get("edition_type") == "jinja2":
        values = {
            str(v.get("variable")): call.pool.find(
                selector_of(v.get("value_selector"), field="prompt_config.jinja2_variables")
            )
            for v in (call.spec.data.get("prompt_config") or {}).get("jinja2_variables") or ()
        }
        try:
            return render_jinja(str(item.get("jinja2_text") or ""), values)
        except TemplateError as error:
            raise NodeFailed(f"The prompt's template could not be rendered: {error}") from error
    text = str(item.get("text") or "")
    text = text.replace("{{#context#}}", context)
    return call.pool.render(text)


def _prompt(call: NodeCall, context: str) -> list[ChatMessage]:
    data = call.spec.data
    template = data.get("prompt_template")
    messages: list[ChatMessage] = []
    if isinstance(template, Mapping):  # completion mode: one prompt
        messages.append(ChatMessage(role="user", content=_fill(call, template, context)))
    else:
        for item in template or ():
            role = item.get("role", "user")
            if role not in ("system", "user", "assistant"):
                raise NodeFailed(f"prompt_template: role {role!r} is not system, user, assistant")
            messages.append(ChatMessage(role=role, content=_fill(call, item, context)))
    memory = data.get("memory") or None
    if memory:
        window = memory.get("window") or {}
        size = int(window.get("size") or 0) if window.get("enabled") else None
        services: WorkflowServices = call.run.services
        history = list(services.history(size))
        query_template = str(memory.get("query_prompt_template") or DEFAULT_QUERY_TEMPLATE)
        query = call.pool.render(query_template.replace("{{#context#}}", context))
        system = [m for m in messages if m.role == "system"]
        rest = [m for m in messages if m.role != "system"]
        messages = [*system, *history, *rest]
        if query.strip():
            messages.append(ChatMessage(role="user", content=query))
    if not messages:
        raise NodeFailed("The LLM node's prompt is empty.")
    return messages


async def question_classifier(call: NodeCall) -> NodeResult:
    data = call.spec.data
    classes = [c for c in data.get("classes") or () if isinstance(c, Mapping)]
    if not classes:
        raise NodeFailed("The question classifier has no classes.")
    query = as_text(
        call.pool.find(
            selector_of(data.get("query_variable_selector"), field="query_variable_selector")
        )
    )
    catalogue = orjson.dumps(
        [{"category_id": str(c.get("id")), "category_name": str(c.get("name"))} for c in classes]
    ).decode()
    instruction = call.pool.render(str(data.get("instruction") or ""))
    system = (
        "You classify the user's text into exactly one of these categories: "
        f"{catalogue}. {instruction}\n"
        'Reply with JSON only: {"category_id": "<id>", "category_name": "<name>"}.'
    )
    text, usage, _ = await generate(
        call,
        data.get("model") or {},
        [ChatMessage(role="system", content=system), ChatMessage(role="user", content=query)],
    )
    chosen = _choose(text, classes)
    return NodeResult(
        outputs={
            "class_name": str(chosen.get("name")),
            "class_id": str(chosen.get("id")),
            "usage": usage_of(usage),
        },
        inputs={"query": query},
        process_data={"model_output": text},
        handles=(str(chosen.get("id")),),
        metadata={"total_tokens": usage.total_tokens},
    )


def _choose(reply: str, classes: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The class the reply names (its JSON's id or name, else a name or id in its text); the
    first class when it names none (as Dify does)."""
    found = _json_object(reply)
    if found is not None:
        for key, field in (("category_id", "id"), ("category_name", "name")):
            value = str(found.get(key, "")).strip()
            for item in classes:
                if value and value == str(item.get(field)):
                    return item
    lowered = reply.lower()
    for item in classes:
        if str(item.get("name", "")).lower() in lowered or str(item.get("id")) in reply:
            return item
    return classes[0]


PARAMETER_TYPES: dict[str, type[Any] | tuple[type[Any], ...]] = {
    "string": str,
    "number": (int, float),
    "bool": bool,
    "boolean": bool,
    "select": str,
    "array[string]": list,
    "array[number]": list,
    "array[object]": list,
    "array[boolean]": list,
}


async def parameter_extractor(call: NodeCall) -> NodeResult:
    data = call.spec.data
    parameters = [p for p in data.get("parameters") or () if isinstance(p, Mapping)]
    query = as_text(call.pool.find(selector_of(data.get("query"), field="query")))
    schema = {
        str(p.get("name")): {
            "type": p.get("type", "string"),
            "description": p.get("description", ""),
            "required": bool(p.get("required")),
            **({"options": p.get("options")} if p.get("options") else {}),
        }
        for p in parameters
    }
    instruction = call.pool.render(str(data.get("instruction") or ""))
    system = (
        "Extract these parameters from the user's text: "
        f"{orjson.dumps(schema).decode()}. {instruction}\n"
        "Reply with one JSON object holding the parameters you found, and nothing else."
    )
    text, usage, _ = await generate(
        call,
        data.get("model") or {},
        [ChatMessage(role="system", content=system), ChatMessage(role="user", content=query)],
    )
    found = _json_object(text) or {}
    outputs: dict[str, Any] = {}
    problems: list[str] = []
    for parameter in parameters:
        name, kind = str(parameter.get("name")), str(parameter.get("type", "string"))
        value = found.get(name)
        if value is None:
            if parameter.get("required"):
                problems.append(f"{name} is required but was not found")
            outputs[name] = [] if kind.startswith("array") else None
            continue
        expected = PARAMETER_TYPES.get(kind, object)  # unknown types: anything
        if kind == "number" and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value) if "." in value else int(value)
        if not isinstance(value, expected) or (kind == "number" and isinstance(value, bool)):
            problems.append(f"{name} should be {kind}, not {type(value).__name__}")
            value = None
        elif kind == "select" and parameter.get("options") and value not in parameter["options"]:
            problems.append(f"{name} must be one of {parameter['options']}")
            value = None
        outputs[name] = value
    outputs["__is_success"] = 0 if problems else 1
    outputs["__reason"] = "; ".join(problems) or None
    outputs["__usage"] = usage_of(usage)
    return NodeResult(
        outputs=outputs,
        inputs={"query": query},
        process_data={"model_output": text},
        metadata={"total_tokens": usage.total_tokens},
    )


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _json_object(text: str) -> dict[str, Any] | None:
    match = _OBJECT.search(text)
    if match is None:
        return None
    try:
        value = orjson.loads(match.group(0))
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
