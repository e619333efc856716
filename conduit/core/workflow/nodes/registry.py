"""The node functions by DSL node type: what `RunContext.nodes` is given."""

from __future__ import annotations

from collections.abc import Mapping

from conduit.core.workflow.engine import NodeFunction
from conduit.core.workflow.nodes import agent, basic, branch, containers, human, io, model

NODES: Mapping[str, NodeFunction] = {
    "start": basic.start,
    "end": basic.end,
    "answer": basic.answer,
    "template-transform": basic.template_transform,
    "variable-aggregator": basic.variable_aggregator,
    "variable-assigner": basic.variable_aggregator,
    "assigner": basic.assigner,
    "iteration-start": basic.passthrough,
    "loop-start": basic.passthrough,
    "loop-end": containers.loop_end,
    "iteration": containers.iteration,
    "loop": containers.loop,
    "if-else": branch.if_else,
    "list-operator": branch.list_operator,
    "llm": model.llm,
    "question-classifier": model.question_classifier,
    "parameter-extractor": model.parameter_extractor,
    "code": io.code,
    "http-request": io.http_request,
    "knowledge-retrieval": io.knowledge_retrieval,
    "document-extractor": io.document_extractor,
    "tool": io.tool,
    "human-input": human.human_input,
    "agent": agent.agent,
}
