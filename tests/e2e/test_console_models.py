"""Workspace model providers (encrypted keys, masked on every route), the app model config and
the console debugger — against a real server, the fake model upstream and, for the runs, the
Celery executor (so the worker, not the API, reads and decrypts the provider's key)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Admin, add_member, make_admin, service_app
from tests.e2e.sse import Frame, answer_of, frames
from tests.support import Stack, wait_for

EXECUTOR = "celery"
PROVIDERS = "/console/api/workspaces/current/model-providers"
KEY = "sk-secret-0123456789abcd"
MASKED = "sk-…abcd"
QUESTION = "what is the tide doing"


def assert_envelope(response: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert mentions in body["message"], body


@pytest.fixture(autouse=True)
def clean_upstream(upstream: Any) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()  # the fake's api_key setting would break the other modules' runs


@pytest.fixture
def owner(service_stack: Stack) -> Iterator[Admin]:
    """The owner of a fresh workspace (providers and defaults never leak between tests)."""
    found = make_admin(service_stack)
    yield found
    found.client.close()


def create_provider(client: httpx.Client, upstream: Any, **overrides: Any) -> dict[str, Any]:
    body = {
        "provider": "openai_api_compatible",
        "name": "Fake upstream",
        "base_url": upstream.base_url,
        "api_key": KEY,
        "models": ["fake-model", "fake-large"],
        "is_default": False,
        **overrides,
    }
    response = client.post(PROVIDERS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def chat_config(provider: str, name: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {
        "pre_prompt": "You are a test assistant.",
        "model": {
            "provider": provider,
            "name": name,
            "completion_params": {"temperature": 0.2, "max_tokens": 200},
        },
        **extra,
    }


def service_chat(client: httpx.Client, query: str = QUESTION) -> httpx.Response:
    return client.post(
        "/chat-messages",
        json={
            "inputs": {},
            "query": query,
            "user": "alice",
            "response_mode": "blocking",
            "auto_generate_name": False,
        },
    )


class TestProviderCrud:
    def test_create_list_update_delete_never_show_the_key(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        created = create_provider(owner.client, upstream, is_default=True)
        assert created["api_key"] == MASKED
        assert created["reference"] == f"workspace:{created['id']}"
        assert created["models"] == ["fake-model", "fake-large"]
        assert created["is_default"] is True
        assert created["base_url"] == upstream.base_url

        listed = owner.client.get(PROVIDERS)
        assert listed.status_code == 200
        assert listed.json()["total"] == 1
        assert listed.json()["data"][0]["id"] == created["id"]
        one = owner.client.get(f"{PROVIDERS}/{created['id']}")
        assert one.json()["data"]["api_key"] == MASKED

        # Keeping the key: omitted, Dify's hidden marker, or the masked value sent back.
        for keep in ({}, {"api_key": "[__HIDDEN__]"}, {"api_key": MASKED}):
            kept = owner.client.put(
                f"{PROVIDERS}/{created['id']}", json={"name": "Renamed", **keep}
            )
            assert kept.status_code == 200, kept.text
            assert kept.json()["data"]["api_key"] == MASKED
        changed = owner.client.put(
            f"{PROVIDERS}/{created['id']}",
            json={"api_key": "sk-other-key-000000009999", "models": ["m1"], "is_default": False},
        )
        data = changed.json()["data"]
        assert (data["name"], data["api_key"], data["models"], data["is_default"]) == (
            "Renamed",
            "sk-…9999",
            ["m1"],
            False,
        )

        # Every response so far: not a trace of the keys.
        for response in (listed, one, changed):
            assert KEY not in response.text and "sk-other-key" not in response.text

        # At rest: encrypted, not the plain text (and not even containing it).
        ((stored,),) = service_stack.sql(
            "SELECT encrypted_api_key FROM provider_credentials WHERE id = :id", id=created["id"]
        )
        assert isinstance(stored, str) and stored.startswith("gAAAAA")
        assert "sk-other-key" not in stored and KEY not in stored

        cleared = owner.client.put(f"{PROVIDERS}/{created['id']}", json={"api_key": ""})
        assert cleared.json()["data"]["api_key"] is None

        assert owner.client.delete(f"{PROVIDERS}/{created['id']}").status_code == 204
        assert owner.client.get(PROVIDERS).json() == {"data": [], "total": 0}
        assert_envelope(owner.client.get(f"{PROVIDERS}/{created['id']}"), 404, "provider_not_found")
        assert_envelope(
            owner.client.delete(f"{PROVIDERS}/{created['id']}"), 404, "provider_not_found"
        )

    def test_bad_fields_are_named(self, owner: Admin, upstream: Any) -> None:
        good = {"name": "P", "base_url": upstream.base_url, "api_key": KEY}
        for body, field in (
            ({**good, "base_url": "ftp://example.com/v1"}, "base_url"),
            ({**good, "base_url": "not a url"}, "base_url"),
            ({**good, "base_url": "http://"}, "base_url"),
            ({**good, "name": "  "}, "name"),
            ({k: v for k, v in good.items() if k != "name"}, "name"),
            ({**good, "provider": "openai"}, "provider"),
            ({**good, "models": "fake-model"}, "models"),
            ({**good, "models": [""]}, "models[0]"),
            ({**good, "is_default": "maybe"}, "is_default"),
        ):
            assert_envelope(owner.client.post(PROVIDERS, json=body), 400, "invalid_param", field)
        assert owner.client.get(PROVIDERS).json()["total"] == 0

    def test_names_are_unique_and_one_default_per_workspace(
        self, owner: Admin, upstream: Any
    ) -> None:
        first = create_provider(owner.client, upstream, name="One", is_default=True)
        assert_envelope(
            owner.client.post(
                PROVIDERS, json={"name": "One", "base_url": upstream.base_url, "api_key": KEY}
            ),
            409,
            "conflict",
            "One",
        )
        second = create_provider(owner.client, upstream, name="Two", is_default=True)
        defaults = {p["name"]: p["is_default"] for p in owner.client.get(PROVIDERS).json()["data"]}
        assert defaults == {"One": False, "Two": True}
        assert_envelope(
            owner.client.put(f"{PROVIDERS}/{second['id']}", json={"name": "One"}),
            409,
            "conflict",
        )
        owner.client.put(f"{PROVIDERS}/{first['id']}", json={"is_default": True})
        defaults = {p["name"]: p["is_default"] for p in owner.client.get(PROVIDERS).json()["data"]}
        assert defaults == {"One": True, "Two": False}


class TestRolesAndTenants:
    def test_members_read_masked_admins_manage(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        provider = create_provider(owner.client, upstream)
        app_id = service_app(service_stack, owner).app_id
        normal = add_member(service_stack, owner, "normal")
        editor = add_member(service_stack, owner, "editor")
        admin = add_member(service_stack, owner, "admin")
        path = f"{PROVIDERS}/{provider['id']}"
        for member in (normal, editor):
            listed = member.client.get(PROVIDERS)
            assert listed.status_code == 200
            assert listed.json()["data"][0]["api_key"] == MASKED
            assert KEY not in listed.text
            body = {"name": "Mine", "base_url": upstream.base_url}
            assert_envelope(member.client.post(PROVIDERS, json=body), 403, "forbidden")
            assert_envelope(member.client.put(path, json={"name": "x"}), 403, "forbidden")
            assert_envelope(member.client.delete(path), 403, "forbidden")
            assert_envelope(member.client.post(f"{path}/test"), 403, "forbidden")
        # Editors configure apps and debug them; normal members only read.
        config = chat_config(provider["reference"])
        assert (
            editor.client.post(f"/console/api/apps/{app_id}/model-config", json=config).status_code
            == 200
        )
        assert normal.client.get(f"/console/api/apps/{app_id}/model-config").status_code == 200
        assert_envelope(
            normal.client.post(f"/console/api/apps/{app_id}/model-config", json=config),
            403,
            "forbidden",
        )
        assert_envelope(
            normal.client.post(
                f"/console/api/apps/{app_id}/chat-messages", json={"inputs": {}, "query": "hi"}
            ),
            403,
            "forbidden",
        )
        # Admins manage providers.
        made = create_provider(admin.client, upstream, name="By admin")
        assert admin.client.delete(f"{PROVIDERS}/{made['id']}").status_code == 204
        for member in (normal, editor, admin):
            member.client.close()

    def test_another_workspaces_provider_is_404_and_cannot_be_used(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        provider = create_provider(owner.client, upstream)
        path = f"{PROVIDERS}/{provider['id']}"
        with make_admin(service_stack, workspace="Other Corp").client as client:
            assert client.get(PROVIDERS).json() == {"data": [], "total": 0}
            for response in (
                client.get(path),
                client.put(path, json={"name": "mine"}),
                client.delete(path),
                client.post(f"{path}/test"),
            ):
                assert_envelope(response, 404, "provider_not_found")
            app = client.post("/console/api/apps", json={"name": "theirs", "mode": "chat"})
            their_app = app.json()["data"]["id"]
            assert_envelope(
                client.post(
                    f"/console/api/apps/{their_app}/model-config",
                    json=chat_config(provider["reference"]),
                ),
                400,
                "invalid_param",
                "model.provider",
            )
            own_app = service_app(service_stack, owner).app_id
            for response in (
                client.get(f"/console/api/apps/{own_app}/model-config"),
                client.post(f"/console/api/apps/{own_app}/model-config", json={}),
                client.post(
                    f"/console/api/apps/{own_app}/chat-messages",
                    json={"inputs": {}, "query": "hi"},
                ),
                client.post(f"/console/api/apps/{own_app}/chat-messages/some-task/stop"),
            ):
                assert_envelope(response, 404, "app_not_found")
        assert owner.client.get(path).json()["data"]["name"] == "Fake upstream"


class TestProviderTest:
    def test_success_and_a_refused_key(self, owner: Admin, upstream: Any) -> None:
        upstream.control(api_key=KEY)
        good = create_provider(owner.client, upstream, name="Good")
        response = owner.client.post(f"{PROVIDERS}/{good['id']}/test")
        assert response.status_code == 200, response.text
        assert response.json() == {"result": "success"}
        assert upstream.stats()["log"][-1]["model"] == "fake-model"

        bad = create_provider(owner.client, upstream, name="Bad", api_key="sk-wrong-key-00000000")
        refused = owner.client.post(f"{PROVIDERS}/{bad['id']}/test", json={"model": "fake-large"})
        assert_envelope(refused, 400, "provider_not_initialize")
        assert "sk-wrong" not in refused.text
        assert upstream.stats()["log"][-1]["outcome"] == "error-401"


class TestRunsThroughAWorkspaceProvider:
    def test_chat_uses_the_workspace_key_which_never_travels_in_plain_text(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        provider = create_provider(owner.client, upstream)
        app = service_app(service_stack, owner)
        saved = owner.client.post(
            f"/console/api/apps/{app.app_id}/model-config",
            json=chat_config(provider["reference"], "fake-large"),
        )
        assert saved.status_code == 200, saved.text
        try:
            response = service_chat(app.client)
            assert response.status_code == 200, response.text
            assert response.json()["answer"] == f"You said: {QUESTION}"
            record = upstream.stats()["log"][-1]
            assert (record["model"], record["outcome"]) == ("fake-large", "completed")

            # The run went through the outbox to the worker: with the provider's id, no key.
            rows = service_stack.sql("SELECT kwargs FROM outbox")
            specs = [
                kwargs if isinstance(kwargs, dict) else json.loads(str(kwargs))
                for (kwargs,) in rows
            ]
            refs = [k["spec"]["body"]["model_ref"] for k in specs if "spec" in k]
            assert {"credential_id": provider["id"]}.items() <= refs[-1].items()
            assert all(KEY not in json.dumps(k) for k in specs)
            ((model_provider,),) = service_stack.sql(
                "SELECT model_provider FROM messages WHERE id = :id",
                id=response.json()["message_id"],
            )
            assert model_provider == provider["reference"]  # its usage is counted on it
        finally:
            app.client.close()

    def test_a_refused_key_is_provider_not_initialize(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        provider = create_provider(owner.client, upstream, api_key="sk-wrong-key-00000000")
        app = service_app(service_stack, owner)
        owner.client.post(
            f"/console/api/apps/{app.app_id}/model-config",
            json=chat_config(provider["reference"]),
        )
        try:
            assert_envelope(service_chat(app.client), 400, "provider_not_initialize")
            # A deleted provider fails the same way (the app still names it).
            owner.client.delete(f"{PROVIDERS}/{provider['id']}")
            assert_envelope(
                service_chat(app.client), 400, "provider_not_initialize", "no longer exists"
            )
        finally:
            app.client.close()

    def test_the_workspace_default_serves_apps_that_name_no_provider(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        app = service_app(service_stack, owner, pre_prompt="Be brief.")
        try:
            # The server default (the same fake, but no key) is refused...
            assert_envelope(service_chat(app.client), 400, "provider_not_initialize")
            # ...and the workspace default, with its key and first model, is not.
            create_provider(owner.client, upstream, models=["fake-large"], is_default=True)
            response = service_chat(app.client)
            assert response.status_code == 200, response.text
            assert upstream.stats()["log"][-1]["model"] == "fake-large"
        finally:
            app.client.close()


class TestModelConfig:
    def test_save_and_read_back(self, service_stack: Stack, owner: Admin, upstream: Any) -> None:
        provider = create_provider(owner.client, upstream)
        app_id = service_app(service_stack, owner).app_id
        before = owner.client.get(f"/console/api/apps/{app_id}")  # warms the app cache
        assert before.status_code == 200
        config = {
            **chat_config(provider["reference"]),
            "opening_statement": "Hello!",
            "suggested_questions": ["What can you do?"],
            "suggested_questions_after_answer": {"enabled": True},
            "user_input_form": [
                {"text-input": {"label": "Name", "variable": "name", "required": False}},
                {"select": {"label": "Tone", "variable": "tone", "options": ["dry", "warm"]}},
            ],
            "memory": {"window": {"enabled": True, "size": 5}},
            "more_like_this": {"enabled": False},  # a Dify feature kept as it is
        }
        saved = owner.client.post(f"/console/api/apps/{app_id}/model-config", json=config)
        assert saved.status_code == 200, saved.text
        assert saved.json() == {"result": "success", "data": config}
        read = owner.client.get(f"/console/api/apps/{app_id}/model-config")
        assert read.json() == {"data": config}
        # update_app ran: the cached app shows the new config at once.
        assert (
            owner.client.get(f"/console/api/apps/{app_id}").json()["data"]["model_config"] == config
        )

    def test_bad_shapes_are_400_naming_the_field(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        provider = create_provider(owner.client, upstream)
        app_id = service_app(service_stack, owner).app_id
        good = chat_config(provider["reference"])
        model = good["model"]
        params = model["completion_params"]
        cases: list[tuple[Any, str]] = [
            ([1, 2], ""),
            ({**good, "pre_prompt": 3}, "pre_prompt"),
            ({**good, "opening_statement": ["x"]}, "opening_statement"),
            ({**good, "suggested_questions": "x"}, "suggested_questions"),
            (
                {**good, "suggested_questions_after_answer": {"enabled": "yes"}},
                "suggested_questions_after_answer.enabled",
            ),
            ({**good, "user_input_form": {"a": 1}}, "user_input_form"),
            ({**good, "user_input_form": [{"slider": {"variable": "a"}}]}, "user_input_form[0]"),
            (
                {**good, "user_input_form": [{"text-input": {"variable": "1bad"}}]},
                "user_input_form[0].text-input.variable",
            ),
            (
                {**good, "user_input_form": [{"select": {"variable": "a", "options": []}}]},
                "user_input_form[0].select.options",
            ),
            (
                {
                    **good,
                    "user_input_form": [
                        {"paragraph": {"variable": "a"}},
                        {"text-input": {"variable": "a"}},
                    ],
                },
                "user_input_form[1].text-input.variable",
            ),
            ({**good, "model": "gpt"}, "model"),
            ({**good, "model": {**model, "provider": "openai"}}, "model.provider"),
            ({**good, "model": {**model, "provider": "workspace:nope"}}, "model.provider"),
            ({**good, "model": {**model, "name": "gpt-4"}}, "model.name"),
            ({**good, "model": {**model, "name": None}}, "model.name"),
            (
                {**good, "model": {**model, "completion_params": {**params, "temperature": 5}}},
                "model.completion_params.temperature",
            ),
            (
                {**good, "model": {**model, "completion_params": {**params, "top_p": "high"}}},
                "model.completion_params.top_p",
            ),
            (
                {**good, "model": {**model, "completion_params": {**params, "max_tokens": 0}}},
                "model.completion_params.max_tokens",
            ),
            (
                {**good, "model": {**model, "completion_params": {**params, "stop": "END"}}},
                "model.completion_params.stop",
            ),
            (
                {**good, "memory": {"window": {"enabled": True, "size": "ten"}}},
                "memory.window.size",
            ),
            ({**good, "memory": []}, "memory"),
        ]
        for body, field in cases:
            response = owner.client.post(f"/console/api/apps/{app_id}/model-config", json=body)
            assert_envelope(response, 400, "invalid_param", field)
        stored = owner.client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
        assert "model" not in stored  # nothing bad was written

    def test_server_providers_are_accepted(self, service_stack: Stack, owner: Admin) -> None:
        app_id = service_app(service_stack, owner).app_id
        for provider in ("openai_api_compatible", "local", "default", None):
            body = {"model": {"provider": provider, "name": "any-model"}}
            response = owner.client.post(f"/console/api/apps/{app_id}/model-config", json=body)
            assert response.status_code == 200, response.text


def debug(client: httpx.Client, app_id: str, query: str = QUESTION, **extra: Any) -> list[Frame]:
    body = {"inputs": {}, "query": query, "auto_generate_name": False, **extra}
    with client.stream("POST", f"/console/api/apps/{app_id}/chat-messages", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [f for f in frames(response) if f.event != "ping"]


class TestDebugger:
    def test_streams_as_the_account_through_the_workspace_provider(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        provider = create_provider(owner.client, upstream)
        app_id = service_app(service_stack, owner).app_id
        owner.client.post(
            f"/console/api/apps/{app_id}/model-config", json=chat_config(provider["reference"])
        )
        items = debug(owner.client, app_id)  # no response_mode: the debugger streams
        assert [f.event for f in items[:-1]] == ["message"] * (len(items) - 1)
        assert items[-1].event == "message_end"
        assert answer_of(items) == f"You said: {QUESTION}"
        conversation_id = items[0].data["conversation_id"]

        # The conversation goes on (memory: the first turn is in the second prompt).
        again = debug(owner.client, app_id, "and tomorrow", conversation_id=conversation_id)
        assert answer_of(again) == "You said: and tomorrow"
        prompt = upstream.stats()["log"][-1]["messages"]
        assert [m["content"] for m in prompt if m["role"] == "user"] == [QUESTION, "and tomorrow"]

        blocking = owner.client.post(
            f"/console/api/apps/{app_id}/chat-messages",
            json={"inputs": {}, "query": "hi", "response_mode": "blocking"},
        )
        assert blocking.status_code == 200, blocking.text
        assert blocking.json()["answer"] == "You said: hi"

        # The runs belong to the account's console end user.
        account_id = owner.client.get("/console/api/account/profile").json()["data"]["id"]
        rows = service_stack.sql(
            "SELECT e.session_id FROM messages m JOIN end_users e ON e.id = m.end_user_id "
            "WHERE m.conversation_id = :id",
            id=conversation_id,
        )
        assert [row[0] for row in rows] == [f"console-{account_id}"] * 2

    def test_completion_and_bad_bodies(self, service_stack: Stack, owner: Admin) -> None:
        app = service_app(service_stack, owner, mode="completion", pre_prompt="Translate: {{text}}")
        try:
            response = owner.client.post(
                f"/console/api/apps/{app.app_id}/completion-messages",
                json={"inputs": {"text": "cheese"}, "response_mode": "blocking"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["answer"] == "You said: Translate: cheese"
            assert_envelope(
                owner.client.post(
                    f"/console/api/apps/{app.app_id}/chat-messages",
                    json={"inputs": {}, "query": "hi"},
                ),
                400,
                "not_chat_app",
            )
            assert_envelope(
                owner.client.post(
                    f"/console/api/apps/{app.app_id}/completion-messages",
                    json={"inputs": {}, "response_mode": "sometimes"},
                ),
                400,
                "invalid_param",
                "response_mode",
            )
        finally:
            app.client.close()

    def test_the_account_stops_its_own_run(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(pace_ms=100)
        app_id = service_app(service_stack, owner).app_id
        query = " ".join(f"w{i}" for i in range(80))
        body = {"inputs": {}, "query": query, "auto_generate_name": False}
        items: list[Frame] = []
        path = f"/console/api/apps/{app_id}/chat-messages"
        with owner.client.stream("POST", path, json=body) as response:
            iterator = frames(response)
            for frame in iterator:
                if frame.event == "message":
                    items.append(frame)
                if len(items) == 2:
                    break
            task_id = items[0].data["task_id"]
            # Another account of the workspace cannot stop it.
            editor = add_member(service_stack, owner, "editor")
            other = editor.client.post(f"{path}/{task_id}/stop")
            assert other.json() == {"result": "success", "stopped": False}
            editor.client.close()
            stopped = owner.client.post(f"{path}/{task_id}/stop")
            assert stopped.json() == {"result": "success", "stopped": True}
            items.extend(iterator)
        assert items[-1].event == "message_end"
        assert 0 < len(answer_of(items)) < len(f"You said: {query}")


def provider_state(client: httpx.Client, provider_id: str) -> dict[str, Any]:
    response = client.get(f"{PROVIDERS}/{provider_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def wait_for_usage(client: httpx.Client, provider_id: str, tokens: int) -> dict[str, Any]:
    """The provider once `quota_used` reached `tokens` (the handler runs after the reply)."""
    return dict(
        wait_for(
            lambda: (
                (state := provider_state(client, provider_id))["quota_used"] >= tokens and state
            ),
            timeout=10,
            what=f"quota_used >= {tokens}",
        )
    )


def run_rows(stack: Stack, app_id: str) -> tuple[object, ...]:
    """How many messages, conversations and end users the app has."""
    ((counts),) = stack.sql(
        "SELECT (SELECT count(*) FROM messages WHERE app_id = :id),"
        " (SELECT count(*) FROM conversations WHERE app_id = :id),"
        " (SELECT count(*) FROM end_users WHERE app_id = :id)",
        id=app_id,
    )
    return counts


class TestProviderUsageAndQuota:
    def test_each_message_adds_its_tokens_and_time_to_the_provider(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        provider = create_provider(owner.client, upstream)
        fresh = provider_state(owner.client, provider["id"])
        assert (fresh["quota_limit"], fresh["quota_used"], fresh["last_used_at"]) == (None, 0, None)
        app = service_app(service_stack, owner, **chat_config(provider["reference"]))
        try:
            before = time.time()
            first = service_chat(app.client)
            assert first.status_code == 200, first.text
            tokens = first.json()["metadata"]["usage"]["total_tokens"]
            assert tokens > 0
            state = wait_for_usage(owner.client, provider["id"], tokens)
            assert state["quota_used"] == tokens
            assert int(before) <= state["last_used_at"] <= time.time() + 1

            second = service_chat(app.client, "and once more")
            assert second.status_code == 200, second.text
            tokens += second.json()["metadata"]["usage"]["total_tokens"]
            assert wait_for_usage(owner.client, provider["id"], tokens)["quota_used"] == tokens
        finally:
            app.client.close()

    def test_the_workspace_default_counts_the_runs_it_serves(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        named = create_provider(owner.client, upstream, name="Named")
        default = create_provider(owner.client, upstream, name="Default", is_default=True)
        app = service_app(service_stack, owner, pre_prompt="Be brief.")  # names no provider
        try:
            response = service_chat(app.client)
            assert response.status_code == 200, response.text
            tokens = response.json()["metadata"]["usage"]["total_tokens"]
            assert wait_for_usage(owner.client, default["id"], tokens)["quota_used"] == tokens
            assert provider_state(owner.client, named["id"])["quota_used"] == 0
        finally:
            app.client.close()

    def test_a_spent_quota_refuses_the_run_before_writing_anything(
        self, service_stack: Stack, owner: Admin, upstream: Any
    ) -> None:
        upstream.control(api_key=KEY)
        provider = create_provider(owner.client, upstream, quota_limit=0)
        assert provider["quota_limit"] == 0
        path = f"{PROVIDERS}/{provider['id']}"
        app = service_app(service_stack, owner, **chat_config(provider["reference"]))
        try:
            calls = len(upstream.stats()["log"])
            refused = service_chat(app.client)
            assert_envelope(refused, 400, "provider_quota_exceeded", "0 of 0 tokens")
            streamed = app.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": "hi", "user": "bob", "response_mode": "streaming"},
            )
            assert_envelope(streamed, 400, "provider_quota_exceeded")
            debugged = owner.client.post(
                f"/console/api/apps/{app.app_id}/chat-messages",
                json={"inputs": {}, "query": "hi", "auto_generate_name": False},
            )
            assert_envelope(debugged, 400, "provider_quota_exceeded")
            # No end user, conversation, message or model call: the start was refused whole.
            assert run_rows(service_stack, app.app_id) == (0, 0, 0)
            assert len(upstream.stats()["log"]) == calls

            # A higher limit lets runs through again...
            raised = owner.client.put(path, json={"quota_limit": 1_000_000})
            assert raised.status_code == 200, raised.text
            assert raised.json()["data"]["quota_limit"] == 1_000_000
            allowed = service_chat(app.client)
            assert allowed.status_code == 200, allowed.text
            used = allowed.json()["metadata"]["usage"]["total_tokens"]
            wait_for_usage(owner.client, provider["id"], used)
            assert run_rows(service_stack, app.app_id) == (1, 1, 1)

            # ...until the usage reaches it: then the next start is refused.
            owner.client.put(path, json={"quota_limit": used, "name": "Capped"})
            assert_envelope(
                service_chat(app.client), 400, "provider_quota_exceeded", f"{used} of {used}"
            )
            assert run_rows(service_stack, app.app_id) == (1, 1, 1)

            # Resetting the usage (or lifting the limit) ends the refusal.
            reset = owner.client.put(path, json={"quota_used": 0})
            assert reset.json()["data"]["quota_used"] == 0
            assert reset.json()["data"]["quota_limit"] == used  # omitted: kept
            assert service_chat(app.client).status_code == 200
            unlimited = owner.client.put(path, json={"quota_limit": None})
            assert unlimited.json()["data"]["quota_limit"] is None
            assert service_chat(app.client).status_code == 200
            assert run_rows(service_stack, app.app_id)[0] == 3
        finally:
            app.client.close()

    def test_bad_quota_values_are_400_naming_the_field(self, owner: Admin, upstream: Any) -> None:
        good = {"name": "P", "base_url": upstream.base_url, "api_key": KEY}
        for value in (-1, "5", True, 1.5, 10**16, {"tokens": 5}):
            response = owner.client.post(PROVIDERS, json={**good, "quota_limit": value})
            assert_envelope(response, 400, "invalid_param", "quota_limit")
        assert owner.client.get(PROVIDERS).json()["total"] == 0

        provider = create_provider(owner.client, upstream, quota_limit=10)
        path = f"{PROVIDERS}/{provider['id']}"
        for body, field in (
            ({"quota_limit": -5}, "quota_limit"),
            ({"quota_limit": "lots"}, "quota_limit"),
            ({"quota_used": 5}, "quota_used"),
            ({"quota_used": "0"}, "quota_used"),
            ({"quota_used": -1, "name": "Renamed"}, "quota_used"),
        ):
            assert_envelope(owner.client.put(path, json=body), 400, "invalid_param", field)
        kept = provider_state(owner.client, provider["id"])
        assert (kept["name"], kept["quota_limit"], kept["quota_used"]) == ("Fake upstream", 10, 0)
