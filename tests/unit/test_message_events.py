"""A `message` event's JSON, rendered from its `EventTemplate` (the fixed fields serialised
once per run) and the piece, is exactly the JSON of Dify's envelope around that piece."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from conduit.core.apps.chat import ChatRunBody, envelope
from conduit.core.llm.provider import ChatMessage, GenerationParams
from conduit.core.runs.events import EventTemplate
from conduit.core.runs.spec import RunSpec

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
        kind=mode,
        app_id="app",
        tenant_id="tenant",
        owner="end-user-1",
        created_at=1_705_395_332,
        body=ChatRunBody(
            mode="completion" if mode == "completion" else "chat",
            message_id="9da23599-e713-473b-982c-4328d4f5c78a",
            conversation_id=conversation_id,
            messages=[ChatMessage(role="user", content="hi")],
            params=GenerationParams(model="m"),
            model_ref={"provider": "local"},
        ),
    )


def message(run: RunSpec, text: str) -> dict[str, object]:
    return envelope(run, "message", task_id=run.task_id, id=run.body.message_id, answer=text)


@pytest.mark.parametrize(
    "run",
    [
        spec("chat", "45701982-8118-4bc5-8e9b-64562b4555f2"),
        spec("completion", "e0b9f6c4-57a4-4c39-9a34-0f3c3f1f3c55"),
    ],
)
@pytest.mark.parametrize("text", TEXTS)
def test_rendered_message_is_the_envelope_json(run: RunSpec, text: str) -> None:
    expected = message(run, text)
    data = EventTemplate(message(run, ""), "answer").render(text)
    assert data == orjson.dumps(expected)
    assert orjson.loads(data) == expected


def test_completion_events_carry_no_conversation_id() -> None:
    run = spec("completion", "e0b9f6c4-57a4-4c39-9a34-0f3c3f1f3c55")
    assert "conversation_id" not in message(run, "x")


def test_a_template_field_must_come_last() -> None:
    with pytest.raises(ValueError, match="last field"):
        EventTemplate({"answer": "", "id": "x"}, "answer")


def test_a_spec_round_trips_through_json() -> None:
    run = spec("chat", "45701982-8118-4bc5-8e9b-64562b4555f2")
    data = orjson.loads(orjson.dumps(run.to_json()))
    again = RunSpec.from_json(data, ChatRunBody.from_json(data["body"]))
    assert again == run


def test_a_spec_written_before_kinds_existed_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run queued by the previous version (a flat spec, its kind in `mode`) survives an
    upgrade: the worker reads it as a chat run (the runners as `conduit/bootstrap.py` builds
    them; decoding touches neither the database nor a model)."""
    from conduit.bootstrap import build_models, build_retriever, build_runners
    from conduit.infra.db import Database, build_engine
    from conduit.infra.settings import load_settings

    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    db = Database(build_engine(f"sqlite:///{tmp_path / 'unused.db'}", null_pool=True))
    try:
        settings = load_settings()
        runners = build_runners(
            settings, build_models(settings, db), db, build_retriever(settings, db)
        )
        run = spec("chat", "45701982-8118-4bc5-8e9b-64562b4555f2")
        whole = run.to_json()
        flat = {**whole["body"], **{k: v for k, v in whole.items() if k not in ("body", "kind")}}
        assert runners.decode(orjson.loads(orjson.dumps(flat))) == run
        assert runners.decode(orjson.loads(orjson.dumps(whole))) == run
    finally:
        db.dispose()
