"""What a request may carry, over real HTTP on both dialects: JSON bodies declared as JSON (415
as Dify), a body size limit (413, also on the hot run routes and for chunked bodies), values the
database and the encoder can store (no NUL, no integer beyond 64 bits, a `user` that fits its
column: 400 naming the field, never a 5xx, never a changed value), a resume position that
fits, and a connection kept alive after a refusal."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.test_service_resources import INVALID_JSON, assert_envelope, upload
from tests.support import Stack

LIMIT = 256 * 1024  # not the default (2 MiB): the setting is honoured
STACK_ENV = {
    "CONDUIT_HTTP_MAX_JSON_BODY_BYTES": str(LIMIT),
    # Under a document's 15 MB, so that a document's limit is the largest an upload may be.
    "CONDUIT_UPLOAD_AUDIO_SIZE_LIMIT_MB": "8",
    "CONDUIT_UPLOAD_VIDEO_SIZE_LIMIT_MB": "12",
}
NOT_JSON = (
    "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
)
TOO_LARGE = "The data value transmitted exceeds the capacity limit."
NO_NAMING = {"auto_generate_name": False}
LONG_USER = "u" * 1000
MB = 1024 * 1024


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"inputs": {}, "query": "hi", "user": "alice", **NO_NAMING, **extra}


def assert_nothing_ran(app: ServiceApp, upstream: Any) -> None:
    """No message row (no half-written run) and no model call."""
    rows = app.stack.sql("SELECT count(*) FROM messages WHERE app_id = :app", app=app.app_id)
    assert rows == [(0,)]
    assert upstream.stats()["requests"] == 0


def raw_json(client: httpx.Client, method: str, path: str, text: bytes) -> httpx.Response:
    return client.request(method, path, content=text, headers={"Content-Type": "application/json"})


def exchange(
    connection: http.client.HTTPConnection,
    app: ServiceApp,
    method: str,
    path: str,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    """One request on `connection` with the app's key; (status, body)."""
    headers = {"Authorization": f"Bearer {app.key}", "Content-Type": "application/json"}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


@pytest.fixture
def console(service_admin: Admin) -> httpx.Client:
    return service_admin.client


@pytest.fixture
def connection(service_stack: Stack) -> Iterator[http.client.HTTPConnection]:
    """One keep-alive HTTP/1.1 connection to the server."""
    conn = http.client.HTTPConnection("127.0.0.1", service_stack.port, timeout=15)
    yield conn
    conn.close()


