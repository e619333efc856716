"""The runner of chat and completion runs: stream the model's answer into the run's event
log in Dify's message envelope, then report it.

Events (Dify's full converter): `message` × N (one per piece of the answer), then
`message_end` with the usage; or `error` when the run failed. Chat events carry the
conversation's id, completion events do not. The lifecycle (`core/runs/lifecycle.py`) decides
when the run ends and stores the `ChatResult` (through a `ChatStore`) before the terminal event.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from conduit.core.apps.agent import AgentLoop, AgentPlan, Phase, Thought
from conduit.core.apps.annotations import (
    AnnotationHit,
    AnnotationPlan,
    MatchAnnotation,
    annotated,
)
from conduit.core.apps.knowledge import (
    KnowledgeRetrievalFailed,
    RetrievalPlan,
    Retrieve,
    with_context,
)
from conduit.core.llm.errors import ModelError
from conduit.core.llm.provider import (
    ChatMessage,
    ChatModel,
    Delta,
    Finished,
    GenerationParams,
    Usage,
)
from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.events import EventTemplate
from conduit.core.runs.kinds import Event
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.tools.base import Tool
from conduit.errors import ConduitError, RunInterrupted

ModelResolver = Callable[[dict[str, Any]], Awaitable[ChatModel]]
# A workspace's custom API tools, by (provider id, tool name) → the tools found, by name.
ToolResolver = Callable[[str, Sequence[tuple[str, str]]], Awaitable[dict[str, Tool]]]
ChatMode = Literal["chat", "completion"]


class TurnFiles(NamedTuple):
    """A turn's files as the model reads them: the text to add to its question (a document's
    contents), the content parts to send with it (images); `at`: the index of a past turn's
    question in the prompt, None for this message's."""

    at: int | None
    text: str
    parts: list[dict[str, Any]]


# The files of a run (as `ChatRunBody.files` holds them) → each turn's, read in one go.
Attach = Callable[[RunSpec, Sequence[dict[str, Any]]], Awaitable[list[TurnFiles]]]


class AttachmentsFailed(ModelError):
    """The run's files could not be read for the model: the run ends before the model call."""

    default_message = "The message's files could not be read."


def with_files(
    messages: list[ChatMessage], text: str, parts: list[dict[str, Any]], at: int | None = None
) -> list[ChatMessage]:
    """The prompt with files in a user message, its last or the one at `at` (a past turn's
    question): `text` after the question, `parts` after both."""
    for index in range(len(messages) - 1, -1, -1) if at is None else (at,):
        message = messages[index]
        if message.role == "user":
            content = f"{message.content}\n\n{text}" if text else message.content
            changed = ChatMessage("user", content, (*message.parts, *parts))
            return [*messages[:index], changed, *messages[index + 1 :]]
    return messages


