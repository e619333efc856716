"""The Web API (`/api`, Dify's WebApp API) over real HTTP: passports, every route, Dify's
simple converter, resume and stop, isolation between end users, apps and tiers, the site
switch, more-like-this, the end user's rate limit — against a real server and the fake model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.conftest import Admin, ServiceApp, add_member, make_admin, service_app
from tests.e2e.sse import Frame, answer_of, frames
from tests.e2e.test_workflow_runs import workflow_app
from tests.support import Stack, run_sql

RATE = 12  # generation requests per minute per end user on this module's stack
STACK_ENV = {"CONDUIT_WEBAPP_REQUESTS_PER_MINUTE_PER_END_USER": str(RATE)}
NO_NAMING = {"auto_generate_name": False}


class WebUser:
    """A browser of one app's site: its passport, and a client sending it."""

    def __init__(self, stack: Stack, code: str, token: str | None = None) -> None:
        self.code = code
        headers = {"X-App-Code": code}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        passport = httpx.get(f"{stack.base_url}/api/passport", headers=headers, timeout=10)
        assert passport.status_code == 200, passport.text
        self.token = passport.json()["access_token"]
        self.client = httpx.Client(
            base_url=f"{stack.base_url}/api",
            headers={"Authorization": f"Bearer {self.token}", "X-App-Code": code},
            timeout=30,
        )

    def site(self) -> dict[str, Any]:
        response = self.client.get("/site")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def chat(self, query: str = "hello there", **extra: Any) -> dict[str, Any]:
        body = {"inputs": {}, "query": query, "response_mode": "blocking", **NO_NAMING, **extra}
        response = self.client.post("/chat-messages", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stream(self, path: str = "/chat-messages", **body: Any) -> list[Frame]:
        payload = {"inputs": {}, "query": "hello there", **NO_NAMING, **body}
        payload["response_mode"] = "streaming"
        with self.client.stream("POST", path, json=payload) as response:
            assert response.status_code == 200, response.read()
            return list(frames(response))


def site_code(admin: Admin, app_id: str) -> str:
    response = admin.client.post(f"/console/api/apps/{app_id}/site", json={})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["code"])


def assert_error(response: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["code"], body["status"]) == (code, status), body
    assert mentions in body["message"], body


@pytest.fixture
def chat_site(chat_app: ServiceApp, service_admin: Admin) -> str:
    return site_code(service_admin, chat_app.app_id)


@pytest.fixture
def web(service_stack: Stack, chat_site: str) -> Iterator[WebUser]:
    user = WebUser(service_stack, chat_site)
    yield user
    user.client.close()


@pytest.fixture
def completion_site(completion_app: ServiceApp, service_admin: Admin) -> str:
    return site_code(service_admin, completion_app.app_id)


class TestPassport:
    def test_a_new_browser_gets_a_new_end_user_and_a_returning_one_keeps_it(
        self, service_stack: Stack, chat_site: str, chat_app: ServiceApp
    ) -> None:
        first = WebUser(service_stack, chat_site)
        second = WebUser(service_stack, chat_site)
        again = WebUser(service_stack, chat_site, token=first.token)
        site = first.site()
        assert site["app_id"] == chat_app.app_id
        assert site["end_user_id"] != second.site()["end_user_id"]
        assert again.site()["end_user_id"] == site["end_user_id"]
        answer = first.chat()
        listed = again.client.get("/conversations").json()["data"]
        assert [c["id"] for c in listed] == [answer["conversation_id"]]

    def test_passport_errors_are_dify_s(self, service_stack: Stack, chat_site: str) -> None:
        url = f"{service_stack.base_url}/api"
        assert_error(httpx.get(f"{url}/passport"), 401, "unauthorized", "X-App-Code")
        unknown = httpx.get(f"{url}/passport", headers={"X-App-Code": "nope"})
        assert_error(unknown, 404, "not_found")
        assert_error(httpx.get(f"{url}/site"), 401, "unauthorized", "Authorization header")
        basic = httpx.get(f"{url}/site", headers={"Authorization": "Basic abc"})
        assert_error(basic, 401, "unauthorized", "Bearer")
        forged = httpx.get(f"{url}/site", headers={"Authorization": "Bearer not.a.jwt"})
        assert_error(forged, 401, "unauthorized", "Invalid token")

    def test_a_passport_of_another_app_is_refused(
        self, service_stack: Stack, service_admin: Admin, web: WebUser
    ) -> None:
        other = service_app(service_stack, service_admin, mode="chat")
        other_code = site_code(service_admin, other.app_id)
        response = httpx.get(
            f"{service_stack.base_url}/api/site",
            headers={"Authorization": f"Bearer {web.token}", "X-App-Code": other_code},
        )
        assert_error(response, 401, "unauthorized", "another app")

    def test_public_routes(self, service_stack: Stack) -> None:
        url = f"{service_stack.base_url}/api"
        features = httpx.get(f"{url}/system-features").json()
        assert features["sso_enforced_for_web"] is False
        assert features["enable_web_sso_switch_component"] is False
        # Sites may be open to their workspace's members only: they sign in with a password.
        assert features["webapp_auth"]["enabled"] is True
        assert features["webapp_auth"]["allow_email_password_login"] is True
        unknown = httpx.get(f"{url}/webapp/access-mode", params={"appCode": "x"})
        assert_error(unknown, 404, "not_found")


