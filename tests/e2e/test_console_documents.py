"""The console's documents of a dataset: several files in one upload (one batch, all or none),
live indexing status, document list and detail, segments listed, edited, disabled, and hit
testing; members by role."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests import support
from tests.e2e.conftest import Admin, add_member

assert_envelope = support.assert_envelope
FERRY = "Ferries to the island leave from pier four every morning at seven."
MARKET = "The fish market by the harbour opens at six and closes at noon."
SETTINGS = '{"indexing_technique": "high_quality", "process_rule": {"mode": "automatic"}}'


def made_dataset(client: httpx.Client) -> str:
    made = client.post("/console/api/datasets", json={"name": f"Console {time.monotonic_ns()}"})
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["id"])


def wait_batch(client: httpx.Client, dataset_id: str, batch: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        items = client.get(f"/console/api/datasets/{dataset_id}/batch/{batch}/indexing-status")
        assert items.status_code == 200, items.text
        data = items.json()["data"]
        if all(i["indexing_status"] in ("completed", "error") for i in data):
            return list(data)
        time.sleep(0.1)
    raise AssertionError("the batch did not finish")


class TestConsoleDocuments:
    def test_upload_follow_list_edit_and_search(self, stack: support.Stack, admin: Admin) -> None:
        client = admin.client
        dataset_id = made_dataset(client)
        base = f"/console/api/datasets/{dataset_id}"
        uploaded = client.post(
            f"{base}/documents",
            files=[
                ("file", ("ferry.txt", FERRY.encode())),
                ("file", ("market.md", MARKET.encode())),
            ],
            data={"data": SETTINGS},
        )
        assert uploaded.status_code == 200, uploaded.text
        body = uploaded.json()
        assert [d["name"] for d in body["documents"]] == ["ferry.txt", "market.md"]
        assert {d["created_from"] for d in body["documents"]} == {"web"}
        statuses = wait_batch(client, dataset_id, body["batch"])
        assert [s["indexing_status"] for s in statuses] == ["completed", "completed"]

        listed = client.get(f"{base}/documents").json()
        assert listed["total"] == 2
        ferry_id = body["documents"][0]["id"]
        detail = client.get(f"{base}/documents/{ferry_id}").json()
        assert detail["segment_count"] == 1 and detail["display_status"] == "available"
        (segment,) = client.get(f"{base}/documents/{ferry_id}/segments").json()["data"]
        assert segment["content"] == FERRY

        changed = client.patch(
            f"{base}/documents/{ferry_id}/segments/{segment['id']}",
            json={"content": "Ferries to the island leave from pier six every morning at nine."},
        )
        assert changed.status_code == 200, changed.text
        hits = client.post(
            f"{base}/hit-testing",
            json={"query": "nine", "retrieval_model": {"search_method": "keyword_search"}},
        ).json()["records"]
        assert [h["segment"]["id"] for h in hits] == [segment["id"]]

        off = client.patch(
            f"{base}/documents/{ferry_id}/segment/disable", params={"segment_id": segment["id"]}
        )
        assert off.status_code == 200, off.text
        hits = client.post(
            f"{base}/hit-testing",
            json={"query": "nine", "retrieval_model": {"search_method": "keyword_search"}},
        ).json()["records"]
        assert hits == []
        on = client.patch(
            f"{base}/documents/{ferry_id}/segment/enable", params={"segment_id": segment["id"]}
        )
        assert on.status_code == 200, on.text

    def test_uploads_are_all_or_nothing_and_need_an_editor(
        self, stack: support.Stack, admin: Admin
    ) -> None:
        client = admin.client
        dataset_id = made_dataset(client)
        base = f"/console/api/datasets/{dataset_id}"
        mixed = client.post(
            f"{base}/documents",
            files=[("file", ("ok.txt", b"fine text")), ("file", ("virus.exe", b"MZ"))],
            data={"data": SETTINGS},
        )
        assert_envelope(mixed, 415, "unsupported_file_type")
        assert client.get(f"{base}/documents").json()["total"] == 0
        assert_envelope(
            client.post(f"{base}/documents", data={"data": SETTINGS}), 400, "no_file_uploaded"
        )
        many = [("file", (f"f{i}.txt", b"x")) for i in range(21)]
        assert_envelope(
            client.post(f"{base}/documents", files=many, data={"data": SETTINGS}),
            400,
            "too_many_files",
        )
        assert client.get(f"{base}/documents").json()["total"] == 0

        everyone = client.patch(base, json={"permission": "all_team_members"})
        assert everyone.status_code == 200, everyone.text
        reader = add_member(stack, admin, "normal")
        assert reader.client.get(f"{base}/documents").status_code == 200
        assert_envelope(
            reader.client.post(
                f"{base}/documents", files=[("file", ("a.txt", b"a"))], data={"data": SETTINGS}
            ),
            403,
            "forbidden",
        )
        reader.client.close()
