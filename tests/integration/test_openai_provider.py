"""OpenAICompatibleChatModel against the fake OpenAI server (in a thread): streaming, usage,
error mapping, retries only before the first token, timeouts, the circuit breaker and
cancellation closing the upstream connection."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from conduit.core.llm.circuit import CircuitBreaker, CircuitState
from conduit.core.llm.errors import (
    ModelBadRequest,
    ModelError,
    ModelNotSupported,
    ModelRateLimited,
    ModelServerError,
    ModelTimeout,
    ProviderAuthError,
    ProviderQuotaExceeded,
    ProviderUnavailable,
)
from conduit.core.llm.openai_compatible import OpenAICompatibleChatModel, _SSEReader, _Upstream
from conduit.core.llm.provider import ChatMessage, Delta, Finished, GenerationParams, ToolCalls
from conduit.core.llm.usage import ModelPrices, usage_payload
from tests.fakes.fake_openai import (
    FakeOpenAIThread,
    answer_tokens,
    fake_openai_process,
)
from tests.support import free_port

T = TypeVar("T")
PROMPT = "héllo wörld, how are you ☕"
ANSWER = f"You said: {PROMPT}"


def model_for(fake: FakeOpenAIThread | str, **options: Any) -> OpenAICompatibleChatModel:
    options.setdefault("backoff_initial", 0.01)
    options.setdefault("backoff_max", 0.05)
    base_url = fake if isinstance(fake, str) else fake.base_url
    return OpenAICompatibleChatModel(base_url, "sk-test", **options)


def run(
    model: OpenAICompatibleChatModel, body: Callable[[OpenAICompatibleChatModel], Awaitable[T]]
) -> T:
    """Run `body(model)` on a fresh loop and always close the model's session there."""

    async def main() -> T:
        try:
            return await body(model)
        finally:
            await model.aclose()

    return asyncio.run(main())


async def collect(
    model: OpenAICompatibleChatModel, text: str = PROMPT, name: str = "gpt-test", **params: Any
) -> tuple[list[str], Finished]:
    deltas: list[str] = []
    finished: Finished | None = None
    async for item in model.stream_chat(
        [ChatMessage("user", text)], GenerationParams(name, **params)
    ):
        if isinstance(item, Delta):
            assert finished is None, "a delta after Finished"
            assert item.text == "".join(item.parts)
            deltas += item.parts
        else:
            finished = item
    assert finished is not None
    return deltas, finished


def test_streams_deltas_in_order_with_the_upstreams_usage(fake: FakeOpenAIThread) -> None:
    deltas, finished = run(model_for(fake), collect)

    assert deltas == answer_tokens(ANSWER)
    assert "".join(deltas) == ANSWER
    assert finished.usage.prompt_tokens == 9  # the fake counts words + 3 per message
    assert finished.usage.completion_tokens == len(deltas) == 8
    assert finished.finish_reason == "stop"
    # Dify's usage object from these counts: tokens x price per 1K x 0.001, 7 decimals.
    payload = usage_payload(finished.usage, 0.25, ModelPrices.per_1k("0.001", "0.002"))
    assert payload == {
        "prompt_tokens": 9,
        "prompt_unit_price": "0.001",
        "prompt_price_unit": "0.001",
        "prompt_price": "0.0000090",
        "completion_tokens": 8,
        "completion_unit_price": "0.002",
        "completion_price_unit": "0.001",
        "completion_price": "0.0000160",
        "total_tokens": 17,
        "total_price": "0.0000250",
        "currency": "USD",
        "latency": 0.25,
    }
    assert usage_payload(finished.usage, 0.1)["total_price"] == "0.0"  # unpriced, as Dify
    assert (
        usage_payload(finished.usage, 0.1, ModelPrices.per_1k(Decimal(0), Decimal(0)))[
            "total_price"
        ]
        == "0.0000000"
    )


