"""Workflow runs: the planner (validate the inputs against the start node's form, pick the
published workflow, decide the run row and the spec), the store (the run's end and its node
executions; its lease and checkpoints), the services its nodes use, and the takeover of
workflow runs whose executor is gone.

A workflow run's record is its `workflow_runs` row, as a chat run's is its message: it holds
the task id, the lease (`renewed_at`), the Idempotency-Key. Node executions are written in
batches: those that ended since the last checkpoint go with each lease renewal (about every
second), the rest with the run's end — never one write per node on the engine's path.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from conduit.core.apps.chat import ToolResolver
from conduit.core.apps.knowledge import RetrievalPlan, Retrieve, reranking
from conduit.core.apps.workflow import KIND, WorkflowRunBody, node_data, run_single_node
from conduit.core.llm.errors import ProviderNotConfigured
from conduit.core.llm.provider import ChatMessage, ChatModel
from conduit.core.llm.registry import ModelRegistry
from conduit.core.rag.errors import IndexingError
from conduit.core.runs.kinds import Event
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.tools.base import Tool
from conduit.core.workflow import agent_node
from conduit.core.workflow.engine import NodeFailed
from conduit.core.workflow.engine import RunLimits as EngineLimits
from conduit.core.workflow.graph import WorkflowGraph
from conduit.core.workflow.http_request import HttpLimits
from conduit.core.workflow.human_input import Answer, PendingForm
from conduit.core.workflow.nodes.registry import NODES
from conduit.core.workflow.sandbox import CodeLimits
from conduit.core.workflow.services import NodeLimits
from conduit.db.models import (
    App,
    AppMode,
    EndUser,
    Workflow,
    WorkflowRun,
)
from conduit.errors import BadRequest, NotFound, NotWorkflowApp
from conduit.infra.cache import Cache
from conduit.infra.db import Database
from conduit.infra.settings import Settings
from conduit.infra.ssrf import AllowList
from conduit.infra.storage import Storage
from conduit.services import model_providers, prompts, workflows
from conduit.services.api_tools import ApiToolResolver
from conduit.services.end_users import SERVICE_API
from conduit.services.run_files import upload_text
from conduit.services.runs import task_store
from conduit.services.runs.chat import DEFAULT_TOP_K
from conduit.services.runs.context import Runs
from conduit.services.runs.idempotency import replay_log
from conduit.services.runs.start import KeyedRun, RunIds, RunKey, owner_of
from conduit.services.runs.stop import RunEvents, resumable_run_events
from conduit.services.runs.workflow_events import stored_end_events

_RUNS = cast(Table, WorkflowRun.__table__)
DRAFT = "draft"
# A run's form for a node and its answer (`services/human_input.FormAnswers`).
FormLookup = Callable[[str, str], Awaitable[tuple[PendingForm, Answer | None] | None]]


class WorkflowNotFound(NotFound):
    code = "not_found"
    default_message = "Workflow not found."


class WorkflowRunNotFound(NotFound):
    code = "not_found"
    default_message = "Workflow run not found."


@dataclass
class WorkflowRequest:
    """`POST /v1/workflows/run` (or `/v1/workflows/{workflow_id}/run`) as received."""

    inputs: Any
    response_mode: str  # "blocking" | "streaming" | "async"
    files: list[Any] = field(default_factory=list)
    workflow_id: str | None = None
    callback_url: str | None = None
    draft: bool = False  # the console's debugger runs the draft


# --- the workflow a run runs ----------------------------------------------------------------


def workflow_for(session: Session, app: App, workflow_id: str | None) -> Workflow:
    """The workflow a Service API run runs: the published one, or the published version
    `workflow_id` names (Dify's errors: a malformed id or a draft's is a 400, an unknown
    one a 404)."""
    if workflow_id is None:
        found = workflows.published_workflow(session, app.id)
        if found is None:
            raise BadRequest("Workflow not published. Publish the app's workflow first.")
        return found
    try:
        uuid.UUID(workflow_id)
    except ValueError:
        raise BadRequest(f"Invalid workflow_id format: '{workflow_id}'.") from None
    found = workflows.workflow_by_id(session, app.id, workflow_id)
    if found is None:
        raise WorkflowNotFound(f"Workflow not found with id: {workflow_id}")
    if found.version == DRAFT:
        raise BadRequest(
            f"Cannot use draft workflow version. Workflow ID: {workflow_id}. "
            "Please use a published workflow version or leave workflow_id empty."
        )
    return found


def draft_of(session: Session, app: App) -> Workflow:
    """The app's draft workflow (what the console's debugger runs)."""
    found = workflows.draft_workflow(session, app.id)
    if found is None:
        raise WorkflowNotFound("The app has no draft workflow.")
    return found


def start_form(graph: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The start node's variables (its form), as Dify's `user_input_form` entries."""
    for node in graph.get("nodes") or ():
        data = node.get("data") if isinstance(node, Mapping) else None
        if isinstance(data, Mapping) and data.get("type") == "start" and not node.get("parentId"):
            return [
                {str(v.get("type") or "text-input"): dict(v)}
                for v in data.get("variables") or ()
                if isinstance(v, Mapping)
            ]
    return []


