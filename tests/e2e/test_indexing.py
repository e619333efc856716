"""Documents through the Knowledge API, indexed for real: created from text or a file, parsed,
cleaned, split and embedded by the local model on the `dataset` queue (the embedded worker, or
a `conduit worker` in the distributed mode), followed through `indexing-status`, listed with
their segments, and deleted with their file."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from docx import Document as WordDocument
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from tests import support
from tests.e2e.conftest import Admin

assert_envelope = support.assert_envelope
PASSAGE = "The lighthouse keeper logs every ship that passes the northern reef."
LONG_TEXT = (
    "\n\n".join(
        f"Chapter {n}. " + " ".join(f"Sentence {n}.{i} tells part of the story." for i in range(40))
        for n in range(12)
    )
    + "\n\n"
    + PASSAGE
)


@pytest.fixture
def kb(stack: support.Stack, admin: Admin) -> Iterator[httpx.Client]:
    created = admin.client.post("/console/api/datasets/api-keys")
    with stack.client(created.json()["data"]["token"]) as client:
        yield client


@pytest.fixture
def dataset(kb: httpx.Client) -> dict[str, Any]:
    made = kb.post("/v1/datasets", json={"name": f"Docs {time.monotonic_ns()}"})
    assert made.status_code == 200, made.text
    return dict(made.json())


def by_text(kb: httpx.Client, dataset_id: str, **body: Any) -> dict[str, Any]:
    payload = {
        "name": "story",
        "text": LONG_TEXT,
        "indexing_technique": "high_quality",
        "process_rule": {"mode": "automatic"},
        **body,
    }
    response = kb.post(f"/v1/datasets/{dataset_id}/document/create-by-text", json=payload)
    assert response.status_code == 200, response.text
    return dict(response.json())


def by_file(
    kb: httpx.Client, dataset_id: str, name: str, data: bytes, settings: dict[str, Any] | None
) -> httpx.Response:
    return kb.post(
        f"/v1/datasets/{dataset_id}/document/create_by_file",
        files={"file": (name, data, "application/octet-stream")},
        data={"data": orjson.dumps(settings).decode()} if settings is not None else {},
    )


def wait_indexed(
    kb: httpx.Client, dataset_id: str, batch: str, timeout: float = 90
) -> list[dict[str, Any]]:
    """Poll the batch until every document ended; every poll's items, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = kb.get(f"/v1/datasets/{dataset_id}/documents/{batch}/indexing-status")
        assert response.status_code == 200, response.text
        items = response.json()["data"]
        seen.extend(items)
        if all(item["indexing_status"] in ("completed", "error") for item in items):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"batch {batch} still indexing after {timeout} s: {seen[-1:]}")


