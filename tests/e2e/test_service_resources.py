"""The Service API's resources over real HTTP: auth, app metadata, run-request validation,
conversations, messages, feedback and files, checked against Dify's wire contract
(/work/shared/reference/dify-api.md §1, §3.1, §3.5-§3.8)."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx
import pytest

from conduit.infra.signing import sign_file
from tests.e2e.conftest import Admin, ServiceApp, make_admin, service_app
from tests.support import Stack, wait_for

BEARER_REQUIRED = "Authorization header must be provided and start with 'Bearer'"
SCHEME_NOT_BEARER = "Authorization scheme must be 'Bearer'"
TOKEN_INVALID = "Access token is invalid"
INVALID_JSON = "Invalid JSON payload received or JSON payload is empty."
DEFAULT_NAME = "New conversation"
MB = 1024 * 1024

MESSAGE_FIELDS = {
    "id",
    "conversation_id",
    "parent_message_id",
    "inputs",
    "query",
    "answer",
    "status",
    "error",
    "message_files",
    "feedback",
    "retriever_resources",
    "agent_thoughts",
    "created_at",
}
CONVERSATION_FIELDS = {"id", "name", "inputs", "status", "introduction", "created_at", "updated_at"}
PARAMETER_FIELDS = {
    "opening_statement",
    "suggested_questions",
    "suggested_questions_after_answer",
    "speech_to_text",
    "text_to_speech",
    "retriever_resource",
    "annotation_reply",
    "more_like_this",
    "sensitive_word_avoidance",
    "user_input_form",
    "file_upload",
    "system_parameters",
}
SITE_FIELDS = {
    "title",
    "chat_color_theme",
    "chat_color_theme_inverted",
    "icon_type",
    "icon",
    "icon_background",
    "icon_url",
    "description",
    "copyright",
    "privacy_policy",
    "input_placeholder",
    "custom_disclaimer",
    "default_language",
    "show_workflow_steps",
    "use_icon_as_answer_icon",
}
UPLOAD_FIELDS = {"id", "name", "size", "extension", "mime_type", "created_by", "created_at"}
FILE_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
}
ACTIVE_PAGE = b"<html><body><script>alert(document.cookie)</script></body></html>"
ACTIVE_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
)


def assert_envelope(
    response: httpx.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    """Dify's error body `{"code", "message", "status"}`; `message`, when given, exactly."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "status"}, body
    assert (body["code"], body["status"]) == (code, status), body
    assert isinstance(body["message"], str) and body["message"], body
    if message is not None:
        assert body["message"] == message, body
    return body


