"""Knowledge-backed runs without I/O: the passages placed in the prompt (`with_context`), the
plan's round trip through the run body's JSON (how it travels to a Celery worker), and a run
whose search fails or finds passages (`ChatExecution` on a model that records its prompt)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from conduit.core.apps.chat import ChatExecution, ChatRunBody
from conduit.core.apps.knowledge import (
    CONTEXT_CHARS,
    KnowledgeRetrievalFailed,
    Reranking,
    RetrievalPlan,
    context_text,
    reranking,
    with_context,
)
from conduit.core.llm.provider import ChatMessage, Delta, Finished, GenerationParams, Usage
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus

PLAN = RetrievalPlan(
    tenant_id="t1",
    dataset_ids=("d1", "d2"),
    query="Who logs the ships?",
    top_k=3,
    score_threshold=0.25,
    show_resources=True,
)
FOUND = [
    {"position": 1, "segment_id": "s1", "content": "The keeper logs every ship.", "score": 0.9},
    {"position": 2, "segment_id": "s2", "content": "The reef lies north.", "score": 0.5},
]


class TestWithContext:
    def test_a_block_goes_ahead_of_the_system_prompt(self) -> None:
        prompt = [ChatMessage("system", "Be brief."), ChatMessage("user", "Who logs ships?")]
        placed = with_context(prompt, FOUND)
        assert [m.role for m in placed] == ["system", "user"]
        system = placed[0].content
        assert system.endswith("Be brief.")
        assert (
            "<context>\nThe keeper logs every ship.\n\nThe reef lies north.\n</context>" in system
        )
        assert placed[1] == prompt[1]

    def test_without_a_system_prompt_the_block_is_one(self) -> None:
        prompt = [ChatMessage("user", "Translate: hello")]
        placed = with_context(prompt, FOUND)
        assert [m.role for m in placed] == ["system", "user"]
        assert "The keeper logs every ship." in placed[0].content

    def test_the_placeholder_takes_the_passages_where_the_prompt_names_it(self) -> None:
        prompt = [ChatMessage("system", "Facts:\n{{#context#}}\nEnd."), ChatMessage("user", "q")]
        placed = with_context(prompt, FOUND)
        assert placed[0].content == (
            "Facts:\nThe keeper logs every ship.\n\nThe reef lies north.\nEnd."
        )
        assert "<context>" not in placed[0].content

    def test_nothing_found_leaves_the_prompt_as_it_was_but_empties_the_placeholder(self) -> None:
        prompt = [ChatMessage("system", "Be brief."), ChatMessage("user", "q")]
        assert with_context(prompt, []) == prompt
        named = [ChatMessage("system", "Facts: {{#context#}}"), ChatMessage("user", "q")]
        assert with_context(named, [])[0].content == "Facts: "

    def test_the_passages_stay_within_the_budget_best_first(self) -> None:
        many = [{"content": f"{i}" * 1000} for i in range(10)]
        text = context_text(many)
        assert len(text) <= CONTEXT_CHARS
        assert text.startswith("0" * 1000)
        assert "9" not in text
        # One passage longer than the budget is cut, not dropped.
        assert len(context_text([{"content": "x" * (CONTEXT_CHARS + 50)}])) == CONTEXT_CHARS


def test_the_plan_travels_in_the_run_body() -> None:
    body = ChatRunBody(
        mode="chat",
        message_id="m1",
        conversation_id="c1",
        messages=[ChatMessage("user", "q")],
        params=GenerationParams(model="m"),
        model_ref={"provider": "local"},
        retrieval=PLAN,
    )
    again = ChatRunBody.from_json(body.to_json())
    assert again.retrieval == PLAN
    no_plan = ChatRunBody.from_json({**body.to_json(), "retrieval": None})
    assert no_plan.retrieval is None
    assert (
        RetrievalPlan.from_json({**PLAN.to_json(), "score_threshold": None}).score_threshold is None
    )
    ranked = replace(PLAN, reranking=Reranking("reranking_model", provider="p", model="r"))
    assert RetrievalPlan.from_json(ranked.to_json()) == ranked
    # A body written before plans had a reranking.
    older = {k: v for k, v in PLAN.to_json().items() if k != "reranking"}
    assert RetrievalPlan.from_json(older).reranking is None


class TestReranking:
    """Dify's multiple retrieval's reranking, as an app's `dataset_configs` or a node's
    `multiple_retrieval_config` writes it."""

    NAMES = {"reranking_provider_name": "workspace:1", "reranking_model_name": "rr"}

    def test_a_rerank_model_by_its_names(self) -> None:
        found = reranking({"reranking_mode": "reranking_model", "reranking_model": self.NAMES})
        assert found == Reranking("reranking_model", provider="workspace:1", model="rr")
        # The mode defaults to the model; on unless turned off; a node's own key names.
        assert reranking({"reranking_model": self.NAMES}) == found
        node = reranking({"reranking_model": {"provider": "workspace:1", "model": "rr"}})
        assert node == found

    @pytest.mark.parametrize(
        "config",
        [
            {"reranking_enable": False, "reranking_model": NAMES},
            {"reranking_enabled": False, "reranking_model": NAMES},
            {"reranking_model": {"reranking_provider_name": "", "reranking_model_name": ""}},
            {"reranking_model": None},
            {},
            {"reranking_mode": "by-vibes", "reranking_model": NAMES},
        ],
    )
    def test_none_without_a_model_or_when_turned_off(self, config: dict[str, Any]) -> None:
        assert reranking(config) is None

    def test_a_weighted_score_takes_the_weights_or_difys_defaults(self) -> None:
        given = {
            "vector_setting": {"vector_weight": 0.2},
            "keyword_setting": {"keyword_weight": 0.8},
        }
        found = reranking({"reranking_mode": "weighted_score", "weights": given})
        assert found == Reranking("weighted_score", vector_weight=0.2, keyword_weight=0.8)
        assert reranking({"reranking_mode": "weighted_score"}) == Reranking("weighted_score")
        broken = {"vector_setting": {"vector_weight": "lots"}, "keyword_setting": None}
        assert reranking({"reranking_mode": "weighted_score", "weights": broken}) == (
            Reranking("weighted_score", vector_weight=0.7, keyword_weight=0.3)
        )


class RecordingModel:
    """A model that answers "ok" and keeps the prompt it was given."""

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []

    async def stream_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta | Finished]:
        self.prompts.append(list(messages))
        yield Delta("ok")
        yield Finished(Usage(prompt_tokens=3, completion_tokens=1))


class ListLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def extend(self, task_id: str, event: str, payloads: list[Any]) -> None:
        self.events.extend((event, payload) for payload in payloads)


def run_spec(plan: RetrievalPlan | None) -> RunSpec:
    return RunSpec(
        task_id="task-1",
        kind="chat",
        app_id="app",
        tenant_id="t1",
        owner="user",
        created_at=1_705_395_332,
        body=ChatRunBody(
            mode="chat",
            message_id="m1",
            conversation_id="c1",
            messages=[ChatMessage("system", "Be brief."), ChatMessage("user", PLAN.query)],
            params=GenerationParams(model="m"),
            model_ref={"provider": "local"},
            retrieval=plan,
        ),
    )


def execute(plan: RetrievalPlan | None, retrieve: Any) -> tuple[ChatExecution, RecordingModel]:
    model = RecordingModel()

    async def resolve(_ref: dict[str, Any]) -> RecordingModel:
        return model

    execution = ChatExecution(run_spec(plan), resolve, retrieve)  # type: ignore[arg-type]
    asyncio.run(execution.run(ListLog()))  # type: ignore[arg-type]
    return execution, model


class TestExecution:
    def test_the_passages_reach_the_prompt_and_the_result(self) -> None:
        asked: list[RetrievalPlan] = []

        async def retrieve(plan: RetrievalPlan) -> list[dict[str, Any]]:
            asked.append(plan)
            return FOUND

        execution, model = execute(PLAN, retrieve)
        assert asked == [PLAN]
        assert "The keeper logs every ship." in model.prompts[0][0].content
        result = execution.result(RunStatus.SUCCEEDED, None)
        assert result.retriever_resources == FOUND

    def test_resources_hidden_when_the_app_does_not_show_them(self) -> None:
        async def retrieve(plan: RetrievalPlan) -> list[dict[str, Any]]:
            return FOUND

        hidden = RetrievalPlan(**{**PLAN.__dict__, "show_resources": False})
        execution, model = execute(hidden, retrieve)
        assert "The keeper logs every ship." in model.prompts[0][0].content
        assert execution.result(RunStatus.SUCCEEDED, None).retriever_resources == []

    def test_an_app_without_datasets_does_not_search(self) -> None:
        async def retrieve(plan: RetrievalPlan) -> list[dict[str, Any]]:
            raise AssertionError("searched")

        execution, model = execute(None, retrieve)
        assert model.prompts[0][0].content == "Be brief."
        assert execution.result(RunStatus.SUCCEEDED, None).retriever_resources == []

    def test_a_failed_search_is_the_runs_model_error_naming_the_cause(self) -> None:
        async def retrieve(plan: RetrievalPlan) -> list[dict[str, Any]]:
            raise OSError("disk I/O error")

        with pytest.raises(KnowledgeRetrievalFailed) as raised:
            execute(PLAN, retrieve)
        assert raised.value.code == "completion_request_error"
        assert raised.value.status == 400
        assert raised.value.message == "Knowledge retrieval failed: disk I/O error"