@dataclass(frozen=True)
class ChatRunBody:
    """A chat or completion run: the message it answers, the prompt, the model and its
    parameters, the app's prices when the run started ({"prompt", "completion",
    "currency"} per 1K tokens, as strings) and, for an app with datasets, what it searches
    before it asks the model (the passages go into `messages` when the run starts)."""

    mode: ChatMode
    message_id: str
    conversation_id: str | None
    messages: list[ChatMessage]
    params: GenerationParams
    model_ref: dict[str, Any]  # how to find the model (resolved by the runner's ModelResolver)
    prices: dict[str, str] | None = None
    retrieval: RetrievalPlan | None = None
    # The files the message was sent with, checked when it was accepted: each
    # {type, transfer_method, upload_file_id, url, filename, mime_type, detail}; and those of
    # the past turns its prompt remembers, each with `at`, the index of its turn's question.
    files: list[dict[str, Any]] = field(default_factory=list)
    # A chat app with annotation reply on: the annotations its question is compared with.
    annotation: AnnotationPlan | None = None
    # An agent-chat app's: its strategy, rounds and tools (its answer comes from the agent).
    agent: AgentPlan | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "params": {
                "model": self.params.model,
                "temperature": self.params.temperature,
                "top_p": self.params.top_p,
                "max_tokens": self.params.max_tokens,
                "stop": list(self.params.stop),
            },
            "model_ref": self.model_ref,
            "prices": self.prices,
            "retrieval": self.retrieval.to_json() if self.retrieval else None,
            **({"files": self.files} if self.files else {}),
            **({"annotation": self.annotation.to_json()} if self.annotation else {}),
            **({"agent": self.agent.to_json()} if self.agent else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatRunBody:
        params = data["params"]
        return cls(
            mode="completion" if data["mode"] == "completion" else "chat",
            message_id=str(data["message_id"]),
            conversation_id=data.get("conversation_id"),
            messages=[ChatMessage(role=m["role"], content=m["content"]) for m in data["messages"]],
            params=GenerationParams(
                model=params["model"],
                temperature=params.get("temperature"),
                top_p=params.get("top_p"),
                max_tokens=params.get("max_tokens"),
                stop=tuple(params.get("stop") or ()),
            ),
            model_ref=dict(data.get("model_ref") or {}),
            prices=data.get("prices"),
            retrieval=RetrievalPlan.from_json(data["retrieval"]) if data.get("retrieval") else None,
            files=list(data.get("files") or []),
            annotation=(
                AnnotationPlan.from_json(data["annotation"]) if data.get("annotation") else None
            ),
            agent=AgentPlan.from_json(data["agent"]) if data.get("agent") else None,
        )


@dataclass
class ChatResult:
    """How a chat or completion run ended: written onto its message by the `ChatStore`."""

    task_id: str
    message_id: str
    status: RunStatus
    answer: str
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    error_status: int | None = None
    prices: dict[str, str] | None = None
    asynchronous: bool = False  # an async run's: its task ends with it
    # The passages the run searched out, as Dify reports them (when the app shows them).
    retriever_resources: list[dict[str, Any]] = field(default_factory=list)
    # The annotation that answered instead of the model (Dify's `annotation_reply`), if any.
    annotation_reply: dict[str, Any] | None = None
    annotation_score: float = 0.0  # how close its question was (its hit history keeps it)
    # An agent-chat run's rounds, as its message's `agent_thoughts` lists them (None: not one).
    agent_thoughts: list[dict[str, Any]] | None = None


class ChatStore(Protocol):
    """Where chat results are written (the services layer's message store)."""

    async def finish(self, result: ChatResult) -> dict[str, Any]:
        """Persist the result; returns the `metadata` object of `message_end` (usage...)."""

    async def renew_many(self, runs: Sequence[tuple[RunSpec, str | None]]) -> set[str]:
        """The runs are alive (their leases), with each one's answer so far when given; the
        task ids of those that no longer run (see `RunStore.renew_many`)."""

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        """Take the run for an executor about to start it (see `RunStore.claim`)."""


def envelope(spec: RunSpec, event: str, **fields: Any) -> dict[str, Any]:
    """Dify's full-converter envelope: chat events carry conversation_id, completion's do not."""
    body: ChatRunBody = spec.body
    return message_envelope(
        body.mode, body.conversation_id, body.message_id, spec.created_at, event, **fields
    )


def message_envelope(
    mode: str,
    conversation_id: str | None,
    message_id: str,
    created_at: int,
    event: str,
    **fields: Any,
) -> dict[str, Any]:
    """`envelope` from the message's own fields (for a run taken over, whose spec is gone)."""
    payload: dict[str, Any] = {"event": event}
    if mode != "completion":
        payload["conversation_id"] = conversation_id
    payload["message_id"] = message_id
    payload["created_at"] = created_at
    payload.update(fields)
    return payload


def error_payload(error: ConduitError | None) -> dict[str, Any]:
    """The fields an `error` event adds to the envelope."""
    return {
        "status": error.status if error else None,
        "code": error.code if error else None,
        "message": error.message if error else None,
    }


@dataclass(frozen=True)
class StoredChat:
    """A chat or completion run that ended, as its message keeps it: its status, answer, the
    `metadata` its `message_end` reported (plus, for a failed run, the error's `code` and
    `status` under "error", which the store keeps) and its error message."""

    task_id: str
    mode: ChatMode
    message_id: str
    conversation_id: str | None
    created_at: int
    status: RunStatus
    answer: str
    metadata: dict[str, Any]
    error_message: str | None
    # An agent-chat run's rounds as its message keeps them (None: not an agent's run): its
    # events are then the agent's (`agent_thought` per round, the answer as `agent_message`).
    agent_thoughts: list[dict[str, Any]] | None = None


# A failed run whose error's code was not kept was ended without its executor (taken over,
# or left running by a stopped server): its followers read `run_interrupted`.
_INTERRUPTED = {"code": RunInterrupted.code, "status": RunInterrupted.status}


def stored_events(run: StoredChat) -> list[Event]:
    """A run's events rebuilt from what its message keeps, for when its log has expired: its
    answer as one `message` event, then `message_end` (`error` when it failed), each in the
    envelope its runner used. A stream of them assembles the stored answer; a blocking reply
    built from them is the one the run gave."""

    def event(name: str, **fields: Any) -> Event:
        fields = {"task_id": run.task_id, **fields} if name != "error" else fields
        return (
            name,
            message_envelope(
                run.mode, run.conversation_id, run.message_id, run.created_at, name, **fields
            ),
        )

    answer = "message" if run.agent_thoughts is None else "agent_message"
    events = [event(name, **fields) for name, fields in _stored_rounds(run)]
    if run.answer:
        events.append(event(answer, id=run.message_id, answer=run.answer))
    if run.status != RunStatus.FAILED:
        metadata = {k: v for k, v in run.metadata.items() if k != "error"}
        return [*events, event("message_end", id=run.message_id, metadata=metadata)]
    error = {**_INTERRUPTED, **(run.metadata.get("error") or {})}
    return [
        *events,
        event(
            "error",
            status=int(error["status"]),
            code=str(error["code"]),
            message=run.error_message or "The run failed.",
        ),
    ]


def _stored_rounds(run: StoredChat) -> list[tuple[str, dict[str, Any]]]:
    """An agent's rounds as `agent_thought` events (each as its last event reported it)."""
    return [
        ("agent_thought", Thought.of(round_).fields())
        for round_ in run.agent_thoughts or []
        if isinstance(round_, dict)
    ]


@dataclass(frozen=True)
class BlockingEnd:
    """How a run's events end as Dify's blocking reply: its `body`, or its `error` (`code`,
    `message`, `status`)."""

    body: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class BlockingReply:
    """Folds a chat or completion run's events, in order, into Dify's blocking reply (`mode`:
    the app's mode as the wire names it): the answer its `message` events assemble, with what
    `message_end` reports; or its `error`. The same fold serves a blocking request (from the
    live log), an async task's result and its callback (from the stored events)."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._answer: list[str] = []

    def add(self, name: str, payload: dict[str, Any]) -> BlockingEnd | None:
        """The reply once `name` ends the run; None until then."""
        if name in ("message", "agent_message"):
            self._answer.append(str(payload.get("answer", "")))
        elif name == "message_replace":
            self._answer = [str(payload.get("answer", ""))]
        elif name == "message_end":
            body: dict[str, Any] = {
                "event": "message",
                "task_id": payload["task_id"],
                "id": payload["message_id"],
                "message_id": payload["message_id"],
            }
            if "conversation_id" in payload:
                body["conversation_id"] = payload["conversation_id"]
            body.update(
                {
                    "mode": self._mode,
                    "answer": "".join(self._answer),
                    "metadata": payload.get("metadata", {}),
                    "created_at": payload["created_at"],
                }
            )
            return BlockingEnd(body=body)
        elif name == "error":
            return BlockingEnd(
                error={
                    "code": str(payload["code"]),
                    "message": str(payload["message"]),
                    "status": int(payload["status"]),
                }
            )
        return None


class ChatRunner:
    """Runs of one chat-shaped kind ("chat" or "completion") on a model from `resolve_model`."""

    def __init__(
        self,
        kind: ChatMode,
        *,
        resolve_model: ModelResolver,
        store: ChatStore,
        retrieve: Retrieve | None = None,
        attach: Attach | None = None,
        match_annotation: MatchAnnotation | None = None,
        resolve_tools: ToolResolver | None = None,
    ) -> None:
        self.kind: str = kind
        self.store = store
        self._resolve_model = resolve_model
        self._retrieve = retrieve
        self._attach = attach
        self._match_annotation = match_annotation
        self._resolve_tools = resolve_tools

    def decode(self, body: dict[str, Any]) -> ChatRunBody:
        return ChatRunBody.from_json(body)

    def start(self, spec: RunSpec) -> ChatExecution:
        return ChatExecution(
            spec,
            self._resolve_model,
            self._retrieve,
            self._attach,
            self._match_annotation,
            self._resolve_tools,
        )

    def terminal_events(
        self, spec: RunSpec, result: ChatResult, stored: dict[str, Any]
    ) -> list[Event]:
        if result.error_code is None:
            body: ChatRunBody = spec.body
            return [
                (
                    "message_end",
                    envelope(
                        spec,
                        "message_end",
                        task_id=spec.task_id,
                        id=body.message_id,
                        metadata=stored,
                    ),
                )
            ]
        return [
            (
                "error",
                envelope(
                    spec,
                    "error",
                    status=result.error_status,
                    code=result.error_code,
                    message=result.error_message,
                ),
            )
        ]


class _LogReporter:
    """An agent-chat run's rounds in its event log: the answer's pieces as `agent_message`
    events (kept in the answer), each round's state as an `agent_thought` (same id)."""

    def __init__(self, execution: ChatExecution, log: EventLog) -> None:
        self._execution = execution
        self._log = log

    async def pieces(self, pieces: list[str]) -> None:
        await self._execution._write_pieces(self._log, "agent_message", pieces)

    async def thought(self, thought: Thought, phase: Phase) -> None:
        spec = self._execution._spec
        payload = envelope(spec, "agent_thought", task_id=spec.task_id, **thought.fields())
        await self._log.append(spec.task_id, "agent_thought", payload)


class ChatExecution:
    """One chat or completion run: searches its datasets (if its app has any), reads the files
    it was sent with (if any), resolves its model, streams the answer into the log."""

    def __init__(
        self,
        spec: RunSpec,
        resolve_model: ModelResolver,
        retrieve: Retrieve | None = None,
        attach: Attach | None = None,
        match_annotation: MatchAnnotation | None = None,
        resolve_tools: ToolResolver | None = None,
    ) -> None:
        self._spec = spec
        self._resolve_tools = resolve_tools
        self._body: ChatRunBody = spec.body
        self._resolve_model = resolve_model
        self._retrieve = retrieve
        self._attach = attach
        self._match_annotation = match_annotation
        self._annotation: AnnotationHit | None = None
        self._resources: list[dict[str, Any]] = []
        self._answer: list[str] = []
        self._checkpointed = 0  # pieces of the answer in the last checkpoint
        self._usage = Usage()
        self._started = time.perf_counter()
        self._agent = (
            AgentLoop(self._body.agent, message_id=self._body.message_id)
            if self._body.agent is not None
            else None
        )

    async def run(self, log: EventLog) -> None:
        spec, body = self._spec, self._body
        messages = body.messages
        if body.annotation is not None:
            hit = await annotated(self._match_annotation, body.annotation)
            if hit is not None:
                # The annotation's answer, whole, in one `message` (as Dify sends it).
                self._annotation = hit
                self._answer.append(hit.answer)
                event = envelope(
                    spec, "message", task_id=spec.task_id, id=body.message_id, answer=hit.answer
                )
                try:
                    await log.extend(spec.task_id, "message", [event])
                except Exception:
                    self._answer.clear()
                    self._annotation = None  # not given: not a hit
                    raise
                return
        if body.retrieval is not None:
            self._resources = await self._search(body.retrieval)
            messages = with_context(messages, self._resources)
        if body.files:
            # Each turn's files with its question (`at`: a past turn's; none: this message's).
            for at, text, parts in await self._read_files(body.files):
                messages = with_files(messages, text, parts, at=at)
        model = await self._resolve_model(body.model_ref)
        if self._agent is not None:
            assert body.agent is not None
            wanted = [
                (t.provider_id, t.tool_name) for t in body.agent.tools if t.provider_type == "api"
            ]
            if wanted and self._resolve_tools is not None:
                # A provider deleted since the app was saved: its tools are not offered.
                self._agent.add(await self._resolve_tools(spec.tenant_id, wanted))
            await self._agent.run(model, messages, body.params, _LogReporter(self, log))
            return
        # The fixed fields of every `message` event serialised once per run, not per piece.
        template = EventTemplate(
            envelope(spec, "message", task_id=spec.task_id, id=body.message_id, answer=""),
            "answer",
        )
        async for item in model.stream_chat(messages, body.params):
            if isinstance(item, Delta):
                pieces = [piece for piece in item.parts if piece]
                if not pieces:
                    continue
                self._answer.extend(pieces)
                # One event per piece; the pieces of one read of the upstream in one go.
                try:
                    await log.extend(
                        spec.task_id, "message", [template.render(piece) for piece in pieces]
                    )
                except Exception:
                    # Not in the log (e.g. Redis down): not in the stored answer either, which
                    # stays what a follower assembles. (A cancel keeps them: a write already
                    # sent lands.)
                    del self._answer[-len(pieces) :]
                    raise
            elif isinstance(item, Finished):
                self._usage = item.usage

    async def _write_pieces(self, log: EventLog, event: str, pieces: list[str]) -> None:
        """Pieces of the answer as `event` events (the agent's `agent_message`), one each, kept
        in the answer once they are in the log."""
        payloads = [
            envelope(
                self._spec,
                event,
                task_id=self._spec.task_id,
                id=self._body.message_id,
                answer=piece,
            )
            for piece in pieces
        ]
        self._answer.extend(pieces)
        try:
            await log.extend(self._spec.task_id, event, payloads)
        except Exception:
            del self._answer[-len(pieces) :]  # not in the log: not in the stored answer either
            raise

    async def _search(self, plan: RetrievalPlan) -> list[dict[str, Any]]:
        if self._retrieve is None:
            raise KnowledgeRetrievalFailed(
                "Knowledge retrieval failed: this process cannot search datasets."
            )
        try:
            return await self._retrieve(plan)
        except ConduitError as error:
            raise KnowledgeRetrievalFailed(
                f"Knowledge retrieval failed: {error.message}"
            ) from error
        except Exception as error:
            raise KnowledgeRetrievalFailed(f"Knowledge retrieval failed: {error}") from error

    async def _read_files(self, files: list[dict[str, Any]]) -> list[TurnFiles]:
        if self._attach is None:
            raise AttachmentsFailed("The message's files cannot be read in this process.")
        try:
            return await self._attach(self._spec, files)
        except ConduitError:
            raise
        except Exception as error:
            raise AttachmentsFailed(f"The message's files could not be read: {error}") from error

    def checkpoint(self) -> str | None:
        """The answer so far, when it grew since the last checkpoint."""
        if len(self._answer) == self._checkpointed:
            return None
        self._checkpointed = len(self._answer)
        return "".join(self._answer)

    def result(self, status: RunStatus, error: ConduitError | None) -> ChatResult:
        text = "".join(self._answer)
        usage = self._usage if self._agent is None else self._agent.usage
        if usage.total_tokens == 0 and text and self._annotation is None:
            # A stopped or broken stream reports no usage: estimate so that records stay useful.
            prompt_chars = sum(len(m.content) for m in self._body.messages)
            usage = Usage(
                prompt_tokens=max(1, prompt_chars // 4), completion_tokens=max(1, len(text) // 4)
            )
        return ChatResult(
            task_id=self._spec.task_id,
            message_id=self._body.message_id,
            status=status,
            answer=text,
            usage=usage,
            latency=round(time.perf_counter() - self._started, 3),
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            error_status=error.status if error else None,
            prices=self._body.prices,
            asynchronous=self._spec.asynchronous,
            retriever_resources=(
                self._resources
                if self._body.retrieval is not None and self._body.retrieval.show_resources
                else []
            ),
            annotation_reply=self._annotation.metadata() if self._annotation else None,
            annotation_score=self._annotation.score if self._annotation else 0.0,
            agent_thoughts=self._agent.stored() if self._agent is not None else None,
        )
