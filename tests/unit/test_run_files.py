"""What an app's `file_upload` takes (both of Dify's shapes), and where a run's files go in its
prompt (the last user message: text after the question, parts after the text)."""

from __future__ import annotations

from conduit.core.apps.chat import with_files
from conduit.core.llm.openai_compatible import _request_body
from conduit.core.llm.provider import ChatMessage, GenerationParams
from conduit.services.run_files import FileParts, upload_policy, url_name


def test_the_older_image_shape_and_the_newer_one() -> None:
    assert upload_policy({}) is None
    assert upload_policy({"file_upload": {"image": {"enabled": False}}}) is None
    assert upload_policy({"file_upload": {"image": {"enabled": True}}}) == (
        ["image"],
        ["remote_url", "local_file"],
        3,
        "high",
    )
    older = {"image": {"enabled": True, "number_limits": 2, "detail": "low",
                       "transfer_methods": ["local_file"]}}  # fmt: skip
    assert upload_policy({"file_upload": older}) == (["image"], ["local_file"], 2, "low")
    newer = {"enabled": True, "allowed_file_types": ["document"], "number_limits": 5,
             "allowed_file_upload_methods": ["remote_url"]}  # fmt: skip
    assert upload_policy({"file_upload": newer}) == (["document"], ["remote_url"], 5, "high")
    assert upload_policy({"file_upload": {"enabled": True}}) == (
        ["image"],
        ["remote_url", "local_file"],
        3,
        "high",
    )


def test_files_go_into_the_last_user_message_and_onto_the_wire_as_parts() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "high"}}
    prompt = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Earlier"),
        ChatMessage("assistant", "Yes"),
        ChatMessage("user", "What is this?"),
    ]
    changed = with_files(prompt, '<file name="a.md">\nA\n</file>', [image])
    assert changed[:3] == prompt[:3]
    assert changed[3] == ChatMessage(
        "user", 'What is this?\n\n<file name="a.md">\nA\n</file>', (image,)
    )
    assert with_files(prompt, "", []) == prompt
    wire = _request_body(changed, GenerationParams(model="m"))["messages"]
    assert wire[1] == {"role": "user", "content": "Earlier"}  # text alone stays a string
    assert wire[3]["content"] == [{"type": "text", "text": changed[3].content}, image]


def test_a_url_names_its_file_by_its_last_segment_else_its_host() -> None:
    assert url_name("https://files.example/docs/Q3%20report.pdf?x=1") == "Q3 report.pdf"
    assert url_name("https://files.example/") == "files.example"
    assert url_name("https://files.example") == "files.example"


def test_a_senders_name_and_url_cannot_end_the_block_they_are_named_in() -> None:
    reader = FileParts(db=None, storage=None)  # type: ignore[arg-type]  # no upload is read
    sent = {
        "type": "document",
        "transfer_method": "remote_url",
        "url": 'https://x.example/a"><b.pdf',
        "filename": 'a"></file><b.pdf',
    }
    [(at, text, parts)] = reader._read("tenant", "app", [sent])
    assert at is None and parts == []
    assert text == (
        '<file name="a&quot;&gt;&lt;/file&gt;&lt;b.pdf" type="document"'
        ' url="https://x.example/a&quot;&gt;&lt;b.pdf"></file>'
    )


def test_a_past_turns_files_go_into_that_turns_question() -> None:
    prompt = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Look at this."),
        ChatMessage("assistant", "A dot."),
        ChatMessage("user", "What colour?"),
    ]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}
    changed = with_files(prompt, "", [image], at=1)
    assert changed[1] == ChatMessage("user", "Look at this.", (image,))
    assert changed[0] == prompt[0] and changed[2:] == prompt[2:]
    assert with_files(prompt, "<file/>", [], at=3)[3].content == "What colour?\n\n<file/>"
    assert with_files(prompt, "<file/>", [], at=2) == prompt  # not a question: left alone


def test_files_are_read_per_turn_in_the_order_first_met() -> None:
    reader = FileParts(db=None, storage=None)  # type: ignore[arg-type]  # no upload is read
    url = {"transfer_method": "remote_url", "url": "https://x.example/a.png", "detail": "low"}
    files = [
        {**url, "type": "image", "filename": "a.png", "at": 1},
        {"type": "custom", "transfer_method": "local_file", "filename": "b.bin"},
        {**url, "type": "document", "filename": "c.pdf", "at": 1},
    ]
    first, now = reader._read("tenant", "app", files)
    assert first.at == 1 and now.at is None
    assert [part["image_url"]["url"] for part in first.parts] == ["https://x.example/a.png"]
    assert first.text == '<file name="c.pdf" type="document" url="https://x.example/a.png"></file>'
    assert now == (None, '<file name="b.bin" type="custom"></file>', [])
