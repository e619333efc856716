"""A `message` event's JSON, built from the run's serialised head and the delta, is exactly the
JSON of Dify's envelope around that delta."""

from __future__ import annotations

import orjson
import pytest

from conduit.core.llm.provider import ChatMessage, GenerationParams
from conduit.core.runs.runner import RunSpec, envelope, message_data, message_head

TEXTS = [
    "Paris",
    " the",
    'say "hi"',
    "back\\slash",
    "line\nbreak\ttab\r",
    "héllo wörld",
    "日本語",
    "emoji 🙂",
    "\u2028\u2029",
    "\x00\x1f",
    "}",
]


def spec(mode: str, conversation_id: str | None) -> RunSpec:
    return RunSpec(
        task_id="5ad4cb98-f0c7-4085-b384-88c403be6290",
        app_id="app",
        tenant_id="tenant",
        mode=mode,
        message_id="9da23599-e713-473b-982c-4328d4f5c78a",
        conversation_id=conversation_id,
        created_at=1_705_395_332,
        owner="end-user-1",
        messages=[ChatMessage(role="user", content="hi")],
        params=GenerationParams(model="m"),
        model_ref={"provider": "local"},
    )


@pytest.mark.parametrize(
    "run", [spec("chat", "45701982-8118-4bc5-8e9b-64562b4555f2"), spec("completion", None)]
)
@pytest.mark.parametrize("text", TEXTS)
def test_message_data_is_the_envelope_json(run: RunSpec, text: str) -> None:
    expected = envelope(run, "message", task_id=run.task_id, id=run.message_id, answer=text)
    data = message_data(message_head(run), text)
    assert data == orjson.dumps(expected)
    assert orjson.loads(data) == expected