def check_inputs(graph: Mapping[str, Any], inputs: Any) -> dict[str, Any]:
    """The inputs checked against the start node's form (`{name} is required in input form`
    …, as for chat apps' forms)."""
    return prompts.validate_inputs({"user_input_form": start_form(graph)}, inputs)


# --- models of a run ------------------------------------------------------------------------


def model_refs(
    session: Session, app: App, graph: Mapping[str, Any], settings: Settings, cache: Cache | None
) -> dict[str, dict[str, Any]]:
    """How each model provider named in the graph's nodes is reached (`ModelRegistry.resolve`
    refs, decided at the start as for chat apps: a workspace provider by id, never its key)."""
    refs: dict[str, dict[str, Any]] = {}
    for node in graph.get("nodes") or ():
        data = node.get("data") if isinstance(node, Mapping) else None
        model = data.get("model") if isinstance(data, Mapping) else None
        if isinstance(data, Mapping) and data.get("type") == "agent":
            model = agent_node.model_of(data)
        if not isinstance(model, Mapping):
            continue
        provider = str(model.get("provider") or "")
        if provider in refs:
            continue
        refs[provider] = provider_ref(session, app, provider, settings, cache)
    for ref in refs.values():
        model_providers.check_quota(session, ref)
    return refs


def provider_ref(
    session: Session, app: App, provider: str, settings: Settings, cache: Cache | None
) -> dict[str, Any]:
    """A node's `model.provider`: a workspace provider (`workspace:<id>`), the workspace's
    default, or a server provider (`local`, `openai_api_compatible`); a Dify name
    (`langgenius/openai_api_compatible/openai_api_compatible`, `openai`...) is served by the
    workspace's default or the server's configured endpoint."""
    name = provider.rsplit("/", 1)[-1]
    if name in model_providers.SERVER_PROVIDERS:
        return {"provider": name}
    workspace = model_providers.app_model_ref(
        session,
        app,
        provider if provider.startswith(model_providers.WORKSPACE_PREFIX) else "",
        cache,
    )
    if workspace is not None:
        return workspace
    return {"provider": "openai_api_compatible" if settings.model.base_url else "local"}


