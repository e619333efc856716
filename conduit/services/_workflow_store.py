"""Workflow rows as `apps.py` needs them too: the draft a new workflow or chatflow app starts
with, the draft and latest published version of an app, and the datasets a graph's
knowledge-retrieval nodes name. Apart from `workflows.py`, which needs `apps.py` itself."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.db.models import App, AppMode, Workflow
from conduit.db.models.workflow import DRAFT

WORKFLOW_MODES = frozenset({AppMode.WORKFLOW, AppMode.ADVANCED_CHAT})
KNOWLEDGE_RETRIEVAL = "knowledge-retrieval"


def workflow_type(mode: AppMode) -> str:
    """The `Workflow.type` of an app mode: "chat" for a chatflow, else "workflow"."""
    return "chat" if mode == AppMode.ADVANCED_CHAT else "workflow"


def _node(node_id: str, data: dict[str, Any], x: int) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "custom",
        "data": {"desc": "", "selected": False, **data},
        "position": {"x": x, "y": 282},
        "positionAbsolute": {"x": x, "y": 282},
        "sourcePosition": "right",
        "targetPosition": "left",
        "width": 244,
        "height": 54,
    }


def _edge(source: str, source_type: str, target: str, target_type: str) -> dict[str, Any]:
    return {
        "id": f"{source}-source-{target}-target",
        "type": "custom",
        "source": source,
        "sourceHandle": "source",
        "target": target,
        "targetHandle": "target",
        "zIndex": 0,
        "data": {
            "sourceType": source_type,
            "targetType": target_type,
            "isInIteration": False,
            "isInLoop": False,
        },
    }


def default_graph(mode: AppMode) -> dict[str, Any]:
    """What Dify's editor starts a new app with: a start node; a chatflow's start → llm →
    answer, the llm on the default model provider."""
    start = _node("start", {"type": "start", "title": "Start", "variables": []}, 80)
    if mode != AppMode.ADVANCED_CHAT:
        return {"nodes": [start], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}}
    llm = _node(
        "llm",
        {
            "type": "llm",
            "title": "LLM",
            "model": {
                "provider": "default",
                "name": "",
                "mode": "chat",
                "completion_params": {"temperature": 0.7},
            },
            "prompt_template": [{"role": "system", "text": ""}],
            "memory": {
                "window": {"enabled": False, "size": 10},
                "query_prompt_template": "{{#sys.query#}}",
            },
            "context": {"enabled": False, "variable_selector": []},
            "vision": {"enabled": False},
            "variables": [],
        },
        380,
    )
    answer = _node(
        "answer",
        {"type": "answer", "title": "Answer", "answer": "{{#llm.text#}}", "variables": []},
        680,
    )
    return {
        "nodes": [start, llm, answer],
        "edges": [_edge("start", "start", "llm", "llm"), _edge("llm", "llm", "answer", "answer")],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
    }


def default_features() -> dict[str, Any]:
    return {
        "opening_statement": "",
        "suggested_questions": [],
        "suggested_questions_after_answer": {"enabled": False},
        "text_to_speech": {"enabled": False, "voice": "", "language": ""},
        "speech_to_text": {"enabled": False},
        "retriever_resource": {"enabled": True},
        "sensitive_word_avoidance": {"enabled": False},
        "file_upload": {"enabled": False},
    }


def new_draft(app: App, account_id: str | None, source: Workflow | None = None) -> Workflow:
    """The draft of a new workflow or chatflow app: a copy of `source` (an app being copied),
    else the default graph."""
    return Workflow(
        tenant_id=app.tenant_id,
        app_id=app.id,
        type=workflow_type(app.mode),
        version=DRAFT,
        graph=copy.deepcopy(source.graph) if source else default_graph(app.mode),
        features=copy.deepcopy(source.features) if source else default_features(),
        environment_variables=copy.deepcopy(source.environment_variables) if source else [],
        conversation_variables=copy.deepcopy(source.conversation_variables) if source else [],
        created_by=account_id,
        updated_by=account_id,
    )


def find_draft(session: Session, app_id: str, *, for_update: bool = False) -> Workflow | None:
    query = select(Workflow).where(Workflow.app_id == app_id, Workflow.version == DRAFT)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query.limit(1)).first()


def find_published(session: Session, app_id: str) -> Workflow | None:
    """The latest published version (the one the Service API runs)."""
    query = (
        select(Workflow)
        .where(Workflow.app_id == app_id, Workflow.version != DRAFT)
        .order_by(Workflow.created_at.desc(), Workflow.version.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def graph_dataset_ids(graph: dict[str, Any] | None) -> list[str]:
    """The datasets the knowledge-retrieval nodes of a graph name (`data.dataset_ids`), in
    order, once each."""
    ids: list[str] = []
    nodes = (graph or {}).get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        data = node.get("data") if isinstance(node, dict) else None
        if not isinstance(data, dict) or data.get("type") != KNOWLEDGE_RETRIEVAL:
            continue
        found = data.get("dataset_ids")
        for dataset_id in found if isinstance(found, list) else []:
            if isinstance(dataset_id, str) and dataset_id and dataset_id not in ids:
                ids.append(dataset_id)
    return ids
