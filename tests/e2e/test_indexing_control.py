"""Pausing, resuming and retrying a document's indexing from the console, on a real worker:
a paused document stops where it is and shows `paused`; resumed, it completes with exactly its
segments; a document in error is indexed again; Dify's errors for the rest."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests import support
from tests.e2e.conftest import Admin
from tests.e2e.test_indexing import by_file, by_text, kb, segments, wait_indexed

__all__ = ["kb"]  # the fixture

assert_envelope = support.assert_envelope
# About 150 segments of the custom rule below: long enough to pause in the middle.
LONG = "\n\n".join(f"Item {n}: " + " ".join(f"word{n}x{i}" for i in range(40)) for n in range(150))
RULE = {
    "mode": "custom",
    "rules": {"segmentation": {"separator": "\n\n", "max_tokens": 120, "chunk_overlap": 0}},
}


def status(kb: httpx.Client, dataset_id: str, batch: str) -> dict[str, Any]:
    response = kb.get(f"/v1/datasets/{dataset_id}/documents/{batch}/indexing-status")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"][0])


class TestPauseResume:
    def test_a_paused_document_stops_and_resumes_to_its_exact_segments(
        self, admin: Admin, kb: httpx.Client
    ) -> None:
        dataset_id = kb.post("/v1/datasets", json={"name": f"P {time.monotonic_ns()}"}).json()["id"]
        created = by_text(kb, dataset_id, name="long", text=LONG, process_rule=RULE)
        batch, document_id = created["batch"], created["document"]["id"]
        console = f"/console/api/datasets/{dataset_id}"
        # Pause once it is embedding.
        support.wait_for(
            lambda: status(kb, dataset_id, batch)["indexing_status"] == "indexing",
            timeout=60, interval=0.05, what="indexing to start",
        )  # fmt: skip
        paused = admin.client.patch(f"{console}/documents/{document_id}/processing/pause")
        assert paused.status_code == 200, paused.text
        first = status(kb, dataset_id, batch)
        assert first["indexing_status"] == "paused"
        assert first["paused_at"] is not None
        time.sleep(2.0)  # a worker in the middle of a batch finishes it, then writes nothing
        held = status(kb, dataset_id, batch)
        time.sleep(1.5)
        later = status(kb, dataset_id, batch)
        assert later["completed_segments"] == held["completed_segments"], (held, later)
        assert later["indexing_status"] == "paused"
        assert held["completed_segments"] < held["total_segments"], "finished before the pause"
        console_view = admin.client.get(f"{console}/batch/{batch}/indexing-status")
        assert console_view.json()["data"][0]["indexing_status"] == "paused"
        assert_envelope(
            admin.client.patch(f"{console}/documents/{document_id}/processing/stop"),
            404,
            "not_found",
        )

        resumed = admin.client.patch(f"{console}/documents/{document_id}/processing/resume")
        assert resumed.status_code == 200, resumed.text
        ended = wait_indexed(kb, dataset_id, batch, timeout=180)[-1]
        assert ended["indexing_status"] == "completed", ended
        assert ended["completed_segments"] == ended["total_segments"]
        found = segments(kb, dataset_id, document_id)
        assert len(found) == ended["total_segments"]
        assert sorted(s["position"] for s in found) == list(range(1, len(found) + 1))
        assert_envelope(
            admin.client.patch(f"{console}/documents/{document_id}/processing/pause"),
            400,
            "document_indexing",
            "Only a document that is still indexing can be paused.",
        )
        assert_envelope(
            admin.client.patch(f"{console}/documents/{document_id}/processing/resume"),
            400,
            "document_indexing",
            "Only a paused document can be resumed.",
        )


class TestRetry:
    def test_a_document_in_error_is_indexed_again(self, admin: Admin, kb: httpx.Client) -> None:
        dataset_id = kb.post("/v1/datasets", json={"name": f"R {time.monotonic_ns()}"}).json()["id"]
        bad = by_file(
            kb, dataset_id, "broken.pdf", b"%PDF-1.7 not really a pdf",
            {"indexing_technique": "high_quality", "process_rule": {"mode": "automatic"}},
        )  # fmt: skip
        assert bad.status_code == 200, bad.text
        batch, document_id = bad.json()["batch"], bad.json()["document"]["id"]
        failed = wait_indexed(kb, dataset_id, batch)[-1]
        assert failed["indexing_status"] == "error", failed
        first_start = failed["processing_started_at"]
        time.sleep(1.1)  # so that the second start's second differs
        retried = admin.client.post(
            f"/console/api/datasets/{dataset_id}/retry", json={"document_ids": [document_id]}
        )
        assert retried.status_code == 204, retried.text
        again = wait_indexed(kb, dataset_id, batch)[-1]
        assert again["indexing_status"] == "error"  # the file is still broken
        assert again["error"] == failed["error"]
        assert again["processing_started_at"] != first_start  # it ran again

        good = by_text(kb, dataset_id, name="fine", text="A short, fine text.")
        wait_indexed(kb, dataset_id, good["batch"])
        assert_envelope(
            admin.client.post(
                f"/console/api/datasets/{dataset_id}/retry",
                json={"document_ids": [good["document"]["id"]]},
            ),
            400,
            "document_indexing",
            "only a document in error is retried",
        )
        assert_envelope(
            admin.client.post(f"/console/api/datasets/{dataset_id}/retry", json={}),
            400,
            "invalid_param",
            "document_ids is required",
        )
