"""The annotation reply's jobs and search on the database (both dialects) with the local
embedding model: an enable embeds the questions and switches the reply on; the search keeps an
app's vectors in memory and reads them again when they change; a job whose task never ended
does not keep the app's reply stuck."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from conduit.core.apps.annotations import AnnotationPlan
from conduit.core.rag.embed.local import MODEL_ID, LocalEmbedder
from conduit.db.models import (
    AnnotationHitHistory,
    AnnotationJob,
    App,
    Message,
    MessageAnnotation,
    utcnow,
)
from conduit.errors import Conflict, InvalidParam
from conduit.infra.db import Database
from conduit.services import app_annotations
from conduit.services.conversations import create_conversation
from conduit.services.datasets.embedders import Embedders
from conduit.services.end_users import BROWSER, get_or_create_end_user
from tests.support import add_chat_app

ENABLE = {
    "score_threshold": 0.9,
    "embedding_provider_name": "conduit",
    "embedding_model_name": MODEL_ID,
}


@pytest.fixture(scope="module")
def embedders() -> Embedders:
    return Embedders(secret="test-secret", local=lambda: LocalEmbedder(batch_size=8, spin=False))


def new_app(db: Database) -> App:
    with db.transaction() as session:
        app = add_chat_app(session, "Annotations")
        session.expunge(app)
    return app


def write(db: Database, app: App, question: str, answer: str) -> str:
    with db.transaction() as session:
        made = app_annotations.create_annotation(
            session, app, {"question": question, "answer": answer}, account_id=None
        )
        return made.id


def enabled_app(db: Database, embedders: Embedders, app: App) -> App:
    with db.transaction() as session:
        job = app_annotations.start_job(session, app, "enable", ENABLE)
    assert app_annotations.run_job(db, embedders, job["job_id"]) == "completed"
    with db.transaction() as session:
        fresh = session.get(App, app.id)
        assert fresh is not None
        session.expunge(fresh)
    return fresh


def plan(app: App, query: str) -> AnnotationPlan:
    found = app_annotations.annotation_plan(app, query)
    assert found is not None
    return found


def test_enable_then_the_search_follows_the_apps_annotations(
    db: Database, embedders: Embedders
) -> None:
    app = new_app(db)
    hours = write(db, app, "What are your opening hours?", "Nine to five.")
    assert app_annotations.annotation_plan(app, "anything") is None  # the reply is off
    app = enabled_app(db, embedders, app)
    setting = app_annotations.reply_setting(app)
    assert setting is not None
    assert (setting["enabled"], setting["score_threshold"]) == (True, 0.9)
    assert setting["embedding_model"] == {
        "embedding_provider_name": "conduit",
        "embedding_model_name": MODEL_ID,
    }
    search = app_annotations.AnnotationSearch(db, embedders)
    hit = search.match(plan(app, "What are your opening hours?"))
    assert hit is not None and (hit.id, hit.answer) == (hours, "Nine to five.")
    assert hit.score > 0.99
    assert search.match(plan(app, "Tell me about volcanoes")) is None

    # Written after the enable: found once its task embedded it (the kept matrix is read
    # again: its version changed).
    shop = write(db, app, "Where is the shop?", "At 1 Main Street.")
    assert search.match(plan(app, "Where is the shop?")) is None  # not embedded yet
    assert app_annotations.index_annotations(db, embedders, app.id) == 1
    found = search.match(plan(app, "Where is the shop?"))
    assert found is not None and found.id == shop

    # Removed: no longer answers.
    with db.transaction() as session:
        app_annotations.delete_annotation(session, app, hours)
    assert search.match(plan(app, "What are your opening hours?")) is None


def test_a_job_whose_task_never_ended_gives_way_to_a_new_one(db: Database) -> None:
    app = new_app(db)
    with db.transaction() as session:
        recent = app_annotations.start_job(session, app, "enable", ENABLE)
    with db.transaction() as session:
        # While it is young, asking again gives the same job (as in Dify).
        again = app_annotations.start_job(session, app, "enable", ENABLE)
    assert again == recent
    with db.transaction() as session, pytest.raises(Conflict, match="enable job"):
        # The other action waits for it (one job of an app at a time).
        app_annotations.start_job(session, app, "disable", {})
    with db.transaction() as session:
        job = session.get(AnnotationJob, recent["job_id"])
        assert job is not None
        job.status = "processing"
        job.created_at = utcnow() - app_annotations.JOB_ABANDONED_AFTER - timedelta(seconds=1)
    with db.transaction() as session:
        fresh = app_annotations.start_job(session, app, "disable", {})
    assert fresh["job_id"] != recent["job_id"] and fresh["job_status"] == "waiting"
    with db.transaction() as session:
        old: Any = app_annotations.job_view(session, app, "enable", recent["job_id"])
    assert old["job_status"] == "error"
    assert "did not end within" in old["error_msg"]
    # Its task, should it run at last, changes nothing.
    assert app_annotations.run_job(db, Embedders("s", local=LocalEmbedder), recent["job_id"]) == (
        "skipped"
    )


def test_a_disable_drops_the_vectors_and_switches_the_reply_off(
    db: Database, embedders: Embedders
) -> None:
    app = new_app(db)
    write(db, app, "Do you ship abroad?", "Yes.")
    app = enabled_app(db, embedders, app)
    with db.transaction() as session:
        job = app_annotations.start_job(session, app, "disable", {})
    assert app_annotations.run_job(db, embedders, job["job_id"]) == "completed"
    assert app_annotations.run_job(db, embedders, job["job_id"]) == "skipped"  # a redelivery
    with db.transaction() as session:
        fresh = session.get(App, app.id)
        assert fresh is not None
        assert app_annotations.reply_setting(fresh) is None
        assert fresh.model_config_["annotation_reply"] == {"enabled": False}
        vectors = [row.vector for row in session.query(MessageAnnotation).filter_by(app_id=app.id)]
    assert vectors == [None]


def _import(db: Database, app: App, data: bytes, name: str = "faq.csv") -> dict[str, Any]:
    with db.transaction() as session:
        return app_annotations.import_annotations(session, app, name, data, account_id=None)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"question,answer\nq\x00,a\n", "NUL"),
        (b"question,answer\n" + b"q,a\n" * 1001, "more than 1000"),
        (b"question,answer\nWhat is 1,000?,A thousand\n", "Row 2 of the CSV file has more"),
        (b'question,answer\n"never closed,a\nq2,a2\n', "could not be read"),
        (b"question,answer\nCaf\xe9?,Oui\n", "UTF-8"),
        (b"question,answer\nq," + b"x" * 70_000 + b"\n", "at most 65535"),
        (b"question,answer\nq,a\n" + b" " * (4 * 1024 * 1024), "bytes"),
        (b"question,answer\n\n", "no annotations"),
    ],
)
def test_an_odd_csv_file_is_refused_naming_why_and_nothing_is_written(
    db: Database, data: bytes, named: str
) -> None:
    app = new_app(db)
    with pytest.raises(InvalidParam) as refused:
        _import(db, app, data)
    assert named in refused.value.message
    with db.reads() as session:
        assert app_annotations.count_annotations(session, app) == 0


def test_a_csv_import_reads_what_a_spreadsheet_writes(db: Database) -> None:
    app = new_app(db)
    # Old Mac line endings, a quoted comma, and a cell the export wrote as text.
    made = _import(db, app, b'question,answer\rHow much?,"Ten, or twelve."\rSum?,\'=SUM(A1)\r')
    assert made["job_status"] == "completed" and made["record_count"] == 2
    with db.reads() as session:
        exported = app_annotations.export_annotations(session, app)
        assert {(a["question"], a["answer"]) for a in exported} == {
            ("How much?", "Ten, or twelve."),
            ("Sum?", "=SUM(A1)"),
        }
        assert app_annotations.import_view(session, app, made["job_id"])["job_status"] == (
            "completed"
        )


def test_a_hit_is_counted_and_kept_until_its_annotation_goes(db: Database) -> None:
    app = new_app(db)
    annotation_id = write(db, app, "Opening hours?", "Nine to five.")
    with db.transaction() as session:
        user = get_or_create_end_user(session, app, "web-1", user_type=BROWSER)
        conversation = create_conversation(session, app, user, inputs={})
        message = Message(
            app_id=app.id, conversation_id=conversation, end_user_id=user.id, query="hours?"
        )
        session.add(message)
        session.flush()
        # As a run's end writes it (one transaction with the message's end).
        app_annotations.count_hit(session.connection(), annotation_id, message.id, 0.93)
    with db.transaction() as session:
        items, total = app_annotations.hit_histories(session, app, annotation_id, page=1, limit=20)
        assert total == 1
        [hit] = items
        assert (hit["question"], hit["match"], hit["response"], hit["source"]) == (
            "hours?",
            "Opening hours?",
            "Nine to five.",
            "web-app",
        )
        assert hit["score"] == pytest.approx(0.93)
        assert session.get(MessageAnnotation, annotation_id).hit_count == 1  # type: ignore[union-attr]
        app_annotations.delete_annotation(session, app, annotation_id)
    with db.reads() as session:
        left = session.scalar(select(func.count()).select_from(AnnotationHitHistory))
        assert left == 0


def test_rows_are_numbered_as_a_spreadsheet_numbers_them(db: Database) -> None:
    app = new_app(db)
    # Row 2's answer spans three lines; row 3 lacks its answer; then a quote never closed.
    spanning = b'question,answer\nq1,"one\ntwo\nthree"\nq2,\n'
    with pytest.raises(InvalidParam) as refused:
        _import(db, app, spanning)
    assert "Row 3 of the CSV file needs" in refused.value.message
    unclosed = b'question,answer\nq1,a1\nq2,"never\nclosed\nat all\n'
    with pytest.raises(InvalidParam) as refused:
        _import(db, app, unclosed)
    assert "record that begins at line 3" in refused.value.message
    # A kept apostrophe: only one before a formula's first character is the export's.
    made = _import(db, app, b"question,answer\n'-h' flag?,''=1\n")
    assert made["record_count"] == 1
    with db.reads() as session:
        [kept] = app_annotations.export_annotations(session, app)
    assert (kept["question"], kept["answer"]) == ("-h' flag?", "'=1")
