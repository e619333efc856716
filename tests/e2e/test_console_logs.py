"""The console's app logs (conversations, a conversation's messages, daily statistics) and the
debugger's resume (`GET /console/api/apps/{id}/chat-messages/{task_id}/events`), against a real
server on the fake model upstream: Dify's fields, filters and paging; another workspace's app
is a 404, another account's run a 404; bad parameters a 400 naming them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import Admin, ServiceApp, add_member, make_admin
from tests.e2e.sse import Frame, answer_of, frames
from tests.support import Stack, assert_envelope

NO_NAMING = {"auto_generate_name": False}


def service_turn(
    app: ServiceApp, query: str, user: str, conversation_id: str = ""
) -> dict[str, Any]:
    body = {
        "inputs": {},
        "query": query,
        "user": user,
        "conversation_id": conversation_id,
        "response_mode": "blocking",
        **NO_NAMING,
    }
    response = app.client.post("/chat-messages", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def debug_turn(client: httpx.Client, app_id: str, query: str) -> list[Frame]:
    body = {"inputs": {}, "query": query, **NO_NAMING}
    with client.stream("POST", f"/console/api/apps/{app_id}/chat-messages", json=body) as response:
        assert response.status_code == 200, response.read()
        return [f for f in frames(response) if f.event != "ping"]


def account_id(admin: Admin) -> str:
    return str(admin.client.get("/console/api/account/profile").json()["data"]["id"])


def day(offset: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


class TestChatLogs:
    def test_conversations_messages_feedback_filters_and_paging(
        self, service_stack: Stack, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        app_id = chat_app.app_id
        logs = f"/console/api/apps/{app_id}"
        first = service_turn(chat_app, "alice asks about tides", "alice")
        second = service_turn(
            chat_app, "and about currents", "alice", conversation_id=first["conversation_id"]
        )
        service_turn(chat_app, "bob asks about zeppelins", "bob")
        debugged = debug_turn(service_admin.client, app_id, "the debugger asks")
        liked = chat_app.client.post(
            f"/messages/{first['message_id']}/feedbacks", json={"rating": "like", "user": "alice"}
        )
        assert liked.status_code == 200, liked.text

        listed = service_admin.client.get(f"{logs}/chat-conversations")
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert (body["page"], body["limit"], body["total"], body["has_more"]) == (1, 20, 3, False)
        by_id = {c["id"]: c for c in body["data"]}
        alice = by_id[first["conversation_id"]]
        assert alice["message_count"] == 2
        assert alice["user_feedback_stats"] == {"like": 1, "dislike": 0}
        assert alice["admin_feedback_stats"] == {"like": 0, "dislike": 0}
        assert (alice["from_source"], alice["from_end_user_session_id"]) == ("api", "alice")
        assert alice["summary"] == "alice asks about tides"
        console = by_id[debugged[0].data["conversation_id"]]
        assert console["from_source"] == "console"
        assert console["from_account_id"] == account_id(service_admin)
        assert console["from_end_user_id"] is None
        # Newest first.
        assert body["data"][0]["id"] == console["id"]

        # Paging and its limits.
        one = service_admin.client.get(f"{logs}/chat-conversations", params={"limit": 2}).json()
        two = service_admin.client.get(
            f"{logs}/chat-conversations", params={"limit": 2, "page": 2}
        ).json()
        assert (len(one["data"]), one["has_more"], len(two["data"]), two["has_more"]) == (
            2,
            True,
            1,
            False,
        )
        assert {c["id"] for c in one["data"] + two["data"]} == set(by_id)
        oldest = service_admin.client.get(
            f"{logs}/chat-conversations", params={"sort_by": "created_at", "limit": 1}
        ).json()
        assert oldest["data"][0]["id"] == first["conversation_id"]

        # Filters: a keyword in a message, in a user; a time range.
        def ids(**params: Any) -> set[str]:
            reply = service_admin.client.get(f"{logs}/chat-conversations", params=params)
            assert reply.status_code == 200, reply.text
            return {c["id"] for c in reply.json()["data"]}

        bob = next(c["id"] for c in body["data"] if c["from_end_user_session_id"] == "bob")
        assert ids(keyword="ZEPPELIN") == {bob}
        assert ids(keyword="currents") == {first["conversation_id"]}
        assert ids(keyword="alice") == {first["conversation_id"]}
        assert ids(keyword="100%") == set()
        assert ids(start=f"{day(-1)} 00:00", end=f"{day(1)} 00:00") == set(by_id)
        assert ids(start=day(1)) == set()
        assert ids(end=day(-1)) == set()

        # A conversation's messages, oldest first, with Dify's fields.
        messages = service_admin.client.get(
            f"{logs}/chat-messages", params={"conversation_id": first["conversation_id"]}
        )
        assert messages.status_code == 200, messages.text
        items = messages.json()["data"]
        assert [m["id"] for m in items] == [first["message_id"], second["message_id"]]
        head = items[0]
        assert head["query"] == "alice asks about tides"
        assert head["answer"] == first["answer"]
        assert head["feedbacks"] == [
            {
                "rating": "like",
                "content": None,
                "from_source": "user",
                "from_end_user_id": head["from_end_user_id"],
                "from_account_id": None,
            }
        ]
        usage = first["metadata"]["usage"]
        assert (head["message_tokens"], head["answer_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        assert head["provider_response_latency"] > 0
        assert isinstance(head["created_at"], int)
        assert items[1]["feedbacks"] == []
        older = service_admin.client.get(
            f"{logs}/chat-messages",
            params={"conversation_id": first["conversation_id"], "limit": 1},
        ).json()
        assert ([m["id"] for m in older["data"]], older["has_more"]) == (
            [second["message_id"]],
            True,
        )
        rest = service_admin.client.get(
            f"{logs}/chat-messages",
            params={"conversation_id": first["conversation_id"], "first_id": second["message_id"]},
        ).json()
        assert ([m["id"] for m in rest["data"]], rest["has_more"]) == ([first["message_id"]], False)

    def test_bad_parameters_are_400_naming_them(
        self, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        logs = f"/console/api/apps/{chat_app.app_id}"
        get = service_admin.client.get
        for params, mentions in (
            ({"limit": "0"}, "limit"),
            ({"limit": "many"}, "limit"),
            ({"page": "0"}, "page"),
            ({"start": "yesterday"}, "start"),
            ({"end": "2024-13-01 00:00"}, "end"),
            ({"start": "2024-02-02", "end": "2024-02-01 00:00"}, "end"),
            ({"sort_by": "name"}, "sort_by"),
        ):
            assert_envelope(
                get(f"{logs}/chat-conversations", params=params), 400, "invalid_param", mentions
            )
        assert_envelope(get(f"{logs}/chat-messages"), 400, "invalid_param", "conversation_id")
        assert_envelope(
            get(f"{logs}/chat-messages", params={"conversation_id": "nope"}),
            400,
            "invalid_param",
            "conversation_id",
        )
        assert_envelope(
            get(
                f"{logs}/chat-messages",
                params={"conversation_id": "00000000-0000-4000-8000-000000000000"},
            ),
            404,
            "not_found",
        )
        assert_envelope(
            get(f"{logs}/statistics/daily-messages", params={"start": "2024-01-01T00:00"}),
            400,
            "invalid_param",
            "start",
        )
        assert_envelope(get(f"{logs}/completion-conversations"), 400, "not_completion_app")

    def test_another_workspaces_app_is_404_and_normal_members_cannot_read(
        self, service_stack: Stack, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        first = service_turn(chat_app, "private question", "alice")
        logs = f"/console/api/apps/{chat_app.app_id}"
        paths = [
            f"{logs}/chat-conversations",
            f"{logs}/completion-conversations",
            f"{logs}/chat-messages?conversation_id={first['conversation_id']}",
            f"{logs}/statistics/daily-messages",
            f"{logs}/statistics/token-costs",
            f"{logs}/statistics/average-response-time",
        ]
        with make_admin(service_stack, workspace="Other Corp").client as other:
            for path in paths:
                assert_envelope(other.get(path), 404, "app_not_found")
        normal = add_member(service_stack, service_admin, "normal")
        try:
            assert_envelope(normal.client.get(paths[0]), 403, "forbidden")
        finally:
            normal.client.close()


class TestStatistics:
    def test_daily_messages_tokens_and_latency(
        self, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        answers = [service_turn(chat_app, f"question {i}", "carol") for i in range(3)]
        stats = f"/console/api/apps/{chat_app.app_id}/statistics"
        window = {"start": f"{day(-1)} 00:00", "end": f"{day(1)} 00:00"}
        daily = service_admin.client.get(f"{stats}/daily-messages", params=window)
        assert daily.status_code == 200, daily.text
        assert daily.json() == {"data": [{"date": day(), "message_count": 3}]}
        costs = service_admin.client.get(f"{stats}/token-costs", params=window).json()["data"]
        tokens = sum(a["metadata"]["usage"]["total_tokens"] for a in answers)
        assert [(c["date"], c["token_count"]) for c in costs] == [(day(), tokens)]
        assert costs[0]["currency"] and float(costs[0]["total_price"]) >= 0
        latency = service_admin.client.get(f"{stats}/average-response-time", params=window)
        [point] = latency.json()["data"]
        assert point["date"] == day() and point["latency"] > 0
        # Outside the window: nothing; no window: everything.
        later = {"start": f"{day(1)} 00:00"}
        assert service_admin.client.get(f"{stats}/daily-messages", params=later).json() == {
            "data": []
        }
        everything = service_admin.client.get(f"{stats}/daily-messages").json()["data"]
        assert sum(p["message_count"] for p in everything) == 3


class TestCompletionLogs:
    def test_completion_conversations_carry_their_message(
        self, service_admin: Admin, completion_app: ServiceApp
    ) -> None:
        body = {"inputs": {"text": "bonjour"}, "user": "dave", "response_mode": "blocking"}
        done = completion_app.client.post("/completion-messages", json=body)
        assert done.status_code == 200, done.text
        listed = service_admin.client.get(
            f"/console/api/apps/{completion_app.app_id}/completion-conversations"
        )
        assert listed.status_code == 200, listed.text
        [item] = listed.json()["data"]
        assert item["message"]["inputs"] == {"text": "bonjour"}
        assert item["message"]["answer"] == done.json()["answer"]
        assert item["from_end_user_session_id"] == "dave"
        chat_only = service_admin.client.get(
            f"/console/api/apps/{completion_app.app_id}/chat-conversations"
        )
        assert_envelope(chat_only, 400, "not_chat_app")


class TestDebuggerResume:
    def test_resume_after_a_drop_delivers_the_rest_exactly_once(
        self, service_stack: Stack, service_admin: Admin, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=40)
        query = " ".join(f"word{i}" for i in range(20))
        base = f"/console/api/apps/{chat_app.app_id}/chat-messages"
        seen: list[Frame] = []
        body = {"inputs": {}, "query": query, **NO_NAMING}
        with service_admin.client.stream("POST", base, json=body) as response:
            assert response.status_code == 200
            for frame in frames(response):
                if frame.event != "ping":
                    seen.append(frame)
                if len(seen) == 4:
                    break  # the page goes away mid-answer
        task_id = seen[0].data["task_id"]
        with service_admin.client.stream(
            "GET", f"{base}/{task_id}/events", headers={"Last-Event-ID": str(seen[-1].id)}
        ) as resumed:
            assert resumed.status_code == 200
            rest = [f for f in frames(resumed) if f.event != "ping"]
        together = seen + rest
        assert [f.id for f in together] == list(range(1, len(together) + 1))
        assert together[-1].event == "message_end"
        assert answer_of(together) == f"You said: {query}"
        upstream.control(pace_ms=5)

        # From `after`, the same; a bad position is a 400 naming it.
        replay = service_admin.client.get(f"{base}/{task_id}/events", params={"after": 2})
        assert [f.id for f in frames(replay) if f.event != "ping"] == [f.id for f in together[2:]]
        assert_envelope(
            service_admin.client.get(
                f"{base}/{task_id}/events", headers={"Last-Event-ID": "later"}
            ),
            400,
            "invalid_param",
            "Last-Event-ID",
        )
        # Another account of the workspace, and another workspace, find no such run.
        editor = add_member(service_stack, service_admin, "editor")
        try:
            assert_envelope(editor.client.get(f"{base}/{task_id}/events"), 404, "not_found")
        finally:
            editor.client.close()
        with make_admin(service_stack, workspace="Elsewhere Inc").client as other:
            assert_envelope(other.get(f"{base}/{task_id}/events"), 404, "app_not_found")

    def test_a_completion_resumes_too(
        self, service_admin: Admin, completion_app: ServiceApp
    ) -> None:
        base = f"/console/api/apps/{completion_app.app_id}/completion-messages"
        body = {"inputs": {"text": "salut"}, "response_mode": "streaming"}
        with service_admin.client.stream("POST", base, json=body) as response:
            items = [f for f in frames(response) if f.event != "ping"]
        task_id = items[0].data["task_id"]
        replay = service_admin.client.get(
            f"{base}/{task_id}/events", headers={"Last-Event-ID": "1"}
        )
        assert replay.status_code == 200, replay.text
        again = [f for f in frames(replay) if f.event != "ping"]
        assert [f.id for f in again] == [f.id for f in items[1:]]
        assert answer_of(items) == answer_of([items[0], *again])
