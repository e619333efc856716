"""kill -9 of the worker while it indexes a document: in flight, one large document (about
145 kB of text, 200 segments, half a minute of the local model's work here) embedded on the
`dataset` queue.
Its lease lapses, and whichever comes first resumes it — the server's takeover loop (which
counts it in `resumes`) or the broker handing the dead worker's task to the restarted one
(which claims the lapsed lease) —, and the worker carries on where the dead one stopped: the document ends `completed` with exactly the splitter's segments —
none lost, none twice — and nothing is left `indexing`. The same for a parent-child document
(its child chunks embedded in the killed batches): exactly the splitter's parents and
children, each child's vector once. And for a Q&A document killed while the chat model writes
its pairs: exactly the pairs of every chunk, in order, none twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conduit.core.rag.clean import CleaningRules, clean
from conduit.core.rag.embed.local import tokenizer
from conduit.core.rag.qa import parse_pairs
from conduit.core.rag.split import Segmentation, Splitter
from conduit.services.datasets.documents import HIERARCHICAL_RULES, parent_child_rule
from tests import support
from tests.e2e.conftest import create_admin, login
from tests.fakes.fake_openai import qa_pairs
from tests.faults.harness import FaultStack, Row, fault_stack, report

LEASE = 4
TEXT = "\n\n".join(
    f"Section {n}. "
    + " ".join(f"Item {n}.{i} describes a part, its size and where it is kept." for i in range(60))
    for n in range(80)
)


@pytest.fixture(scope="module")
def indexing_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("indexing"),
        slow_upstream.base_url,
        servers=1,
        CONDUIT_RAG_LEASE_SECONDS=str(LEASE),
    ) as stack:
        yield stack


def knowledge_client(stack: FaultStack) -> httpx.Client:
    admin = login(stack, *create_admin(stack))  # type: ignore[arg-type]
    key = admin.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
    admin.client.close()
    return stack.client(key)


def status(kb: httpx.Client, dataset_id: str, batch: str) -> dict[str, Any]:
    response = kb.get(f"/v1/datasets/{dataset_id}/documents/{batch}/indexing-status")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"][0])


def kill_mid_indexing(
    stack: FaultStack, kb: httpx.Client, dataset_id: str, batch: str, expected: int
) -> tuple[dict[str, Any], int, list[int], float]:
    """Wait until a fifth of the document's segments are done, kill -9 the worker, start it
    again and wait for the document to end: (its last status, segments done at the kill, the
    progress seen while it recovered, seconds from the kill to the end)."""
    progress = support.wait_for(
        lambda: (
            (item := status(kb, dataset_id, batch))["total_segments"]
            and item["completed_segments"] >= 0.2 * item["total_segments"]
            and item
        ),
        timeout=120,
        interval=0.05,
        what="a fifth of the segments embedded",
    )
    assert progress["indexing_status"] == "indexing"
    stack.worker.kill()
    killed = time.monotonic()
    done_when_killed = int(status(kb, dataset_id, batch)["completed_segments"])
    assert done_when_killed < expected, "the document finished before the kill"
    stack.worker.start()
    seen: list[int] = []  # the progress shown while it recovers

    def ended() -> dict[str, Any] | None:
        item = status(kb, dataset_id, batch)
        seen.append(int(item["completed_segments"]))
        return item if item["indexing_status"] in ("completed", "error") else None

    final = support.wait_for(ended, timeout=180, interval=0.2, what="the document to end")
    return final, done_when_killed, seen, time.monotonic() - killed


def test_kill_9_of_the_worker_mid_indexing(indexing_stack: FaultStack) -> None:
    text = "\n\n".join(TEXT.split("\n\n")[:40])
    expected = len(
        Splitter(tokenizer()).split(
            clean(text, CleaningRules()), Segmentation(max_tokens=254, chunk_overlap=25)
        )
    )
    with knowledge_client(indexing_stack) as kb:
        dataset = kb.post("/v1/datasets", json={"name": "Parts catalogue"}).json()
        created = kb.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-text",
            json={
                "name": "catalogue",
                "text": text,
                "indexing_technique": "high_quality",
                "process_rule": {"mode": "automatic"},
            },
        )
        assert created.status_code == 200, created.text
        batch = created.json()["batch"]
        final, done_when_killed, seen, recovered = kill_mid_indexing(
            indexing_stack, kb, dataset["id"], batch, expected
        )
        # Carried on from where it stopped: its progress never went back below the kill's.
        assert min(seen) >= done_when_killed, seen[:10]
        document_id = final["id"]
        rows = indexing_stack.sql(
            "SELECT count(*), count(DISTINCT position), min(position), max(position) "
            "FROM document_segments WHERE document_id = :id",
            id=document_id,
        )[0]
        resumes = indexing_stack.sql(
            "SELECT resumes FROM documents WHERE id = :id", id=document_id
        )[0][0]
        stuck = indexing_stack.sql(
            "SELECT count(*) FROM documents WHERE indexing_status NOT IN ('completed', 'error')"
        )[0][0]
        lost = expected - int(rows[1])
        duplicated = int(rows[0]) - int(rows[1])
        report(
            Row(
                "kill -9 worker mid-indexing (1 document)",
                1,
                lost,
                duplicated,
                int(stuck),  # type: ignore[arg-type]
                round(recovered, 1),
                f"{done_when_killed} of {expected} segments done at the kill; resumed "
                f"{resumes} time(s); completed",
            )
        )
        assert final["indexing_status"] == "completed", final
        assert final["completed_segments"] == final["total_segments"] == expected
        assert rows == (expected, expected, 1, expected)
        assert stuck == 0
        if indexing_stack.sql("SELECT to_regclass('rag_vectors_384') IS NOT NULL")[0][0]:
            # pgvector: one vector per segment, none twice (the kill fell inside a batch).
            vectors = indexing_stack.sql(
                "SELECT count(*), count(DISTINCT v.segment_id) FROM rag_vectors_384 v "
                "JOIN document_segments s ON s.id = v.segment_id WHERE s.document_id = :id",
                id=document_id,
            )[0]
            assert tuple(vectors) == (expected, expected), vectors
        found = kb.post(
            f"/v1/datasets/{dataset['id']}/retrieve",
            json={"query": "where is item 15.30 kept", "retrieval_model": {"top_k": 1}},
        )
        assert found.status_code == 200 and found.json()["records"], found.text


def test_kill_9_of_the_worker_mid_indexing_a_parent_child_document(
    indexing_stack: FaultStack,
) -> None:
    """In flight: one parent-child document (40 parents of about 900 tokens, each cut into
    child chunks: about 160 children to embed) when the worker is killed; it ends `completed`
    with exactly the splitter's parents and children, each child's vector once."""
    text = "\n\n".join(TEXT.split("\n\n")[:40])
    pairs = Splitter(tokenizer()).split_parent_child(
        clean(text, CleaningRules(remove_extra_spaces=True)), parent_child_rule(HIERARCHICAL_RULES)
    )
    expected, children = len(pairs), sum(len(kids) for _, kids in pairs)
    with knowledge_client(indexing_stack) as kb:
        dataset = kb.post("/v1/datasets", json={"name": "Parts by section"}).json()
        created = kb.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-text",
            json={
                "name": "sections",
                "text": text,
                "indexing_technique": "high_quality",
                "doc_form": "hierarchical_model",
                "process_rule": {"mode": "hierarchical"},
            },
        )
        assert created.status_code == 200, created.text
        batch = created.json()["batch"]
        final, done_when_killed, seen, recovered = kill_mid_indexing(
            indexing_stack, kb, dataset["id"], batch, expected
        )
        assert min(seen) >= done_when_killed, seen[:10]
        document_id = final["id"]
        parents = indexing_stack.sql(
            "SELECT count(*), count(DISTINCT position) FROM document_segments "
            "WHERE document_id = :id",
            id=document_id,
        )[0]
        kids = indexing_stack.sql(
            "SELECT count(*), count(DISTINCT c.segment_id || ':' || c.position) "
            "FROM child_chunks c JOIN document_segments s ON s.id = c.segment_id "
            "WHERE s.document_id = :id",
            id=document_id,
        )[0]
        stuck = indexing_stack.sql(
            "SELECT count(*) FROM documents WHERE indexing_status NOT IN ('completed', 'error')"
        )[0][0]
        report(
            Row(
                "kill -9 worker mid-indexing (1 parent-child document)",
                1,
                (expected - int(parents[1])) + (children - int(kids[1])),
                (int(parents[0]) - int(parents[1])) + (int(kids[0]) - int(kids[1])),
                int(stuck),  # type: ignore[arg-type]
                round(recovered, 1),
                f"{done_when_killed} of {expected} parents ({children} children) done at the "
                "kill; completed",
            )
        )
        assert final["indexing_status"] == "completed", final
        assert tuple(parents) == (expected, expected)
        assert tuple(kids) == (children, children)
        assert stuck == 0
        if indexing_stack.sql("SELECT to_regclass('rag_child_vectors_384') IS NOT NULL")[0][0]:
            # One vector per child (the key is the child's id: a count short of the children
            # is a lost one).
            vectors = indexing_stack.sql(
                "SELECT count(*) FROM rag_child_vectors_384 v "
                "JOIN child_chunks c ON c.id = v.chunk_id WHERE c.document_id = :id",
                id=document_id,
            )[0][0]
            assert vectors == children, vectors
        found = kb.post(
            f"/v1/datasets/{dataset['id']}/retrieve",
            json={"query": "where is item 30.12 kept", "retrieval_model": {"top_k": 1}},
        )
        assert found.status_code == 200 and found.json()["records"], found.text
        assert found.json()["records"][0]["child_chunks"], found.text


def test_kill_9_of_the_worker_mid_writing_a_qa_documents_pairs(
    indexing_stack: FaultStack, slow_upstream: Any
) -> None:
    """In flight: one Q&A document (about 20 chunks, each sent to the chat model, which writes
    a pair per sentence at 20 ms a word: a few seconds a chunk) when the worker is killed with
    a fifth of its chunks answered; it ends `completed` with exactly the pairs of every chunk,
    in order, none twice, each chunk asked about at most once more than it was."""
    text = "\n\n".join(TEXT.split("\n\n")[:3])
    rule = {"separator": "\n\n", "max_tokens": 100, "chunk_overlap": 0}
    chunks = Splitter(tokenizer()).split(
        clean(text, CleaningRules(remove_extra_spaces=False)),
        Segmentation(mode="custom", **rule),
    )
    pairs = [p for chunk in chunks for p in parse_pairs(qa_pairs(f"<text>\n{chunk}\n</text>"))]
    expected = len(pairs)
    admin = login(indexing_stack, *create_admin(indexing_stack))  # type: ignore[arg-type]
    with admin.client:
        # The workspace's default provider writes the pairs (the fake's `qa` model).
        added = admin.client.post(
            "/console/api/workspaces/current/model-providers",
            json={"name": "Pairs", "base_url": slow_upstream.base_url, "models": ["fake:qa"],
                  "is_default": True},
        )  # fmt: skip
        assert added.status_code == 201, added.text
        key = admin.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
    asked_before = len([r for r in slow_upstream.stats()["log"] if r["model"] == "fake:qa"])
    with indexing_stack.client(key) as kb:
        dataset = kb.post("/v1/datasets", json={"name": "Parts FAQ"}).json()
        created = kb.post(
            f"/v1/datasets/{dataset['id']}/document/create-by-text",
            json={"name": "faq", "text": text, "indexing_technique": "high_quality",
                  "doc_form": "qa_model",
                  "process_rule": {"mode": "custom", "rules": {"pre_processing_rules": [],
                                                               "segmentation": rule}}},
        )  # fmt: skip
        assert created.status_code == 200, created.text
        batch = created.json()["batch"]
        support.wait_for(
            lambda: (
                (item := status(kb, dataset["id"], batch))["indexing_status"] == "splitting"
                and item["total_segments"]
                and item["completed_segments"] >= 0.2 * item["total_segments"]
            ),
            timeout=120,
            interval=0.05,
            what="a fifth of the chunks answered",
        )
        time.sleep(0.5)  # into the next batch: its calls are in flight (each takes seconds)
        indexing_stack.worker.kill()
        killed = time.monotonic()
        done_when_killed = int(status(kb, dataset["id"], batch)["completed_segments"])
        assert done_when_killed < len(chunks), "every chunk was answered before the kill"
        indexing_stack.worker.start()
        final = support.wait_for(
            lambda: (
                item
                if (item := status(kb, dataset["id"], batch))["indexing_status"]
                in ("completed", "error")
                else None
            ),
            timeout=240,
            interval=0.2,
            what="the document to end",
        )
        recovered = time.monotonic() - killed
        document_id = final["id"]
        rows = indexing_stack.sql(
            "SELECT content, answer, position FROM document_segments "
            "WHERE document_id = :id ORDER BY position",
            id=document_id,
        )
        left = indexing_stack.sql(
            "SELECT count(*) FROM qa_sources WHERE document_id = :id", id=document_id
        )[0][0]
        stuck = indexing_stack.sql(
            "SELECT count(*) FROM documents WHERE indexing_status NOT IN ('completed', 'error')"
        )[0][0]
        asked = len([r for r in slow_upstream.stats()["log"] if r["model"] == "fake:qa"])
        stored = [(str(q), str(a)) for q, a, _ in rows]
        report(
            Row(
                "kill -9 worker mid-writing a Q&A document's pairs (1 document)",
                1,
                len(set(pairs) - set(stored)),
                len(stored) - len(set(stored)),
                int(stuck),  # type: ignore[arg-type]
                round(recovered, 1),
                f"{done_when_killed} of {len(chunks)} chunks answered at the kill; "
                f"{asked - asked_before} model calls for {len(chunks)} chunks; completed",
            )
        )
        assert final["indexing_status"] == "completed", final
        assert stored == pairs
        assert [int(position) for _, _, position in rows] == list(range(1, expected + 1))
        assert (left, stuck) == (0, 0)
        # The chunks answered before the kill were not asked about again; those in flight
        # (one batch, at most four) were.
        assert len(chunks) <= asked - asked_before <= len(chunks) + 4
