"""A completed document's segments edited through the Knowledge API: added, read, changed,
disabled and enabled, deleted; each edit searchable (or gone from search) as soon as it
returns, by meaning and by keyword, with the document's counters following; Dify's errors."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests import support
from tests.e2e.test_indexing import by_text, kb, segments, wait_indexed

__all__ = ["kb"]  # the fixture

assert_envelope = support.assert_envelope
FIRST = "Tide tables for the harbour are printed every Monday morning."
ADDED: list[dict[str, Any]] = [
    {"content": "Ferries to the island leave from pier four at seven.", "keywords": ["ferry"]},
    {"content": "The fish market closes at noon on Saturdays."},
]


def completed_document(kb: httpx.Client, technique: str = "high_quality") -> tuple[str, str]:
    made = kb.post("/v1/datasets", json={"name": f"Harbour {time.monotonic_ns()}"})
    assert made.status_code == 200, made.text
    dataset_id = made.json()["id"]
    created = by_text(kb, dataset_id, name="harbour", text=FIRST, indexing_technique=technique)
    assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == "completed"
    return dataset_id, created["document"]["id"]


def search(kb: httpx.Client, dataset_id: str, query: str, method: str) -> list[str]:
    found = kb.post(
        f"/v1/datasets/{dataset_id}/retrieve",
        json={"query": query, "retrieval_model": {"search_method": method, "top_k": 3}},
    )
    assert found.status_code == 200, found.text
    return [record["segment"]["content"] for record in found.json()["records"]]


def document(kb: httpx.Client, dataset_id: str, document_id: str) -> dict[str, Any]:
    found = kb.get(f"/v1/datasets/{dataset_id}/documents/{document_id}")
    assert found.status_code == 200, found.text
    return dict(found.json())


class TestEdits:
    def test_add_read_change_disable_delete(self, kb: httpx.Client) -> None:
        dataset_id, document_id = completed_document(kb)
        base = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments"
        before = document(kb, dataset_id, document_id)

        added = kb.post(base, json={"segments": ADDED})
        assert added.status_code == 200, added.text
        body = added.json()
        assert body["doc_form"] == "text_model"
        assert [s["content"] for s in body["data"]] == [item["content"] for item in ADDED]
        assert [s["position"] for s in body["data"]] == [2, 3]
        assert body["data"][0]["keywords"] == ["ferry"]
        assert all(s["status"] == "completed" and s["enabled"] for s in body["data"])
        ferry_id, market_id = (s["id"] for s in body["data"])
        assert len(segments(kb, dataset_id, document_id)) == 3
        after = document(kb, dataset_id, document_id)
        assert after["word_count"] == before["word_count"] + sum(
            len(item["content"]) for item in ADDED
        )
        assert after["tokens"] > before["tokens"]
        # Searchable at once, by meaning and by keyword.
        assert (
            search(kb, dataset_id, "When does the boat to the island go?", "semantic_search")[0]
            == ADDED[0]["content"]
        )
        assert search(kb, dataset_id, "market", "full_text_search") == [ADDED[1]["content"]]

        read = kb.get(f"{base}/{ferry_id}")
        assert read.status_code == 200, read.text
        assert read.json()["data"]["content"] == ADDED[0]["content"]

        new_text = "Ferries to the island leave from pier six at nine."
        changed = kb.post(f"{base}/{ferry_id}", json={"segment": {"content": new_text}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["data"]["content"] == new_text
        assert changed.json()["data"]["word_count"] == len(new_text)
        assert search(kb, dataset_id, "four", "keyword_search") == []
        assert search(kb, dataset_id, "six", "keyword_search") == [new_text]
        assert search(kb, dataset_id, "ferry island departure", "semantic_search")[0] == new_text

        disabled = kb.post(f"{base}/{market_id}", json={"segment": {"enabled": False}})
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["data"]["enabled"] is False
        assert disabled.json()["data"]["disabled_at"] is not None
        assert search(kb, dataset_id, "market", "full_text_search") == []
        enabled = kb.post(f"{base}/{market_id}", json={"segment": {"enabled": True}})
        assert enabled.json()["data"]["enabled"] is True
        assert search(kb, dataset_id, "market", "full_text_search") == [ADDED[1]["content"]]

        gone = kb.delete(f"{base}/{market_id}")
        assert gone.status_code == 204
        assert_envelope(kb.get(f"{base}/{market_id}"), 404, "not_found", "Segment not found.")
        assert search(kb, dataset_id, "market", "full_text_search") == []
        assert len(segments(kb, dataset_id, document_id)) == 2
        final = document(kb, dataset_id, document_id)
        assert final["word_count"] == before["word_count"] + len(new_text)

    def test_an_economy_dataset_takes_segments_into_its_keyword_index(
        self, kb: httpx.Client
    ) -> None:
        dataset_id, document_id = completed_document(kb, technique="economy")
        added = kb.post(
            f"/v1/datasets/{dataset_id}/documents/{document_id}/segments",
            json={"segments": [ADDED[1]]},
        )
        assert added.status_code == 200, added.text
        assert search(kb, dataset_id, "market", "keyword_search") == [ADDED[1]["content"]]


class TestErrors:
    def test_bad_bodies_name_the_field_and_write_nothing(self, kb: httpx.Client) -> None:
        dataset_id, document_id = completed_document(kb)
        base = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments"
        bad: tuple[tuple[dict[str, Any], str], ...] = (
            ({}, "segments is required"),
            ({"segments": []}, "segments is required"),
            ({"segments": [{"content": "ok"}, {"content": "  "}]}, "segments[1].content"),
            ({"segments": [{"content": "ok", "keywords": "x"}]}, "segments[0].keywords"),
            ({"segments": ["text"]}, "segments[0] must be an object"),
        )
        for body, field in bad:
            assert_envelope(kb.post(base, json=body), 400, "invalid_param", field)
        assert len(segments(kb, dataset_id, document_id)) == 1
        (only,) = segments(kb, dataset_id, document_id)
        changes: tuple[tuple[dict[str, Any], str], ...] = (
            ({}, "segment must be an object"),
            ({"segment": {"content": ""}}, "segment.content"),
            ({"segment": {"enabled": "no"}}, "segment.enabled"),
        )
        for body, field in changes:
            assert_envelope(kb.post(f"{base}/{only['id']}", json=body), 400, "invalid_param", field)
        assert segments(kb, dataset_id, document_id)[0]["content"] == FIRST

    def test_unknown_and_foreign_segments_are_404(self, kb: httpx.Client) -> None:
        dataset_id, document_id = completed_document(kb)
        other_dataset, other_document = completed_document(kb)
        (theirs,) = segments(kb, other_dataset, other_document)
        base = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments"
        for segment_id in ("not-a-uuid", theirs["id"]):
            assert_envelope(kb.get(f"{base}/{segment_id}"), 404, "not_found", "Segment not found.")
            assert_envelope(kb.delete(f"{base}/{segment_id}"), 404, "not_found")
        assert len(segments(kb, other_dataset, other_document)) == 1

    def test_a_document_still_indexing_or_disabled_refuses_edits(self, kb: httpx.Client) -> None:
        made = kb.post("/v1/datasets", json={"name": f"Busy {time.monotonic_ns()}"})
        dataset_id = made.json()["id"]
        created = by_text(kb, dataset_id, name="long", text="Long text. " * 3000)
        document_id = created["document"]["id"]
        base = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments"
        early = kb.post(base, json={"segments": [{"content": "too soon"}]})
        if document(kb, dataset_id, document_id)["indexing_status"] != "completed":
            assert_envelope(early, 404, "not_found", "Document is not completed.")
        wait_indexed(kb, dataset_id, created["batch"])
        off = kb.patch(
            f"/v1/datasets/{dataset_id}/documents/status/disable",
            json={"document_ids": [document_id]},
        )
        assert off.status_code == 200, off.text
        assert_envelope(
            kb.post(base, json={"segments": [{"content": "while disabled"}]}),
            404,
            "not_found",
            "Document is disabled.",
        )
