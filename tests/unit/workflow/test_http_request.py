"""The http-request node's request (`conduit/core/workflow/http_request.py`) against a real
aiohttp server on 127.0.0.1 that echoes what it got. The server runs on its own thread and
loop; each test drives `perform` with `asyncio.run`. Loopback is allowed explicitly
(`ALLOW_LOOPBACK`); the SSRF cases use an empty allow-list or an injected resolver."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from aiohttp import web

from conduit.core.workflow.http_request import (
    HttpLimits,
    HttpRequestFailed,
    Timeouts,
    perform,
    should_retry,
    status_failure,
)
from conduit.infra.ssrf import AllowList

ALLOW_LOOPBACK = AllowList(networks=(ipaddress.ip_network("127.0.0.0/8"),))
NOTHING_ALLOWED = AllowList()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


class EchoServer:
    """aiohttp on a thread: `/echo` answers what it received, other routes misbehave."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.requests = 0
        self.hang_started = threading.Event()
        self.hang_closed = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/hang", self.hang)
        app.router.add_get("/big", self.big)
        app.router.add_get("/trickle", self.trickle)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_route("*", "/redirect", self.redirect)
        app.router.add_get("/loop", self.redirect_loop)
        app.router.add_get("/png", self.png)
        app.router.add_get("/latin1", self.latin1)
        app.router.add_get("/download", self.download)
        # Handlers are cancelled when the client goes away: `/hang` sees the close that way.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()

    async def echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        answer: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": [[key, value] for key, value in request.query.items()],
            "headers": {key.lower(): value for key, value in request.headers.items()},
        }
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            fields: list[Any] = []
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    fields.append(
                        [
                            name,
                            {
                                "filename": value.filename,
                                "content_type": value.content_type,
                                "content": value.file.read().decode(),
                            },
                        ]
                    )
                else:
                    fields.append([name, value])
            answer["form"] = fields
        else:
            raw = await request.read()
            answer["body"] = raw.decode(errors="replace")
            answer["body_b64"] = base64.b64encode(raw).decode()
        return web.json_response(answer, headers={"X-Custom-Answer": "Yes"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "2")))
        return web.Response(text="late")

    async def hang(self, request: web.Request) -> web.Response:
        self.hang_started.set()
        try:
            await asyncio.sleep(30)
        finally:
            self.hang_closed.set()
        return web.Response(text="never")

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["n"]), content_type="text/plain")

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        """No Content-Length: the size shows only while reading."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for _ in range(int(request.query["chunks"])):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status body")

    async def redirect(self, request: web.Request) -> web.Response:
        code = int(request.query.get("code", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    async def redirect_loop(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    async def png(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def latin1(self, request: web.Request) -> web.Response:
        return web.Response(
            body="café".encode("latin-1"), headers={"Content-Type": "text/plain; charset=latin-1"}
        )

    async def download(self, request: web.Request) -> web.Response:
        return web.Response(
            text="a,b\n1,2\n",
            headers={"Content-Disposition": 'attachment; filename="report.csv"'},
        )


@pytest.fixture(scope="module")
def server() -> Iterator[EchoServer]:
    running = EchoServer()
    running.start()
    yield running
    running.stop()


VARIABLES: dict[str, Any] = {
    "start.name": "Ada Lovelace",
    "start.token": "tok-123",
    "start.count": "3",
    "start.doc": {
        "filename": "notes.txt",
        "mime_type": "text/plain",
        "content": base64.b64encode(b"file bytes").decode(),
    },
    "start.pics": [
        {"filename": "a.png", "mime_type": "image/png", "content": base64.b64encode(b"A").decode()},
        {"filename": "b.png", "mime_type": "image/png", "content": base64.b64encode(b"B").decode()},
    ],
    "start.remote": {"filename": "far.pdf", "url": "https://files.example.com/far.pdf"},
}


def render(text: str) -> str:
    return re.sub(r"\{\{#([^#]+)#\}\}", lambda match: str(VARIABLES.get(match.group(1), "")), text)


def lookup(selector: Sequence[str]) -> Any:
    key = ".".join(selector)
    if key not in VARIABLES:
        raise KeyError(key)  # as the engine's pool does: a LookupError
    return VARIABLES[key]


def node(url: str, **data: Any) -> dict[str, Any]:
    return {
        "type": "http-request",
        "method": "get",
        "url": url,
        "authorization": {"type": "no-auth", "config": None},
        "headers": "",
        "params": "",
        "body": {"type": "none", "data": []},
        **data,
    }


def run(
    data: Mapping[str, Any], *, allow: AllowList = ALLOW_LOOPBACK, **kwargs: Any
) -> dict[str, Any]:
    return asyncio.run(perform(data, render, lookup, allow=allow, **kwargs))


def failure(data: Mapping[str, Any], **kwargs: Any) -> HttpRequestFailed:
    with pytest.raises(HttpRequestFailed) as caught:
        run(data, **kwargs)
    return caught.value


def echoed(outputs: Mapping[str, Any]) -> dict[str, Any]:
    assert outputs["status_code"] == 200, outputs
    answer: dict[str, Any] = json.loads(outputs["body"])
    return answer


def body(kind: str, data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data}


def text_item(value: str, key: str = "") -> dict[str, Any]:
    return {"key": key, "type": "text", "value": value}


def file_item(key: str, selector: list[str]) -> dict[str, Any]:
    return {"key": key, "type": "file", "value": "", "file": selector}


class TestBodies:
    def test_none_sends_no_body(self, server: EchoServer) -> None:
        got = echoed(run(node(server.url("/echo"), method="post")))
        assert got["method"] == "POST" and got["body"] == ""
        assert "content-type" not in got["headers"]

    def test_raw_text_is_filled_and_sent_as_text_plain(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"),
            method="post",
            body=body("raw-text", [text_item("Hello {{#start.name#}}!")]),
        )
        got = echoed(run(data))
        assert got["body"] == "Hello Ada Lovelace!"
        assert got["headers"]["content-type"] == "text/plain"

    def test_an_older_dsl_body_is_a_string(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"), method="post", body=body("raw-text", "plain {{#start.count#}}")
        )
        assert echoed(run(data))["body"] == "plain 3"

    def test_json_is_filled_parsed_and_sent(self, server: EchoServer) -> None:
        template = '{"name": "{{#start.name#}}", "count": {{#start.count#}}, "tags": ["ü"]}'
        data = node(server.url("/echo"), method="post", body=body("json", [text_item(template)]))
        got = echoed(run(data))
        assert json.loads(got["body"]) == {"name": "Ada Lovelace", "count": 3, "tags": ["ü"]}
        assert got["headers"]["content-type"] == "application/json"

    def test_a_content_type_the_node_names_wins(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"),
            method="post",
            headers="Content-Type: application/vnd.api+json",
            body=body("json", [text_item("{}")]),
        )
        assert echoed(run(data))["headers"]["content-type"] == "application/vnd.api+json"

    def test_json_that_does_not_parse_fails_in_words(self, server: EchoServer) -> None:
        data = node(server.url("/echo"), method="post", body=body("json", [text_item("{nope")]))
        error = failure(data)
        assert error.message.startswith("Failed to parse JSON: {nope")
        assert error.error_type == "RequestBodyError" and not error.retryable

    def test_urlencoded_fields_are_filled(self, server: EchoServer) -> None:
        items = [text_item("{{#start.name#}}", key="who"), text_item("two words", key="what")]
        data = node(server.url("/echo"), method="post", body=body("x-www-form-urlencoded", items))
        got = echoed(run(data))
        assert got["form"] == [["who", "Ada Lovelace"], ["what", "two words"]]
        assert got["headers"]["content-type"] == "application/x-www-form-urlencoded"

    def test_form_data_sends_text_and_files(self, server: EchoServer) -> None:
        items = [
            text_item("{{#start.name#}}", key="who"),
            file_item("doc", ["start", "doc"]),
            file_item("pics", ["start", "pics"]),
            file_item("gone", ["start", "missing"]),  # no such variable: no part (as in Dify)
        ]
        data = node(
            server.url("/echo"),
            method="post",
            headers="Content-Type: application/json",  # replaced: the boundary is ours
            body=body("form-data", items),
        )
        got = echoed(run(data))
        assert got["headers"]["content-type"].startswith("multipart/form-data; boundary=")
        assert got["form"] == [
            ["who", "Ada Lovelace"],
            [
                "doc",
                {"filename": "notes.txt", "content_type": "text/plain", "content": "file bytes"},
            ],
            ["pics", {"filename": "a.png", "content_type": "image/png", "content": "A"}],
            ["pics", {"filename": "b.png", "content_type": "image/png", "content": "B"}],
        ]

    def test_form_data_without_files_is_still_multipart(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"), method="post", body=body("form-data", [text_item("v", key="k")])
        )
        got = echoed(run(data))
        assert got["headers"]["content-type"].startswith("multipart/form-data")
        assert got["form"] == [["k", "v"]]

    def test_a_file_known_only_by_its_url_is_refused(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"),
            method="post",
            body=body("form-data", [file_item("f", ["start", "remote"])]),
        )
        before = server.requests
        error = failure(data)
        assert "far.pdf is known only by its url" in error.message
        assert error.error_type == "FileFetchError"
        assert server.requests == before  # refused before connecting

    def test_binary_sends_the_file_bytes(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"),
            method="put",
            body=body("binary", [file_item("", ["start", "doc"])]),
        )
        got = echoed(run(data))
        assert got["method"] == "PUT"
        assert base64.b64decode(got["body_b64"]) == b"file bytes"

    def test_binary_without_its_file_fails(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo"),
            method="post",
            body=body("binary", [file_item("", ["start", "missing"])]),
        )
        error = failure(data)
        assert "Cannot fetch the file with selector ['start', 'missing']" in error.message


class TestAuthorization:
    def api_key(self, kind: str, key: str, header: str = "") -> dict[str, Any]:
        return {"type": "api-key", "config": {"type": kind, "api_key": key, "header": header}}

    def sent(self, server: EchoServer, authorization: dict[str, Any]) -> dict[str, str]:
        headers: dict[str, str] = echoed(
            run(node(server.url("/echo"), authorization=authorization))
        )["headers"]
        return headers

    def test_bearer_with_a_filled_key(self, server: EchoServer) -> None:
        headers = self.sent(server, self.api_key("bearer", "{{#start.token#}}"))
        assert headers["authorization"] == "Bearer tok-123"

    def test_basic_encodes_user_and_password(self, server: EchoServer) -> None:
        headers = self.sent(server, self.api_key("basic", "ada:s3cret"))
        assert headers["authorization"] == "Basic " + base64.b64encode(b"ada:s3cret").decode()

    def test_basic_takes_an_encoded_key_as_it_is(self, server: EchoServer) -> None:
        headers = self.sent(server, self.api_key("basic", "YWRhOnMzY3JldA=="))
        assert headers["authorization"] == "Basic YWRhOnMzY3JldA=="

    def test_custom_names_its_header(self, server: EchoServer) -> None:
        headers = self.sent(server, self.api_key("custom", "k-1", header="X-Api-Key"))
        assert headers["x-api-key"] == "k-1" and "authorization" not in headers

    def test_an_empty_key_fails(self, server: EchoServer) -> None:
        error = failure(
            node(server.url("/echo"), authorization=self.api_key("bearer", "{{#start.none#}}"))
        )
        assert error.error_type == "AuthorizationConfigError"
        assert "API key is empty" in error.message

    def test_no_auth_sends_none(self, server: EchoServer) -> None:
        assert "authorization" not in self.sent(server, {"type": "no-auth"})


class TestHeadersAndParams:
    def test_lines_are_parsed_and_filled(self, server: EchoServer) -> None:
        data = node(
            server.url("/echo?a=1"),
            headers="X-Name: {{#start.name#}}\nX-Colon:two: parts\n\n  X-Empty\n",
            params="q:hello world\nq: again\n:skipped\nflag\nn:{{#start.count#}}",
        )
        got = echoed(run(data))
        assert got["headers"]["x-name"] == "Ada Lovelace"
        assert got["headers"]["x-colon"] == "two: parts"
        assert got["headers"]["x-empty"] == ""
        assert got["query"] == [
            ["a", "1"],
            ["q", "hello world"],
            ["q", "again"],
            ["flag", ""],
            ["n", "3"],
        ]

    def test_a_line_that_is_no_header_fails_in_words(self, server: EchoServer) -> None:
        error = failure(node(server.url("/echo"), headers="good: 1\nnot a header: 2"))
        assert error.message.startswith("Invalid header line 'not a header: 2' (expected key:value")

    def test_the_url_is_filled(self, server: EchoServer) -> None:
        got = echoed(run(node(server.url("/echo?who={{#start.name#}}"))))
        assert got["query"] == [["who", "Ada Lovelace"]]

    def test_methods_in_any_case(self, server: EchoServer) -> None:
        assert echoed(run(node(server.url("/echo"), method="DELETE")))["method"] == "DELETE"
        assert echoed(run(node(server.url("/echo"), method="Options")))["method"] == "OPTIONS"
        head = run(node(server.url("/echo"), method="head"))
        assert head["status_code"] == 200 and head["body"] == ""
        error = failure(node(server.url("/echo"), method="trace"))
        assert error.error_type == "InvalidHttpMethodError"


class TestResponse:
    def test_headers_are_lower_cased(self, server: EchoServer) -> None:
        outputs = run(node(server.url("/echo")))
        assert outputs["headers"]["x-custom-answer"] == "Yes"
        assert all(name == name.lower() for name in outputs["headers"])
        assert outputs["files"] == []

    def test_the_charset_decodes_the_body(self, server: EchoServer) -> None:
        assert run(node(server.url("/latin1")))["body"] == "café"

    def test_a_binary_response_is_a_file(self, server: EchoServer) -> None:
        outputs = run(node(server.url("/png")))
        assert outputs["body"] == ""
        [file] = outputs["files"]
        assert file["mime_type"] == "image/png" and file["type"] == "image"
        assert file["filename"] == "png" and file["size"] == len(PNG)
        assert base64.b64decode(file["content"]) == PNG
        assert file["dify_model_identity"] == "__dify__file__"

    def test_an_attachment_is_a_file_named_by_its_disposition(self, server: EchoServer) -> None:
        [file] = run(node(server.url("/download")))["files"]
        assert file["filename"] == "report.csv" and file["extension"] == ".csv"
        assert file["mime_type"] == "text/csv" and file["type"] == "document"

    def test_a_response_file_can_be_sent_on(self, server: EchoServer) -> None:
        [file] = run(node(server.url("/png")))["files"]
        VARIABLES["fetch.file"] = file
        try:
            data = node(
                server.url("/echo"),
                method="post",
                body=body("binary", [file_item("", ["fetch", "file"])]),
            )
            assert base64.b64decode(echoed(run(data))["body_b64"]) == PNG
        finally:
            del VARIABLES["fetch.file"]

    def test_an_error_status_is_an_output(self, server: EchoServer) -> None:
        outputs = run(node(server.url("/status/503")))
        assert outputs["status_code"] == 503 and outputs["body"] == "status body"
        assert should_retry(outputs)
        failed = status_failure(outputs)
        assert failed is not None and failed.message == "Request failed with status code 503"
        assert failed.error_type == "HTTPResponseCodeError"
        # Dify fails (and so retries) any status that is not 2xx, 4xx included.
        assert should_retry(run(node(server.url("/status/404"))))
        assert not should_retry(run(node(server.url("/status/204"))))

    def test_a_body_over_the_limit_fails(self, server: EchoServer) -> None:
        limits = HttpLimits(max_response_bytes=1000)
        assert run(node(server.url("/big?n=1000")), limits=limits)["body"] == "x" * 1000
        error = failure(node(server.url("/big?n=1001")), limits=limits)
        assert error.message == "Response body is larger than 1000 bytes"
        assert error.error_type == "ResponseSizeError" and not error.retryable
        head = run(node(server.url("/big?n=5000"), method="head"), limits=limits)
        assert head["status_code"] == 200 and head["headers"]["content-length"] == "5000"

    def test_a_body_without_a_length_is_cut_at_the_limit(self, server: EchoServer) -> None:
        limits = HttpLimits(max_response_bytes=2500)
        error = failure(node(server.url("/trickle?chunks=5")), limits=limits)
        assert error.message == "Response body is larger than 2500 bytes"


class TestTimeoutsAndCancel:
    def test_a_slow_answer_times_out(self, server: EchoServer) -> None:
        error = failure(node(server.url("/slow?delay=3"), timeout={"read": 0.3}))
        assert error.message == "Request timed out after 0.3 s (read)"
        assert error.retryable and should_retry(error)

    def test_the_node_timeout_is_capped(self, server: EchoServer) -> None:
        limits = HttpLimits(max_timeouts=Timeouts(connect=5, read=0.3, write=5))
        error = failure(node(server.url("/slow?delay=3"), timeout={"read": 3600}), limits=limits)
        assert error.message == "Request timed out after 0.3 s (read)"

    def test_a_closed_port_is_a_retryable_connection_error(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        error = failure(node(f"http://127.0.0.1:{port}/"))
        assert error.message.startswith("Could not connect to 127.0.0.1")
        assert error.retryable

    def test_cancelling_closes_the_connection(self, server: EchoServer) -> None:
        server.hang_started.clear()
        server.hang_closed.clear()

        async def scenario() -> None:
            task = asyncio.create_task(
                perform(node(server.url("/hang")), render, lookup, allow=ALLOW_LOOPBACK)
            )
            assert await asyncio.to_thread(server.hang_started.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The server notices at once, not after its 30 s sleep.
            assert await asyncio.to_thread(server.hang_closed.wait, 2)

        asyncio.run(scenario())


class TestSsrf:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://127.0.0.1:{port}/echo", "the host 127.0.0.1 resolves to a loopback address"),
            ("http://10.0.0.5/", "the host 10.0.0.5 resolves to a private address 10.0.0.5"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "the host 169.254.169.254 resolves to a metadata address",
            ),
            ("http://[::ffff:127.0.0.1]:{port}/", "resolves to a loopback address 127.0.0.1"),
        ],
    )
    def test_inside_addresses_are_refused(
        self, server: EchoServer, url: str, expected: str
    ) -> None:
        before = server.requests
        error = failure(node(url.format(port=server.port)), allow=NOTHING_ALLOWED)
        assert error.message.startswith("url: ") and expected in error.message
        assert error.error_type == "InvalidURLError" and not error.retryable
        assert server.requests == before

    def test_a_name_resolving_inside_is_refused(self) -> None:
        def resolver(host: str, port: int) -> list[str]:
            return ["10.0.0.5"]

        error = failure(node("http://internal.example/x"), allow=NOTHING_ALLOWED, resolver=resolver)
        assert (
            error.message == "url: the host internal.example resolves to a private address 10.0.0.5"
        )

    def test_a_name_that_does_not_resolve_is_retryable(self) -> None:
        def resolver(host: str, port: int) -> list[str]:
            return []

        error = failure(node("http://gone.example/x"), resolver=resolver)
        assert error.message == "url: the host gone.example does not resolve" and error.retryable

    def test_other_schemes_are_refused(self) -> None:
        error = failure(node("file:///etc/passwd"))
        assert error.message == "url: the scheme must be http or https"

    def test_the_checked_address_is_used_with_the_name_as_host(self, server: EchoServer) -> None:
        """One lookup, then the connection goes to the address it gave: a second lookup that
        answered elsewhere (DNS rebinding) is never made."""
        answers = iter([["127.0.0.1"], ["10.0.0.5"]])
        asked: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            asked.append(host)
            return next(answers)

        got = echoed(run(node(server.url("/echo", host="echo.test")), resolver=resolver))
        assert got["headers"]["host"] == f"echo.test:{server.port}"
        assert asked == ["echo.test"]


class TestRedirects:
    def test_a_redirect_is_followed_and_a_302_post_becomes_get(self, server: EchoServer) -> None:
        data = node(
            server.url("/redirect?to=/echo%3Fnext%3D1"),
            method="post",
            body=body("raw-text", [text_item("payload")]),
        )
        got = echoed(run(data))
        assert got["method"] == "GET" and got["query"] == [["next", "1"]] and got["body"] == ""

    def test_a_307_keeps_method_and_body(self, server: EchoServer) -> None:
        data = node(
            server.url("/redirect?code=307&to=/echo"),
            method="post",
            body=body("raw-text", [text_item("payload")]),
        )
        got = echoed(run(data))
        assert got["method"] == "POST" and got["body"] == "payload"

    def test_each_hop_is_checked(self, server: EchoServer) -> None:
        data = node(server.url("/redirect?to=http://169.254.169.254/latest/meta-data/"))
        error = failure(data)
        assert error.message == (
            "url: the host 169.254.169.254 resolves to a metadata address 169.254.169.254"
        )

    def test_credentials_stay_with_their_origin(self, server: EchoServer) -> None:
        def resolver(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        target = server.url("/echo")  # 127.0.0.1: another host than echo.test
        data = node(
            server.url(f"/redirect?to={target}", host="echo.test"),
            authorization={"type": "api-key", "config": {"type": "bearer", "api_key": "k"}},
            headers="X-Kept: yes",
        )
        got = echoed(run(data, resolver=resolver))
        assert "authorization" not in got["headers"] and got["headers"]["x-kept"] == "yes"

    def test_too_many_redirects_fail(self, server: EchoServer) -> None:
        error = failure(node(server.url("/loop")), limits=HttpLimits(max_redirects=3))
        assert error.message == "Too many redirects (more than 3)"

    def test_no_redirects_returns_the_redirect(self, server: EchoServer) -> None:
        outputs = run(node(server.url("/loop")), limits=HttpLimits(max_redirects=0))
        assert outputs["status_code"] == 302 and outputs["headers"]["location"] == "/loop"
