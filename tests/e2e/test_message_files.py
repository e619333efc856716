"""A chat or completion message sent with files (Dify's `files`): checked against the app's
`file_upload` when the message is sent (400 naming the item and the rule, nothing stored),
given to the model where the run runs (an upload of an image as a `data:` URL image part, an
image by URL as given, a document's text after the question), and listed with the message
(`message_files`, an upload's `url` a signed link that opens without a key). Real server and
runs on Celery (a worker process in the distributed mode, which reads the files from
storage); the fake model server records the prompt it was sent."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp, service_app
from tests.e2e.test_workflow_runs import HERE, published_app

EXECUTOR = "celery"

# A real 1×1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
NOTES = b"# Notes\n\nThe meeting moved to Friday at ten.\n"
CAT = "https://images.example.com/pets/cat%20one.jpg"


def upload(app: ServiceApp, name: str, data: bytes, mime: str, user: str = "ann") -> str:
    response = app.client.post(
        "/files/upload", files={"file": (name, data, mime)}, data={"user": user}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def local(kind: str, file_id: str) -> dict[str, Any]:
    return {"type": kind, "transfer_method": "local_file", "upload_file_id": file_id}


def prompt_of(upstream: Any, words: str) -> list[dict[str, Any]]:
    """The prompt of the model call whose last message starts with `words` (not the conversation's
    naming call, which may come after it)."""
    for record in reversed(upstream.stats()["log"]):
        content = record["messages"][-1]["content"]
        text = content if isinstance(content, str) else content[0]["text"]
        if text.startswith(words):
            return list(record["messages"])
    raise AssertionError(f"no model call was asked {words!r}")


def refused(cases: list[tuple[ServiceApp, Any, str]], user: str) -> None:
    """Each (app, files, words): the message sent with those files is a 400 `invalid_param`
    whose message holds the words."""
    for target, files, message in cases:
        reply = target.client.post(
            "/chat-messages",
            json={"query": "Look", "user": user, "inputs": {}, "files": files},
        )
        assert reply.status_code == 400, (files, reply.text)
        assert reply.json()["code"] == "invalid_param", reply.text
        assert message in reply.json()["message"], (message, reply.text)


def nothing_stored(apps: tuple[ServiceApp, ...], user: str) -> None:
    for target in apps:
        conversations = target.client.get("/conversations", params={"user": user})
        assert conversations.status_code == 200 and conversations.json()["data"] == []


@pytest.fixture
def files_app(service_stack: support.Stack, service_admin: Admin, upstream: Any) -> ServiceApp:
    upstream.reset()
    return service_app(
        service_stack,
        service_admin,
        mode="chat",
        pre_prompt="You are a test assistant.",
        file_upload={
            "enabled": True,
            "allowed_file_types": ["image", "document"],
            "allowed_file_upload_methods": ["local_file", "remote_url"],
            "number_limits": 3,
            "image": {"detail": "low"},
        },
    )


def test_an_image_and_a_document_reach_the_model_and_are_listed_with_the_message(
    files_app: ServiceApp, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    image = upload(files_app, "dot.png", PNG, "image/png")
    notes = upload(files_app, "notes.md", NOTES, "text/markdown")
    sent = [
        local("image", image),
        local("document", notes),
        {"type": "image", "transfer_method": "remote_url", "url": CAT},
    ]
    reply = files_app.client.post(
        "/chat-messages",
        json={"query": "What is in these?", "user": "ann", "inputs": {}, "files": sent},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    # The model got the question with the document's text, then the two images.
    question = prompt_of(upstream, "What is in these?")[-1]
    assert question["role"] == "user"
    text, first, second = question["content"]
    assert text["type"] == "text" and text["text"].startswith("What is in these?\n\n")
    assert '<file name="notes.md">' in text["text"]
    assert "The meeting moved to Friday at ten." in text["text"]
    assert first == {
        "type": "image_url",
        "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
            "detail": "low",
        },
    }
    assert second == {"type": "image_url", "image_url": {"url": CAT, "detail": "low"}}
    assert body["answer"].startswith("You said: What is in these?")

    listed = files_app.client.get(
        "/messages", params={"conversation_id": body["conversation_id"], "user": "ann"}
    )
    assert listed.status_code == 200, listed.text
    files = listed.json()["data"][0]["message_files"]
    assert [(f["type"], f["transfer_method"], f["filename"]) for f in files] == [
        ("image", "local_file", "dot.png"),
        ("document", "local_file", "notes.md"),
        ("image", "remote_url", "cat one.jpg"),
    ]
    assert [f["upload_file_id"] for f in files] == [image, notes, None]
    assert all(f["belongs_to"] == "user" for f in files)
    assert files[0]["mime_type"] == "image/png" and files[0]["size"] == len(PNG)
    assert files[2]["url"] == CAT
    opened = httpx.get(files[0]["url"], timeout=10)  # the signed link, no key
    assert opened.status_code == 200 and opened.content == PNG

    # The console's log of the conversation shows them too.
    logged = service_admin.client.get(
        f"/console/api/apps/{files_app.app_id}/chat-messages",
        params={"conversation_id": body["conversation_id"]},
    )
    assert logged.status_code == 200, logged.text
    assert [f["filename"] for f in logged.json()["data"][0]["message_files"]] == [
        "dot.png",
        "notes.md",
        "cat one.jpg",
    ]


def test_a_later_turn_sends_the_files_of_the_turns_it_remembers(
    files_app: ServiceApp, service_admin: Admin, upstream: Any
) -> None:
    """A conversation's past turns go to the model with their files, each in its own turn (an
    image as a part, a document's text after the question), as far back as the app's memory
    window reaches."""
    image = upload(files_app, "dot.png", PNG, "image/png")
    notes = upload(files_app, "notes.md", NOTES, "text/markdown")

    def say(query: str, conversation: str, files: list[dict[str, Any]]) -> str:
        body = {"query": query, "user": "ann", "inputs": {}, "files": files}
        reply = files_app.client.post(
            "/chat-messages", json={**body, "conversation_id": conversation}
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["conversation_id"])

    conversation = say("Look at this.", "", [local("image", image)])
    say("And read this.", conversation, [local("document", notes)])
    say("What colour was the dot?", conversation, [])
    messages = prompt_of(upstream, "What colour was the dot?")
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "user", "assistant", "user"
    ]  # fmt: skip
    text, part = messages[1]["content"]
    assert text == {"type": "text", "text": "Look at this."}
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert part["image_url"]["detail"] == "low"
    second = messages[3]["content"]
    assert second.startswith('And read this.\n\n<file name="notes.md">')
    assert "The meeting moved to Friday at ten." in second
    assert messages[5]["content"] == "What colour was the dot?"

    # A memory of one turn: only the last turn, with its file.
    config_url = f"/console/api/apps/{files_app.app_id}/model-config"
    config = service_admin.client.get(config_url).json()["data"]
    config["memory"] = {"window": {"enabled": True, "size": 1}}
    assert service_admin.client.post(config_url, json=config).status_code == 200
    say("Which day?", conversation, [])
    messages = prompt_of(upstream, "Which day?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"].startswith("What colour was the dot?")  # no file: a string
    assert messages[3]["content"] == "Which day?"
    # The conversation's title is asked for in the background (by a worker, in the distributed
    # mode): it lands here, not in the next test's count of the model's calls.
    support.wait_for(
        lambda: any(
            str(record["messages"][-1]["content"]).startswith("Write a short title")
            for record in upstream.stats()["log"]
        ),
        what="the conversation's title asked for",
    )


def test_a_past_turns_file_gone_or_no_longer_taken_is_left_out(
    files_app: ServiceApp, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    """A past turn's image gone from storage is left out of later prompts (the conversation
    goes on); so is a past document once the app stops taking documents. A file of the message
    being sent that is gone fails that message, naming it."""
    image = upload(files_app, "dot.png", PNG, "image/png")
    notes = upload(files_app, "notes.md", NOTES, "text/markdown")

    def say(query: str, conversation: str, files: list[dict[str, Any]]) -> httpx.Response:
        body = {"query": query, "user": "ann", "inputs": {}, "files": files}
        return files_app.client.post(
            "/chat-messages", json={**body, "conversation_id": conversation}
        )

    conversation = str(say("Look at this.", "", [local("image", image)]).json()["conversation_id"])
    assert say("And read this.", conversation, [local("document", notes)]).status_code == 200
    [(key,)] = service_stack.sql("SELECT key FROM upload_files WHERE id = :id", id=image)
    (service_stack.workdir / ".conduit" / "files" / str(key)).unlink()

    reply = say("Still there?", conversation, [])
    assert reply.status_code == 200, reply.text
    messages = prompt_of(upstream, "Still there?")
    assert messages[1]["content"] == "Look at this."  # no image part: a plain string
    assert "The meeting moved to Friday at ten." in messages[3]["content"]

    config_url = f"/console/api/apps/{files_app.app_id}/model-config"
    config = service_admin.client.get(config_url).json()["data"]
    config["file_upload"] = {**config["file_upload"], "allowed_file_types": ["image"]}
    assert service_admin.client.post(config_url, json=config).status_code == 200
    assert say("And now?", conversation, []).status_code == 200
    messages = prompt_of(upstream, "And now?")
    assert messages[3]["content"] == "And read this."  # the document is no longer sent

    failed = say("Look again.", conversation, [local("image", image)])
    assert failed.status_code == 400, failed.text
    assert failed.json()["code"] == "completion_request_error", failed.text
    assert "dot.png is gone from storage" in failed.json()["message"]
    support.wait_for(
        lambda: any(
            str(record["messages"][-1]["content"]).startswith("Write a short title")
            for record in upstream.stats()["log"]
        ),
        what="the conversation's title asked for",
    )


def test_a_streamed_completion_reads_its_document(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(
        service_stack,
        service_admin,
        mode="completion",
        pre_prompt="Summarise the file.",
        file_upload={"enabled": True, "allowed_file_types": ["document"], "number_limits": 1},
    )
    notes = upload(app, "notes.md", NOTES, "text/markdown")
    with app.client.stream(
        "POST",
        "/completion-messages",
        json={
            "inputs": {},
            "user": "ann",
            "response_mode": "streaming",
            "files": [local("document", notes)],
        },
    ) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert any('"event": "message_end"' in e or '"event":"message_end"' in e for e in events)
    (question,) = prompt_of(upstream, "Summarise the file.")
    assert isinstance(question["content"], str)  # no image: the text alone
    assert question["content"].startswith('Summarise the file.\n\n<file name="notes.md">')
    assert "The meeting moved to Friday at ten." in question["content"]


def test_files_are_checked_when_the_message_is_sent_and_nothing_is_stored(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(
        service_stack,
        service_admin,
        mode="chat",
        file_upload={
            "image": {"enabled": True, "number_limits": 2, "transfer_methods": ["local_file"]}
        },
    )
    plain = service_app(service_stack, service_admin, mode="chat")
    other = service_app(
        service_stack,
        service_admin,
        mode="chat",
        file_upload={"image": {"enabled": True}},
    )
    image = upload(app, "dot.png", PNG, "image/png")
    text = upload(app, "notes.txt", b"plain words", "text/plain")
    foreign = upload(other, "theirs.png", PNG, "image/png")
    unknown = "0b6c31a0-8a4c-4b8e-9c51-5e0c2a1d7f11"
    cases: list[tuple[ServiceApp, Any, str]] = [
        (app, {"type": "image"}, "files must be a list"),
        (app, [local("image", image)] * 3, "files: this app takes at most 2 files per message"),
        (app, ["dot.png"], "files[0]: must be an object"),
        (app, [{"type": "photo"}], "files[0].type: must be one of image, document"),
        (app, [local("document", text)], "files[0].type: this app takes image files, not document"),
        (
            app,
            [{"type": "image", "transfer_method": "remote_url", "url": CAT}],
            "files[0].transfer_method: this app takes local_file",
        ),
        (
            app,
            [local("image", image), local("image", unknown)],
            f"files[1].upload_file_id: no file {unknown}",
        ),
        (app, [local("image", foreign)], f"files[0].upload_file_id: no file {foreign}"),
        (
            app,
            [{"type": "image", "transfer_method": "local_file"}],
            "files[0].upload_file_id: required",
        ),
        (app, [local("image", text)], "files[0]: notes.txt is not an image"),
        (plain, [local("image", image)], "files: this app takes no files"),
    ]
    refused(cases, "bob")
    # Nothing was stored, and the model never called.
    nothing_stored((app, plain), "bob")
    assert upstream.stats()["requests"] == 0
    # The same upload, sent right, is taken.
    taken = app.client.post(
        "/chat-messages",
        json={"query": "Look", "user": "bob", "inputs": {}, "files": [local("image", image)]},
    )
    assert taken.status_code == 200, taken.text


def test_a_chatflow_turns_files_are_checked_against_its_features_and_listed(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    """A chatflow (advanced-chat) takes files by its workflow's `file_upload` feature: checked
    as a chat app's are (400 naming the rule, nothing stored), given to the run as
    `sys.files`, and listed with the turn's message."""
    upstream.reset()
    dsl = yaml.safe_load((HERE / "chatflow_memory.yml").read_text())
    plain = published_app(service_stack, service_admin, dsl)
    dsl["workflow"]["features"]["file_upload"] = {
        "enabled": True,
        "allowed_file_types": ["image"],
        "allowed_file_upload_methods": ["local_file"],
        "number_limits": 1,
    }
    flow = published_app(service_stack, service_admin, dsl)
    image = upload(flow, "dot.png", PNG, "image/png")
    cases: list[tuple[ServiceApp, Any, str]] = [
        (flow, [local("image", image)] * 2, "files: this app takes at most 1 files per message"),
        (
            flow,
            [{"type": "image", "transfer_method": "remote_url", "url": CAT}],
            "files[0].transfer_method: this app takes local_file",
        ),
        (flow, [{"type": "photo"}], "files[0].type: must be one of image, document"),
        (plain, [local("image", image)], "files: this app takes no files"),
    ]
    refused(cases, "ann")
    nothing_stored((flow, plain), "ann")

    reply = flow.client.post(
        "/chat-messages",
        json={
            "query": "Look",
            "user": "ann",
            "inputs": {},
            "files": [local("image", image)],
            "response_mode": "blocking",
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["answer"].startswith("Bot: ")
    listed = flow.client.get(
        "/messages", params={"conversation_id": body["conversation_id"], "user": "ann"}
    )
    assert listed.status_code == 200, listed.text
    files = listed.json()["data"][0]["message_files"]
    assert [(f["type"], f["transfer_method"], f["filename"]) for f in files] == [
        ("image", "local_file", "dot.png")
    ]
    assert files[0]["upload_file_id"] == image
    opened = httpx.get(files[0]["url"], timeout=10)  # the signed link, no key
    assert opened.status_code == 200 and opened.content == PNG