def chat(
    app: ServiceApp,
    query: str,
    *,
    user: str = "alice",
    conversation_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One blocking chat turn; the blocking JSON."""
    body: dict[str, Any] = {"inputs": {}, "query": query, "user": user, **extra}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    response = app.client.post("/chat-messages", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["answer"] == f"You said: {query}", result
    return result


def conversations_of(app: ServiceApp, user: str = "alice", **params: Any) -> dict[str, Any]:
    response = app.client.get("/conversations", params={"user": user, **params})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def messages_of(
    app: ServiceApp, conversation_id: str, user: str = "alice", **params: Any
) -> dict[str, Any]:
    response = app.client.get(
        "/messages", params={"conversation_id": conversation_id, "user": user, **params}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def tiny_png() -> bytes:
    """A valid 1×1 PNG (binary, with bytes a text decoder would mangle)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def upload(
    app: ServiceApp,
    name: str = "notes.txt",
    data: bytes = b"hello, world",
    mime: str = "text/plain",
    user: str | None = "alice",
) -> httpx.Response:
    return app.client.post(
        "/files/upload",
        files={"file": (name, data, mime)},
        data={"user": user} if user is not None else None,
    )


def service_routes(stack: Stack) -> list[tuple[str, str]]:
    """(method, path) of every /v1 operation the server publishes, path params filled in."""
    with stack.client() as anonymous:
        spec = anonymous.get("/openapi.json").json()
    routes = []
    for template, operations in spec["paths"].items():
        if not template.startswith("/v1/") or template == "/v1/":
            continue
        if (
            template.endswith("/file-preview")
            or template == "/v1/datasets/files/{file_id}/download"
        ):
            continue  # a signed link: no key, its signature instead
        path = template
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            path = path[:start] + str(uuid.uuid4()) + path[end + 1 :]
        routes.extend((method.upper(), path) for method in operations)
    return routes


# --- auth ------------------------------------------------------------------------------------


class TestAuth:
    def test_welcome_needs_no_auth(self, service_stack: Stack) -> None:
        with service_stack.client() as anonymous:
            response = anonymous.get("/v1/")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["welcome"] == "Dify OpenAPI"
        assert body["api_version"] == "v1"
        assert isinstance(body["server_version"], str) and body["server_version"]

    def test_the_published_routes_cover_the_dify_surface(self, service_stack: Stack) -> None:
        published = {(method, path.split("/")[2]) for method, path in service_routes(service_stack)}
        for expected in (
            ("POST", "chat-messages"),
            ("POST", "completion-messages"),
            ("GET", "conversations"),
            ("POST", "conversations"),
            ("DELETE", "conversations"),
            ("GET", "messages"),
            ("POST", "messages"),
            ("GET", "app"),
            ("POST", "files"),
            ("GET", "files"),
            ("GET", "info"),
            ("GET", "parameters"),
            ("GET", "meta"),
            ("GET", "site"),
            ("GET", "end-users"),
        ):
            assert expected in published, (expected, sorted(published))

    @pytest.mark.parametrize(
        ("authorization", "message"),
        [
            (None, BEARER_REQUIRED),
            ("Bearer", BEARER_REQUIRED),
            ("app-nospaceinthisheader", BEARER_REQUIRED),
            ("Basic dXNlcjpwYXNz", SCHEME_NOT_BEARER),
            ("Token app-abcdefghijklmnopqrstuvwx", SCHEME_NOT_BEARER),
            ("Bearer app-abcdefghijklmnopqrstuvwx", TOKEN_INVALID),
        ],
        ids=["missing", "scheme-only", "no-space", "basic", "other-scheme", "unknown-token"],
    )
    def test_every_route_rejects_bad_credentials_with_401(
        self, service_stack: Stack, authorization: str | None, message: str
    ) -> None:
        routes = service_routes(service_stack)
        assert len(routes) >= 15, routes
        headers = {"Authorization": authorization} if authorization is not None else {}
        with service_stack.client() as anonymous:
            for method, path in routes:
                response = anonymous.request(
                    method, path, headers=headers, json={"user": "alice", "inputs": {}}
                )
                assert response.headers.get("www-authenticate") == 'Bearer realm="api"', (
                    method,
                    path,
                )
                assert_envelope(response, 401, "unauthorized", message)

    def test_bearer_scheme_is_case_insensitive(self, chat_app: ServiceApp) -> None:
        with httpx.Client(
            base_url=chat_app.url(""), headers={"Authorization": f"bearer {chat_app.key}"}
        ) as lower:
            assert lower.get("/info").status_code == 200

    def test_dataset_key_is_not_an_app_key(
        self, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        created = service_admin.client.post("/console/api/datasets/api-keys")
        assert created.status_code == 201, created.text
        dataset_key = created.json()["data"]["token"]
        with httpx.Client(
            base_url=chat_app.url(""), headers={"Authorization": f"Bearer {dataset_key}"}
        ) as client:
            for response in (
                client.get("/info"),
                client.post("/chat-messages", json={"inputs": {}, "query": "hi", "user": "u"}),
            ):
                assert response.headers.get("www-authenticate") == 'Bearer realm="api"'
                assert_envelope(response, 401, "unauthorized", TOKEN_INVALID)
        key_id = created.json()["data"]["id"]
        assert (
            service_admin.client.delete(f"/console/api/datasets/api-keys/{key_id}").status_code
            == 204
        )

    def test_app_with_api_disabled_is_403_until_enabled_again(
        self, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        assert chat_app.client.get("/info").status_code == 200  # the key is now cached
        path = f"/console/api/apps/{chat_app.app_id}"
        assert service_admin.client.put(path, json={"enable_api": False}).status_code == 200
        for response in (
            chat_app.client.get("/info"),
            chat_app.client.post("/chat-messages", json={"inputs": {}, "query": "hi", "user": "u"}),
            chat_app.client.get("/conversations", params={"user": "u"}),
        ):
            assert_envelope(response, 403, "forbidden", "The app's API service has been disabled.")
        assert service_admin.client.put(path, json={"enable_api": True}).status_code == 200
        assert chat_app.client.get("/info").status_code == 200

    def test_key_of_a_deleted_app_is_a_4xx_envelope(
        self, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        assert chat_app.client.get("/info").status_code == 200  # the key is now cached
        deleted = service_admin.client.delete(f"/console/api/apps/{chat_app.app_id}")
        assert deleted.status_code == 204, deleted.text
        for response in (
            chat_app.client.get("/info"),
            chat_app.client.post("/chat-messages", json={"inputs": {}, "query": "hi", "user": "u"}),
        ):
            assert response.status_code in (401, 403), response.text
            if response.status_code == 401:
                assert_envelope(response, 401, "unauthorized", TOKEN_INVALID)
            else:
                assert_envelope(response, 403, "forbidden", "The app no longer exists.")


# --- app metadata ----------------------------------------------------------------------------


class TestAppMetadata:
    def test_info(self, chat_app: ServiceApp, completion_app: ServiceApp) -> None:
        for app, mode in ((chat_app, "chat"), (completion_app, "completion")):
            response = app.client.get("/info")
            assert response.status_code == 200, response.text
            body = response.json()
            assert {"name", "description", "tags", "mode", "author_name"} <= set(body)
            assert body["name"] == f"{mode} app"
            assert body["mode"] == mode
            assert isinstance(body["tags"], list)
            assert isinstance(body["description"], str)
            [(author,)] = app.stack.sql(
                "SELECT a.name FROM accounts a JOIN apps p ON p.created_by = a.id"
                " WHERE p.id = :app",
                app=app.app_id,
            )
            assert body["author_name"] == author and author  # who created the app

    def test_an_end_user_by_id(self, chat_app: ServiceApp, completion_app: ServiceApp) -> None:
        result = chat(chat_app, "who am I", user="erin", auto_generate_name=False)
        [(end_user_id,)] = chat_app.stack.sql(
            "SELECT end_user_id FROM messages WHERE id = :id", id=result["message_id"]
        )
        found = chat_app.client.get(f"/end-users/{end_user_id}")
        assert found.status_code == 200, found.text
        body = found.json()
        assert {k: body[k] for k in ("id", "app_id", "type", "session_id", "is_anonymous")} == {
            "id": end_user_id,
            "app_id": chat_app.app_id,
            "type": "service-api",
            "session_id": "erin",
            "is_anonymous": False,
        }
        assert {"tenant_id", "external_user_id", "name", "created_at", "updated_at"} <= set(body)
        datetime.fromisoformat(body["created_at"])
        # Another app's key, an unknown id: 404 end_user_not_found.
        for client, wanted in (
            (completion_app.client, end_user_id),
            (chat_app.client, str(uuid.uuid4())),
            (chat_app.client, "not-an-id"),
        ):
            missing = client.get(f"/end-users/{wanted}")
            assert missing.status_code == 404, missing.text
            assert missing.json()["code"] == "end_user_not_found"

    def test_parameters_of_a_completion_app(self, completion_app: ServiceApp) -> None:
        for params in ({}, {"user": "alice"}, {"user": ""}):
            response = completion_app.client.get("/parameters", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) >= PARAMETER_FIELDS, set(body)
            assert body["user_input_form"] == [
                {
                    "text-input": {
                        "label": "Text",
                        "variable": "text",
                        "required": True,
                        "max_length": 200,
                    }
                }
            ]
            assert body["system_parameters"] == {
                "file_size_limit": 15,
                "image_file_size_limit": 10,
                "audio_file_size_limit": 50,
                "video_file_size_limit": 100,
                "workflow_file_upload_limit": 10,
            }
            assert body["suggested_questions"] == []
            assert body["speech_to_text"] == {"enabled": False}
            assert body["retriever_resource"] == {"enabled": True}
            assert body["sensitive_word_avoidance"]["enabled"] is False
            assert body["file_upload"]["image"]["enabled"] is False

    def test_parameters_of_a_chat_app_have_an_empty_form(self, chat_app: ServiceApp) -> None:
        body = chat_app.client.get("/parameters").json()
        assert body["user_input_form"] == []
        assert body["opening_statement"] is None

    def test_meta(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.get("/meta", params={"user": "alice"})
        assert response.status_code == 200, response.text
        assert response.json() == {"tool_icons": {}}

    def test_site_once_it_is_provisioned(self, chat_app: ServiceApp) -> None:
        response = wait_for(
            lambda: (r := chat_app.client.get("/site")).status_code == 200 and r,
            timeout=15,
            what="the app's site record",
        )
        body = response.json()
        assert set(body) >= SITE_FIELDS, set(body)
        assert body["title"] == "chat app"
        assert isinstance(body["show_workflow_steps"], bool)

    @pytest.mark.parametrize("mode", ["workflow", "advanced-chat"])
    def test_parameters_of_an_app_without_a_published_workflow(
        self, service_stack: Stack, service_admin: Admin, mode: str
    ) -> None:
        app = service_app(service_stack, service_admin, mode=mode)
        try:
            assert_envelope(app.client.get("/parameters"), 400, "app_unavailable")
        finally:
            app.client.close()


# --- run requests: validation and `user` ------------------------------------------------------


class TestRunRequestValidation:
    """Rejected requests answer Dify's envelope and write nothing."""

    def assert_nothing_written(self, app: ServiceApp, stack: Stack) -> None:
        for user in ("alice", "DEFAULT-USER"):
            listed = app.client.get("/conversations", params={"user": user})
            if listed.status_code == 200:
                assert listed.json()["data"] == []
        rows = stack.sql("SELECT count(*) FROM messages WHERE app_id = :app", app=app.app_id)
        assert rows == [(0,)]

    @pytest.mark.parametrize("user", [None, "", "   ", 42], ids=["absent", "empty", "blank", "int"])
    def test_chat_needs_a_user(self, chat_app: ServiceApp, user: Any) -> None:
        body: dict[str, Any] = {"inputs": {}, "query": "hi", "response_mode": "blocking"}
        if user is not None:
            body["user"] = user
        response = chat_app.client.post("/chat-messages", json=body)
        assert_envelope(response, 400, "invalid_param", "Arg user must be provided.")
        self.assert_nothing_written(chat_app, chat_app.stack)

    def test_user_is_checked_before_the_app_mode(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.post("/chat-messages", json={"inputs": {}, "query": "hi"})
        assert_envelope(response, 400, "invalid_param", "Arg user must be provided.")
        response = completion_app.client.post(
            "/completion-messages", json={"inputs": {"text": "x"}}
        )
        assert_envelope(response, 400, "invalid_param", "Arg user must be provided.")

    def test_bad_conversation_id(self, chat_app: ServiceApp) -> None:
        for bad in ("not-a-uuid", "1234"):
            response = chat_app.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": "hi", "user": "alice", "conversation_id": bad},
            )
            assert_envelope(response, 400, "invalid_param", "conversation_id must be a valid UUID")
        self.assert_nothing_written(chat_app, chat_app.stack)

    def test_unknown_conversation(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post(
            "/chat-messages",
            json={
                "inputs": {},
                "query": "hi",
                "user": "alice",
                "conversation_id": str(uuid.uuid4()),
            },
        )
        assert_envelope(response, 404, "not_found", "Conversation Not Exists.")
        self.assert_nothing_written(chat_app, chat_app.stack)

    def test_another_users_conversation_does_not_exist(self, chat_app: ServiceApp) -> None:
        mine = chat(chat_app, "hello", auto_generate_name=False)
        response = chat_app.client.post(
            "/chat-messages",
            json={
                "inputs": {},
                "query": "hi",
                "user": "mallory",
                "conversation_id": mine["conversation_id"],
            },
        )
        assert_envelope(response, 404, "not_found", "Conversation Not Exists.")
        assert conversations_of(chat_app, "mallory")["data"] == []

    def test_empty_conversation_id_starts_a_new_conversation(self, chat_app: ServiceApp) -> None:
        result = chat(chat_app, "fresh start", conversation_id="", auto_generate_name=False)
        assert uuid.UUID(result["conversation_id"])

    @pytest.mark.parametrize("query", [None, ""], ids=["absent", "empty"])
    def test_chat_needs_a_query(self, chat_app: ServiceApp, query: str | None) -> None:
        body: dict[str, Any] = {"inputs": {}, "user": "alice"}
        if query is not None:
            body["query"] = query
        response = chat_app.client.post("/chat-messages", json=body)
        assert_envelope(response, 400, "invalid_param", "query is required")
        self.assert_nothing_written(chat_app, chat_app.stack)

    def test_query_must_be_a_string(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post(
            "/chat-messages", json={"inputs": {}, "query": 7, "user": "alice"}
        )
        assert_envelope(response, 400, "invalid_param", "query must be a string")

    @pytest.mark.parametrize(
        "inputs", [{}, {"text": ""}, {"text": None}], ids=["absent", "empty", "null"]
    )
    def test_completion_needs_its_required_input(
        self, completion_app: ServiceApp, inputs: dict[str, Any]
    ) -> None:
        response = completion_app.client.post(
            "/completion-messages", json={"inputs": inputs, "user": "alice"}
        )
        assert_envelope(response, 400, "invalid_param", "text is required in input form")
        self.assert_nothing_written(completion_app, completion_app.stack)

    def test_completion_input_longer_than_its_max_length(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.post(
            "/completion-messages", json={"inputs": {"text": "x" * 201}, "user": "alice"}
        )
        assert_envelope(
            response, 400, "invalid_param", "text in input form must be less than 200 characters"
        )

    def test_chat_route_on_a_completion_app(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.post(
            "/chat-messages", json={"inputs": {"text": "x"}, "query": "hi", "user": "alice"}
        )
        assert_envelope(response, 400, "not_chat_app")
        self.assert_nothing_written(completion_app, completion_app.stack)

    def test_completion_route_on_a_chat_app(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post(
            "/completion-messages", json={"inputs": {}, "query": "hi", "user": "alice"}
        )
        assert_envelope(response, 400, "app_unavailable")
        self.assert_nothing_written(chat_app, chat_app.stack)

    @pytest.mark.parametrize("path", ["/conversations", "/messages"])
    def test_conversation_routes_on_a_completion_app(
        self, completion_app: ServiceApp, path: str
    ) -> None:
        assert_envelope(
            completion_app.client.get(path, params={"user": "alice"}), 400, "not_chat_app"
        )

    @pytest.mark.parametrize(
        "content",
        [b"{not json", b"", b"[1, 2]", b'"text"'],
        ids=["broken", "empty", "list", "string"],
    )
    def test_body_that_is_not_a_json_object(self, chat_app: ServiceApp, content: bytes) -> None:
        response = chat_app.client.post(
            "/chat-messages", content=content, headers={"Content-Type": "application/json"}
        )
        assert_envelope(response, 400, "invalid_param", INVALID_JSON)
        self.assert_nothing_written(chat_app, chat_app.stack)

    @pytest.mark.parametrize("mode", ["turbo", "BLOCKING", 1])
    def test_unknown_response_mode(self, chat_app: ServiceApp, mode: Any) -> None:
        response = chat_app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": "hi", "user": "alice", "response_mode": mode},
        )
        assert_envelope(response, 400, "invalid_param")
        self.assert_nothing_written(chat_app, chat_app.stack)

    def test_inputs_must_be_an_object(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post(
            "/chat-messages", json={"inputs": ["a"], "query": "hi", "user": "alice"}
        )
        assert_envelope(response, 400, "invalid_param")
        self.assert_nothing_written(chat_app, chat_app.stack)

    def test_null_files_are_accepted(self, chat_app: ServiceApp) -> None:
        chat(chat_app, "no files", files=None, auto_generate_name=False)


# --- stop --------------------------------------------------------------------------------------


class TestStop:
    def test_unknown_task_is_still_success(
        self, chat_app: ServiceApp, completion_app: ServiceApp
    ) -> None:
        for app, route in ((chat_app, "chat-messages"), (completion_app, "completion-messages")):
            response = app.client.post(f"/{route}/{uuid.uuid4()}/stop", json={"user": "alice"})
            assert response.status_code == 200, response.text
            assert response.json()["result"] == "success"

    def test_stop_needs_a_user(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post(f"/chat-messages/{uuid.uuid4()}/stop", json={})
        assert_envelope(response, 400, "invalid_param", "Arg user must be provided.")


# --- conversations ---------------------------------------------------------------------------


class TestConversations:
    def two_conversations(self, app: ServiceApp) -> tuple[str, str]:
        first = chat(app, "first topic", auto_generate_name=False)["conversation_id"]
        time.sleep(0.02)  # distinct timestamps even on a coarse clock
        second = chat(app, "second topic", auto_generate_name=False)["conversation_id"]
        return first, second

    def test_listed_with_dify_fields(self, chat_app: ServiceApp) -> None:
        result = chat(chat_app, "hello there", auto_generate_name=False)
        page = conversations_of(chat_app)
        assert page["limit"] == 20 and page["has_more"] is False
        [item] = page["data"]
        assert set(item) >= CONVERSATION_FIELDS, item
        assert item["id"] == result["conversation_id"]
        assert item["name"] == DEFAULT_NAME
        assert item["status"] == "normal"
        assert item["inputs"] == {}
        assert isinstance(item["created_at"], int) and isinstance(item["updated_at"], int)

    def test_infinite_scroll_with_limit_and_last_id(self, chat_app: ServiceApp) -> None:
        first, second = self.two_conversations(chat_app)
        page1 = conversations_of(chat_app, limit=1)
        assert page1["limit"] == 1 and page1["has_more"] is True
        assert [c["id"] for c in page1["data"]] == [second]  # newest first by default
        page2 = conversations_of(chat_app, limit=1, last_id=second)
        assert page2["has_more"] is False
        assert [c["id"] for c in page2["data"]] == [first]

    def test_sort_by_both_ways(self, chat_app: ServiceApp) -> None:
        first, second = self.two_conversations(chat_app)
        for sort_by, expected in (
            ("created_at", [first, second]),
            ("-created_at", [second, first]),
            ("updated_at", [first, second]),
            ("-updated_at", [second, first]),
        ):
            page = conversations_of(chat_app, sort_by=sort_by)
            assert [c["id"] for c in page["data"]] == expected, sort_by
        paged = conversations_of(chat_app, sort_by="created_at", limit=1, last_id=first)
        assert [c["id"] for c in paged["data"]] == [second]

    def test_a_new_turn_moves_a_conversation_to_the_top(self, chat_app: ServiceApp) -> None:
        first, second = self.two_conversations(chat_app)
        time.sleep(0.02)
        chat(chat_app, "back to the first", conversation_id=first)
        assert [c["id"] for c in conversations_of(chat_app)["data"]] == [first, second]

    def test_empty_query_values_are_absent(self, chat_app: ServiceApp) -> None:
        first, second = self.two_conversations(chat_app)
        response = chat_app.client.get("/conversations?user=alice&last_id=&limit=&pinned=&sort_by=")
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["limit"] == 20 and page["has_more"] is False
        assert [c["id"] for c in page["data"]] == [second, first]

    def test_pinned_is_ignored(self, chat_app: ServiceApp) -> None:
        self.two_conversations(chat_app)
        for pinned in ("true", "false"):
            assert len(conversations_of(chat_app, pinned=pinned)["data"]) == 2

    def test_bad_paging_values(self, chat_app: ServiceApp) -> None:
        self.two_conversations(chat_app)
        for limit in ("0", "101", "ten"):
            assert_envelope(
                chat_app.client.get("/conversations", params={"user": "alice", "limit": limit}),
                400,
                "invalid_param",
            )
        assert_envelope(
            chat_app.client.get("/conversations", params={"user": "alice", "sort_by": "name"}),
            400,
            "invalid_param",
        )
        for last_id in (str(uuid.uuid4()), "nope"):
            assert_envelope(
                chat_app.client.get("/conversations", params={"user": "alice", "last_id": last_id}),
                404,
                "not_found",
                "Last Conversation Not Exists.",
            )

    def test_another_user_sees_none(self, chat_app: ServiceApp) -> None:
        self.two_conversations(chat_app)
        assert conversations_of(chat_app, "bob")["data"] == []
        assert conversations_of(chat_app, "")["data"] == []  # the anonymous user is another one
        assert len(conversations_of(chat_app, "alice")["data"]) == 2

    def test_rename_with_a_name(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(chat_app, "hello", auto_generate_name=False)["conversation_id"]
        response = chat_app.client.post(
            f"/conversations/{conversation_id}/name", json={"name": "Trip to Lyon", "user": "alice"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) >= CONVERSATION_FIELDS
        assert (body["id"], body["name"]) == (conversation_id, "Trip to Lyon")
        assert conversations_of(chat_app)["data"][0]["name"] == "Trip to Lyon"

    def test_rename_with_auto_generate(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(chat_app, "plan a trip to Lyon", auto_generate_name=False)[
            "conversation_id"
        ]
        response = chat_app.client.post(
            f"/conversations/{conversation_id}/name", json={"auto_generate": True, "user": "alice"}
        )
        assert response.status_code == 200, response.text
        name = response.json()["name"]
        assert isinstance(name, str) and name.strip() and name != DEFAULT_NAME
        assert conversations_of(chat_app)["data"][0]["name"] == name

    @pytest.mark.parametrize(
        "body",
        [
            {"user": "alice"},
            {"name": "", "user": "alice"},
            {"name": "  ", "auto_generate": False, "user": "alice"},
        ],
        ids=["no-name", "empty", "blank"],
    )
    def test_rename_needs_a_name_unless_auto_generated(
        self, chat_app: ServiceApp, body: dict[str, Any]
    ) -> None:
        conversation_id = chat(chat_app, "hello", auto_generate_name=False)["conversation_id"]
        response = chat_app.client.post(f"/conversations/{conversation_id}/name", json=body)
        assert_envelope(
            response, 400, "invalid_param", "name is required when auto_generate is false"
        )
        assert conversations_of(chat_app)["data"][0]["name"] == DEFAULT_NAME

    def test_rename_of_someone_elses_or_unknown_conversation(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(chat_app, "hello", auto_generate_name=False)["conversation_id"]
        for target, user in ((conversation_id, "bob"), (str(uuid.uuid4()), "alice")):
            response = chat_app.client.post(
                f"/conversations/{target}/name", json={"name": "x", "user": user}
            )
            assert_envelope(response, 404, "not_found", "Conversation Not Exists.")
        assert conversations_of(chat_app)["data"][0]["name"] == DEFAULT_NAME

    def test_delete(self, chat_app: ServiceApp) -> None:
        kept, gone = self.two_conversations(chat_app)
        response = chat_app.client.request(
            "DELETE", f"/conversations/{gone}", json={"user": "alice"}
        )
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_envelope(
            chat_app.client.get("/messages", params={"conversation_id": gone, "user": "alice"}),
            404,
            "not_found",
            "Conversation Not Exists.",
        )
        assert [c["id"] for c in conversations_of(chat_app)["data"]] == [kept]
        again = chat_app.client.request("DELETE", f"/conversations/{gone}", json={"user": "alice"})
        assert_envelope(again, 404, "not_found", "Conversation Not Exists.")
        follow_up = chat_app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": "still there?", "user": "alice", "conversation_id": gone},
        )
        assert_envelope(follow_up, 404, "not_found", "Conversation Not Exists.")

    def test_delete_of_another_users_conversation(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(chat_app, "mine", auto_generate_name=False)["conversation_id"]
        response = chat_app.client.request(
            "DELETE", f"/conversations/{conversation_id}", json={"user": "bob"}
        )
        assert_envelope(response, 404, "not_found", "Conversation Not Exists.")
        assert len(conversations_of(chat_app)["data"]) == 1

    def test_delete_without_a_body_is_the_anonymous_user(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(
            chat_app, "anonymous", user="DEFAULT-USER", auto_generate_name=False
        )["conversation_id"]
        response = chat_app.client.delete(f"/conversations/{conversation_id}")
        assert response.status_code == 204, response.text

    def test_new_conversations_get_a_generated_name(self, chat_app: ServiceApp) -> None:
        named = chat(chat_app, "what is the capital of France")["conversation_id"]
        unnamed = chat(chat_app, "keep my name", auto_generate_name=False)["conversation_id"]

        def generated() -> str | None:
            names = {c["id"]: c["name"] for c in conversations_of(chat_app)["data"]}
            return names[named] if names[named] != DEFAULT_NAME else None

        name = wait_for(generated, timeout=20, interval=0.2, what="the generated name")
        assert name.strip()
        names = {c["id"]: c["name"] for c in conversations_of(chat_app)["data"]}
        assert names[unnamed] == DEFAULT_NAME


# --- messages and feedback --------------------------------------------------------------------


class TestMessages:
    def three_turns(self, app: ServiceApp) -> tuple[str, list[dict[str, Any]]]:
        first = chat(app, "one", auto_generate_name=False)
        conversation_id = first["conversation_id"]
        turns = [first]
        for query in ("two", "three"):
            time.sleep(0.01)
            turns.append(chat(app, query, conversation_id=conversation_id))
        assert {t["conversation_id"] for t in turns} == {conversation_id}
        return conversation_id, turns

    def test_latest_page_is_oldest_to_newest_then_first_id_pages_back(
        self, chat_app: ServiceApp
    ) -> None:
        conversation_id, turns = self.three_turns(chat_app)
        page = messages_of(chat_app, conversation_id, limit=2)
        assert page["limit"] == 2 and page["has_more"] is True
        assert [m["query"] for m in page["data"]] == ["two", "three"]
        assert [m["id"] for m in page["data"]] == [turns[1]["message_id"], turns[2]["message_id"]]
        older = messages_of(chat_app, conversation_id, limit=2, first_id=page["data"][0]["id"])
        assert older["has_more"] is False
        assert [m["query"] for m in older["data"]] == ["one"]
        everything = messages_of(chat_app, conversation_id)
        assert everything["limit"] == 20 and everything["has_more"] is False
        assert [m["answer"] for m in everything["data"]] == [
            "You said: one",
            "You said: two",
            "You said: three",
        ]

    def test_message_fields(self, chat_app: ServiceApp) -> None:
        result = chat(chat_app, "describe yourself", auto_generate_name=False)
        [message] = messages_of(chat_app, result["conversation_id"])["data"]
        assert set(message) >= MESSAGE_FIELDS, MESSAGE_FIELDS - set(message)
        assert message["id"] == result["message_id"] == result["id"]
        assert message["conversation_id"] == result["conversation_id"]
        assert message["query"] == "describe yourself"
        assert message["answer"] == "You said: describe yourself"
        assert message["status"] == "normal" and message["error"] is None
        assert message["inputs"] == {}
        assert message["feedback"] is None
        for name in ("message_files", "retriever_resources", "agent_thoughts"):
            assert message[name] == [], name
        assert isinstance(message["created_at"], int)
        assert message["created_at"] == result["created_at"]

    def test_unknown_first_id(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(chat_app, "hi", auto_generate_name=False)["conversation_id"]
        for first_id in (str(uuid.uuid4()), "not-a-uuid"):
            response = chat_app.client.get(
                "/messages",
                params={"conversation_id": conversation_id, "user": "alice", "first_id": first_id},
            )
            assert_envelope(response, 404, "not_found", "First Message Not Exists.")

    def test_empty_query_values_are_absent(self, chat_app: ServiceApp) -> None:
        conversation_id, _ = self.three_turns(chat_app)
        response = chat_app.client.get(
            f"/messages?conversation_id={conversation_id}&user=alice&first_id=&limit="
        )
        assert response.status_code == 200, response.text
        assert [m["query"] for m in response.json()["data"]] == ["one", "two", "three"]

    def test_conversation_id_is_required_and_an_empty_one_lists_nothing(
        self, chat_app: ServiceApp
    ) -> None:
        """Dify's `MessageListQuery`: `conversation_id` is required, "" is allowed (an empty
        page, as the httpx SDK sends an absent id), a malformed one is a 400."""
        chat(chat_app, "hi", auto_generate_name=False)
        missing = chat_app.client.get("/messages", params={"user": "alice"})
        assert_envelope(missing, 400, "invalid_param", "conversation_id is required")
        empty = chat_app.client.get("/messages", params={"user": "alice", "conversation_id": ""})
        assert empty.status_code == 200, empty.text
        assert empty.json()["data"] == [] and empty.json()["has_more"] is False
        malformed = chat_app.client.get(
            "/messages", params={"user": "alice", "conversation_id": "not-a-uuid"}
        )
        assert_envelope(malformed, 400, "invalid_param", "conversation_id must be a valid UUID")

    def test_another_users_messages_are_not_found(self, chat_app: ServiceApp) -> None:
        conversation_id = chat(chat_app, "secret", auto_generate_name=False)["conversation_id"]
        response = chat_app.client.get(
            "/messages", params={"conversation_id": conversation_id, "user": "mallory"}
        )
        assert_envelope(response, 404, "not_found", "Conversation Not Exists.")
        bad = chat_app.client.get("/messages", params={"conversation_id": "x", "user": "alice"})
        assert_envelope(bad, 400, "invalid_param", "conversation_id must be a valid UUID")


class TestSuggested:
    """`GET /messages/{id}/suggested`, in Dify's order (§3.6): the user, the app's mode, the
    message, then the feature."""

    def test_an_unknown_message_is_404_whether_or_not_the_feature_is_on(
        self, chat_app: ServiceApp, service_stack: Stack, service_admin: Admin
    ) -> None:
        enabled = service_app(
            service_stack, service_admin, suggested_questions_after_answer={"enabled": True}
        )
        for app in (chat_app, enabled):
            response = app.client.get(f"/messages/{uuid.uuid4()}/suggested", params={"user": "a"})
            assert_envelope(response, 404, "not_found", "Message Not Exists.")
        enabled.client.close()

    def test_a_completion_app_is_not_a_chat_app(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.get(
            f"/messages/{uuid.uuid4()}/suggested", params={"user": "alice"}
        )
        assert_envelope(response, 400, "not_chat_app")

    def test_a_user_is_required_first(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.get(f"/messages/{uuid.uuid4()}/suggested")
        assert_envelope(response, 400, "invalid_param", "Arg user must be provided.")

    def test_the_feature_off_is_a_bad_request_for_a_known_message(
        self, chat_app: ServiceApp
    ) -> None:
        message_id = chat(chat_app, "hi", auto_generate_name=False)["message_id"]
        response = chat_app.client.get(
            f"/messages/{message_id}/suggested", params={"user": "alice"}
        )
        assert_envelope(response, 400, "bad_request", "Suggested Questions Is Disabled.")

    def test_the_feature_on_suggests(
        self, service_stack: Stack, service_admin: Admin, upstream: Any
    ) -> None:
        upstream.reset()
        app = service_app(
            service_stack, service_admin, suggested_questions_after_answer={"enabled": True}
        )
        message_id = chat(app, "hi", auto_generate_name=False)["message_id"]
        response = app.client.get(f"/messages/{message_id}/suggested", params={"user": "alice"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["result"] == "success"
        assert body["data"] and all(isinstance(q, str) for q in body["data"])
        app.client.close()


class TestFeedback:
    def feedback(
        self,
        app: ServiceApp,
        message_id: str,
        rating: str | None,
        user: str = "alice",
        **extra: Any,
    ) -> httpx.Response:
        return app.client.post(
            f"/messages/{message_id}/feedbacks", json={"rating": rating, "user": user, **extra}
        )

    def test_like_dislike_and_revoke(self, chat_app: ServiceApp) -> None:
        result = chat(chat_app, "rate me", auto_generate_name=False)
        message_id, conversation_id = result["message_id"], result["conversation_id"]

        def shown() -> Any:
            [message] = messages_of(chat_app, conversation_id)["data"]
            return message["feedback"]

        liked = self.feedback(chat_app, message_id, "like", content="great answer")
        assert liked.status_code == 200, liked.text
        assert liked.json() == {"result": "success"}
        assert shown() == {"rating": "like"}

        [row] = chat_app.client.get("/app/feedbacks").json()["data"]
        assert {
            "id",
            "app_id",
            "conversation_id",
            "message_id",
            "rating",
            "content",
            "from_source",
            "from_end_user_id",
            "from_account_id",
            "created_at",
            "updated_at",
        } <= set(row)
        assert (row["app_id"], row["conversation_id"], row["message_id"]) == (
            chat_app.app_id,
            conversation_id,
            message_id,
        )
        assert (row["rating"], row["content"], row["from_source"]) == (
            "like",
            "great answer",
            "user",
        )
        assert row["from_end_user_id"] and row["from_account_id"] is None
        for name in ("created_at", "updated_at"):
            assert isinstance(row[name], str), row
            datetime.fromisoformat(row[name])  # ISO-8601, unlike the rest of the API

        assert self.feedback(chat_app, message_id, "dislike").status_code == 200
        assert shown() == {"rating": "dislike"}
        [row] = chat_app.client.get("/app/feedbacks", params={"page": "", "limit": ""}).json()[
            "data"
        ]
        assert row["rating"] == "dislike"

        revoked = self.feedback(chat_app, message_id, None)
        assert revoked.status_code == 200 and revoked.json() == {"result": "success"}
        assert shown() is None
        assert chat_app.client.get("/app/feedbacks").json()["data"] == []

        assert_envelope(self.feedback(chat_app, message_id, None), 400, "invalid_param")

    def test_unknown_or_foreign_message(self, chat_app: ServiceApp) -> None:
        message_id = chat(chat_app, "mine", auto_generate_name=False)["message_id"]
        for target, user in (
            (str(uuid.uuid4()), "alice"),
            ("not-a-uuid", "alice"),
            (message_id, "bob"),
        ):
            assert_envelope(
                self.feedback(chat_app, target, "like", user=user),
                404,
                "not_found",
                "Message Not Exists.",
            )
        assert chat_app.client.get("/app/feedbacks").json()["data"] == []

    def test_rating_and_user_are_checked(self, chat_app: ServiceApp) -> None:
        message_id = chat(chat_app, "check me", auto_generate_name=False)["message_id"]
        assert_envelope(self.feedback(chat_app, message_id, "love"), 400, "invalid_param")
        response = chat_app.client.post(
            f"/messages/{message_id}/feedbacks", json={"rating": "like"}
        )
        assert_envelope(response, 400, "invalid_param", "Arg user must be provided.")
        assert chat_app.client.get("/app/feedbacks").json()["data"] == []

    def test_feedback_on_a_completion_message(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.post(
            "/completion-messages", json={"inputs": {"text": "merci"}, "user": "alice"}
        )
        assert response.status_code == 200, response.text
        message_id = response.json()["message_id"]
        assert self.feedback(completion_app, message_id, "like").status_code == 200
        [row] = completion_app.client.get("/app/feedbacks").json()["data"]
        assert row["message_id"] == message_id and row["conversation_id"] is not None


# --- files -------------------------------------------------------------------------------------


class TestFiles:
    def test_upload(self, chat_app: ServiceApp) -> None:
        before = int(time.time()) - 5
        response = upload(chat_app)
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) >= UPLOAD_FIELDS, body
        assert uuid.UUID(body["id"])
        assert (body["name"], body["size"], body["extension"], body["mime_type"]) == (
            "notes.txt",
            12,
            "txt",
            "text/plain",
        )
        assert isinstance(body["created_by"], str) and body["created_by"]
        assert isinstance(body["created_at"], int) and body["created_at"] >= before
        # Dify: `source_url` is a signed, expiring preview link; `preview_url` stays null.
        assert body["preview_url"] is None
        link = urlsplit(body["source_url"])
        assert f"{link.scheme}://{link.netloc}" == chat_app.stack.base_url
        assert link.path == f"/v1/files/{body['id']}/file-preview"
        query = parse_qs(link.query)
        assert set(query) == {"timestamp", "nonce", "sign"}, query
        assert before <= int(query["timestamp"][0]) <= int(time.time()) + 5
        again = upload(chat_app).json()
        assert again["created_by"] == body["created_by"] and again["id"] != body["id"]
        assert upload(chat_app, user="bob").json()["created_by"] != body["created_by"]

    def test_upload_without_a_user_is_anonymous(self, chat_app: ServiceApp) -> None:
        response = upload(chat_app, user=None)
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"data": {"user": "alice"}},
            {"files": {"user": (None, "alice")}},
            {"json": {"user": "alice"}},
        ],
        ids=["no-body", "urlencoded", "multipart-fields-only", "json"],
    )
    def test_no_file_part(self, chat_app: ServiceApp, kwargs: dict[str, Any]) -> None:
        response = chat_app.client.post("/files/upload", **kwargs)
        assert_envelope(response, 400, "no_file_uploaded")

    def test_a_part_not_named_file_is_no_file(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post(
            "/files/upload", files={"document": ("a.txt", b"hello", "text/plain")}
        )
        assert_envelope(response, 400, "no_file_uploaded")

    @pytest.mark.parametrize("second", ["file", "other"], ids=["same-name", "other-name"])
    def test_two_parts(self, chat_app: ServiceApp, second: str) -> None:
        response = chat_app.client.post(
            "/files/upload",
            files=[
                ("file", ("a.txt", b"a", "text/plain")),
                (second, ("b.txt", b"b", "text/plain")),
            ],
            data={"user": "alice"},
        )
        assert_envelope(response, 400, "too_many_files", "Only one file is allowed.")

    def test_image_over_its_limit(self, chat_app: ServiceApp) -> None:
        big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * MB)
        assert_envelope(upload(chat_app, "huge.png", big, "image/png"), 413, "file_too_large")

    def test_document_over_its_limit(self, chat_app: ServiceApp) -> None:
        assert_envelope(
            upload(chat_app, "huge.txt", b"a" * (15 * MB + 1), "text/plain"), 413, "file_too_large"
        )
        # An image-sized document is fine: the 10 MB limit is for images only.
        accepted = upload(chat_app, "big.txt", b"a" * (10 * MB + 1), "text/plain")
        assert accepted.status_code == 201, accepted.text

    def test_audio_and_video_have_their_own_limits(self, chat_app: ServiceApp) -> None:
        # Above a document's 15 MB: taken, as /parameters says (audio 50 MB, video 100 MB).
        for name, mime in (("talk.mp3", "audio/mpeg"), ("clip.mp4", "video/mp4")):
            accepted = upload(chat_app, name, b"\x00" * (16 * MB), mime)
            assert accepted.status_code == 201, accepted.text
        assert_envelope(
            upload(chat_app, "long.wav", b"\x00" * (50 * MB + 1), "audio/wav"),
            413,
            "file_too_large",
        )

    def test_blocked_extension(self, chat_app: ServiceApp) -> None:
        response = upload(chat_app, "setup.exe", b"MZ", "application/octet-stream")
        assert_envelope(response, 400, "invalid_param")

    def test_preview_returns_the_same_bytes(self, chat_app: ServiceApp) -> None:
        png = tiny_png()
        file_id = upload(chat_app, "dot.png", png, "image/png").json()["id"]
        response = chat_app.client.get(f"/files/{file_id}/preview")
        assert response.status_code == 200, response.text
        assert response.content == png
        assert response.headers["content-type"] == "image/png"
        assert "attachment" not in response.headers.get("content-disposition", "")
        assert {k: response.headers.get(k) for k in FILE_HEADERS} == FILE_HEADERS

        text_id = upload(chat_app).json()["id"]
        response = chat_app.client.get(f"/files/{text_id}/preview", params={"as_attachment": ""})
        assert response.content == b"hello, world"
        assert response.headers["content-type"].split(";")[0] == "text/plain"

    def test_preview_as_attachment(self, chat_app: ServiceApp) -> None:
        file_id = upload(chat_app, "dot.png", tiny_png(), "image/png").json()["id"]
        response = chat_app.client.get(
            f"/files/{file_id}/preview", params={"as_attachment": "true"}
        )
        assert response.status_code == 200, response.text
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment") and "dot.png" in disposition

    def test_another_apps_file_is_not_found(
        self, service_stack: Stack, service_admin: Admin, chat_app: ServiceApp
    ) -> None:
        """A file is served only to the app it was uploaded through: to another app of the
        same workspace it does not exist (as to another workspace's, below)."""
        file_id = upload(chat_app).json()["id"]
        other = service_app(service_stack, service_admin, mode="chat")
        try:
            assert_envelope(other.client.get(f"/files/{file_id}/preview"), 404, "file_not_found")
            for as_attachment in ("true", "false"):
                response = other.client.get(
                    f"/files/{file_id}/preview", params={"as_attachment": as_attachment}
                )
                assert_envelope(response, 404, "file_not_found")
            assert chat_app.client.get(f"/files/{file_id}/preview").status_code == 200
        finally:
            other.client.close()

    def test_another_workspaces_file_is_not_found(
        self, service_stack: Stack, chat_app: ServiceApp
    ) -> None:
        file_id = upload(chat_app).json()["id"]
        stranger = make_admin(service_stack, workspace="Elsewhere")
        other = service_app(service_stack, stranger, mode="chat")
        try:
            assert_envelope(other.client.get(f"/files/{file_id}/preview"), 404, "file_not_found")
        finally:
            other.client.close()
            stranger.client.close()

    def test_unknown_file(self, chat_app: ServiceApp) -> None:
        for file_id in (str(uuid.uuid4()), "not-a-uuid"):
            assert_envelope(chat_app.client.get(f"/files/{file_id}/preview"), 404, "file_not_found")

    @pytest.mark.parametrize(
        ("name", "data", "mime"),
        [
            ("page.html", ACTIVE_PAGE, "text/html"),
            ("logo.svg", ACTIVE_SVG, "image/svg+xml"),
            ("feed.xml", b"<?xml version='1.0'?><a/>", "application/xml"),
            ("app.js", b"alert(1)", "text/javascript"),
            ("dot.html", ACTIVE_PAGE, "image/png"),  # an image by its type, a page by its name
            ("dot.png", ACTIVE_SVG, "image/svg+xml"),  # the other way round
        ],
        ids=["html", "svg", "xml", "js", "html-as-png", "svg-named-png"],
    )
    def test_active_content_is_a_download_never_inline(
        self, chat_app: ServiceApp, name: str, data: bytes, mime: str
    ) -> None:
        """Stored XSS: an uploaded page or SVG shown inline would run as this server."""
        body = upload(chat_app, name, data, mime).json()
        for response in (
            chat_app.client.get(f"/files/{body['id']}/preview"),
            chat_app.client.get(f"/files/{body['id']}/preview", params={"as_attachment": "false"}),
            httpx.get(body["source_url"]),
        ):
            assert response.status_code == 200, response.text
            assert response.content == data
            assert response.headers["content-type"] == "application/octet-stream"
            assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
            assert {k: response.headers.get(k) for k in FILE_HEADERS} == FILE_HEADERS

    def test_a_file_name_cannot_inject_headers(self, chat_app: ServiceApp) -> None:
        """Content-Disposition per RFC 6266: an ASCII fallback and the exact name RFC 5987
        encoded; a quote or semicolon in the name stays inside its parameter."""
        body = upload(chat_app, 'r\u00e9sum\u00e9 "final"; x=y.txt').json()
        response = chat_app.client.get(
            f"/files/{body['id']}/preview", params={"as_attachment": "true"}
        )
        assert response.status_code == 200, response.text
        kind, fallback, exact = response.headers["content-disposition"].split("; ")
        assert kind == "attachment"
        assert fallback.startswith('filename="') and fallback.count('"') == 2, fallback
        assert fallback[len('filename="') : -1].isascii()
        assert exact.startswith("filename*=utf-8''")
        assert unquote(exact.removeprefix("filename*=utf-8''")) == body["name"]


class TestSignedFileLinks:
    """`source_url`: a signed, expiring link that opens one file without an API key."""

    def test_the_source_url_opens_the_file_without_a_key(self, chat_app: ServiceApp) -> None:
        png = tiny_png()
        body = upload(chat_app, "dot.png", png, "image/png").json()
        response = httpx.get(body["source_url"])  # no Authorization header
        assert response.status_code == 200, response.text
        assert response.content == png
        assert response.headers["content-type"] == "image/png"
        assert response.headers["content-disposition"] == 'inline; filename="dot.png"'
        assert {k: response.headers.get(k) for k in FILE_HEADERS} == FILE_HEADERS
        download = httpx.get(body["source_url"] + "&as_attachment=true")
        assert download.headers["content-disposition"] == 'attachment; filename="dot.png"'

    @staticmethod
    def link(app: ServiceApp, file_id: str, **params: str) -> str:
        return f"{app.url(f'/files/{file_id}/file-preview')}?{urlencode(params)}"

    @pytest.mark.parametrize("part", ["timestamp", "nonce", "sign"])
    def test_a_tampered_link_is_403(self, chat_app: ServiceApp, part: str) -> None:
        body = upload(chat_app).json()
        params = {k: v[0] for k, v in parse_qs(urlsplit(body["source_url"]).query).items()}
        changed = {"timestamp": str(int(time.time()) + 3600), "nonce": "0" * 32}
        params[part] = changed.get(part, params[part][:-4] + "AAA=")
        response = httpx.get(self.link(chat_app, body["id"], **params))
        assert_envelope(
            response, 403, "file_access_denied", "The file link's signature is invalid."
        )

    def test_a_link_opens_only_the_file_it_was_signed_for(self, chat_app: ServiceApp) -> None:
        first, second = upload(chat_app).json(), upload(chat_app).json()
        query = urlsplit(first["source_url"]).query
        response = httpx.get(chat_app.url(f"/files/{second['id']}/file-preview") + "?" + query)
        assert_envelope(response, 403, "file_access_denied")

    def test_an_expired_link_is_403(self, chat_app: ServiceApp) -> None:
        """Signed with the server's secret, but longer ago than its lifetime (300 s)."""
        file_id = upload(chat_app).json()["id"]
        secret = chat_app.stack.env["CONDUIT_AUTH_SECRET_KEY"]
        expired = sign_file(file_id, secret=secret, now=time.time() - 310).params()
        response = httpx.get(self.link(chat_app, file_id, **expired))
        assert_envelope(response, 403, "file_access_denied", "The file link has expired.")
        fresh = sign_file(file_id, secret=secret, now=time.time() - 290).params()
        assert httpx.get(self.link(chat_app, file_id, **fresh)).status_code == 200

    @pytest.mark.parametrize("missing", ["timestamp", "nonce", "sign"])
    def test_a_link_without_its_signature_is_400_naming_the_part(
        self, chat_app: ServiceApp, missing: str
    ) -> None:
        body = upload(chat_app).json()
        params = {k: v[0] for k, v in parse_qs(urlsplit(body["source_url"]).query).items()}
        del params[missing]
        response = httpx.get(self.link(chat_app, body["id"], **params))
        assert_envelope(response, 400, "invalid_param", f"{missing} is required")

    def test_a_signed_link_to_an_unknown_or_gone_file_is_404(
        self, service_stack: Stack, service_admin: Admin
    ) -> None:
        secret = service_stack.env["CONDUIT_AUTH_SECRET_KEY"]
        doomed = service_app(service_stack, service_admin, mode="chat")
        try:
            body = upload(doomed).json()
            unknown = str(uuid.uuid4())
            response = httpx.get(
                self.link(doomed, unknown, **sign_file(unknown, secret=secret).params())
            )
            assert_envelope(response, 404, "file_not_found")
            assert httpx.get(body["source_url"]).status_code == 200
            deleted = service_admin.client.delete(f"/console/api/apps/{doomed.app_id}")
            assert deleted.status_code == 204, deleted.text
            assert_envelope(httpx.get(body["source_url"]), 404, "file_not_found")
        finally:
            doomed.client.close()