class TestMediaType:
    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", None, "application/x-www-form-urlencoded", "multipart/form-data; b=x"],
        ids=["text", "absent", "form", "multipart"],
    )
    def test_a_run_body_not_declared_json_is_415_and_runs_nothing(
        self, chat_app: ServiceApp, upstream: Any, content_type: str | None
    ) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        response = chat_app.client.post(
            "/chat-messages",
            content=httpx.Request("POST", "/", json=chat_body()).content,
            headers=headers,
        )
        assert_envelope(response, 415, "unsupported_media_type", NOT_JSON)
        assert_nothing_ran(chat_app, upstream)

    @pytest.mark.parametrize(
        "content_type", ["application/json; charset=utf-8", "application/vnd.api+json"]
    )
    def test_json_with_parameters_or_a_json_suffix_is_json(
        self, chat_app: ServiceApp, content_type: str
    ) -> None:
        body = httpx.Request("POST", "/", json=chat_body()).content
        response = chat_app.client.post(
            "/chat-messages", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, response.text
        assert response.json()["answer"] == "You said: hi"

    def test_every_service_route_with_a_json_body_refuses_another_type(
        self, chat_app: ServiceApp, completion_app: ServiceApp
    ) -> None:
        some = str(uuid.uuid4())
        routes = [
            (completion_app, "POST", "/completion-messages"),
            (chat_app, "POST", f"/chat-messages/{some}/stop"),
            (completion_app, "POST", f"/completion-messages/{some}/stop"),
            (chat_app, "POST", f"/conversations/{some}/name"),
            (chat_app, "DELETE", f"/conversations/{some}"),
            (chat_app, "POST", f"/messages/{some}/feedbacks"),
        ]
        for app, method, path in routes:
            response = app.client.request(
                method, path, content=b'{"user": "alice"}', headers={"Content-Type": "text/plain"}
            )
            assert_envelope(response, 415, "unsupported_media_type", NOT_JSON)

    def test_a_delete_without_a_body_needs_no_type(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.delete(f"/conversations/{uuid.uuid4()}")
        assert_envelope(response, 404, "not_found", "Conversation Not Exists.")

    def test_every_route_with_a_declared_body_refuses_another_type(
        self, console: httpx.Client, chat_app: ServiceApp
    ) -> None:
        """Every route whose body FastAPI reads (the OpenAPI spec declares it), and the console's
        runs (which read theirs with `json_body`, as the Service API)."""
        spec = console.get("/openapi.json").json()
        routes = [
            (method.upper(), path.replace("{app_id}", chat_app.app_id))
            for path, operations in spec["paths"].items()
            for method, operation in operations.items()
            if "requestBody" in operation
        ]
        assert len(routes) >= 15
        some = str(uuid.uuid4())
        routes += [
            ("POST", f"/console/api/apps/{chat_app.app_id}/chat-messages"),
            ("POST", f"/console/api/apps/{chat_app.app_id}/chat-messages/{some}/stop"),
        ]
        body = b'{"name": "x", "mode": "chat", "query": "hi", "inputs": {}}'
        for method, path in routes:
            filled = path.replace("{member_id}", some).replace("{provider_id}", some)
            response = console.request(
                method, filled, content=body, headers={"Content-Type": "text/plain"}
            )
            assert_envelope(response, 415, "unsupported_media_type", NOT_JSON)
        assert console.get(f"/console/api/apps/{chat_app.app_id}").json()["data"]["name"] == (
            "chat app"
        )


class TestBodySize:
    def test_a_run_body_over_the_limit_is_413_and_runs_nothing(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        response = chat_app.client.post("/chat-messages", json=chat_body(query="q" * 10_000_000))
        body = assert_envelope(response, 413, "request_entity_too_large")
        assert body["message"].startswith(TOO_LARGE) and str(LIMIT) in body["message"]
        assert_nothing_ran(chat_app, upstream)

    def test_a_chunked_body_is_counted_while_it_is_read(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        encoded = httpx.Request("POST", "/", json=chat_body(query="q" * (LIMIT + 1))).content
        chunks = (encoded[i : i + 16384] for i in range(0, len(encoded), 16384))
        response = chat_app.client.post(
            "/chat-messages", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert_envelope(response, 413, "request_entity_too_large")
        assert_nothing_ran(chat_app, upstream)
        # A chunked body within the limit is served as any other.
        small = httpx.Request("POST", "/", json=chat_body()).content
        served = chat_app.client.post(
            "/chat-messages",
            content=iter([small[:10], small[10:]]),
            headers={"Content-Type": "application/json"},
        )
        assert served.status_code == 200, served.text
        assert served.json()["answer"] == "You said: hi"

    def test_a_body_of_exactly_the_limit_is_read(self, chat_app: ServiceApp) -> None:
        shell = b'{"user": "alice", "rating": "like", "content": ""}'
        body = shell.replace(b'""', b'"' + b"c" * (LIMIT - len(shell)) + b'"')
        assert len(body) == LIMIT
        response = raw_json(chat_app.client, "POST", f"/messages/{uuid.uuid4()}/feedbacks", body)
        assert_envelope(response, 404, "not_found", "Message Not Exists.")
        over = body.replace(b'"c', b'"cc', 1)
        response = raw_json(chat_app.client, "POST", f"/messages/{uuid.uuid4()}/feedbacks", over)
        assert_envelope(response, 413, "request_entity_too_large")

    def test_console_bodies_have_the_limit(self, console: httpx.Client) -> None:
        big = {"name": "big", "mode": "chat", "model_config": {"pre_prompt": "p" * LIMIT}}
        assert_envelope(
            console.post("/console/api/apps", json=big), 413, "request_entity_too_large"
        )

    def test_uploads_keep_their_own_limit(self, chat_app: ServiceApp) -> None:
        response = upload(chat_app, "big.txt", b"a" * (4 * LIMIT), "text/plain")
        assert response.status_code == 201, response.text
        # Just over the document limit (15 MB): the upload's own 413 (test_service_resources);
        # past the largest upload limit (here a document's) and the form's room (1 MiB), the
        # body is refused before it is read.
        huge = upload(chat_app, "huge.txt", b"a" * (16 * MB + 1), "text/plain")
        assert_envelope(huge, 413, "request_entity_too_large")
        # An audio file has its own limit (8 MB here).
        loud = upload(chat_app, "loud.mp3", b"\x00" * (8 * MB + 1), "audio/mpeg")
        assert_envelope(loud, 413, "file_too_large")

    def test_the_connection_is_kept_after_a_413(
        self, chat_app: ServiceApp, connection: http.client.HTTPConnection
    ) -> None:
        body = b" " * (2 * LIMIT)
        status, text = exchange(connection, chat_app, "POST", "/v1/chat-messages", body)
        assert status == 413 and b"request_entity_too_large" in text
        kept = connection.sock
        assert exchange(connection, chat_app, "GET", "/v1/info")[0] == 200
        assert kept is not None and connection.sock is kept


class TestUnstorableValues:
    @pytest.mark.parametrize(
        ("extra", "field"),
        [
            ({"query": "a\x00b"}, "query"),
            ({"user": "al\x00ice"}, "user"),
            ({"inputs": {"topic": {"deep": ["ok", "x\x00"]}}}, "inputs.topic.deep[1]"),
            ({"inputs": {"na\x00me": "x"}}, "inputs"),
            ({"inputs": {"age": 2**64}}, "inputs.age"),
            ({"inputs": {"age": -(2**63) - 1}}, "inputs.age"),
            ({"inputs": {"ids": [1, 10**30]}}, "inputs.ids[1]"),
            ({"user": LONG_USER}, "user"),
        ],
        ids=[
            "nul-query",
            "nul-user",
            "nul-nested",
            "nul-key",
            "2^64",
            "-2^63-1",
            "10^30",
            "long-user",
        ],
    )
    def test_a_run_with_an_unstorable_value_is_400_naming_it(
        self, chat_app: ServiceApp, upstream: Any, extra: dict[str, Any], field: str
    ) -> None:
        for mode in ("blocking", "streaming"):
            response = chat_app.client.post(
                "/chat-messages", json=chat_body(response_mode=mode, **extra)
            )
            body = assert_envelope(response, 400, "invalid_param")
            assert body["message"].startswith(f"{field}:"), body
            assert "retry-after" not in response.headers
        assert_nothing_ran(chat_app, upstream)

    def test_integers_within_64_bits_are_kept_exactly(self, chat_app: ServiceApp) -> None:
        inputs = {"big": 2**64 - 1, "small": -(2**63), "digits": "1" * 40}
        response = chat_app.client.post("/chat-messages", json=chat_body(inputs=inputs))
        assert response.status_code == 200, response.text
        listed = chat_app.client.get(
            "/messages",
            params={"conversation_id": response.json()["conversation_id"], "user": "alice"},
        )
        assert listed.json()["data"][0]["inputs"] == inputs

    def test_a_long_or_nul_user_is_400_on_every_route_that_takes_one(
        self, chat_app: ServiceApp
    ) -> None:
        some = str(uuid.uuid4())
        for user in (LONG_USER, "a\x00b"):
            calls = [
                chat_app.client.get("/conversations", params={"user": user}),
                chat_app.client.get("/messages", params={"conversation_id": some, "user": user}),
                chat_app.client.get(f"/messages/{some}/suggested", params={"user": user}),
                chat_app.client.get(f"/chat-messages/{some}/events", params={"user": user}),
                chat_app.client.post(f"/chat-messages/{some}/stop", json={"user": user}),
                chat_app.client.post(
                    f"/conversations/{some}/name", json={"user": user, "name": "n"}
                ),
                chat_app.client.request("DELETE", f"/conversations/{some}", json={"user": user}),
                chat_app.client.post(
                    f"/messages/{some}/feedbacks", json={"user": user, "rating": "like"}
                ),
                upload(chat_app, user=user),
            ]
            for response in calls:
                body = assert_envelope(response, 400, "invalid_param")
                assert body["message"].startswith("user:"), (response.request.url, body)
        assert chat_app.stack.sql(
            "SELECT count(*) FROM end_users WHERE app_id = :app", app=chat_app.app_id
        ) == [(0,)]

    @pytest.mark.parametrize(
        ("name", "mime", "field"),
        [
            ("n" * 300 + ".txt", "text/plain", "filename"),
            ("notes." + "e" * 40, "text/plain", "filename"),
            ("no\x00tes.txt", "text/plain", "filename"),
            ("notes.txt", "text/" + "p" * 300, "mime_type"),
            ("notes.txt", "text/p\x00", "mime_type"),
        ],
        ids=["long-name", "long-extension", "nul-name", "long-type", "nul-type"],
    )
    def test_an_upload_whose_name_or_type_does_not_fit_is_400_naming_it(
        self, chat_app: ServiceApp, name: str, mime: str, field: str
    ) -> None:
        # Built by hand: httpx would percent-encode a NUL in the file name.
        form = (
            b'--b\r\nContent-Disposition: form-data; name="user"\r\n\r\nalice\r\n--b\r\n'
            b'Content-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
            b"Content-Type: " + mime.encode() + b"\r\n\r\nhello\r\n--b--\r\n"
        )
        response = chat_app.client.post(
            "/files/upload",
            content=form,
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        body = assert_envelope(response, 400, "invalid_param")
        assert body["message"].startswith(f"{field}:"), body
        stored = chat_app.stack.sql(
            "SELECT count(*) FROM upload_files f JOIN end_users u ON u.id = f.created_by "
            "WHERE u.app_id = :app",
            app=chat_app.app_id,
        )
        assert stored == [(0,)]

    def test_a_nul_in_a_query_parameter_is_400_naming_it(
        self, chat_app: ServiceApp, console: httpx.Client
    ) -> None:
        some = str(uuid.uuid4())
        cases = [
            (chat_app.client, "/conversations", {"user": "alice", "last_id": "a\x00"}, "last_id"),
            (chat_app.client, "/conversations", {"user": "alice", "sort_by": "\x00"}, "sort_by"),
            (
                chat_app.client,
                "/messages",
                {"user": "alice", "conversation_id": "\x00"},
                "conversation_id",
            ),
            (
                chat_app.client,
                "/messages",
                {"conversation_id": some, "first_id": "\x00"},
                "first_id",
            ),
            (chat_app.client, f"/files/{some}/preview", {"as_attachment": "\x00"}, "as_attachment"),
            (console, "/console/api/apps", {"name": "a\x00"}, "name"),
        ]
        for client, path, params, field in cases:
            body = assert_envelope(client.get(path, params=params), 400, "invalid_param")
            assert body["message"].startswith(f"{field}:"), body

    def test_a_nul_in_the_path_is_404(self, chat_app: ServiceApp, console: httpx.Client) -> None:
        for client, path in (
            (chat_app.client, "/files/a%00b/preview"),
            (chat_app.client, "/conversations/a%00b/name"),
            (chat_app.client, "/chat-messages/a%00b/events?user=alice"),
            (console, "/console/api/apps/a%00b"),
        ):
            assert_envelope(client.get(path), 404, "not_found")

    @pytest.mark.parametrize(
        ("config", "field"),
        [
            (
                {"model": {"completion_params": {"max_tokens": 2**64}}},
                "model.completion_params.max_tokens",
            ),
            ({"more_like_this": {"enabled": False, "n": -(2**70)}}, "more_like_this.n"),
            ({"opening_statement": "hello\x00"}, "opening_statement"),
        ],
        ids=["max_tokens", "negative", "nul"],
    )
    def test_an_unstorable_model_config_is_400_naming_it(
        self, console: httpx.Client, chat_app: ServiceApp, config: dict[str, Any], field: str
    ) -> None:
        app = f"/console/api/apps/{chat_app.app_id}"
        before = console.get(f"{app}/model-config").json()["data"]
        for method, path, body, named in (
            (
                "POST",
                "/console/api/apps",
                {"name": "n", "mode": "chat", "model_config": config},
                f"model_config.{field}",
            ),
            ("PUT", app, {"model_config": config}, f"model_config.{field}"),
            ("POST", f"{app}/model-config", config, field),
        ):
            response = console.request(method, path, json=body)
            message = assert_envelope(response, 400, "invalid_param")["message"]
            assert message.startswith(f"{named}:"), message
        assert console.get(f"{app}/model-config").json()["data"] == before

    def test_console_json_is_strict_and_keeps_integers_exactly(self, console: httpx.Client) -> None:
        for text in (
            b'{"name": "n", "mode": "chat", "model_config": {"t": NaN}}',
            b'{"name": "n", "mode": "chat", "model_config": {"t": 1e400}}',
            b'{"name": "\\ud800", "mode": "chat"}',
        ):
            response = raw_json(console, "POST", "/console/api/apps", text)
            assert_envelope(response, 400, "invalid_param", INVALID_JSON)
        assert_envelope(
            console.post("/console/api/apps", json={"name": "a\x00", "mode": "chat"}),
            400,
            "invalid_param",
            "name: must not contain NUL characters (\\u0000)",
        )
        config = {"big": 2**64 - 1, "small": -(2**63)}
        created = console.post(
            "/console/api/apps", json={"name": "n", "mode": "chat", "model_config": config}
        )
        assert created.status_code == 201, created.text
        stored = console.get(f"/console/api/apps/{created.json()['data']['id']}")
        assert stored.json()["data"]["model_config"] == config

    def test_the_connection_is_kept_after_a_400(
        self, chat_app: ServiceApp, connection: http.client.HTTPConnection
    ) -> None:
        body = b'{"inputs": {}, "query": "a\\u0000", "user": "a"}'
        status, text = exchange(connection, chat_app, "POST", "/v1/chat-messages", body)
        assert status == 400 and b"invalid_param" in text
        kept = connection.sock
        long_user = f"/v1/conversations?user={LONG_USER}"
        assert exchange(connection, chat_app, "GET", long_user)[0] == 400
        assert exchange(connection, chat_app, "GET", "/v1/info")[0] == 200
        assert kept is not None and connection.sock is kept


class TestResumePosition:
    def finished_run(self, app: ServiceApp) -> str:
        response = app.client.post("/chat-messages", json=chat_body())
        assert response.status_code == 200, response.text
        return str(response.json()["task_id"])

    @pytest.mark.parametrize(
        ("params", "headers", "named"),
        [
            ({"after": str(2**64)}, {}, "after"),
            ({"after": str(2**63)}, {}, "after"),
            ({"after": "-1"}, {}, "after"),
            ({"after": "1e3"}, {}, "after"),
            ({"after": "\u0663"}, {}, "after"),  # a digit, but not an ASCII one
            ({}, {"Last-Event-ID": "1" * 30}, "Last-Event-ID"),
            ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
            ({"after": "9" * 5000}, {}, "after"),
        ],
        ids=["2^64", "2^63", "negative", "float", "arabic-digit", "30-digits", "letters", "huge"],
    )
    def test_a_position_that_does_not_fit_is_400_naming_it(
        self,
        chat_app: ServiceApp,
        params: dict[str, str],
        headers: dict[str, str],
        named: str,
    ) -> None:
        task_id = self.finished_run(chat_app)
        response = chat_app.client.get(
            f"/chat-messages/{task_id}/events", params={"user": "alice", **params}, headers=headers
        )
        body = assert_envelope(response, 400, "invalid_param")
        assert body["message"].startswith(f"{named}:"), body

    def test_the_largest_position_is_past_every_event(self, chat_app: ServiceApp) -> None:
        task_id = self.finished_run(chat_app)
        for params, headers in (
            ({"after": str(2**63 - 1)}, {}),
            ({}, {"Last-Event-ID": str(2**63 - 1)}),
        ):
            with chat_app.client.stream(
                "GET",
                f"/chat-messages/{task_id}/events",
                params={"user": "alice", **params},
                headers=headers,
            ) as response:
                assert response.status_code == 200
                text = response.read().decode()
            assert "data:" not in text.replace("event: ping", "")