def segments(kb: httpx.Client, dataset_id: str, document_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        response = kb.get(
            f"/v1/datasets/{dataset_id}/documents/{document_id}/segments",
            params={"page": page, "limit": 100},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        found.extend(body["data"])
        if not body["has_more"]:
            return found
        page += 1


def pdf_bytes(text: str) -> bytes:
    out = io.BytesIO()
    drawing = canvas.Canvas(out, pagesize=A4)
    drawing.drawString(72, 720, text)
    drawing.showPage()
    drawing.save()
    return out.getvalue()


def docx_bytes(text: str) -> bytes:
    document = WordDocument()
    document.add_paragraph("Introduction")
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


class TestIndexing:
    def test_text_goes_through_every_stage_to_segments(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        created = by_text(kb, dataset["id"])
        document, batch = created["document"], created["batch"]
        assert len(batch) == 20 and batch.isdigit()
        assert document["indexing_status"] == "waiting"
        assert document["display_status"] == "queuing"
        assert document["name"] == "story.txt"
        assert document["data_source_type"] == "upload_file"

        polls = wait_indexed(kb, dataset["id"], batch)
        final = polls[-1]
        assert final["indexing_status"] == "completed", final
        assert final["error"] is None
        stamps = [
            final[key]
            for key in (
                "processing_started_at",
                "parsing_completed_at",
                "cleaning_completed_at",
                "splitting_completed_at",
                "completed_at",
            )
        ]
        assert all(isinstance(stamp, int) for stamp in stamps)
        assert stamps == sorted(stamps)
        assert final["completed_segments"] == final["total_segments"] > 5

        found = segments(kb, dataset["id"], document["id"])
        assert len(found) == final["total_segments"]
        assert [s["position"] for s in found] == list(range(1, len(found) + 1))
        assert all(s["status"] == "completed" and s["tokens"] > 0 for s in found)
        assert all(s["content"] in LONG_TEXT for s in found)
        assert any(PASSAGE in s["content"] for s in found)

        detail = kb.get(f"/v1/datasets/{dataset['id']}/documents/{document['id']}").json()
        assert detail["display_status"] == "available"
        assert detail["segment_count"] == len(found)
        assert detail["word_count"] == sum(s["word_count"] for s in found)
        assert detail["tokens"] == sum(s["tokens"] for s in found)
        assert detail["indexing_latency"] >= 0
        assert detail["dataset_process_rule"]["mode"] == "automatic"

        refreshed = kb.get(f"/v1/datasets/{dataset['id']}").json()
        assert refreshed["indexing_technique"] == "high_quality"
        assert refreshed["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8"
        assert (refreshed["document_count"], refreshed["total_available_documents"]) == (1, 1)

    def test_a_custom_rule_cuts_at_its_separator(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        text = "Q: one?\nA: yes.\n***\nQ: two?\nA: no.\n***\nQ: three?\nA: maybe."
        rule = {
            "mode": "custom",
            "rules": {
                "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True}],
                "segmentation": {"separator": "***", "max_tokens": 100, "chunk_overlap": 0},
            },
        }
        created = by_text(kb, dataset["id"], text=text, process_rule=rule)
        assert wait_indexed(kb, dataset["id"], created["batch"])[-1]["indexing_status"] == (
            "completed"
        )
        found = segments(kb, dataset["id"], created["document"]["id"])
        assert [s["content"] for s in found] == [
            "Q: one?\nA: yes.",
            "Q: two?\nA: no.",
            "Q: three?\nA: maybe.",
        ]

    @pytest.mark.parametrize(
        ("name", "make"),
        [
            ("notes.txt", lambda: PASSAGE.encode()),
            ("guide.md", lambda: f"# Guide\n\n## Reef\n\n{PASSAGE}\n".encode()),
            ("page.html", lambda: f"<html><body><p>{PASSAGE}</p></body></html>".encode()),
            ("ships.csv", lambda: b'keeper,note\nAda,"' + PASSAGE.encode() + b'"\n'),
            ("report.pdf", lambda: pdf_bytes(PASSAGE)),
            ("memo.docx", lambda: docx_bytes(PASSAGE)),
        ],
    )
    def test_each_supported_format_is_indexed(
        self, kb: httpx.Client, dataset: dict[str, Any], name: str, make: Any
    ) -> None:
        settings = {"indexing_technique": "economy", "process_rule": {"mode": "automatic"}}
        response = by_file(kb, dataset["id"], name, make(), settings)
        assert response.status_code == 200, response.text
        created = response.json()
        final = wait_indexed(kb, dataset["id"], created["batch"])[-1]
        assert final["indexing_status"] == "completed", final
        contents = " ".join(s["content"] for s in segments(kb, dataset["id"], final["id"]))
        assert "northern reef" in contents

    def test_a_later_document_reuses_the_datasets_rule_and_technique(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        by_text(kb, dataset["id"], text="first", indexing_technique="economy")
        response = by_file(kb, dataset["id"], "second.txt", b"second text", None)
        assert response.status_code == 200, response.text
        assert (
            wait_indexed(kb, dataset["id"], response.json()["batch"])[-1]["indexing_status"]
            == "completed"
        )


class TestBadDocuments:
    def test_a_damaged_file_ends_in_error_with_its_reason_and_no_segments(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        settings = {"indexing_technique": "economy", "process_rule": {"mode": "automatic"}}
        response = by_file(kb, dataset["id"], "broken.pdf", b"%PDF-1.4 not really", settings)
        assert response.status_code == 200, response.text
        final = wait_indexed(kb, dataset["id"], response.json()["batch"])[-1]
        assert final["indexing_status"] == "error"
        assert "'broken.pdf' could not be" in final["error"]
        assert final["total_segments"] == 0
        assert segments(kb, dataset["id"], final["id"]) == []
        listed = kb.get(f"/v1/datasets/{dataset['id']}/documents", params={"status": "error"})
        assert [d["id"] for d in listed.json()["data"]] == [final["id"]]

    def test_refused_uploads_store_nothing(self, kb: httpx.Client, dataset: dict[str, Any]) -> None:
        settings = {"indexing_technique": "economy", "process_rule": {"mode": "automatic"}}
        assert_envelope(
            by_file(kb, dataset["id"], "tool.exe", b"MZ\x90\x00", settings),
            415,
            "unsupported_file_type",
            ".exe",
        )
        assert_envelope(
            by_file(kb, dataset["id"], "empty.txt", b"", settings), 400, "invalid_param", "empty"
        )
        bad_json = kb.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-file",
            files={"file": ("a.txt", b"x", "text/plain")},
            data={"data": "{not json"},
        )
        assert_envelope(bad_json, 400, "invalid_param", "data must be a JSON object")
        assert_envelope(
            kb.post(f"/v1/datasets/{dataset['id']}/document/create-by-file"),
            400,
            "no_file_uploaded",
        )
        assert_envelope(
            kb.post(
                f"/v1/datasets/{dataset['id']}/document/create-by-text",
                json={"name": "x", "text": "y"},
            ),
            400,
            "invalid_param",
            "indexing_technique is required.",
        )
        assert_envelope(
            kb.post(
                f"/v1/datasets/{dataset['id']}/document/create-by-text",
                json={"name": "x", "text": "y", "indexing_technique": "economy"},
            ),
            400,
            "invalid_param",
            "process_rule is required.",
        )
        custom = {
            "mode": "custom",
            "rules": {"segmentation": {"separator": "\n", "max_tokens": 10, "chunk_overlap": 0}},
        }
        assert_envelope(
            kb.post(
                f"/v1/datasets/{dataset['id']}/document/create-by-text",
                json={
                    "name": "x",
                    "text": "y",
                    "indexing_technique": "economy",
                    "process_rule": custom,
                },
            ),
            400,
            "invalid_param",
            "max_tokens must be between 50 and 4000",
        )
        listed = kb.get(f"/v1/datasets/{dataset['id']}/documents").json()
        assert listed["total"] == 0
        assert kb.get(f"/v1/datasets/{dataset['id']}").json()["indexing_technique"] is None

    def test_unknown_batch_and_document_are_404(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        assert_envelope(
            kb.get(f"/v1/datasets/{dataset['id']}/documents/20990101000000000000/indexing-status"),
            404,
            "not_found",
            "Documents not found.",
        )
        for document_id in ("nope", "00000000-0000-4000-8000-000000000000"):
            assert_envelope(
                kb.get(f"/v1/datasets/{dataset['id']}/documents/{document_id}"),
                404,
                "not_found",
                "Document not found.",
            )


class TestDeleting:
    def test_a_deleted_document_takes_its_segments_and_file_with_it(
        self, stack: support.Stack, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        created = by_text(kb, dataset["id"], indexing_technique="economy")
        wait_indexed(kb, dataset["id"], created["batch"])
        document_id = created["document"]["id"]
        file_id = created["document"]["data_source_info"]["upload_file_id"]
        files = list(_files_dir(stack).rglob(f"{file_id}.*"))
        assert len(files) == 1
        assert kb.delete(f"/v1/datasets/{dataset['id']}/documents/{document_id}").status_code == 204
        assert_envelope(
            kb.get(f"/v1/datasets/{dataset['id']}/documents/{document_id}"), 404, "not_found"
        )
        left = support.run_sql(
            stack.database_url,
            "SELECT count(*) FROM document_segments WHERE document_id = :id",
            id=document_id,
        )
        assert left == [(0,)]
        support.wait_for(lambda: not files[0].exists(), timeout=20, what="the file to go")

    def test_a_deleted_dataset_takes_its_documents_files_with_it(
        self, stack: support.Stack, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        created = by_text(kb, dataset["id"], indexing_technique="economy")
        wait_indexed(kb, dataset["id"], created["batch"])
        file_id = created["document"]["data_source_info"]["upload_file_id"]
        files = list(_files_dir(stack).rglob(f"{file_id}.*"))
        assert kb.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
        support.wait_for(lambda: not files[0].exists(), timeout=20, what="the file to go")
        assert support.run_sql(
            stack.database_url, "SELECT count(*) FROM upload_files WHERE id = :id", id=file_id
        ) == [(0,)]


def _files_dir(stack: support.Stack) -> Path:
    data = stack.env.get("CONDUIT_DATA_DIR")
    return (Path(data) if data else stack.workdir / ".conduit") / "files"


FACTS = [
    "The lighthouse keeper logs every ship that passes the northern reef.",
    "Sourdough bread needs a starter fed with flour and water every day.",
    "The quarterly tax return is due thirty days after the quarter ends.",
    "Penguins huddle together to keep warm through the antarctic winter.",
]


class TestRetrieval:
    def indexed(self, kb: httpx.Client, dataset_id: str) -> None:
        rule = {
            "mode": "custom",
            "rules": {"segmentation": {"separator": "\n", "max_tokens": 100, "chunk_overlap": 0}},
        }
        created = by_text(kb, dataset_id, text="\n".join(FACTS), process_rule=rule)
        assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == (
            "completed"
        )

    def test_the_nearest_segment_by_meaning_comes_first(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        self.indexed(kb, dataset["id"])
        response = kb.post(
            f"/v1/datasets/{dataset['id']}/retrieve",
            json={"query": "When do I have to file taxes?", "retrieval_model": {"top_k": 3}},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["query"] == {"content": "When do I have to file taxes?"}
        records = body["records"]
        assert len(records) == 3
        assert records[0]["segment"]["content"] == FACTS[2]
        assert records[0]["segment"]["document"]["name"] == "story.txt"
        scores = [r["score"] for r in records]
        assert scores == sorted(scores, reverse=True)
        assert 0 < scores[0] <= 1
        for key in ("child_chunks", "tsne_position", "files"):
            assert key in records[0]

        birds = kb.post(
            f"/v1/datasets/{dataset['id']}/hit-testing",
            json={"query": "birds in the cold south", "retrieval_model": {"top_k": 1}},
        ).json()["records"]
        assert [r["segment"]["content"] for r in birds] == [FACTS[3]]

    def test_a_threshold_drops_weak_matches(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        self.indexed(kb, dataset["id"])
        strict = kb.post(
            f"/v1/datasets/{dataset['id']}/retrieve",
            json={
                "query": "baking bread with a starter",
                "retrieval_model": {
                    "top_k": 4,
                    "score_threshold_enabled": True,
                    "score_threshold": 0.5,
                },
            },
        ).json()["records"]
        assert [r["segment"]["content"] for r in strict] == [FACTS[1]]

    def test_a_deleted_document_is_no_longer_found(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        self.indexed(kb, dataset["id"])
        url = f"/v1/datasets/{dataset['id']}/retrieve"
        assert kb.post(url, json={"query": "penguins"}).json()["records"]
        listed = kb.get(f"/v1/datasets/{dataset['id']}/documents").json()["data"]
        kb.delete(f"/v1/datasets/{dataset['id']}/documents/{listed[0]['id']}")
        assert kb.post(url, json={"query": "penguins"}).json()["records"] == []

    def test_bad_requests_are_refused_in_words(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        self.indexed(kb, dataset["id"])
        url = f"/v1/datasets/{dataset['id']}/retrieve"
        assert_envelope(kb.post(url, json={}), 400, "invalid_param", "query is required.")
        assert_envelope(
            kb.post(url, json={"query": "x" * 251}), 400, "invalid_param", "at most 250"
        )
        assert_envelope(
            kb.post(url, json={"query": "q", "retrieval_model": {"top_k": 0}}),
            400,
            "invalid_param",
            "retrieval_model.top_k",
        )
        economy = kb.post("/v1/datasets", json={"name": f"Economy {time.monotonic_ns()}"}).json()
        by_text(kb, economy["id"], text="plain words", indexing_technique="economy")
        assert_envelope(
            kb.post(f"/v1/datasets/{economy['id']}/retrieve", json={"query": "words"}),
            400,
            "invalid_param",
            "needs embeddings, which this dataset does not have",
        )


class TestKeywordSearch:
    def test_full_text_finds_the_word_and_hybrid_weighs_both(
        self, stack: support.Stack, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        TestRetrieval().indexed(kb, dataset["id"])
        url = f"/v1/datasets/{dataset['id']}/retrieve"
        rows = support.run_sql(
            stack.database_url,
            "SELECT count(*) FROM rag_keywords WHERE dataset_id = :id",
            id=dataset["id"],
        )
        assert rows == [(len(FACTS),)]
        full_text = kb.post(
            url,
            json={"query": "sourdough?", "retrieval_model": {"search_method": "full_text_search"}},
        ).json()["records"]
        assert [r["segment"]["content"] for r in full_text] == [FACTS[1]]
        assert 0 < full_text[0]["score"] < 1
        nothing = kb.post(
            url,
            json={"query": "zeppelin", "retrieval_model": {"search_method": "keyword_search"}},
        ).json()["records"]
        assert nothing == []
        hybrid = kb.post(
            url,
            json={
                "query": "the keeper of the reef",
                "retrieval_model": {
                    "search_method": "hybrid_search",
                    "top_k": 2,
                    "weights": {
                        "vector_setting": {"vector_weight": 0.5},
                        "keyword_setting": {"keyword_weight": 0.5},
                    },
                },
            },
        ).json()["records"]
        assert hybrid[0]["segment"]["content"] == FACTS[0]
        assert len(hybrid) == 2

    def test_an_economy_dataset_is_searched_by_keyword(self, kb: httpx.Client) -> None:
        economy = kb.post("/v1/datasets", json={"name": f"Economy {time.monotonic_ns()}"}).json()
        rule = {
            "mode": "custom",
            "rules": {"segmentation": {"separator": "\n", "max_tokens": 100, "chunk_overlap": 0}},
        }
        created = by_text(
            kb,
            economy["id"],
            text="\n".join(FACTS),
            indexing_technique="economy",
            process_rule=rule,
        )
        wait_indexed(kb, economy["id"], created["batch"])
        found = kb.post(
            f"/v1/datasets/{economy['id']}/retrieve",
            json={
                "query": "Penguins!",
                "retrieval_model": {"search_method": "keyword_search", "top_k": 2},
            },
        ).json()["records"]
        assert [r["segment"]["content"] for r in found] == [FACTS[3]]

    def test_deleting_a_document_or_its_dataset_empties_the_index(
        self, stack: support.Stack, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        TestRetrieval().indexed(kb, dataset["id"])
        TestRetrieval().indexed(kb, dataset["id"])

        def indexed() -> int:
            found = support.run_sql(
                stack.database_url,
                "SELECT count(*) FROM rag_keywords WHERE dataset_id = :id",
                id=dataset["id"],
            )
            return int(found[0][0])  # type: ignore[call-overload]

        assert indexed() == 2 * len(FACTS)
        first = kb.get(f"/v1/datasets/{dataset['id']}/documents").json()["data"][0]
        kb.delete(f"/v1/datasets/{dataset['id']}/documents/{first['id']}")
        assert indexed() == len(FACTS)
        kb.delete(f"/v1/datasets/{dataset['id']}")
        assert indexed() == 0


class TestChangingDocuments:
    def test_disabled_and_archived_documents_are_not_found_until_switched_back(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        TestRetrieval().indexed(kb, dataset["id"])
        document = kb.get(f"/v1/datasets/{dataset['id']}/documents").json()["data"][0]
        url = f"/v1/datasets/{dataset['id']}/retrieve"
        search = {"query": "penguins", "retrieval_model": {"search_method": "hybrid_search"}}
        switch = f"/v1/datasets/{dataset['id']}/documents/status"

        def found() -> int:
            return len(kb.post(url, json=search).json()["records"])

        assert found() > 0
        off = kb.patch(f"{switch}/disable", json={"document_ids": [document["id"]]})
        assert off.status_code == 200 and off.json() == {"result": "success"}
        detail = kb.get(f"/v1/datasets/{dataset['id']}/documents/{document['id']}").json()
        assert (detail["enabled"], detail["display_status"]) == (False, "disabled")
        assert found() == 0
        kb.patch(f"{switch}/enable", json={"document_ids": [document["id"]]})
        assert found() > 0
        kb.patch(f"{switch}/archive", json={"document_ids": [document["id"]]})
        assert (
            kb.get(f"/v1/datasets/{dataset['id']}/documents/{document['id']}").json()[
                "display_status"
            ]
            == "archived"
        )
        assert found() == 0
        assert_envelope(
            kb.patch(f"{switch}/enable", json={"document_ids": [document["id"]]}),
            403,
            "archived_document_immutable",
        )
        kb.patch(f"{switch}/un_archive", json={"document_ids": [document["id"]]})
        assert found() > 0
        assert_envelope(
            kb.patch(f"{switch}/explode", json={"document_ids": [document["id"]]}),
            400,
            "invalid_param",
            "action must be one of",
        )
        assert_envelope(
            kb.patch(f"{switch}/disable", json={"document_ids": []}),
            400,
            "invalid_param",
            "document_ids",
        )
        assert_envelope(
            kb.patch(
                f"{switch}/disable",
                json={"document_ids": ["00000000-0000-4000-8000-000000000000"]},
            ),
            404,
            "not_found",
            "Document not found.",
        )

    def test_update_by_text_indexes_the_new_text_in_place_of_the_old(
        self, stack: support.Stack, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        created = by_text(kb, dataset["id"], text="Old fact: the ferry leaves at nine.")
        wait_indexed(kb, dataset["id"], created["batch"])
        document_id = created["document"]["id"]
        old_file = created["document"]["data_source_info"]["upload_file_id"]
        updated = kb.post(
            f"/v1/datasets/{dataset['id']}/documents/{document_id}/update_by_text",
            json={"name": "timetable", "text": "New fact: the ferry leaves at ten."},
        )
        assert updated.status_code == 200, updated.text
        body = updated.json()
        assert body["document"]["id"] == document_id
        assert body["document"]["name"] == "timetable.txt"
        assert body["batch"] != created["batch"]
        final = wait_indexed(kb, dataset["id"], body["batch"])[-1]
        assert final["indexing_status"] == "completed"
        contents = [s["content"] for s in segments(kb, dataset["id"], document_id)]
        assert contents == ["New fact: the ferry leaves at ten."]
        keyword = kb.post(
            f"/v1/datasets/{dataset['id']}/retrieve",
            json={"query": "nine", "retrieval_model": {"search_method": "full_text_search"}},
        ).json()["records"]
        assert keyword == []
        assert support.run_sql(
            stack.database_url, "SELECT count(*) FROM upload_files WHERE id = :id", id=old_file
        ) == [(0,)]

        renamed = kb.post(
            f"/v1/datasets/{dataset['id']}/documents/{document_id}/update-by-text",
            json={"name": "Ferry times"},
        )
        assert renamed.status_code == 200
        assert renamed.json()["batch"] == body["batch"]  # a rename indexes nothing again
        assert renamed.json()["document"]["name"] == "Ferry times"
        patched = kb.patch(
            f"/v1/datasets/{dataset['id']}/documents/{document_id}", json={"name": "Timetable"}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["document"]["name"] == "Timetable"
        assert patched.json()["batch"] == body["batch"]
        assert_envelope(
            kb.post(
                f"/v1/datasets/{dataset['id']}/documents/{document_id}/update-by-text",
                json={"text": "no name"},
            ),
            400,
            "invalid_param",
            "name is required when text is given.",
        )

    def test_update_by_file_and_a_document_still_indexing_refuses_an_update(
        self, kb: httpx.Client, dataset: dict[str, Any]
    ) -> None:
        created = by_text(kb, dataset["id"], text="Version one of the guide.")
        document_id = created["document"]["id"]
        busy = kb.post(
            f"/v1/datasets/{dataset['id']}/documents/{document_id}/update-by-text",
            json={"name": "guide", "text": "too early"},
        )
        if busy.status_code == 400:  # still waiting or indexing: refused in words
            assert_envelope(busy, 400, "document_indexing")
        wait_indexed(kb, dataset["id"], created["batch"])
        with_file = kb.post(
            f"/v1/datasets/{dataset['id']}/documents/{document_id}/update_by_file",
            files={"file": ("guide.md", b"# Guide\n\nVersion two of the guide.", "text/markdown")},
        )
        assert with_file.status_code == 200, with_file.text
        final = wait_indexed(kb, dataset["id"], with_file.json()["batch"])[-1]
        assert final["indexing_status"] == "completed"
        assert [s["content"] for s in segments(kb, dataset["id"], document_id)] == [
            "# Guide\n\nVersion two of the guide."
        ]
