"""Nodes that reach outside the run: code (a child process), http-request (the network, behind
the SSRF guard), knowledge-retrieval and document-extractor (the workspace's data, through
the run's services), tool (a built-in tool, in a thread)."""

from __future__ import annotations

from typing import Any

from conduit.core.tools.base import ToolError
from conduit.core.workflow import tool_node
from conduit.core.workflow.engine import NodeCall, NodeFailed, NodeResult
from conduit.core.workflow.http_request import HttpRequestFailed, perform, status_failure
from conduit.core.workflow.sandbox import CodeFailed, check_outputs, run_python
from conduit.core.workflow.services import WorkflowServices
from conduit.core.workflow.variables import as_text, selector_of


async def code(call: NodeCall) -> NodeResult:
    data = call.spec.data
    language = data.get("code_language") or "python3"
    if language != "python3":
        raise NodeFailed(
            f"code_language {language!r} is not supported: this server runs python3 code only.",
            error_type="CodeNodeError",
        )
    inputs = _inputs(call)
    services: WorkflowServices = call.run.services
    try:
        result = await run_python(str(data.get("code") or ""), inputs, services.limits.code)
        outputs = check_outputs(result, data.get("outputs") or {})
    except CodeFailed as failure:
        raise NodeFailed(failure.message, error_type="CodeExecutionError") from failure
    return NodeResult(outputs=outputs, inputs=inputs)


async def http_request(call: NodeCall) -> NodeResult:
    services: WorkflowServices = call.run.services
    limits = services.limits
    try:
        outputs = await perform(
            call.spec.data,
            call.pool.render,
            call.pool.get,
            allow=limits.http_allow,
            limits=limits.http,
        )
    except HttpRequestFailed as failure:
        raise NodeFailed(failure.message, error_type=failure.error_type) from failure
    if call.spec.retry is not None or call.spec.error_strategy is not None:
        # With retries or an error strategy a response that is not 2xx is a failure (as in
        # Dify): retried, or handed to the strategy.
        refused = status_failure(outputs)
        if refused is not None:
            raise NodeFailed(refused.message, error_type=refused.error_type)
    return NodeResult(
        outputs=outputs,
        process_data={
            "request": f"{call.spec.data.get('method', 'get')} {call.spec.data.get('url')}"
        },
    )


async def knowledge_retrieval(call: NodeCall) -> NodeResult:
    data = call.spec.data
    query = as_text(
        call.pool.find(
            selector_of(data.get("query_variable_selector"), field="query_variable_selector")
        )
    )
    if not query.strip():
        raise NodeFailed("The knowledge retrieval's query is empty.")
    services: WorkflowServices = call.run.services
    result = await services.retrieve(data, query)
    return NodeResult(outputs={"result": result}, inputs={"query": query})


async def document_extractor(call: NodeCall) -> NodeResult:
    data = call.spec.data
    value = call.pool.find(selector_of(data.get("variable_selector"), field="variable_selector"))
    services: WorkflowServices = call.run.services
    if value is None:
        raise NodeFailed("The document extractor's input is not set.")
    if isinstance(value, list):
        texts = [await services.file_text(item) for item in value]
        return NodeResult(outputs={"text": texts})
    if not isinstance(value, dict):
        raise NodeFailed("The document extractor's input must be a file or a list of files.")
    return NodeResult(outputs={"text": await services.file_text(value)})


def _inputs(call: NodeCall) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for position, item in enumerate(call.spec.data.get("variables") or ()):
        try:
            selector = selector_of(item.get("value_selector"), field=f"variables[{position}]")
        except ValueError as error:
            raise NodeFailed(str(error)) from error
        values[str(item.get("variable"))] = call.pool.find(selector)
    return values


async def tool(call: NodeCall) -> NodeResult:
    """A tool's call (`core/workflow/tool_node.py`): a built-in one, or a workspace's custom
    API tool read from the run's services."""
    data = call.spec.data
    found = tool_node.check(data, f"node {call.spec.id!r}")
    if found is None:
        services: WorkflowServices = call.run.services
        found = await services.api_tool(str(data.get("provider_id")), str(data.get("tool_name")))
        if found is None:
            raise NodeFailed(
                f"The custom tool {data.get('provider_name') or data.get('provider_id')!r} "
                f"has no operation {data.get('tool_name')!r} any more.",
                error_type="ToolNodeError",
            )

    def find(value: Any) -> Any:
        return call.pool.find(selector_of(value, field="tool_parameters"))

    given = tool_node.arguments(data, call.pool.render, find)
    try:
        configured = (
            tool_node.settings(found, data, call.pool.render, find) if found.built_in else {}
        )
        text = await tool_node.call(found, given, configured)
    except ToolError as error:
        raise NodeFailed(str(error), error_type="ToolNodeError") from error
    return NodeResult(
        outputs={"text": text, "files": [], "json": []},
        inputs=given,
        process_data={"tool": f"{found.provider}/{found.name}"},
    )