class TestAppInfo:
    def test_parameters_meta_and_site(self, web: WebUser) -> None:
        parameters = web.client.get("/parameters")
        assert parameters.status_code == 200, parameters.text
        assert "user_input_form" in parameters.json()
        assert web.client.get("/meta").json() == {"tool_icons": {}}
        site = web.site()
        assert set(site) == {
            "app_id",
            "end_user_id",
            "enable_site",
            "site",
            "model_config",
            "plan",
            "can_replace_logo",
            "custom_config",
        }
        assert site["enable_site"] is True
        assert site["site"]["title"]

    def test_a_disabled_site_refuses_the_passport_and_every_route(
        self, service_stack: Stack, service_admin: Admin, chat_app: ServiceApp, web: WebUser
    ) -> None:
        path = f"/console/api/apps/{chat_app.app_id}/site-enable"
        off = service_admin.client.post(path, json={"enable_site": False})
        assert off.status_code == 200, off.text
        assert off.json()["data"]["enable_site"] is False
        try:
            assert_error(web.client.get("/site"), 400, "bad_request", "Site is disabled.")
            refused = web.client.post("/chat-messages", json={"inputs": {}, "query": "hi"})
            assert_error(refused, 400, "bad_request", "Site is disabled.")
            passport = httpx.get(
                f"{service_stack.base_url}/api/passport", headers={"X-App-Code": web.code}
            )
            assert_error(passport, 404, "not_found")
            # The Service API is another switch.
            assert chat_app.client.get("/info").status_code == 200
            bad = service_admin.client.post(path, json={"enable_site": "no"})
            assert bad.status_code in (400, 422), bad.text
        finally:
            service_admin.client.post(path, json={"enable_site": True})
        assert web.client.get("/site").status_code == 200
        api_off = service_admin.client.post(
            f"/console/api/apps/{chat_app.app_id}/api-enable", json={"enable_api": False}
        )
        assert api_off.json()["data"]["enable_api"] is False
        assert chat_app.client.get("/info").status_code == 403
        assert web.client.get("/site").status_code == 200


