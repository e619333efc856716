"""Dify's `KnowledgeBaseClient` (dify-python-sdk 0.1.16, unchanged) against a running Conduit:
run by `tests/e2e/test_dify_sdk_knowledge.py` in a process whose path starts with
`.venv/sdk-kb`, as `python knowledge_client.py BASE_URL DATASET_KEY FILE`. Each step asserts
on what the SDK got back; the last line printed is "ok" when all passed."""

from __future__ import annotations

import sys
import time
from typing import Any

import dify_client
from dify_client import KnowledgeBaseClient
from dify_client.exceptions import APIError

PASSAGE = "The lighthouse keeper logs every ship that passes the northern reef."


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if status != 204 else None


def wait(client: KnowledgeBaseClient, batch: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        (item,) = ok(client.batch_indexing_status(batch))["data"]
        if item["indexing_status"] in ("completed", "error"):
            return dict(item)
        time.sleep(0.1)
    raise AssertionError(f"batch {batch} still indexing")


def main(base_url: str, key: str, path: str) -> None:
    print("sdk", dify_client.__file__)
    client = KnowledgeBaseClient(key, base_url=base_url)
    made = ok(client.create_dataset(name=f"SDK {time.monotonic_ns()}"))
    assert made["name"].startswith("SDK"), made
    listed = ok(client.list_datasets(page=1, page_size=100))
    assert made["id"] in [d["id"] for d in listed["data"]], listed
    client = KnowledgeBaseClient(key, base_url=base_url, dataset_id=made["id"])
    print("dataset", made["id"])

    by_text = ok(
        client.create_document_by_text(
            "lighthouse", PASSAGE, extra_params={"indexing_technique": "high_quality",
                                                 "process_rule": {"mode": "automatic"}},
        )
    )  # fmt: skip
    text_status = wait(client, by_text["batch"])
    assert text_status["indexing_status"] == "completed", text_status
    assert text_status["completed_segments"] == text_status["total_segments"] == 1
    by_file = ok(client.create_document_by_file(path))
    file_status = wait(client, by_file["batch"])
    assert file_status["indexing_status"] == "completed", file_status
    print("documents indexed")

    documents = ok(client.list_documents(page=1, page_size=20))
    assert {d["id"] for d in documents["data"]} == {
        by_text["document"]["id"],
        by_file["document"]["id"],
    }, documents

    hits = ok(client.hit_testing("Who records the ships near the reef?",
                                 retrieval_model={"search_method": "semantic_search",
                                                  "top_k": 2}))  # fmt: skip
    assert hits["query"]["content"] == "Who records the ships near the reef?"
    assert hits["records"][0]["segment"]["content"] == PASSAGE, hits
    print("hit testing")

    document_id = by_text["document"]["id"]
    segments = ok(client.query_segments(document_id))["data"]
    assert [s["content"] for s in segments] == [PASSAGE], segments
    assert ok(client.query_segments(document_id, keyword="reef"))["data"]
    assert ok(client.query_segments(document_id, keyword="volcano"))["data"] == []
    added = ok(client.add_segments(document_id, [{"content": "Fog horns sound every minute."}]))
    (new,) = added["data"]
    assert new["content"] == "Fog horns sound every minute." and new["position"] == 2, added
    changed = ok(
        client.update_document_segment(
            document_id, new["id"], {"content": "Fog horns sound every thirty seconds."}
        )
    )
    assert changed["data"]["content"] == "Fog horns sound every thirty seconds.", changed
    ok(client.delete_document_segment(document_id, new["id"]), 204)
    assert len(ok(client.query_segments(document_id))["data"]) == 1
    print("segments")

    ok(client.delete_document(by_file["document"]["id"]), 204)
    ok(client.delete_dataset(), 204)
    # The SDK raises on an error status: the deleted dataset is a 404 with Dify's message.
    found: APIError | None = None
    try:
        client.get_dataset()
    except APIError as error:
        found = error
    assert found is not None, "the deleted dataset is still there"
    assert (found.status_code, str(found)) == (404, "Dataset not found."), found
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
