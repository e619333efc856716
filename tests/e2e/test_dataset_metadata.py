"""Document metadata through the Knowledge API: a dataset's fields (create, list with counts,
rename, delete), documents' values (set whole or in part; shown on the documents), Dify's
built-in fields, and searches filtered by `metadata_filtering_conditions`; Dify's errors."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests import support
from tests.e2e.test_indexing import by_text, kb, wait_indexed

__all__ = ["kb"]  # the fixture

assert_envelope = support.assert_envelope
TEXTS = {
    "ferry": "Ferries to the island leave from pier four every morning at seven.",
    "market": "The fish market by the harbour opens every morning at seven.",
}


def indexed_dataset(kb: httpx.Client) -> tuple[str, dict[str, str]]:
    made = kb.post("/v1/datasets", json={"name": f"Meta {time.monotonic_ns()}"})
    assert made.status_code == 200, made.text
    dataset_id = made.json()["id"]
    ids = {}
    for name, text in TEXTS.items():
        created = by_text(kb, dataset_id, name=name, text=text)
        assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == "completed"
        ids[name] = created["document"]["id"]
    return dataset_id, ids


def field(kb: httpx.Client, dataset_id: str, name: str, kind: str) -> dict[str, str]:
    made = kb.post(f"/v1/datasets/{dataset_id}/metadata", json={"name": name, "type": kind})
    assert made.status_code == 201, made.text
    return dict(made.json())


def found(kb: httpx.Client, dataset_id: str, method: str, conditions: Any) -> list[str]:
    response = kb.post(
        f"/v1/datasets/{dataset_id}/retrieve",
        json={
            "query": "what leaves at seven in the morning",
            "retrieval_model": {
                "search_method": method,
                "top_k": 5,
                "metadata_filtering_conditions": conditions,
            },
        },
    )
    assert response.status_code == 200, response.text
    return sorted(r["segment"]["document"]["name"] for r in response.json()["records"])


class TestMetadata:
    def test_fields_values_and_filtered_search(self, kb: httpx.Client) -> None:
        dataset_id, docs = indexed_dataset(kb)
        team = field(kb, dataset_id, "team", "string")
        year = field(kb, dataset_id, "year", "number")
        assert (team["name"], team["type"]) == ("team", "string")
        set_values = kb.post(
            f"/v1/datasets/{dataset_id}/documents/metadata",
            json={
                "operation_data": [
                    {"document_id": docs["ferry"], "metadata_list": [
                        {"id": team["id"], "name": "team", "value": "Transport"},
                        {"id": year["id"], "name": "year", "value": "2025"}]},
                    {"document_id": docs["market"], "metadata_list": [
                        {"id": team["id"], "name": "team", "value": "Food"}]},
                ]
            },
        )  # fmt: skip
        assert set_values.status_code == 200, set_values.text
        listing = kb.get(f"/v1/datasets/{dataset_id}/metadata").json()
        assert {(f["name"], f["count"]) for f in listing["doc_metadata"]} == {
            ("team", 2),
            ("year", 1),
        }
        assert listing["built_in_field_enabled"] is False
        path = f"/v1/datasets/{dataset_id}/documents/{docs['ferry']}"
        shown = kb.get(path).json()
        assert {(m["name"], m["value"]) for m in shown["doc_metadata"]} == {
            ("team", "Transport"),
            ("year", 2025),
        }
        # Dify's `?metadata=`: all (the default), only the metadata, or the rest.
        assert kb.get(path, params={"metadata": "all"}).json() == shown
        only = kb.get(path, params={"metadata": "only"}).json()
        assert only == {k: shown[k] for k in ("id", "doc_type", "doc_metadata")}
        without = kb.get(path, params={"metadata": "without"}).json()
        assert without == {k: v for k, v in shown.items() if k not in ("doc_type", "doc_metadata")}
        refused = kb.get(path, params={"metadata": "some"})
        assert refused.status_code == 400
        assert refused.json()["code"] == "invalid_metadata"
        assert refused.json()["message"] == "Invalid metadata value: some"
        dataset = kb.get(f"/v1/datasets/{dataset_id}").json()
        assert [f["name"] for f in dataset["doc_metadata"]] == ["team", "year"]

        transport = {"conditions": [{"name": "team", "comparison_operator": "is",
                                     "value": "Transport"}]}  # fmt: skip
        for method in ("semantic_search", "full_text_search", "hybrid_search"):
            assert found(kb, dataset_id, method, None) == ["ferry.txt", "market.txt"]
            assert found(kb, dataset_id, method, transport) == ["ferry.txt"]
        recent = {"conditions": [{"name": "year", "comparison_operator": "≥", "value": 2026}]}
        assert found(kb, dataset_id, "semantic_search", recent) == []
        either = {"logical_operator": "or", "conditions": [
            {"name": "year", "comparison_operator": "=", "value": 2025},
            {"name": "team", "comparison_operator": "contains", "value": "Foo"}]}  # fmt: skip
        assert found(kb, dataset_id, "semantic_search", either) == ["ferry.txt", "market.txt"]

        # A partial update keeps the other values; a whole one replaces them.
        partial = kb.post(
            f"/v1/datasets/{dataset_id}/documents/metadata",
            json={"operation_data": [{"document_id": docs["ferry"], "partial_update": True,
                  "metadata_list": [{"id": team["id"], "value": "Harbour"}]}]},
        )  # fmt: skip
        assert partial.status_code == 200, partial.text
        values = kb.get(f"/v1/datasets/{dataset_id}/documents/{docs['ferry']}").json()
        assert {(m["name"], m["value"]) for m in values["doc_metadata"]} == {
            ("team", "Harbour"),
            ("year", 2025),
        }
        renamed = kb.patch(
            f"/v1/datasets/{dataset_id}/metadata/{team['id']}", json={"name": "unit"}
        )
        assert renamed.status_code == 200 and renamed.json()["name"] == "unit", renamed.text
        values = kb.get(f"/v1/datasets/{dataset_id}/documents/{docs['market']}").json()
        assert [(m["name"], m["value"]) for m in values["doc_metadata"]] == [("unit", "Food")]
        unit = {"conditions": [{"name": "unit", "comparison_operator": "is", "value": "Food"}]}
        assert found(kb, dataset_id, "keyword_search", unit) == ["market.txt"]
        gone = kb.delete(f"/v1/datasets/{dataset_id}/metadata/{team['id']}")
        assert gone.status_code == 204
        values = kb.get(f"/v1/datasets/{dataset_id}/documents/{docs['market']}").json()
        assert values["doc_metadata"] == []
        assert_envelope(
            kb.post(f"/v1/datasets/{dataset_id}/retrieve",
                    json={"query": "x", "retrieval_model": {"metadata_filtering_conditions": unit}}),
            400, "invalid_param", "no metadata field 'unit'",
        )  # fmt: skip

    def test_built_in_fields(self, kb: httpx.Client) -> None:
        dataset_id, docs = indexed_dataset(kb)
        names = [
            f["name"]
            for f in kb.get(f"/v1/datasets/{dataset_id}/metadata/built-in").json()["fields"]
        ]
        assert names == ["document_name", "uploader", "upload_date", "last_update_date", "source"]
        on = kb.post(f"/v1/datasets/{dataset_id}/metadata/built-in/enable")
        assert on.status_code == 200, on.text
        assert kb.get(f"/v1/datasets/{dataset_id}").json()["built_in_field_enabled"] is True
        shown = kb.get(f"/v1/datasets/{dataset_id}/documents/{docs['ferry']}").json()
        assert "doc_metadata" in shown, shown
        values = {m["name"]: m["value"] for m in shown["doc_metadata"]}
        assert values["document_name"] == "ferry.txt"
        assert values["source"] == "file_upload"
        assert isinstance(values["upload_date"], int)
        by_name = {"conditions": [{"name": "document_name", "comparison_operator": "start with",
                                   "value": "market"}]}  # fmt: skip
        assert found(kb, dataset_id, "semantic_search", by_name) == ["market.txt"]
        off = kb.post(f"/v1/datasets/{dataset_id}/metadata/built-in/disable")
        assert off.status_code == 200
        assert (
            kb.get(f"/v1/datasets/{dataset_id}/documents/{docs['ferry']}").json()["doc_metadata"]
            == []
        )

    def test_bad_input_names_the_field_and_writes_nothing(self, kb: httpx.Client) -> None:
        dataset_id, docs = indexed_dataset(kb)
        base = f"/v1/datasets/{dataset_id}/metadata"
        for body, named in (
            ({"name": "x"}, "type must be one of"),
            ({"type": "string"}, "name is required"),
            ({"type": "string", "name": "document_name"}, "built-in"),
        ):
            assert_envelope(kb.post(base, json=body), 400, "invalid_param", named)
        year = field(kb, dataset_id, "year", "number")
        assert_envelope(kb.post(base, json={"type": "time", "name": "year"}), 400,
                        "invalid_param", "already exists")  # fmt: skip
        assert_envelope(kb.patch(f"{base}/not-an-id", json={"name": "y"}), 404, "not_found",
                        "Metadata not found.")  # fmt: skip
        bad = kb.post(
            f"/v1/datasets/{dataset_id}/documents/metadata",
            json={"operation_data": [
                {"document_id": docs["ferry"], "metadata_list": [{"id": year["id"], "value": 1}]},
                {"document_id": docs["market"], "metadata_list": [{"id": year["id"],
                                                                  "value": "soon"}]}]},
        )  # fmt: skip
        assert_envelope(bad, 400, "invalid_param", "operation_data[1].metadata_list[0].value")
        # The first operation was not written either.
        shown = kb.get(f"/v1/datasets/{dataset_id}/documents/{docs['ferry']}").json()
        assert shown["doc_metadata"] == []
        assert_envelope(
            kb.post(f"/v1/datasets/{dataset_id}/documents/metadata",
                    json={"operation_data": [{"document_id": "nope", "metadata_list": []}]}),
            404, "not_found", "Document not found.",
        )  # fmt: skip


class TestFusion:
    def test_hybrid_by_reciprocal_rank_and_the_modes_refused(self, kb: httpx.Client) -> None:
        dataset_id, _ = indexed_dataset(kb)
        url = f"/v1/datasets/{dataset_id}/retrieve"
        body = {"query": "ferry pier", "retrieval_model": {
            "search_method": "hybrid_search", "reranking_mode": "reciprocal_rank_fusion",
            "top_k": 5}}  # fmt: skip
        fused = kb.post(url, json=body)
        assert fused.status_code == 200, fused.text
        records = fused.json()["records"]
        assert records[0]["segment"]["document"]["name"] == "ferry.txt"
        assert records[0]["score"] == 1.0  # first by meaning and by keyword
        assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
        for mode, named in (("bm25", "must be one of"),):
            body["retrieval_model"]["reranking_mode"] = mode  # type: ignore[index]
            assert_envelope(kb.post(url, json=body), 400, "invalid_param", named)
        # As the dataset's own default, too.
        saved = kb.patch(f"/v1/datasets/{dataset_id}", json={"retrieval_model": {
            "search_method": "hybrid_search", "reranking_mode": "reciprocal_rank_fusion"}})  # fmt: skip
        assert saved.status_code == 200, saved.text
        assert saved.json()["retrieval_model_dict"]["reranking_mode"] == "reciprocal_rank_fusion"
        again = kb.post(url, json={"query": "ferry pier"}).json()["records"]
        assert again[0]["score"] == 1.0
