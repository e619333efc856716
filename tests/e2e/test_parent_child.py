"""Parent-child chunking (Dify's `hierarchical_model`) through the Knowledge API, indexed for
real by the local embedding model: parents cut by the rule, each cut into child chunks; a
search compares the children with the query and returns their parents with the children that
matched; child chunks are listed, added, changed and deleted, each change searchable on
return; a parent's edit regenerates its children when asked; the rule's errors in words."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests import support
from tests.e2e.conftest import Admin, add_member
from tests.e2e.test_indexing import by_text, kb, segments, wait_indexed

__all__ = ["kb"]  # the fixture

assert_envelope = support.assert_envelope

HARBOUR = (
    "The harbour master opens the lock gates at high tide.\n"
    "Fishing boats unload their catch on the north quay.\n"
    "The ferry to the island leaves from pier four at seven."
)
BAKERY = (
    "Sourdough needs flour, water, salt and a lively starter.\n"
    "The dough rests overnight in a cool larder.\n"
    "Loaves bake in a covered pot at 230 degrees for forty minutes."
)
GARDEN = (
    "Tomatoes want six hours of sun and deep watering twice a week.\n"
    "Slugs are kept off the lettuce with copper tape.\n"
    "Compost is turned every fortnight."
)
TEXT = "\n\n".join((HARBOUR, BAKERY, GARDEN))
RULE = {
    "mode": "hierarchical",
    "rules": {
        "pre_processing_rules": [{"id": "remove_extra_spaces", "enabled": True}],
        "segmentation": {"separator": "\n\n", "max_tokens": 200},
        "parent_mode": "paragraph",
        "subchunk_segmentation": {"separator": "\n", "max_tokens": 60},
    },
}


def new_dataset(kb: httpx.Client) -> str:
    made = kb.post("/v1/datasets", json={"name": f"Parents {time.monotonic_ns()}"})
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def parent_child_document(
    kb: httpx.Client, text: str = TEXT, rule: dict[str, Any] = RULE
) -> tuple[str, str]:
    dataset_id = new_dataset(kb)
    created = by_text(
        kb, dataset_id, name="notes", text=text, doc_form="hierarchical_model", process_rule=rule
    )
    assert created["document"]["doc_form"] == "hierarchical_model"
    assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == "completed"
    return dataset_id, created["document"]["id"]


def retrieve(
    kb: httpx.Client, dataset_id: str, query: str, method: str = "semantic_search"
) -> list[dict[str, Any]]:
    found = kb.post(
        f"/v1/datasets/{dataset_id}/retrieve",
        json={"query": query, "retrieval_model": {"search_method": method, "top_k": 3}},
    )
    assert found.status_code == 200, found.text
    return list(found.json()["records"])


def lines(text: str) -> list[str]:
    return text.split("\n")


class TestIndexingAndSearch:
    def test_parents_are_returned_for_the_children_that_match(
        self, kb: httpx.Client, stack: support.Stack
    ) -> None:
        dataset_id, document_id = parent_child_document(kb)
        assert kb.get(f"/v1/datasets/{dataset_id}").json()["doc_form"] == "hierarchical_model"
        stored = stack.sql(
            "SELECT count(*) FROM child_chunks WHERE document_id = :id", id=document_id
        )
        assert stored[0][0] == 9
        if stack.distributed:  # pgvector: the children's vectors, and none of the parents'
            children = stack.sql(
                "SELECT count(*) FROM rag_child_vectors_384 v JOIN child_chunks c "
                "ON c.id = v.chunk_id WHERE c.document_id = :id",
                id=document_id,
            )
            parents = stack.sql(
                "SELECT count(*) FROM rag_vectors_384 v JOIN document_segments s "
                "ON s.id = v.segment_id WHERE s.document_id = :id",
                id=document_id,
            )
            assert (children[0][0], parents[0][0]) == (9, 0)

        found = segments(kb, dataset_id, document_id)
        assert [s["content"] for s in found] == [HARBOUR, BAKERY, GARDEN]
        for segment, text in zip(found, (HARBOUR, BAKERY, GARDEN), strict=True):
            children = segment["child_chunks"]
            assert [c["content"] for c in children] == lines(text)
            assert [c["position"] for c in children] == [1, 2, 3]
            assert {c["type"] for c in children} == {"automatic"}
            assert {c["segment_id"] for c in children} == {segment["id"]}
            assert set(children[0]) == {
                "id", "segment_id", "content", "position", "word_count", "type",
                "created_at", "updated_at",
            }  # fmt: skip
            assert children[0]["word_count"] == len(children[0]["content"])

        records = retrieve(kb, dataset_id, "How long does the bread bake and how hot?")
        best = records[0]
        assert best["segment"]["content"] == BAKERY  # the parent, not the child
        assert best["segment"]["document"]["id"] == document_id
        assert best["child_chunks"], best
        assert best["child_chunks"][0]["content"] == lines(BAKERY)[2]
        assert set(best["child_chunks"][0]) == {"id", "content", "position", "score"}
        assert best["score"] == best["child_chunks"][0]["score"]
        scores = [c["score"] for c in best["child_chunks"]]
        assert scores == sorted(scores, reverse=True)
        # Each parent once, however many of its children matched.
        assert len({r["segment"]["id"] for r in records}) == len(records)

        hybrid = retrieve(kb, dataset_id, "ferry pier island", "hybrid_search")
        assert hybrid[0]["segment"]["content"] == HARBOUR
        assert (
            retrieve(kb, dataset_id, "copper", "full_text_search")[0]["segment"]["content"]
            == GARDEN
        )

    def test_full_doc_mode_makes_the_whole_text_one_parent(self, kb: httpx.Client) -> None:
        rule = {"mode": "hierarchical", "rules": {**RULE["rules"], "parent_mode": "full-doc"}}
        dataset_id, document_id = parent_child_document(kb, rule=rule)
        (parent,) = segments(kb, dataset_id, document_id)
        assert parent["content"] == TEXT
        assert [c["content"] for c in parent["child_chunks"]] == [
            line for line in TEXT.split("\n") if line
        ]
        best = retrieve(kb, dataset_id, "keeping slugs away from lettuce")[0]
        assert best["child_chunks"][0]["content"] == lines(GARDEN)[1]

    def test_the_default_rule_needs_no_rules(self, kb: httpx.Client) -> None:
        dataset_id, document_id = parent_child_document(kb, rule={"mode": "hierarchical"})
        found = segments(kb, dataset_id, document_id)
        assert [s["content"] for s in found] == [HARBOUR, BAKERY, GARDEN]
        assert [len(s["child_chunks"]) for s in found] == [3, 3, 3]

    def test_an_update_by_text_replaces_the_children(
        self, kb: httpx.Client, stack: support.Stack
    ) -> None:
        dataset_id, document_id = parent_child_document(kb)
        url = f"/v1/datasets/{dataset_id}/documents/{document_id}/update-by-text"
        refused = kb.post(url, json={"process_rule": {"mode": "automatic"}})
        assert refused.status_code == 400, refused.text
        assert "hierarchical" in refused.json()["message"]
        rules = stack.sql(
            "SELECT count(*) FROM dataset_process_rules WHERE dataset_id = :id", id=dataset_id
        )
        assert rules[0][0] == 1  # the refused rule was not written

        updated = kb.post(url, json={"name": "notes", "text": BAKERY})
        assert updated.status_code == 200, updated.text
        ended = wait_indexed(kb, dataset_id, updated.json()["batch"])[-1]
        assert ended["indexing_status"] == "completed", ended
        (parent,) = segments(kb, dataset_id, document_id)
        assert [c["content"] for c in parent["child_chunks"]] == lines(BAKERY)
        stored = stack.sql(
            "SELECT count(*) FROM child_chunks WHERE document_id = :id", id=document_id
        )
        assert stored[0][0] == 3  # the old generation's nine went with their segments
        assert all(
            r["segment"]["content"] == BAKERY for r in retrieve(kb, dataset_id, "ferry pier")
        )


class TestChildChunks:
    def test_add_list_change_and_delete_each_searchable_on_return(self, kb: httpx.Client) -> None:
        dataset_id, document_id = parent_child_document(kb)
        harbour = segments(kb, dataset_id, document_id)[0]
        base = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments/{harbour['id']}"
        query = "Where can I hire a kayak?"
        assert all(
            c["content"] != "Kayaks can be hired at the slipway by the lifeboat station."
            for r in retrieve(kb, dataset_id, query)
            for c in r["child_chunks"]
        )

        added = kb.post(
            f"{base}/child_chunks",
            json={"content": "Kayaks can be hired at the slipway by the lifeboat station."},
        )
        assert added.status_code == 200, added.text
        chunk = added.json()["data"]
        assert chunk["type"] == "customized"
        assert chunk["position"] == 4
        assert chunk["segment_id"] == harbour["id"]
        best = retrieve(kb, dataset_id, query)[0]
        assert best["segment"]["id"] == harbour["id"]
        assert best["child_chunks"][0]["id"] == chunk["id"]

        listed = kb.get(f"{base}/child_chunks", params={"limit": 3})
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert (page["total"], page["total_pages"], page["page"], page["limit"]) == (4, 2, 1, 3)
        assert [c["content"] for c in page["data"]] == lines(HARBOUR)
        second = kb.get(f"{base}/child_chunks", params={"limit": 3, "page": 2}).json()
        assert [c["id"] for c in second["data"]] == [chunk["id"]]
        keyword = kb.get(f"{base}/child_chunks", params={"keyword": "quay"}).json()
        assert [c["content"] for c in keyword["data"]] == [lines(HARBOUR)[1]]

        text = "Rowing boats are rented by the hour from the boathouse."
        changed = kb.patch(f"{base}/child_chunks/{chunk['id']}", json={"content": text})
        assert changed.status_code == 200, changed.text
        assert changed.json()["data"]["content"] == text
        assert changed.json()["data"]["word_count"] == len(text)
        best = retrieve(kb, dataset_id, "renting a rowing boat for an hour")[0]
        assert best["child_chunks"][0]["id"] == chunk["id"]
        assert best["child_chunks"][0]["content"] == text

        # An automatic child edited by hand becomes customized.
        first = page["data"][0]
        edited = kb.patch(
            f"{base}/child_chunks/{first['id']}",
            json={"content": "The lock gates open two hours before high water."},
        )
        assert edited.json()["data"]["type"] == "customized"

        gone = kb.delete(f"{base}/child_chunks/{chunk['id']}")
        assert gone.status_code == 204
        assert all(
            c["id"] != chunk["id"]
            for r in retrieve(kb, dataset_id, "renting a rowing boat for an hour")
            for c in r["child_chunks"]
        )
        assert_envelope(
            kb.patch(f"{base}/child_chunks/{chunk['id']}", json={"content": "x"}),
            404, "not_found", "Child chunk not found.",
        )  # fmt: skip
        assert_envelope(
            kb.delete(f"{base}/child_chunks/not-an-id"), 404, "not_found", "Child chunk not found."
        )
        assert kb.get(f"{base}/child_chunks").json()["total"] == 3

    def test_the_console_lists_adds_changes_and_deletes_them(
        self, kb: httpx.Client, admin: Admin, stack: support.Stack
    ) -> None:
        """Dify's console child chunk routes, for the workspace's editors (the console's
        segment panel uses them)."""
        dataset_id, document_id = parent_child_document(kb)
        harbour = segments(kb, dataset_id, document_id)[0]
        base = (
            f"/console/api/datasets/{dataset_id}/documents/{document_id}/segments/"
            f"{harbour['id']}/child_chunks"
        )
        console = admin.client
        listed = console.get(base)
        assert listed.status_code == 200, listed.text
        assert [c["content"] for c in listed.json()["data"]] == lines(HARBOUR)
        kayaks = "Kayaks can be hired at the slipway by the lifeboat station."
        added = console.post(base, json={"content": kayaks})
        assert added.status_code == 200, added.text
        chunk = added.json()["data"]
        assert (chunk["type"], chunk["position"]) == ("customized", 4)
        best = retrieve(kb, dataset_id, "Where can I hire a kayak?")[0]
        assert best["child_chunks"][0]["id"] == chunk["id"]
        rowing = "Rowing boats are rented by the hour from the boathouse."
        changed = console.patch(f"{base}/{chunk['id']}", json={"content": rowing})
        assert changed.status_code == 200, changed.text
        assert changed.json()["data"]["content"] == rowing
        assert_envelope(
            console.patch(f"{base}/{chunk['id']}", json={"content": " "}),
            400, "invalid_param", "content",
        )  # fmt: skip
        assert console.delete(f"{base}/{chunk['id']}").status_code == 204
        assert console.get(base).json()["total"] == 3
        assert_envelope(console.delete(f"{base}/{chunk['id']}"), 404, "not_found", "Child chunk")

        # A member who is not an editor reads them and changes nothing.
        shared = console.patch(
            f"/console/api/datasets/{dataset_id}", json={"permission": "all_team_members"}
        )
        assert shared.status_code == 200, shared.text
        reader = add_member(stack, admin, "normal")
        try:
            assert reader.client.get(base).json()["total"] == 3
            assert_envelope(reader.client.post(base, json={"content": kayaks}), 403, "forbidden")
        finally:
            reader.client.close()
        assert console.get(base).json()["total"] == 3

    def test_a_parent_edit_regenerates_its_children_only_when_asked(self, kb: httpx.Client) -> None:
        dataset_id, document_id = parent_child_document(kb)
        garden = segments(kb, dataset_id, document_id)[2]
        base = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments"
        kept = kb.post(
            f"{base}/{garden['id']}",
            json={"segment": {"content": GARDEN + "\nBeans climb the hazel poles."}},
        )
        assert kept.status_code == 200, kept.text
        assert [c["id"] for c in kept.json()["data"]["child_chunks"]] == [
            c["id"] for c in garden["child_chunks"]
        ]

        text = "Bees visit the lavender all summer.\nHoney is taken in September."
        regenerated = kb.post(
            f"{base}/{garden['id']}",
            json={"segment": {"content": text, "regenerate_child_chunks": True}},
        )
        assert regenerated.status_code == 200, regenerated.text
        data = regenerated.json()["data"]
        assert data["content"] == text
        assert [c["content"] for c in data["child_chunks"]] == lines(text)
        best = retrieve(kb, dataset_id, "When is the honey harvested?")[0]
        assert best["segment"]["id"] == garden["id"]
        assert best["child_chunks"][0]["content"] == lines(text)[1]
        assert all(
            c["content"] not in lines(GARDEN)
            for r in retrieve(kb, dataset_id, "copper tape against slugs")
            for c in r["child_chunks"]
        )

    def test_added_segments_get_children_by_the_documents_rule(self, kb: httpx.Client) -> None:
        dataset_id, document_id = parent_child_document(kb)
        text = "The museum opens at ten.\nEntry is free on Sundays."
        added = kb.post(
            f"/v1/datasets/{dataset_id}/documents/{document_id}/segments",
            json={"segments": [{"content": text}]},
        )
        assert added.status_code == 200, added.text
        (segment,) = added.json()["data"]
        assert added.json()["doc_form"] == "hierarchical_model"
        assert [c["content"] for c in segment["child_chunks"]] == lines(text)
        best = retrieve(kb, dataset_id, "Is the museum free on Sunday?")[0]
        assert best["segment"]["id"] == segment["id"]


class TestErrors:
    def test_bad_forms_and_rules_are_refused_in_words_and_write_nothing(
        self, kb: httpx.Client
    ) -> None:
        dataset_id = new_dataset(kb)
        url = f"/v1/datasets/{dataset_id}/document/create-by-text"
        body = {
            "name": "notes", "text": TEXT, "indexing_technique": "high_quality",
            "doc_form": "hierarchical_model", "process_rule": RULE,
        }  # fmt: skip
        cases = [
            ({"doc_form": "qa_model"}, "qa_model"),
            ({"doc_form": "json_model"}, "doc_form must be one of"),
            ({"indexing_technique": "economy"}, "high_quality"),
            ({"process_rule": {"mode": "automatic"}}, "hierarchical"),
            ({"doc_form": "text_model"}, "hierarchical"),
            (
                {"process_rule": {"mode": "hierarchical", "rules": {"parent_mode": "pages"}}},
                "parent_mode",
            ),
            (
                {
                    "process_rule": {
                        "mode": "hierarchical",
                        "rules": {"subchunk_segmentation": {"max_tokens": 10}},
                    }
                },
                "subchunk_segmentation",
            ),
        ]
        for change, named in cases:
            refused = kb.post(url, json={**body, **change})
            assert refused.status_code == 400, (change, refused.text)
            assert refused.json()["code"] == "invalid_param"
            assert named in refused.json()["message"], (change, refused.json())
        assert kb.get(f"/v1/datasets/{dataset_id}/documents").json()["total"] == 0

        first = by_text(kb, dataset_id, **body)
        wait_indexed(kb, dataset_id, first["batch"])
        mixed = kb.post(
            url,
            json={**body, "doc_form": "text_model", "process_rule": {"mode": "automatic"}},
        )
        assert mixed.status_code == 400, mixed.text
        assert "doc_form is different from the dataset doc_form" in mixed.json()["message"]
        # Without a doc_form or a rule, a later document takes the dataset's.
        later = by_text(kb, dataset_id, name="more", text=BAKERY, process_rule=None)
        assert later["document"]["doc_form"] == "hierarchical_model"
        assert wait_indexed(kb, dataset_id, later["batch"])[-1]["indexing_status"] == "completed"
        assert kb.get(f"/v1/datasets/{dataset_id}/documents").json()["total"] == 2

    def test_child_chunk_routes_refuse_a_text_model_document(self, kb: httpx.Client) -> None:
        dataset_id = new_dataset(kb)
        created = by_text(kb, dataset_id, name="plain", text=HARBOUR)
        wait_indexed(kb, dataset_id, created["batch"])
        document_id = created["document"]["id"]
        (segment,) = segments(kb, dataset_id, document_id)
        assert segment["child_chunks"] == []
        url = f"/v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment['id']}"
        refused = kb.post(f"{url}/child_chunks", json={"content": "A child."})
        assert refused.status_code == 400, refused.text
        assert "hierarchical_model" in refused.json()["message"]
        listed = kb.get(f"{url}/child_chunks")  # a read finds none, as Dify's does
        assert listed.status_code == 200, listed.text
        assert (listed.json()["data"], listed.json()["total"]) == ([], 0)
        empty = kb.post(f"{url}/child_chunks", json={"content": "  "})
        assert_envelope(empty, 400, "invalid_param", "content is required.")