def test_events_split_across_reads_and_the_sse_parser(fake: FakeOpenAIThread) -> None:
    fake.control("fragmented")
    deltas, finished = run(model_for(fake), collect)
    assert "".join(deltas) == ANSWER
    assert finished.usage.completion_tokens == len(deltas)

    # The parser alone: CRLF, comments, multi-line data, arbitrary cut points.
    raw = b': ping\r\n\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\ndata: [DONE]\n\n'
    for cut in range(1, len(raw)):
        reader = _SSEReader(None)  # type: ignore[arg-type]
        reader.feed(raw[:cut])
        reader.feed(raw[cut:])
        assert list(reader._events) == [b'{"a":\n1}', b"[DONE]"]

    # LF only (parsed event by event): the same events, cut anywhere, once or twice.
    raw = (
        b'data: {"a":1}\n\ndata: {"b":2}\n\n: c\n\ndata:{"c":3}\n\n\ndata: {"x":0}\n'
        b'data: {"d":\ndata: 4}\n\nevent: x\nid: 7\ndata: {"e":5}\n\ndata: [DONE]\n\n'
    )
    expected = [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"x":0}\n{"d":\n4}', b'{"e":5}', b"[DONE]"]
    for cut in range(1, len(raw)):
        for second in (cut, (cut + len(raw)) // 2):
            reader = _SSEReader(None)  # type: ignore[arg-type]
            for piece in (raw[:cut], raw[cut:second], raw[second:]):
                reader.feed(piece)
            assert list(reader._events) == expected, (cut, second)
    reader = _SSEReader(None)  # type: ignore[arg-type]
    reader.feed(b"data: 1\r\n")  # a CR LF line, then LF-only ones
    reader.feed(b'data: 2\n\ndata: {"f":6}')
    reader.feed(b"\n\n")
    assert list(reader._events) == [b"1\n2", b'{"f":6}']


def test_pieces_read_together_come_as_one_delta_with_each_piece(fake: FakeOpenAIThread) -> None:
    fake.control("burst")
    items: list[Delta] = []

    async def scenario(m: OpenAICompatibleChatModel) -> None:
        async for item in m.stream_chat([ChatMessage("user", PROMPT)], GenerationParams("gpt")):
            if isinstance(item, Delta):
                items.append(item)

    run(model_for(fake), scenario)
    pieces = [piece for item in items for piece in item.parts]
    assert pieces == answer_tokens(ANSWER)
    assert len(items) < len(pieces)  # one read brought several pieces: one Delta for them
    assert all(item.text == "".join(item.parts) for item in items)


def test_usage_is_estimated_when_the_upstream_sends_none(fake: FakeOpenAIThread) -> None:
    fake.control(usage=False)
    deltas, finished = run(model_for(fake), collect)
    assert "".join(deltas) == ANSWER
    # chars / 4, rounded up, for the prompt and for the answer
    assert finished.usage.prompt_tokens == math.ceil(len(PROMPT) / 4)
    assert finished.usage.completion_tokens == math.ceil(len(ANSWER) / 4)


@pytest.mark.parametrize(
    ("mode", "error", "code", "text"),
    [
        ("status-401", ProviderAuthError, "provider_not_initialize", "Incorrect API key"),
        ("status-403", ProviderAuthError, "provider_not_initialize", "not allowed"),
        ("model-not-found", ModelNotSupported, "model_currently_not_support", "does not exist"),
        ("status-429", ModelRateLimited, "completion_request_error", "Rate limit"),
        ("quota", ProviderQuotaExceeded, "provider_quota_exceeded", "exceeded your current quota"),
        ("status-400", ModelBadRequest, "completion_request_error", "prompt was rejected"),
        ("status-500", ModelServerError, "completion_request_error", "HTTP 500"),
    ],
)
def test_http_errors_are_mapped(
    fake: FakeOpenAIThread, mode: str, error: type[ModelError], code: str, text: str
) -> None:
    with pytest.raises(error) as caught:
        run(model_for(fake, max_retries=0), lambda m: collect(m, name=f"fake:{mode}"))
    assert caught.value.code == code
    assert text in caught.value.message
    assert "[openai_api_compatible]" in caught.value.message


def test_connection_refused_is_a_server_error_and_a_400_never_opens_the_circuit(
    fake: FakeOpenAIThread,
) -> None:
    with pytest.raises(ModelServerError, match="Cannot reach"):
        run(model_for(f"http://127.0.0.1:{free_port()}/v1", max_retries=0), collect)

    breaker = CircuitBreaker(failure_threshold=2, reset_after=60)
    model = model_for(fake, max_retries=2, breaker=breaker)

    async def bad_prompts(m: OpenAICompatibleChatModel) -> None:
        for _ in range(4):
            with pytest.raises(ModelBadRequest):
                await collect(m, name="fake:status-400")

    run(model, bad_prompts)
    assert breaker.state is CircuitState.CLOSED
    assert fake.stats()["requests"] == 4  # a 400 is not retried either


def test_a_failing_upstream_is_tried_max_retries_more_times(fake: FakeOpenAIThread) -> None:
    fake.control("status-500", times=10)
    with pytest.raises(ModelServerError):
        run(model_for(fake, max_retries=2), collect)
    assert fake.stats()["requests"] == 3  # the first attempt and two retries

    fake.reset()
    fake.control("status-500", times=10)
    with pytest.raises(ModelServerError):
        run(model_for(fake, max_retries=0), collect)
    assert fake.stats()["requests"] == 1


def test_retries_only_before_the_first_token(fake: FakeOpenAIThread) -> None:
    fake.control("status-500", times=1)
    fake.control("status-429", times=1)
    deltas, _ = run(model_for(fake, max_retries=2), collect)
    assert "".join(deltas) == ANSWER
    assert [r["outcome"] for r in fake.stats()["log"]] == ["error-500", "error-429", "completed"]

    fake.reset()
    fake.control("drop-mid-stream")
    received: list[str] = []

    async def partial(m: OpenAICompatibleChatModel) -> None:
        async for item in m.stream_chat([ChatMessage("user", PROMPT)], GenerationParams("gpt")):
            if isinstance(item, Delta):
                received.append(item.text)

    with pytest.raises(ModelServerError):
        run(model_for(fake, max_retries=2), partial)
    assert received, "the drop happens after the first tokens"
    assert fake.stats()["requests"] == 1  # never replayed once a token was out


def test_silence_longer_than_read_timeout_is_a_timeout(fake: FakeOpenAIThread) -> None:
    for mode in ("hang-before-first-token", "hang-before-headers"):
        started = time.monotonic()
        with pytest.raises(ModelTimeout):
            run(
                model_for(fake, read_timeout=0.3, max_retries=0),
                lambda m, mode=mode: collect(m, name=f"fake:{mode}"),
            )
        assert time.monotonic() - started < 1.5
    # The timed-out requests were abandoned: the fake saw both clients go away.
    fake.wait_for_stats(lambda s: s["disconnects"] == 2, timeout=2)


def test_circuit_opens_after_repeated_failures_then_recovers(fake: FakeOpenAIThread) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after=0.3)
    fake.control("status-500", times=4)

    async def scenario(m: OpenAICompatibleChatModel) -> None:
        for _ in range(3):
            with pytest.raises(ModelServerError):
                await collect(m)
        assert breaker.state is CircuitState.OPEN
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable):
            await collect(m)
        assert time.monotonic() - started < 0.05  # failed fast, without the network
        assert fake.stats()["requests"] == 3

        await asyncio.sleep(0.35)
        assert breaker.state is CircuitState.HALF_OPEN
        with pytest.raises(ModelServerError):  # the one trial call hits the 4th queued 500
            await collect(m)
        assert breaker.state is CircuitState.OPEN  # a failed trial reopens at once

        await asyncio.sleep(0.35)
        deltas, _ = await collect(m)  # the fake has recovered: the trial succeeds
        assert "".join(deltas) == ANSWER
        assert breaker.state is CircuitState.CLOSED

    run(model_for(fake, max_retries=0, breaker=breaker), scenario)
    assert fake.stats()["requests"] == 5