class TestRuns:
    def test_a_stream_uses_the_simple_converter(self, web: WebUser, chat_app: ServiceApp) -> None:
        items = web.stream(query="what is up")
        assert answer_of(items) == "You said: what is up"
        end = items[-1]
        assert end.event == "message_end"
        assert "usage" not in end.data["metadata"]
        assert all(f.id is not None for f in items if f.event != "ping")
        # The same app on the Service API keeps every detail.
        body = {"inputs": {}, "query": "hi", "user": "u", "response_mode": "streaming"}
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            full = list(frames(response))
        assert "usage" in full[-1].data["metadata"]

    def test_blocking_is_simplified_too(self, web: WebUser) -> None:
        answer = web.chat("ping pong")
        assert answer["answer"] == "You said: ping pong"
        assert "usage" not in answer["metadata"]

    def test_no_user_field_the_token_names_the_end_user(self, web: WebUser) -> None:
        answer = web.chat(user="someone-else")
        listed = web.client.get("/conversations").json()["data"]
        assert [c["id"] for c in listed] == [answer["conversation_id"]]

    def test_resume_with_last_event_id(self, web: WebUser) -> None:
        items = web.stream(query="resume me please")
        task_id = items[0].data["task_id"]
        cut = items[2].id
        with web.client.stream(
            "GET", f"/chat-messages/{task_id}/events", headers={"Last-Event-ID": str(cut)}
        ) as response:
            assert response.status_code == 200
            rest = list(frames(response))
        assert [f.id for f in rest] == [f.id for f in items if f.id is not None and f.id > cut]
        assert "usage" not in rest[-1].data["metadata"]

    def test_stop_and_isolation_of_runs(
        self, service_stack: Stack, web: WebUser, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=20)
        other = WebUser(service_stack, web.code)
        query = " ".join(f"w{i}" for i in range(40))
        body = {"inputs": {}, "query": query, "response_mode": "streaming", **NO_NAMING}
        with web.client.stream("POST", "/chat-messages", json=body) as response:
            iterator = frames(response)
            first = next(f for f in iterator if f.event == "message")
            task_id = first.data["task_id"]
            # Another end user can neither stop nor follow it; nor can the Service API's user
            # of the same string as this end user's session id.
            assert other.client.post(f"/chat-messages/{task_id}/stop").json()["stopped"] is False
            assert other.client.get(f"/chat-messages/{task_id}/events").status_code == 404
            session_id = session_id_of(service_stack, web)
            assert (
                chat_app.client.get(
                    f"/chat-messages/{task_id}/events", params={"user": session_id}
                ).status_code
                == 404
            )
            service_stop = chat_app.client.post(
                f"/chat-messages/{task_id}/stop", json={"user": session_id}
            )
            assert service_stop.json()["stopped"] is False
            stopped = web.client.post(f"/chat-messages/{task_id}/stop")
            assert stopped.json() == {"result": "success", "stopped": True}
            rest = [first, *iterator]
        assert rest[-1].event == "message_end"
        assert len(answer_of(rest)) < len(f"You said: {query}")

    def test_completion_runs_and_mode_checks(
        self, service_stack: Stack, completion_site: str
    ) -> None:
        user = WebUser(service_stack, completion_site)
        items = user.stream("/completion-messages", inputs={"text": "bonjour"}, query="")
        assert items[-1].event == "message_end"
        assert "conversation_id" not in items[-1].data
        wrong = user.client.post("/chat-messages", json={"inputs": {}, "query": "x"})
        assert_error(wrong, 400, "not_chat_app")
        assert_error(user.client.get("/conversations"), 400, "not_chat_app")

    def test_async_run_and_its_task(self, service_stack: Stack, web: WebUser) -> None:
        accepted = web.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": "later", "response_mode": "async", **NO_NAMING},
        )
        assert accepted.status_code == 202, accepted.text
        url = accepted.json()["status_url"]
        assert url.startswith("/api/tasks/")
        task = web.client.get(url.removeprefix("/api"))
        assert task.status_code == 200, task.text
        other = WebUser(service_stack, web.code)  # another end user of the same site: 404
        assert_error(other.client.get(url.removeprefix("/api")), 404, "task_not_found")
        refused = web.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": "x", "response_mode": "async", "callback_url": "http://a"},
        )
        assert_error(refused, 400, "invalid_param", "callback_url")

    def test_a_completion_is_stopped_by_its_end_user_only(
        self, service_stack: Stack, completion_site: str, upstream: Any
    ) -> None:
        upstream.control(pace_ms=20)
        user, other = (
            WebUser(service_stack, completion_site),
            WebUser(service_stack, completion_site),
        )
        body = {
            "inputs": {"text": " ".join(f"w{i}" for i in range(40))},
            "response_mode": "streaming",
        }
        with user.client.stream("POST", "/completion-messages", json=body) as response:
            iterator = frames(response)
            first = next(f for f in iterator if f.event == "message")
            task_id = first.data["task_id"]
            refused = other.client.post(f"/completion-messages/{task_id}/stop")
            assert refused.json()["stopped"] is False
            stopped = user.client.post(f"/completion-messages/{task_id}/stop")
            assert stopped.json() == {"result": "success", "stopped": True}
            rest = [first, *iterator]
        assert rest[-1].event == "message_end"
        assert len(answer_of(rest)) < len(body["inputs"]["text"])
        upstream.control(pace_ms=5)

    def test_the_end_user_s_rate_limit(self, service_stack: Stack, chat_site: str) -> None:
        user = WebUser(service_stack, chat_site)
        statuses = [
            user.client.post("/chat-messages", json={"inputs": {}}).status_code
            for _ in range(RATE + 1)
        ]
        assert statuses[:RATE] == [400] * RATE  # counted, then refused for the missing query
        limited = user.client.post("/chat-messages", json={"inputs": {}, "query": "x"})
        assert_error(limited, 429, "rate_limit_error")
        # Another end user has a rate of their own.
        WebUser(service_stack, chat_site).chat()


