"""Fixtures of the integration tests: the fake OpenAI server (in a thread), one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_openai import FakeOpenAIThread, fake_openai


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAIThread]:
    with fake_openai() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAIThread) -> FakeOpenAIThread:
    """The fake server, reset (no queued failures, default pace and answer)."""
    fake_server.reset()
    return fake_server
