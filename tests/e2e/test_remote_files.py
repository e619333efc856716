"""A file named by URL on the web tier (Dify's `/api/remote-files/upload` and
`/api/remote-files/{url}`), over HTTP against a real server and a real HTTP server holding the
files: the file is fetched (redirects followed) and kept as the end user's upload, usable in a
message like one sent as bytes; a URL the SSRF rules refuse, an answer that is not 2xx, or a
file past its type's limit is a 4xx naming why, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Admin, service_app
from tests.e2e.test_web_api import WebUser, site_code
from tests.fakes.http_echo import HttpEcho, http_echo
from tests.support import Stack, assert_envelope

# Loopback is where the test's file server is; nothing else private is allowed.
STACK_ENV = {"CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
MB = 1024 * 1024
NOTES = b"# Ferry times\n\nThe ferry leaves at nine and returns at six.\n"


@pytest.fixture(scope="module")
def web() -> Iterator[HttpEcho]:
    with http_echo() as server:
        yield server


@pytest.fixture
def browser(service_stack: Stack, service_admin: Admin, upstream: Any) -> WebUser:
    upstream.reset()
    app = service_app(
        service_stack,
        service_admin,
        mode="chat",
        file_upload={
            "enabled": True,
            "allowed_file_types": ["document"],
            "allowed_file_upload_methods": ["local_file"],
            "number_limits": 2,
        },
    )
    return WebUser(service_stack, site_code(service_admin, app.app_id))


def uploads(stack: Stack) -> int:
    return int(str(stack.sql("SELECT count(*) FROM upload_files")[0][0]))


def test_a_file_by_url_is_kept_as_the_end_users_upload(
    browser: WebUser, web: HttpEcho, service_stack: Stack, upstream: Any
) -> None:
    web.serve("ferry.md", NOTES, "text/markdown")
    url = f"{web.base_url}/redirect/ferry.md"  # followed to /files/ferry.md
    kept = browser.client.post("/remote-files/upload", json={"url": url})
    assert kept.status_code == 201, kept.text
    body = kept.json()
    assert (body["name"], body["size"], body["extension"]) == ("ferry.md", len(NOTES), "md")
    assert body["mime_type"] == "text/markdown"
    assert body["url"] and body["url"] == body["source_url"]
    assert httpx.get(body["url"]).content == NOTES
    # Used in a message like an upload sent as bytes: its text reaches the model.
    asked = browser.chat(
        "when does the ferry leave?",
        files=[{"type": "document", "transfer_method": "local_file", "upload_file_id": body["id"]}],
    )
    assert asked["answer"].startswith("You said:")
    prompt = str(upstream.stats()["log"][-1]["messages"])
    assert "The ferry leaves at nine" in prompt


def test_a_url_s_file_type_and_length(browser: WebUser, web: HttpEcho) -> None:
    url = web.serve("map.png", b"\x89PNG" + b"\x00" * 96, "image/png")
    found = browser.client.get(f"/remote-files/{url}")
    assert found.status_code == 200, found.text
    assert found.json() == {"file_type": "image/png", "file_length": 100}


def test_what_cannot_be_fetched_is_a_4xx_and_stores_nothing(
    browser: WebUser, web: HttpEcho, service_stack: Stack
) -> None:
    before = uploads(service_stack)
    big = web.serve("big.txt", b"a" * (100 * MB + 1), "text/plain")
    for body, status, code, words in [
        ({}, 400, "invalid_param", "url is required"),
        ({"url": f"{web.base_url}/files/none.txt"}, 400, "remote_file_upload_failed", "HTTP 404"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, 400, "remote_file_upload_failed",
         "169.254.169.254"),
        ({"url": "ftp://example.com/x.txt"}, 400, "remote_file_upload_failed", "http"),
        ({"url": big}, 413, "file_too_large", "File size exceeded"),
    ]:  # fmt: skip
        refused = browser.client.post("/remote-files/upload", json=body)
        assert_envelope(refused, status, code, words)
    # Within what may be fetched but past a document's own limit (15 MB): its 413.
    large = web.serve("large.txt", b"a" * (16 * MB), "text/plain")
    assert_envelope(
        browser.client.post("/remote-files/upload", json={"url": large}), 413, "file_too_large"
    )
    assert uploads(service_stack) == before