class NodeServices:
    """`WorkflowServices` for one run: its models (the refs decided at its start), its
    workspace's datasets (knowledge-retrieval), the server's node limits."""

    def __init__(
        self,
        spec: RunSpec,
        models: ModelRegistry,
        limits: NodeLimits,
        search: Retrieve | None = None,
        *,
        default_model: str = "",
        server_secret: str = "",
        files: FileTexts | None = None,
        api_tools: ToolResolver | None = None,
        forms: FormLookup | None = None,
    ) -> None:
        self._forms = forms
        self._files = files
        self._api_tools = api_tools
        self._spec = spec
        self._models = models
        self._refs: Mapping[str, Mapping[str, Any]] = spec.body.model_refs
        self.limits = limits
        self._search = search
        self._default_model = default_model
        self._server_secret = server_secret

    async def form_of(self, node_id: str) -> tuple[PendingForm, Answer | None] | None:
        if self._forms is None:
            return None  # (a single node's run: nothing was asked before)
        return await self._forms(self._spec.body.workflow_run_id, node_id)

    async def api_tool(self, provider_id: str, tool_name: str) -> Tool | None:
        if self._api_tools is None:
            return None
        found = await self._api_tools(self._spec.tenant_id, [(provider_id, tool_name)])
        return found.get(tool_name)

    def function_calling(self, model: Mapping[str, Any]) -> bool:
        ref = self._refs.get(str(model.get("provider") or "")) or {}
        return ref.get("provider") not in (None, "local")  # (the local model has none)

    def model_name(self, model: Mapping[str, Any]) -> str:
        ref = self._refs.get(str(model.get("provider") or "")) or {}
        return str(model.get("name") or ref.get("default_model") or self._default_model)

    def environment(self, variables: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {
            str(v["name"]): workflows.variable_value(dict(v), self._server_secret)
            for v in variables
        }

    async def chat_model(self, model: Mapping[str, Any]) -> ChatModel:
        ref = self._refs.get(str(model.get("provider") or ""))
        if ref is None:
            raise ProviderNotConfigured(
                f"Model provider {model.get('provider')!r} was not resolved for this run."
            )
        return await self._models.resolve(dict(ref))

    def history(self, window: int | None) -> Sequence[ChatMessage]:
        """A chatflow's earlier turns, the last `window` of them (a workflow app has none)."""
        turn = self._spec.body.chat
        if turn is None:
            return []
        turns = turn.history if window is None else turn.history[-window:] if window else []
        messages: list[ChatMessage] = []
        for query, answer in turns:
            messages.append(ChatMessage(role="user", content=query))
            messages.append(ChatMessage(role="assistant", content=answer))
        return messages

    async def retrieve(self, node: Mapping[str, Any], query: str) -> list[dict[str, Any]]:
        """The node's datasets searched as a chat app searches its own (each dataset with its
        retrieval model); the passages as Dify's node gives them: {content, title, metadata}."""
        if self._search is None:
            raise NodeFailed("Knowledge retrieval is not available in this process.")
        config = node.get("multiple_retrieval_config") or {}
        threshold = config.get("score_threshold") if config.get("score_threshold") else None
        dataset_ids = tuple(str(i) for i in node.get("dataset_ids") or ())
        if not dataset_ids:
            return []
        found = await self._search(
            RetrievalPlan(
                tenant_id=self._spec.tenant_id,
                dataset_ids=dataset_ids,
                query=query,
                top_k=int(config.get("top_k") or DEFAULT_TOP_K),
                score_threshold=None if threshold is None else float(threshold),
                show_resources=True,
                metadata_conditions=(
                    node.get("metadata_filtering_conditions")
                    if node.get("metadata_filtering_mode") == "manual"
                    else None
                ),
                reranking=reranking(config),
            )
        )
        return [
            {
                "content": item.get("content", ""),
                "title": item.get("document_name", ""),
                "metadata": {
                    "_source": "knowledge",
                    "position": item.get("position"),
                    "dataset_id": item.get("dataset_id"),
                    "dataset_name": item.get("dataset_name"),
                    "document_id": item.get("document_id"),
                    "document_name": item.get("document_name"),
                    "segment_id": item.get("segment_id"),
                    "score": item.get("score"),
                },
            }
            for item in found
        ]

    async def file_text(self, file: Mapping[str, Any]) -> str:
        if self._files is None:
            raise NodeFailed("Document extraction is not available in this process.")
        return await self._files(self._spec.tenant_id, self._spec.app_id, file)


class FileTexts:
    """The text of a file a run was given (a document-extractor's input): the app's own
    upload (`upload_file_id`), read from storage and parsed as a dataset's document is
    (txt, Markdown, HTML, PDF, Word, CSV; PDF and Word in a child process), on a thread; its
    text kept by content in this process (`run_files.upload_text`)."""

    def __init__(self, db: Database, storage: Storage) -> None:
        self._db = db
        self._storage = storage

    async def __call__(self, tenant_id: str, app_id: str, file: Mapping[str, Any]) -> str:
        return await asyncio.to_thread(self._text, tenant_id, app_id, file)

    def _text(self, tenant_id: str, app_id: str, file: Mapping[str, Any]) -> str:
        if file.get("transfer_method") == "remote_url" or (
            file.get("url") and not file.get("upload_file_id")
        ):
            raise NodeFailed("Files given by URL are not fetched: upload the file first.")
        file_id = str(file.get("upload_file_id") or file.get("related_id") or file.get("id") or "")
        try:
            return upload_text(self._db, self._storage, tenant_id, app_id, file_id)[1]
        except (LookupError, FileNotFoundError) as error:
            raise NodeFailed(str(error)) from None
        except IndexingError as error:
            raise NodeFailed(str(error), error_type="DocumentExtractorError") from error


def node_limits(settings: Settings) -> NodeLimits:
    flow = settings.workflow
    return NodeLimits(
        code=CodeLimits(
            cpu_seconds=flow.code_cpu_seconds,
            wall_seconds=flow.code_wall_seconds,
            memory_bytes=flow.code_memory_mb * 1024 * 1024,
            output_bytes=flow.code_output_bytes,
        ),
        http=HttpLimits(max_response_bytes=flow.http_max_response_bytes),
        http_allow=AllowList.of(settings.webhook),
    )


# --- the planner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowPlan:
    spec: RunSpec
    ids: RunIds
    end_user: EndUser
    workflow: Workflow
    leased: bool
    callback_url: str | None = None
    draft: bool = False

    def write(self, session: Session, app: App, key: RunKey | None = None) -> None:
        body: WorkflowRunBody = self.spec.body
        session.connection().execute(
            insert(_RUNS),
            {
                "id": body.workflow_run_id,
                "tenant_id": app.tenant_id,
                "app_id": app.id,
                "workflow_id": body.workflow_id,
                "type": "workflow",
                "triggered_from": "debugging" if self.draft else "app-run",
                "version": self.workflow.version,
                "task_id": self.spec.task_id,
                "inputs": body.inputs,
                "status": RunStatus.RUNNING.value,
                "outputs": {},
                "elapsed_time": 0.0,
                "total_tokens": 0,
                "total_steps": 0,
                "exceptions_count": 0,
                "created_from": "console" if self.draft else "service-api",
                "end_user_id": self.end_user.id,
                "created_at": self.ids.created_at,
                "renewed_at": self.ids.created_at if self.leased else None,
                "idempotency_key": key.key if key else None,
                "request_hash": key.request_hash if key else None,
            },
        )
        if self.spec.asynchronous:
            task_store.write_task(
                session,
                self.spec,
                end_user_id=self.end_user.id,
                record_id=body.workflow_run_id,
                callback_url=self.callback_url,
                created_at=self.ids.created_at,
            )


def run_spec(
    *,
    task_id: str,
    app: App,
    end_user: EndUser,
    ids: RunIds,
    workflow: Workflow,
    body: WorkflowRunBody,
    asynchronous: bool = False,
) -> RunSpec:
    """A workflow run's spec (a workflow app's or a chatflow's turn): `body` completed with
    what every run carries (its environment as stored, who started it)."""
    return RunSpec(
        task_id=task_id,
        kind=KIND,
        app_id=app.id,
        tenant_id=app.tenant_id,
        owner=owner_of(end_user),
        created_at=int(ids.created_at.timestamp()),
        body=replace(
            body,
            environment=[dict(v) for v in workflow.environment_variables or () if v.get("name")],
            created_by={"id": end_user.id, "user": end_user.session_id},
        ),
        asynchronous=asynchronous,
    )


def check_app_mode(app: App, request: WorkflowRequest) -> None:
    if app.mode != AppMode.WORKFLOW:
        raise NotWorkflowApp()


class WorkflowPlanner:
    """`services/runs/start.py`'s planner of workflow runs."""

    def meta(self, app: App, request: WorkflowRequest, ids: RunIds) -> dict[str, str]:
        return {
            "mode": "workflow",
            "workflow_run_id": ids.message_id,
            "created_at": str(int(ids.created_at.timestamp())),
        }

    def uses_default_provider(self, app: App) -> bool:
        return False

    def plan_ahead(self, *args: Any, **kwargs: Any) -> RunSpec | None:
        return None  # the graph comes from the database

    def plan(
        self,
        session: Session,
        *,
        app: App,
        end_user: EndUser,
        request: WorkflowRequest,
        settings: Settings,
        task_id: str,
        ids: RunIds,
        cache: Cache | None,
    ) -> WorkflowPlan:
        check_app_mode(app, request)
        workflow = (
            draft_of(session, app)
            if request.draft
            else workflow_for(session, app, request.workflow_id)
        )
        graph = dict(workflow.graph or {})
        WorkflowGraph.parse(graph)  # a graph that cannot run is refused before the run exists
        inputs = check_inputs(graph, request.inputs)
        refs = model_refs(session, app, graph, settings, cache)
        # The run's id is the message id slot of RunIds (decided before the transaction).
        run_id = ids.message_id
        system = {
            "user_id": end_user.session_id,
            "app_id": app.id,
            "workflow_id": workflow.id,
            "workflow_run_id": run_id,
            "files": request.files,
        }
        spec = run_spec(
            task_id=task_id,
            app=app,
            end_user=end_user,
            ids=ids,
            workflow=workflow,
            body=WorkflowRunBody(
                workflow_run_id=run_id,
                workflow_id=workflow.id,
                graph=graph,
                inputs=inputs,
                system=system,
                model_refs=refs,
            ),
            asynchronous=request.response_mode == "async",
        )
        return WorkflowPlan(
            spec=spec,
            ids=ids,
            end_user=end_user,
            workflow=workflow,
            leased=settings.runs.executor == "inline" and not spec.asynchronous,
            callback_url=request.callback_url,
            draft=request.draft,
        )

    def asynchronous(self, request: WorkflowRequest) -> bool:
        return request.response_mode == "async"

    def fingerprint(self, request: WorkflowRequest) -> dict[str, Any]:
        fields = {
            "kind": KIND,
            "draft": request.draft,
            "inputs": request.inputs,
            "files": request.files,
            "workflow_id": request.workflow_id,
        }
        if request.callback_url is not None:
            fields["callback_url"] = request.callback_url
        return fields

    check = staticmethod(check_app_mode)

    def names(self, spec: RunSpec) -> dict[str, str]:
        return {"workflow_run_id": spec.body.workflow_run_id}

    def keyed_run(
        self, session: Session, *, app: App, user: str, user_type: str, key: str
    ) -> KeyedRun | None:
        found = session.execute(
            select(WorkflowRun.task_id, WorkflowRun.request_hash, WorkflowRun.id)
            .join(EndUser, EndUser.id == WorkflowRun.end_user_id)
            .where(
                WorkflowRun.app_id == app.id,
                WorkflowRun.idempotency_key == key,
                EndUser.app_id == app.id,
                EndUser.type == user_type,
                EndUser.session_id == user,
            )
        ).first()
        if found is None or found.task_id is None:
            return None
        return KeyedRun(
            task_id=found.task_id,
            request_hash=found.request_hash or "",
            names={"workflow_run_id": found.id},
            async_task_id=task_store.workflow_task_id(session.connection(), found.id),
        )

    def stored_events(self, session: Session, *, app: App, run: KeyedRun) -> list[Event] | None:
        row = session.get(WorkflowRun, run.names["workflow_run_id"])
        if row is None or row.app_id != app.id or row.status == RunStatus.RUNNING.value:
            return None
        return stored_end_events(session, row)


# --- reading runs ---------------------------------------------------------------------------


def run_view(session: Session, app: App, run_id: str) -> dict[str, Any]:
    """`GET /v1/workflows/run/{id}` (Dify: `inputs` as a JSON string)."""
    if app.mode not in (AppMode.WORKFLOW, AppMode.ADVANCED_CHAT):
        raise NotWorkflowApp()
    row = session.get(WorkflowRun, run_id)
    if row is None or row.app_id != app.id:
        raise WorkflowRunNotFound("Workflow run not found.")
    return {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "status": row.status,
        "inputs": json.dumps(row.inputs or {}, ensure_ascii=False),
        "outputs": row.outputs or {},
        "error": row.error,
        "total_steps": row.total_steps,
        "total_tokens": row.total_tokens,
        "created_at": int(row.created_at.timestamp()),
        "finished_at": int(row.finished_at.timestamp()) if row.finished_at else None,
        "elapsed_time": row.elapsed_time,
    }


# --- following a run ------------------------------------------------------------------------


async def workflow_run_events(
    runs: Runs, *, app: App, user: str, run_id: str, user_type: str = SERVICE_API
) -> RunEvents:
    """The events of `user`'s run `run_id` of `app` (404 otherwise): its log while it is kept,
    else — the run having ended — its `workflow_finished` alone, as Dify gives it."""
    task_id, finished = await asyncio.to_thread(_run_of, runs.db, app, user, user_type, run_id)
    if await runs.backends.eventlog.meta(task_id) is not None:
        return await resumable_run_events(
            runs, app=app, user=user, task_id=task_id, user_type=user_type
        )
    if finished is None:
        raise WorkflowRunNotFound("The run's events are gone and it has not ended yet.")
    return RunEvents(await replay_log(task_id, finished), task_id)


def _run_of(
    db: Database, app: App, user: str, user_type: str, run_id: str
) -> tuple[str, list[Event] | None]:
    with db.sessions() as session:
        row = session.scalars(
            select(WorkflowRun)
            .join(EndUser, EndUser.id == WorkflowRun.end_user_id)
            .where(
                WorkflowRun.id == run_id,
                WorkflowRun.app_id == app.id,
                EndUser.app_id == app.id,
                EndUser.type == user_type,
                EndUser.session_id == user,
            )
        ).first()
        if row is None or row.task_id is None:
            raise WorkflowRunNotFound("Workflow run not found.")
        if row.status == RunStatus.RUNNING.value:
            return row.task_id, None
        return row.task_id, stored_end_events(session, row)


# --- the console's single-step run ----------------------------------------------------------


async def single_node_run(
    runs: Runs, *, app: App, user: str, node_id: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Run one node of the app's draft alone with `values` (the console's single-step run);
    its execution as Dify's console shows it. Not a run of the pipeline: nothing is stored,
    and it is bounded by the run time limit."""
    plan = await asyncio.to_thread(_single_node_plan, runs, app, user)
    workflow, refs = plan
    spec = RunSpec(
        task_id=str(uuid.uuid4()),
        kind=KIND,
        app_id=app.id,
        tenant_id=app.tenant_id,
        owner=user,
        created_at=int(time.time()),
        body=WorkflowRunBody(
            workflow_run_id=str(uuid.uuid4()),
            workflow_id=workflow.id,
            graph=dict(workflow.graph or {}),
            inputs={},
            system={},
            model_refs=refs,
        ),
    )
    services = NodeServices(
        spec,
        runs.models,
        node_limits(runs.settings),
        default_model=runs.settings.model.name,
        server_secret=runs.settings.secret_key(),
        # (its tool node may call the workspace's custom API tools, as in a whole run)
        api_tools=ApiToolResolver(
            runs.db, runs.settings.secret_key(), AllowList.of(runs.settings.webhook)
        ),
    )
    async with asyncio.timeout(runs.settings.runs.max_seconds):
        execution = await run_single_node(
            spec.body.graph,
            node_id,
            values,
            nodes=NODES,
            services=services,
            environment=[dict(v) for v in workflow.environment_variables or ()],
            limits=EngineLimits(max_steps=runs.settings.workflow.max_steps),
        )
    return node_data(execution, finished=True)


def _single_node_plan(runs: Runs, app: App, user: str) -> tuple[Workflow, dict[str, Any]]:
    with runs.db.sessions() as session:
        workflow = draft_of(session, app)
        refs = model_refs(session, app, dict(workflow.graph or {}), runs.settings, runs.cache)
        session.expunge(workflow)
        return workflow, refs