def test_closing_the_iterator_mid_stream_disconnects_the_upstream(fake: FakeOpenAIThread) -> None:
    fake.control(pace_ms=50, answer="word " * 200)
    closed_at: list[float] = []

    async def close_after_three(m: OpenAICompatibleChatModel) -> None:
        stream = m.stream_chat([ChatMessage("user", "go")], GenerationParams("gpt"))
        count = 0
        async for item in stream:  # type: ignore[attr-defined]
            count += isinstance(item, Delta)
            if count == 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        closed_at.append(time.time())

    run(model_for(fake), close_after_three)
    stats = fake.wait_for_stats(lambda s: s["disconnects"] == 1, timeout=2)
    record = stats["log"][0]
    assert record["outcome"] == "client-disconnected"
    assert record["ended"] - closed_at[0] < 1.0
    assert record["chunks_sent"] < 10


def test_cancelling_the_consuming_task_disconnects_the_upstream(fake: FakeOpenAIThread) -> None:
    fake.control(pace_ms=50, answer="word " * 200)
    cancelled_at: list[float] = []

    async def cancel(m: OpenAICompatibleChatModel, model_name: str, after_tokens: int) -> None:
        got_tokens = asyncio.Event()

        async def consume() -> None:
            count = 0
            params = GenerationParams(model_name)
            async for item in m.stream_chat([ChatMessage("user", "go")], params):
                count += isinstance(item, Delta)
                if count == after_tokens:
                    got_tokens.set()

        task = asyncio.create_task(consume())
        if after_tokens:
            await got_tokens.wait()
        else:
            await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled_at.append(time.time())

    async def scenarios(m: OpenAICompatibleChatModel) -> None:
        await cancel(m, "gpt", after_tokens=3)  # mid-stream
        await cancel(m, "fake:hang-before-first-token", after_tokens=0)  # still in the retry phase

    run(model_for(fake), scenarios)
    stats = fake.wait_for_stats(lambda s: s["disconnects"] == 2, timeout=2)
    for record, cancelled in zip(stats["log"], cancelled_at, strict=True):
        assert record["outcome"] == "client-disconnected"
        assert record["ended"] - cancelled < 1.0