def session_id_of(stack: Stack, user: WebUser) -> str:
    """The end user's session id, as the server's database holds it (never on the wire)."""
    claims = jwt.decode(user.token, options={"verify_signature": False})
    rows = run_sql(
        stack.database_url,
        "SELECT session_id FROM end_users WHERE id = :id",
        id=claims["end_user_id"],
    )
    return str(rows[0][0])


class TestConversations:
    def test_list_pin_unpin_rename_delete(self, web: WebUser) -> None:
        first = web.chat("first question")["conversation_id"]
        second = web.chat("second question")["conversation_id"]
        pin = web.client.patch(f"/conversations/{first}/pin")
        assert pin.json() == {"result": "success"}
        assert web.client.patch(f"/conversations/{first}/pin").status_code == 200  # again: fine
        pinned = web.client.get("/conversations", params={"pinned": "true"}).json()
        assert [c["id"] for c in pinned["data"]] == [first]
        assert set(pinned) == {"limit", "has_more", "data"}
        unpinned = web.client.get("/conversations", params={"pinned": "false"}).json()
        assert [c["id"] for c in unpinned["data"]] == [second]
        everything = web.client.get("/conversations", params={"limit": 1}).json()
        assert everything["has_more"] is True
        assert web.client.patch(f"/conversations/{first}/unpin").json() == {"result": "success"}
        assert web.client.get("/conversations", params={"pinned": "true"}).json()["data"] == []
        renamed = web.client.post(f"/conversations/{second}/name", json={"name": "Mine"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "Mine"
        auto = web.client.post(f"/conversations/{second}/name", json={"auto_generate": True})
        assert auto.status_code == 200 and auto.json()["name"]
        assert web.client.delete(f"/conversations/{second}").status_code == 204
        left = web.client.get("/conversations").json()["data"]
        assert [c["id"] for c in left] == [first]
        bad = web.client.get("/conversations", params={"pinned": "maybe"})
        assert_error(bad, 400, "invalid_param", "pinned")

    def test_one_end_user_sees_nothing_of_another_s(
        self, service_stack: Stack, web: WebUser, chat_app: ServiceApp
    ) -> None:
        answer = web.chat()
        conversation_id, message_id = answer["conversation_id"], answer["message_id"]
        other = WebUser(service_stack, web.code)
        assert other.client.get("/conversations").json()["data"] == []
        for response in (
            other.client.patch(f"/conversations/{conversation_id}/pin"),
            other.client.delete(f"/conversations/{conversation_id}"),
            other.client.post(f"/conversations/{conversation_id}/name", json={"name": "x"}),
            other.client.get("/messages", params={"conversation_id": conversation_id}),
            other.client.post(f"/messages/{message_id}/feedbacks", json={"rating": "like"}),
        ):
            assert response.status_code == 404, response.text
        # The Service API's user of the same string as the end user's session id is another.
        session_id = session_id_of(service_stack, web)
        service = chat_app.client.get("/conversations", params={"user": session_id})
        assert service.json()["data"] == []
        messages = chat_app.client.get(
            "/messages", params={"user": session_id, "conversation_id": conversation_id}
        )
        assert messages.status_code == 404


class TestMessages:
    def test_messages_feedback_and_suggestions(
        self, web: WebUser, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        answer = web.chat("tell me")
        listed = web.client.get("/messages", params={"conversation_id": answer["conversation_id"]})
        assert listed.status_code == 200, listed.text
        item = listed.json()["data"][0]
        assert item["answer"] == "You said: tell me"
        assert "message_tokens" not in item
        liked = web.client.post(
            f"/messages/{answer['message_id']}/feedbacks", json={"rating": "like"}
        )
        assert liked.json() == {"result": "success"}
        again = web.client.get("/messages", params={"conversation_id": answer["conversation_id"]})
        assert again.json()["data"][0]["feedback"] == {"rating": "like"}
        disabled = web.client.get(f"/messages/{answer['message_id']}/suggested-questions")
        assert_error(disabled, 403, "app_suggested_questions_after_answer_disabled")
        config = service_admin.client.get(f"/console/api/apps/{chat_app.app_id}/model-config")
        enabled = {
            **config.json()["data"],
            "suggested_questions_after_answer": {"enabled": True},
        }
        saved = service_admin.client.post(
            f"/console/api/apps/{chat_app.app_id}/model-config", json=enabled
        )
        assert saved.status_code == 200, saved.text
        questions = web.client.get(f"/messages/{answer['message_id']}/suggested-questions")
        assert questions.status_code == 200, questions.text
        assert isinstance(questions.json()["data"], list)

    def test_more_like_this_and_saved_messages(
        self,
        service_stack: Stack,
        service_admin: Admin,
        completion_app: ServiceApp,
        completion_site: str,
    ) -> None:
        user = WebUser(service_stack, completion_site)
        done = user.client.post(
            "/completion-messages",
            json={"inputs": {"text": "chat"}, "query": "", "response_mode": "blocking"},
        )
        assert done.status_code == 200, done.text
        message_id = done.json()["message_id"]
        path = f"/messages/{message_id}/more-like-this"
        refused = user.client.get(path, params={"response_mode": "blocking"})
        assert_error(refused, 403, "app_more_like_this_disabled")
        config = service_admin.client.get(f"/console/api/apps/{completion_app.app_id}/model-config")
        enabled = {**config.json()["data"], "more_like_this": {"enabled": True}}
        saved_config = service_admin.client.post(
            f"/console/api/apps/{completion_app.app_id}/model-config", json=enabled
        )
        assert saved_config.status_code == 200, saved_config.text
        more = user.client.get(path, params={"response_mode": "blocking"})
        assert more.status_code == 200, more.text
        assert more.json()["message_id"] != message_id
        assert "usage" not in more.json()["metadata"]
        with user.client.stream("GET", path, params={"response_mode": "streaming"}) as response:
            assert response.status_code == 200
            assert list(frames(response))[-1].event == "message_end"
        bad_mode = user.client.get(path, params={"response_mode": "async"})
        assert_error(bad_mode, 400, "invalid_param", "response_mode")
        other = WebUser(service_stack, completion_site)
        assert other.client.get(path, params={"response_mode": "blocking"}).status_code == 404

        # Saved messages.
        assert user.client.post("/saved-messages", json={"message_id": message_id}).json() == {
            "result": "success"
        }
        assert (
            user.client.post("/saved-messages", json={"message_id": message_id}).status_code == 200
        )
        page = user.client.get("/saved-messages").json()
        assert page["has_more"] is False
        assert [m["id"] for m in page["data"]] == [message_id]
        assert set(page["data"][0]) == {
            "id",
            "inputs",
            "query",
            "answer",
            "message_files",
            "feedback",
            "created_at",
        }
        assert other.client.get("/saved-messages").json()["data"] == []
        not_theirs = other.client.post("/saved-messages", json={"message_id": message_id})
        assert not_theirs.status_code == 404
        assert user.client.delete(f"/saved-messages/{message_id}").status_code == 204
        assert user.client.get("/saved-messages").json()["data"] == []
        missing = user.client.post("/saved-messages", json={})
        assert_error(missing, 400, "invalid_param", "message_id")

    def test_saved_messages_are_for_completion_apps(self, web: WebUser) -> None:
        assert_error(web.client.get("/saved-messages"), 400, "not_completion_app")


class TestFiles:
    def test_upload(self, web: WebUser) -> None:
        response = web.client.post(
            "/files/upload", files={"file": ("notes.txt", b"hello", "text/plain")}
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "notes.txt"
        assert_error(web.client.post("/files/upload", data={"x": "y"}), 400, "no_file_uploaded")


@pytest.fixture
def workflow_site(service_stack: Stack, service_admin: Admin, upstream: Any) -> Iterator[str]:
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
    app.client.close()
    yield site_code(service_admin, app.app_id)
    upstream.reset()


class TestWorkflowRuns:
    def test_a_run_streams_blocks_and_replays_for_its_end_user_only(
        self, service_stack: Stack, workflow_site: str
    ) -> None:
        user, other = WebUser(service_stack, workflow_site), WebUser(service_stack, workflow_site)
        events = user.stream("/workflows/run", inputs={"topic": "tea"}, query="")
        names = [f.event for f in events if f.event != "ping"]
        assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
        finished = events[-1].data
        assert finished["data"]["status"] == "succeeded"
        assert "tea" in finished["data"]["outputs"]["all"]
        run_id = finished["workflow_run_id"]
        replay = user.client.get(f"/workflow/{run_id}/events")
        assert replay.status_code == 200
        assert '"workflow_finished"' in replay.text
        assert_error(other.client.get(f"/workflow/{run_id}/events"), 404, "not_found")
        blocking = user.client.post(
            "/workflows/run", json={"inputs": {"topic": "tea"}, "response_mode": "blocking"}
        )
        assert blocking.status_code == 200, blocking.text
        assert set(blocking.json()) == {"task_id", "workflow_run_id", "data"}
        assert blocking.json()["data"]["status"] == "succeeded"
        missing = user.client.post("/workflows/run", json={"inputs": {}})
        assert_error(missing, 400, "invalid_param", "topic")
        wrong = user.client.post("/chat-messages", json={"inputs": {}, "query": "x"})
        assert_error(wrong, 400, "not_chat_app")

    def test_a_run_is_stopped_by_its_end_user_only(
        self, service_stack: Stack, workflow_site: str, upstream: Any
    ) -> None:
        upstream.control(mode="hang-before-first-token", times=3)
        user, other = WebUser(service_stack, workflow_site), WebUser(service_stack, workflow_site)
        body = {"inputs": {"topic": "x"}, "response_mode": "streaming"}
        with user.client.stream("POST", "/workflows/run", json=body) as response:
            seen: list[Frame] = []
            for frame in frames(response):
                seen.append(frame)
                started = [f for f in seen if f.event == "node_started"]
                if len(started) == 4 and frame.event == "node_started":  # the three models
                    task_id = frame.data["task_id"]
                    refused = other.client.post(f"/workflows/tasks/{task_id}/stop")
                    assert refused.json()["stopped"] is False
                    stopped = user.client.post(f"/workflows/tasks/{task_id}/stop")
                    assert stopped.json() == {"result": "success", "stopped": True}
        assert seen[-1].event == "workflow_finished"
        assert seen[-1].data["data"]["status"] == "stopped"


def access(admin: Admin, app_id: str, mode: str) -> httpx.Response:
    return admin.client.post(f"/console/api/apps/{app_id}/site", json={"access_mode": mode})


def web_login(stack: Stack, email: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/api/login", json={"email": email, "password": password}, timeout=10
    )


class TestAccessMode:
    """A site open to its workspace's members only (Dify's web app access control,
    `private_all`): a member signs in, others are refused in words, and a site made private
    refuses the passports given before."""

    def test_a_private_site_takes_its_workspaces_members_only(
        self, service_stack: Stack, service_admin: Admin, chat_app: ServiceApp, chat_site: str
    ) -> None:
        url = f"{service_stack.base_url}/api"
        before = WebUser(service_stack, chat_site)  # a passport of the public site
        before.chat()
        # A member's sign-in on a public site counts for nothing: an anonymous end user (no
        # other workspace learns who they are).
        signed = web_login(service_stack, service_admin.email, service_admin.password)
        login_token = signed.json()["data"]["access_token"]
        anyone = WebUser(service_stack, chat_site, token=login_token)
        assert "user_id" not in jwt.decode(anyone.token, options={"verify_signature": False})
        # Neither a sign-in nor a console token is a passport.
        for bearer in (login_token, service_admin.token):
            headers = {"Authorization": f"Bearer {bearer}", "X-App-Code": chat_site}
            refused = httpx.get(f"{url}/parameters", headers=headers)
            assert_error(refused, 401, "unauthorized")
        assert access(service_admin, chat_app.app_id, "private_all").status_code == 200
        try:
            mode = httpx.get(f"{url}/webapp/access-mode", params={"appCode": chat_site}).json()
            assert mode == {"accessMode": "private_all"}
            by_id = httpx.get(f"{url}/webapp/access-mode", params={"appId": chat_app.app_id})
            assert by_id.json() == {"accessMode": "private_all"}
            # The passport given before: refused now, and no new one without a sign-in.
            assert_error(before.client.get("/parameters"), 401, "web_app_access_denied")
            anonymous = httpx.get(f"{url}/passport", headers={"X-App-Code": chat_site})
            assert_error(anonymous, 401, "web_sso_auth_required")
            stale = httpx.get(
                f"{url}/passport",
                headers={"X-App-Code": chat_site, "Authorization": f"Bearer {before.token}"},
            )
            assert_error(stale, 401, "web_sso_auth_required")
            # A wrong password: the sign-in's words; then the owner signs in and chats.
            wrong = web_login(service_stack, service_admin.email, "not it")
            assert_error(wrong, 401, "unauthorized", "Invalid email or password.")
            signed = web_login(service_stack, service_admin.email, service_admin.password)
            assert signed.status_code == 200, signed.text
            login_token = signed.json()["data"]["access_token"]
            owner = WebUser(service_stack, chat_site, token=login_token)
            assert owner.chat()["answer"]
            claims = jwt.decode(owner.token, options={"verify_signature": False})
            allowed = owner.client.get("/webapp/permission", params={"appId": chat_app.app_id})
            assert allowed.json() == {"result": True}
            # The same member from another browser: the same end user (their conversations).
            again = WebUser(service_stack, chat_site, token=login_token)
            assert (
                jwt.decode(again.token, options={"verify_signature": False})["end_user_id"]
                == (claims["end_user_id"])
            )
            assert again.client.get("/conversations").json()["data"]
            # Another workspace's owner: refused, in words.
            stranger = make_admin(service_stack, workspace="Elsewhere")
            theirs = web_login(service_stack, stranger.email, stranger.password)
            refused = httpx.get(
                f"{url}/passport",
                headers={
                    "X-App-Code": chat_site,
                    "Authorization": f"Bearer {theirs.json()['data']['access_token']}",
                },
            )
            assert_error(refused, 401, "web_app_access_denied", "permission")
            denied = httpx.get(
                f"{url}/webapp/permission",
                params={"appId": chat_app.app_id},
                headers={"Authorization": f"Bearer {theirs.json()['data']['access_token']}"},
            )
            assert denied.json() == {"result": False}
            stranger.client.close()
            # A member of the workspace (any role) may; banned, then removed, they are refused.
            member = add_member(service_stack, service_admin, "normal")
            signed = web_login(service_stack, member.email, member.password)
            colleague = WebUser(
                service_stack, chat_site, token=signed.json()["data"]["access_token"]
            )
            assert colleague.chat()["answer"]
            ban = "UPDATE accounts SET status = :status WHERE email = :email"
            run_sql(service_stack.database_url, ban, status="banned", email=member.email)
            assert_error(colleague.client.get("/parameters"), 401, "web_app_access_denied")
            run_sql(service_stack.database_url, ban, status="active", email=member.email)
            assert colleague.client.get("/parameters").status_code == 200
            colleague_id = jwt.decode(colleague.token, options={"verify_signature": False})[
                "user_id"
            ]
            removed = service_admin.client.delete(
                f"/console/api/workspaces/current/members/{colleague_id}"
            )
            assert removed.status_code in (200, 204), removed.text
            assert_error(colleague.client.get("/parameters"), 401, "web_app_access_denied")
            member.client.close()
        finally:
            assert access(service_admin, chat_app.app_id, "public").status_code == 200
        # Public again: the passport given before works again; anyone gets one.
        assert before.client.get("/parameters").status_code == 200
        WebUser(service_stack, chat_site).chat()

    def test_modes_this_server_does_not_serve_are_refused_naming_them(
        self, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        for mode, says in [
            ("private", "access_mode: 'private' is not served here"),
            ("sso_verified", "access_mode: 'sso_verified' is not served here"),
            ("everyone", "access_mode: must be one of: public, private_all"),
        ]:
            assert_error(access(service_admin, chat_app.app_id, mode), 400, "invalid_param", says)
        site = service_admin.client.get(f"/console/api/apps/{chat_app.app_id}/site").json()
        assert site["data"]["access_mode"] == "public"
