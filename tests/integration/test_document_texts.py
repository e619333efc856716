"""A document a run was given is parsed once per process, not on every turn that remembers it
(`run_files.DOCUMENT_TEXTS`, by content): the kept text still goes only to the app the file was
uploaded through, and a file gone from storage is gone even when its text is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conduit.core.apps.chat import AttachmentsFailed
from conduit.db.models import App
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database
from conduit.infra.storage import LocalStorage
from conduit.services import files as uploads
from conduit.services import run_files
from conduit.services.end_users import get_or_create_end_user
from conduit.services.run_files import DocumentTexts, FileParts
from tests.support import add_chat_app
from tests.unit.test_rag_extract import pdf_of

REPORT = pdf_of("Quarterly report: revenue grew 12 percent.", "Page two: costs fell.")


def upload(db: Database, storage: LocalStorage, app: App, name: str, data: bytes) -> str:
    with db.transaction() as session:
        user = get_or_create_end_user(session, app, "alice", MemoryCache())
        row = uploads.upload(
            session, storage, app=app, end_user=user, filename=name,
            mime_type="application/pdf", data=data, limits=uploads.UploadLimits(),
        )  # fmt: skip
        return row.id


def new_app(db: Database, name: str) -> App:
    with db.transaction() as session:
        app = add_chat_app(session, name)
        session.expunge(app)
    return app


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files parsed (the real parser runs)."""
    seen: list[str] = []
    real = run_files.extract

    def counted(filename: str, data: bytes) -> Any:
        seen.append(filename)
        return real(filename, data)

    monkeypatch.setattr(run_files, "extract", counted)
    monkeypatch.setattr(run_files, "DOCUMENT_TEXTS", DocumentTexts())
    return seen


def document(file_id: str, at: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"type": "document", "transfer_method": "local_file",
                             "upload_file_id": file_id, "filename": "report.pdf"}  # fmt: skip
    if at is not None:
        found["at"] = at
    return found


def test_a_remembered_document_is_parsed_once_then_its_text_is_kept(
    db: Database, tmp_path: Path, parses: list[str]
) -> None:
    storage = LocalStorage(tmp_path)
    app = new_app(db, "Reports")
    file_id = upload(db, storage, app, "report.pdf", REPORT)
    reader = FileParts(db, storage)
    first = reader._read(app.tenant_id, app.id, [document(file_id)])
    assert "revenue grew 12 percent" in first[0].text and "costs fell" in first[0].text
    assert parses == ["report.pdf"]
    # The next turns remember it (a past turn's file, then this one's again): no parse.
    later = reader._read(app.tenant_id, app.id, [document(file_id, at=0), document(file_id)])
    assert [turn.text for turn in later] == [first[0].text, first[0].text]
    assert parses == ["report.pdf"]
    # The same bytes under another name (the same extension) share the kept text.
    again = upload(db, storage, app, "copy.pdf", REPORT)
    assert run_files.upload_text(db, storage, app.tenant_id, app.id, again)[1] in first[0].text
    assert parses == ["report.pdf"]
    # Not across workspaces: another's upload of the same bytes is parsed on its own (its
    # time would tell whether this one had them).
    other = new_app(db, "Elsewhere")
    theirs = upload(db, storage, other, "report.pdf", REPORT)
    run_files.upload_text(db, storage, other.tenant_id, other.id, theirs)
    assert parses == ["report.pdf", "report.pdf"]


def test_a_kept_text_is_still_the_uploading_apps_and_gone_with_its_file(
    db: Database, tmp_path: Path, parses: list[str]
) -> None:
    storage = LocalStorage(tmp_path)
    app, other = new_app(db, "Reports"), new_app(db, "Other")
    file_id = upload(db, storage, app, "report.pdf", REPORT)
    reader = FileParts(db, storage)
    reader._read(app.tenant_id, app.id, [document(file_id)])
    # Another app asking for the file (its text kept in this process) is refused.
    with pytest.raises(AttachmentsFailed, match="is not an upload of this app"):
        reader._read(other.tenant_id, other.id, [document(file_id)])
    # Gone from storage: this message's file fails naming it, a past turn's is left out.
    for path in tmp_path.rglob("*.pdf"):
        path.unlink()
    with pytest.raises(AttachmentsFailed, match=r"report\.pdf is gone from storage"):
        reader._read(app.tenant_id, app.id, [document(file_id)])
    assert reader._read(app.tenant_id, app.id, [document(file_id, at=0)])[0].text == ""
    assert parses == ["report.pdf"]


def test_the_kept_texts_stay_within_their_budget_least_recently_used_out_first() -> None:
    texts = DocumentTexts(max_chars=100)
    texts.put(("t", "a", "md"), "a" * 20)
    texts.put(("t", "b", "md"), "b" * 20)
    texts.put(("t", "huge", "md"), "h" * 26)  # over a quarter of the budget: not kept
    assert texts.get(("t", "huge", "md")) is None
    assert texts.get(("t", "a", "md")) == "a" * 20  # now the most recently used
    texts.put(("t", "c", "md"), "c" * 25)
    texts.put(("t", "d", "md"), "d" * 25)  # 90 chars in all
    texts.put(("t", "e", "md"), "e" * 15)  # 105: the least recently used (b) goes
    assert texts.get(("t", "b", "md")) is None
    assert [texts.get(("t", key, "md")) is not None for key in "acde"] == [True] * 4