def test_connections_are_reused_and_the_fake_runs_as_a_process() -> None:
    with fake_openai_process(answer="Fixed answer from a subprocess.") as fake:

        async def twice(m: OpenAICompatibleChatModel) -> list[str]:
            first, _ = await collect(m)
            second, _ = await collect(m)
            return ["".join(first), "".join(second)]

        assert run(model_for(fake), twice) == ["Fixed answer from a subprocess."] * 2
        stats = fake.stats()
        assert stats["requests"] == 2
        assert stats["connections"] == 1  # keep-alive: the body was read to its end after [DONE]


def test_tool_calls_are_assembled_from_their_fragments_and_sent_back(
    fake: FakeOpenAIThread,
) -> None:
    """A function-calling round: the model's text, then its calls (id and name first, the
    arguments in fragments) as one `ToolCalls` before `Finished`; the next request carries
    the calls and their results in OpenAI's format (the fake answers with the results)."""
    function = {
        "type": "function",
        "function": {"name": "eval_expression", "parameters": {"type": "object"}},
    }
    params = GenerationParams("gpt-test", tools=(function,))
    question = ChatMessage("user", 'eval_expression {"expression": "1+1"}')

    async def body(model: OpenAICompatibleChatModel) -> tuple[list[Any], list[Any]]:
        first = [item async for item in model.stream_chat([question], params)]
        calls = next(item for item in first if isinstance(item, ToolCalls)).calls
        follow_up = [
            question,
            ChatMessage("assistant", "", tool_calls=calls),
            ChatMessage("tool", "2", tool_call_id=calls[0].id),
        ]
        second = [item async for item in model.stream_chat(follow_up, params)]
        return first, second

    first, second = run(model_for(fake), body)
    assert "".join(i.text for i in first if isinstance(i, Delta)) == "Calling eval_expression."
    assert [type(i).__name__ for i in first[-2:]] == ["ToolCalls", "Finished"]
    (call,) = first[-2].calls
    assert call.name == "eval_expression" and call.id.startswith("call_")
    assert json.loads(call.arguments) == {"expression": "1+1"}
    assert first[-1].finish_reason == "tool_calls"
    assert "".join(i.text for i in second if isinstance(i, Delta)) == "Tool said: 2"
    assert not any(isinstance(i, ToolCalls) for i in second)
    sent = fake.stats()["log"][-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "eval_expression",
        "arguments": call.arguments,
    }
    assert sent[2] == {"role": "tool", "content": "2", "tool_call_id": call.id}


def test_calls_sent_whole_without_an_index_stay_apart() -> None:
    """Some servers send each call whole, in its own chunk, without `index`: a new id is a
    new call; arguments sent as an object are kept as JSON."""
    upstream = _Upstream.__new__(_Upstream)
    upstream.tool_calls = {}
    upstream.completion_chars = 0
    upstream._add_calls([{"id": "a", "function": {"name": "weekday", "arguments": "{}"}}])
    upstream._add_calls([{"id": "b", "function": {"name": "current_time", "arguments": {"k": 1}}}])
    assert [(c.id, c.name, c.arguments) for c in upstream.calls()] == [
        ("a", "weekday", "{}"),
        ("b", "current_time", '{"k":1}'),
    ]
