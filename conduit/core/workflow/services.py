"""What nodes need from outside the engine, given to a run as `RunContext.services`.

The workflow app runner implements it in the services layer (models of the workspace, its
datasets, the conversation's history, the server's settings); tests and the benchmark pass
their own. Nothing in `core/workflow` reaches a database or a setting directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conduit.core.llm.provider import ChatMessage, ChatModel
from conduit.core.tools.base import Tool
from conduit.core.workflow.http_request import HttpLimits
from conduit.core.workflow.human_input import Answer, PendingForm
from conduit.core.workflow.sandbox import CodeLimits
from conduit.infra.ssrf import AllowList


@dataclass(frozen=True)
class NodeLimits:
    """The server's limits on what nodes may do (settings)."""

    code: CodeLimits = field(default_factory=CodeLimits)
    http: HttpLimits = field(default_factory=HttpLimits)
    http_allow: AllowList = field(default_factory=AllowList)


class WorkflowServices(Protocol):
    limits: NodeLimits

    async def chat_model(self, model: Mapping[str, Any]) -> ChatModel:
        """The configured model the DSL's `model {provider, name, …}` names (a ModelError,
        naming what is missing, when there is none)."""

    def function_calling(self, model: Mapping[str, Any]) -> bool:
        """Whether the model takes tools as functions (an agent node's `function_calling`
        strategy; without, it runs ReAct)."""

    def model_name(self, model: Mapping[str, Any]) -> str:
        """The model to ask for: the DSL's `model.name`, else its provider's default."""

    def environment(self, variables: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The workflow's environment variables by name (`env.<name>`), secrets decrypted
        here, in the process that runs the workflow (they travel encrypted)."""

    def history(self, window: int | None) -> Sequence[ChatMessage]:
        """The conversation's earlier turns for a chatflow's memory, oldest first (`window`:
        at most that many turns)."""

    async def retrieve(self, node: Mapping[str, Any], query: str) -> list[dict[str, Any]]:
        """A knowledge-retrieval node's search: its datasets, its settings, the query; the
        passages as Dify's node outputs them ({content, title, metadata})."""

    async def file_text(self, file: Mapping[str, Any]) -> str:
        """The text of an uploaded file variable (document-extractor)."""

    async def api_tool(self, provider_id: str, tool_name: str) -> Tool | None:
        """The workspace's custom API tool (a tool node's), ready to call; None when its
        provider or operation is gone."""

    async def form_of(self, node_id: str) -> tuple[PendingForm, Answer | None] | None:
        """The form a human-input node of this run showed before (its run paused there), and
        its answer (None while unanswered); None when it has shown none yet."""
