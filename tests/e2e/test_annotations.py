"""Annotations and annotation reply over the Service API (dify-api.md §3.1, §3.10), both
modes: a real server, a real worker for the enable / disable jobs (the `dataset` queue), the
local embedding model, and the fake model server, whose log shows whether a chat asked it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.e2e.conftest import Admin, ServiceApp, make_admin, service_app
from tests.e2e.sse import frames
from tests.e2e.test_workflow_runs import workflow_app
from tests.support import Stack, assert_envelope, wait_for

LOCAL = {"embedding_provider_name": "conduit", "embedding_model_name": "all-MiniLM-L6-v2-onnx-int8"}
ANNOTATION_FIELDS = {"id", "question", "answer", "hit_count", "created_at"}


def _asked(upstream: Any, query: str) -> int:
    """Model requests whose prompt holds `query` (this test's own)."""
    return sum(1 for r in upstream.stats()["log"] if query in str(r["messages"]))


def _job_done(app: ServiceApp, action: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = app.client.get(
            f"/apps/annotation-reply/{action}/status/{job_id}"
        ).json()
        return body if body["job_status"] in ("completed", "error") else None

    done: dict[str, Any] = wait_for(finished, timeout=60, interval=0.2, what=f"{action} job")
    return done


def _chat(app: ServiceApp, query: str, **extra: Any) -> httpx.Response:
    return app.client.post(
        "/chat-messages",
        json={
            "inputs": {},
            "query": query,
            "user": "ann",
            "response_mode": "blocking",
            "auto_generate_name": False,  # (naming would ask the model with the query)
            **extra,
        },
    )


def test_annotations_are_written_listed_edited_and_removed_with_the_app_key(
    chat_app: ServiceApp, completion_app: ServiceApp, service_stack: Stack, service_admin: Admin
) -> None:
    client = chat_app.client
    made = client.post(
        "/apps/annotations", json={"question": "What are your hours?", "answer": "Nine to five."}
    )
    assert made.status_code == 201, made.text
    first = made.json()
    assert set(first) == ANNOTATION_FIELDS
    assert (first["question"], first["answer"], first["hit_count"]) == (
        "What are your hours?",
        "Nine to five.",
        0,
    )
    for number in range(3):
        client.post(
            "/apps/annotations", json={"question": f"Refund {number}?", "answer": "Within 30 days"}
        ).raise_for_status()

    page = client.get("/apps/annotations", params={"page": 1, "limit": 2}).json()
    assert (page["total"], page["has_more"], page["page"], page["limit"]) == (4, True, 1, 2)
    assert [item["question"] for item in page["data"]] == ["Refund 2?", "Refund 1?"]
    found = client.get("/apps/annotations", params={"keyword": "HOURS"}).json()
    assert [item["id"] for item in found["data"]] == [first["id"]]
    by_answer = client.get("/apps/annotations", params={"keyword": "30 days"}).json()
    assert by_answer["total"] == 3

    edited = client.put(
        f"/apps/annotations/{first['id']}",
        json={"question": "When are you open?", "answer": "Nine to five, Monday to Friday."},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["answer"] == "Nine to five, Monday to Friday."

    # Bad input: a 400 naming the field, nothing written.
    assert_envelope(
        client.post("/apps/annotations", json={"question": "Only a question"}),
        400,
        "invalid_param",
        "answer",
    )
    assert_envelope(
        client.put(f"/apps/annotations/{first['id']}", json={"question": "", "answer": "x"}),
        400,
        "invalid_param",
        "question",
    )
    assert client.get("/apps/annotations").json()["total"] == 4
    assert client.get("/apps/annotations", params={"keyword": "open"}).json()["total"] == 1

    # Another app's key sees none of them and cannot touch them; a completion app has none.
    other = service_app(service_stack, service_admin, mode="chat")
    try:
        assert other.client.get("/apps/annotations").json()["total"] == 0
        assert_envelope(
            other.client.put(
                f"/apps/annotations/{first['id']}", json={"question": "a", "answer": "b"}
            ),
            404,
            "not_found",
            "Annotation not found",
        )
        assert other.client.delete(f"/apps/annotations/{first['id']}").status_code == 404
    finally:
        other.client.close()
    assert_envelope(completion_app.client.get("/apps/annotations"), 400, "not_chat_app")

    assert client.delete(f"/apps/annotations/{first['id']}").status_code == 204
    assert client.delete(f"/apps/annotations/{first['id']}").status_code == 404
    assert client.get("/apps/annotations").json()["total"] == 3


def test_annotation_reply_answers_an_annotated_question_without_the_model(
    chat_app: ServiceApp, upstream: Any, service_admin: Admin
) -> None:
    client = chat_app.client
    question = f"How do I reset my password {uuid.uuid4().hex[:6]}?"
    annotation = client.post(
        "/apps/annotations",
        json={
            "question": question,
            "answer": "Use the 'Forgot password' link on the sign-in page.",
        },
    ).json()

    # Bad settings are refused at once, naming what is wrong; no job is started.
    assert_envelope(
        client.post("/apps/annotation-reply/enable", json={**LOCAL, "score_threshold": 1.5}),
        400,
        "invalid_param",
        "score_threshold",
    )
    assert_envelope(
        client.post(
            "/apps/annotation-reply/enable",
            json={
                "score_threshold": 0.9,
                "embedding_provider_name": "openai",
                "embedding_model_name": "text-embedding-3-small",
            },
        ),
        400,
        "invalid_param",
        "all-MiniLM-L6-v2-onnx-int8",
    )
    assert_envelope(
        client.post("/apps/annotation-reply/toggle", json={}), 400, "invalid_param", "enable"
    )
    assert_envelope(
        client.get(f"/apps/annotation-reply/enable/status/{uuid.uuid4()}"),
        404,
        "not_found",
        "The job does not exist.",
    )

    started = client.post("/apps/annotation-reply/enable", json={**LOCAL, "score_threshold": 0.9})
    assert started.status_code == 200, started.text
    assert started.json()["job_status"] in ("waiting", "processing", "completed")
    done = _job_done(chat_app, "enable", started.json()["job_id"])
    assert done == {"job_id": started.json()["job_id"], "job_status": "completed", "error_msg": ""}
    reply = wait_for(
        lambda: client.get("/parameters", params={"user": "ann"}).json()["annotation_reply"],
        what="the setting in /parameters",
    )
    assert reply["enabled"] is True and reply["score_threshold"] == 0.9

    # The annotated question: the annotation's answer, whole, and the model never asked.
    blocking = _chat(chat_app, question)
    assert blocking.status_code == 200, blocking.text
    body = blocking.json()
    assert body["answer"] == "Use the 'Forgot password' link on the sign-in page."
    assert body["metadata"]["annotation_reply"]["id"] == annotation["id"]
    assert body["metadata"]["annotation_reply"]["account"]["id"] is not None
    with client.stream(
        "POST",
        "/chat-messages",
        json={
            "inputs": {},
            "query": question,
            "user": "ann",
            "response_mode": "streaming",
            "auto_generate_name": False,
        },
    ) as streamed:
        events = [frame for frame in frames(streamed) if frame.event != "ping"]
    assert [frame.event for frame in events] == ["message", "message_end"]
    assert events[0].data["answer"] == annotation["answer"]
    assert events[1].data["metadata"]["annotation_reply"]["id"] == annotation["id"]
    assert _asked(upstream, question) == 0
    listed = client.get("/apps/annotations", params={"keyword": question}).json()["data"]
    assert listed[0]["hit_count"] == 2
    stored = client.get(
        "/messages", params={"user": "ann", "conversation_id": body["conversation_id"]}
    ).json()["data"]
    assert stored[-1]["answer"] == annotation["answer"]

    # A question far from every annotation: the model answers.
    other = f"Tell me a story about a lighthouse {uuid.uuid4().hex[:6]}"
    answered = _chat(chat_app, other)
    assert answered.status_code == 200, answered.text
    assert "annotation_reply" not in answered.json()["metadata"]
    assert _asked(upstream, other) == 1

    # Written while the reply is on: found a moment later (embedded by its own task).
    later = f"Where is the office {uuid.uuid4().hex[:6]}?"
    client.post(
        "/apps/annotations", json={"question": later, "answer": "At 1 Main Street."}
    ).raise_for_status()
    wait_for(
        lambda: _chat(chat_app, later).json()["answer"] == "At 1 Main Street.",
        timeout=30,
        interval=0.3,
        what="the new annotation to answer",
    )

    # The app's edit in the console keeps the reply on (the setting belongs to its jobs).
    config = service_admin.client.get(f"/console/api/apps/{chat_app.app_id}").json()["data"]
    edited = {**config["model_config"], "pre_prompt": "Be brief."}
    edited.pop("annotation_reply", None)
    service_admin.client.put(
        f"/console/api/apps/{chat_app.app_id}", json={"model_config": edited}
    ).raise_for_status()
    assert _chat(chat_app, question).json()["answer"] == annotation["answer"]

    # Disabled: the model answers the annotated question again.
    stopped = client.post("/apps/annotation-reply/disable", json={})
    assert stopped.status_code == 200, stopped.text
    assert _job_done(chat_app, "disable", stopped.json()["job_id"])["job_status"] == "completed"
    wait_for(
        lambda: (
            client.get("/parameters", params={"user": "ann"}).json()["annotation_reply"]
            == {"enabled": False}
        ),
        what="the reply off in /parameters",
    )
    plain = _chat(chat_app, question)
    assert plain.status_code == 200, plain.text
    assert "annotation_reply" not in plain.json()["metadata"]
    assert _asked(upstream, question) == 1


def test_the_console_annotates_a_logged_answer_and_switches_the_reply(
    chat_app: ServiceApp, service_admin: Admin, service_stack: Stack
) -> None:
    console, base = service_admin.client, f"/console/api/apps/{chat_app.app_id}"
    query = f"Do you ship abroad {uuid.uuid4().hex[:6]}?"
    turn = _chat(chat_app, query).json()
    messages = console.get(
        f"{base}/chat-messages", params={"conversation_id": turn["conversation_id"]}
    ).json()["data"]
    assert messages[0]["annotation"] is None

    # "Annotate this answer": the question is the message's query; a second save edits it.
    made = console.post(
        f"{base}/annotations", json={"message_id": turn["message_id"], "answer": "Yes, to the EU."}
    )
    assert made.status_code == 200, made.text
    assert (made.json()["question"], made.json()["answer"]) == (query, "Yes, to the EU.")
    again = console.post(
        f"{base}/annotations",
        json={"message_id": turn["message_id"], "answer": "Yes, worldwide."},
    )
    assert again.json()["id"] == made.json()["id"]
    logged = console.get(
        f"{base}/chat-messages", params={"conversation_id": turn["conversation_id"]}
    ).json()["data"][0]["annotation"]
    assert (logged["id"], logged["question"], logged["content"]) == (
        made.json()["id"],
        query,
        "Yes, worldwide.",
    )
    assert logged["account"]["email"] == service_admin.email
    assert console.get(f"{base}/annotations/count").json() == {"count": 1}
    assert_envelope(
        console.post(f"{base}/annotations", json={"message_id": str(uuid.uuid4()), "answer": "x"}),
        404,
        "not_found",
        "Message Not Exists.",
    )

    # The reply's setting and the embedding models to choose from, as the console shows them.
    assert console.get(f"{base}/annotation-setting").json() == {"enabled": False}
    offered = console.get("/console/api/workspaces/current/models/model-types/text-embedding")
    assert offered.json()["data"][0]["models"][0]["model"] == LOCAL["embedding_model_name"]
    job = console.post(f"{base}/annotation-reply/enable", json={**LOCAL, "score_threshold": 0.85})
    assert job.status_code == 200, job.text
    assert _job_done(chat_app, "enable", job.json()["job_id"])["job_status"] == "completed"
    setting = console.get(f"{base}/annotation-setting").json()
    assert (setting["enabled"], setting["score_threshold"]) == (True, 0.85)
    assert setting["embedding_model"] == LOCAL
    answered = wait_for(
        lambda: (reply := _chat(chat_app, query).json())["answer"] == "Yes, worldwide." and reply,
        what="the annotation's answer",
    )
    history = console.get(
        f"{base}/chat-messages", params={"conversation_id": answered["conversation_id"]}
    ).json()["data"][0]["annotation_hit_history"]
    assert history == {"annotation_id": made.json()["id"]}

    # Another workspace's account sees a 404.
    stranger = make_admin(service_stack, workspace="Elsewhere")
    try:
        assert stranger.client.get(f"{base}/annotations").status_code == 404
    finally:
        stranger.client.close()


def test_a_chatflow_turn_close_to_an_annotation_is_answered_without_running_the_workflow(
    service_stack: Stack, service_admin: Admin, upstream: Any
) -> None:
    chatflow = workflow_app(service_stack, service_admin, "chatflow_memory.yml")
    client = chatflow.client
    try:
        question = f"What is the refund window {uuid.uuid4().hex[:6]}?"
        annotation = client.post(
            "/apps/annotations", json={"question": question, "answer": "Thirty days."}
        ).json()
        assert client.get("/parameters", params={"user": "ann"}).json()["annotation_reply"] == {
            "enabled": False
        }
        started = client.post(
            "/apps/annotation-reply/enable", json={**LOCAL, "score_threshold": 0.9}
        )
        assert started.status_code == 200, started.text
        assert _job_done(chatflow, "enable", started.json()["job_id"])["job_status"] == "completed"
        # A chatflow's /parameters shows the app's reply beside its workflow's features.
        parameters = wait_for(
            lambda: (
                (body := client.get("/parameters", params={"user": "ann"}).json())[
                    "annotation_reply"
                ]["enabled"]
                and body
            ),
            what="the setting in the chatflow's /parameters",
        )
        assert parameters["opening_statement"] == "Hello there"

        # The annotated question: one `message` with the whole answer, then `message_end`; no
        # workflow event, the workflow's model never asked.
        with client.stream(
            "POST",
            "/chat-messages",
            json={"inputs": {}, "query": question, "user": "ann", "response_mode": "streaming"},
        ) as streamed:
            assert streamed.status_code == 200
            events = [frame for frame in frames(streamed) if frame.event != "ping"]
        assert [frame.event for frame in events] == ["message", "message_end"]
        assert events[0].data["answer"] == "Thirty days."
        end = events[1].data
        assert end["metadata"]["annotation_reply"]["id"] == annotation["id"]
        assert end["metadata"]["usage"]["total_tokens"] == 0
        assert _asked(upstream, question) == 0
        conversation_id = end["conversation_id"]

        # Blocking, in the same conversation: the chat shape with the annotation's answer.
        blocking = _chat(chatflow, question, conversation_id=conversation_id)
        assert blocking.status_code == 200, blocking.text
        body = blocking.json()
        assert (body["mode"], body["answer"]) == ("advanced-chat", "Thirty days.")
        assert body["metadata"]["annotation_reply"]["id"] == annotation["id"]
        assert _asked(upstream, question) == 0
        listed = client.get("/apps/annotations", params={"keyword": question}).json()["data"]
        assert listed[0]["hit_count"] == 2

        # A question far from it runs the workflow, whose memory holds the annotated turns.
        other = f"Tell me about lighthouses {uuid.uuid4().hex[:6]}"
        ran = _chat(chatflow, other, conversation_id=conversation_id)
        assert ran.status_code == 200, ran.text
        assert ran.json()["answer"] == f"Bot: You said: {other}"
        assert "annotation_reply" not in ran.json()["metadata"]
        prompt = next(r["messages"] for r in upstream.stats()["log"] if other in str(r["messages"]))
        assert [m["content"] for m in prompt[1:3]] == [question, "Thirty days."]
        messages = client.get(
            "/messages", params={"user": "ann", "conversation_id": conversation_id}
        ).json()["data"]
        assert [m["answer"] for m in messages] == [
            "Thirty days.",
            "Thirty days.",
            f"Bot: You said: {other}",
        ]
        # The assigner ran only in the turn the workflow answered.
        variables = client.get(
            f"/conversations/{conversation_id}/variables", params={"user": "ann"}
        ).json()["data"]
        assert {v["name"]: v["value"] for v in variables}["topics"] == [other]

        # Disabled: the workflow answers the annotated question again.
        stopped = client.post("/apps/annotation-reply/disable", json={})
        assert _job_done(chatflow, "disable", stopped.json()["job_id"])["job_status"] == "completed"
        plain = wait_for(
            lambda: (
                (reply := _chat(chatflow, question).json())["answer"] != "Thirty days." and reply
            ),
            what="the workflow to answer again",
        )
        assert plain["answer"] == f"Bot: You said: {question}"
        assert _asked(upstream, question) >= 1
    finally:
        client.close()


def test_the_console_imports_exports_and_shows_each_annotations_hits(
    chat_app: ServiceApp, service_admin: Admin, service_stack: Stack
) -> None:
    console, base = service_admin.client, f"/console/api/apps/{chat_app.app_id}"
    tag = uuid.uuid4().hex[:6]
    # The reply on first: what an import writes is embedded by its own task and answers.
    job = console.post(f"{base}/annotation-reply/enable", json={**LOCAL, "score_threshold": 0.9})
    assert _job_done(chat_app, "enable", job.json()["job_id"])["job_status"] == "completed"

    def upload(name: str, text: str) -> httpx.Response:
        return console.post(
            f"{base}/annotations/batch-import", files={"file": (name, text.encode(), "text/csv")}
        )

    # Bad files are refused, naming what is wrong; nothing is written.
    assert_envelope(
        upload("a.csv", f"question,answer\nOpen {tag}?,Yes\nClosed {tag}?,\n"),
        400,
        "invalid_param",
        "Row 3",
    )
    assert_envelope(upload("a.txt", "question,answer\nq,a\n"), 400, "invalid_param", "CSV")
    assert_envelope(upload("a.csv", "question,answer\n"), 400, "invalid_param", "no annotations")
    assert console.post(f"{base}/annotations/batch-import").status_code == 400
    assert console.get(f"{base}/annotations/count").json() == {"count": 0}

    # The first row is the header (as Dify's template has it); a blank line is skipped; a
    # byte-order mark and quoted commas are read as a spreadsheet writes them.
    text = (
        "\ufeffquestion,answer\n"
        f'Do you deliver on Sundays {tag}?,"No, Monday to Saturday."\n'
        "\n"
        f"Can I pay by card {tag}?,Yes.\n"
    )
    made = upload("faq.csv", text)
    assert made.status_code == 200, made.text
    assert made.json()["job_status"] == "completed" and made.json()["record_count"] == 2
    status = console.get(f"{base}/annotations/batch-import-status/{made.json()['job_id']}")
    assert status.json() == {
        "job_id": made.json()["job_id"],
        "job_status": "completed",
        "error_msg": "",
    }
    assert console.get(f"{base}/annotations/batch-import-status/{uuid.uuid4()}").status_code == 404
    exported = console.get(f"{base}/annotations/export").json()["data"]
    assert {(a["question"], a["answer"]) for a in exported} == {
        (f"Do you deliver on Sundays {tag}?", "No, Monday to Saturday."),
        (f"Can I pay by card {tag}?", "Yes."),
    }
    sundays = next(a for a in exported if "Sundays" in a["question"])

    # Two hits, then an edit: the history keeps what was answered then, newest first.
    question = f"Do you deliver on Sundays {tag}?"
    wait_for(
        lambda: _chat(chat_app, question).json()["answer"] == "No, Monday to Saturday.",
        timeout=30,
        interval=0.3,
        what="the imported annotation to answer",
    )
    console.put(
        f"{base}/annotations/{sundays['id']}",
        json={"question": question, "answer": "No, but on Saturdays."},
    ).raise_for_status()
    assert _chat(chat_app, question).json()["answer"] == "No, but on Saturdays."
    hits = console.get(f"{base}/annotations/{sundays['id']}/hit-histories").json()
    assert (hits["total"], hits["page"], hits["has_more"]) == (2, 1, False)
    newest, first = hits["data"]
    assert set(newest) == {"id", "source", "score", "question", "match", "response", "created_at"}
    assert (newest["response"], first["response"]) == (
        "No, but on Saturdays.",
        "No, Monday to Saturday.",
    )
    assert newest["question"] == question and newest["match"] == question
    assert newest["source"] == "service-api" and 0.9 <= newest["score"] <= 1.0001
    one = console.get(f"{base}/annotations/{sundays['id']}/hit-histories", params={"limit": 1})
    assert one.json()["has_more"] is True and len(one.json()["data"]) == 1
    listed = console.get(f"{base}/annotations", params={"keyword": "Sundays"}).json()["data"]
    assert listed[0]["hit_count"] == 2

    # Another workspace's account sees a 404; so does a deleted annotation's history (its rows
    # go with it: tests/integration/test_annotation_jobs.py counts them).
    stranger = make_admin(service_stack, workspace="Elsewhere")
    try:
        assert stranger.client.get(f"{base}/annotations/export").status_code == 404
        assert (
            stranger.client.get(f"{base}/annotations/{sundays['id']}/hit-histories").status_code
            == 404
        )
    finally:
        stranger.client.close()
    assert console.delete(f"{base}/annotations/{sundays['id']}").status_code == 204
    assert_envelope(
        console.get(f"{base}/annotations/{sundays['id']}/hit-histories"),
        404,
        "not_found",
        "Annotation not found",
    )
