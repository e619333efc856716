"""Speech over HTTP, both tiers (Dify's `/audio-to-text` and `/text-to-audio`), against a real
server whose model endpoint is the fake OpenAI-compatible one (its transcript of a
"recording" is the recording's bytes as text; its "audio" is b"ID3" + voice + ":" + text):
a recording becomes text, a text or a message's answer becomes audio, each only when the app
enables it; a wrong part, type or size is Dify's 4xx, and none of those reaches the model."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Admin, ServiceApp, service_app
from tests.e2e.test_web_api import WebUser, site_code
from tests.support import Stack, assert_envelope

MB = 1024 * 1024
SPEECH = {
    "speech_to_text": {"enabled": True},
    "text_to_speech": {"enabled": True, "voice": "nova", "language": "en-US"},
}


@pytest.fixture
def speaking_app(service_stack: Stack, service_admin: Admin, upstream: Any) -> ServiceApp:
    upstream.reset()
    return service_app(service_stack, service_admin, mode="chat", **SPEECH)


def heard(app: Any, data: bytes, *, name: str = "talk.mp3", mime: str = "audio/mpeg",
          part: str = "file", **form: str) -> Any:  # fmt: skip
    return app.client.post("/audio-to-text", files={part: (name, data, mime)}, data=form)


def audio_requests(upstream: Any) -> list[dict[str, Any]]:
    return [r for r in upstream.stats()["log"] if r["model"] in ("whisper-1", "tts-1")]


def test_a_recording_becomes_its_text(speaking_app: ServiceApp, upstream: Any) -> None:
    said = heard(speaking_app, b"the ferry leaves at nine", user="alice")
    assert said.status_code == 200, said.text
    assert said.json() == {"text": "the ferry leaves at nine"}
    # The part an old SDK named `audio_file`, and a type known by its extension alone.
    older = heard(speaking_app, b"and returns at six", name="talk.m4a",
                  mime="application/octet-stream", part="audio_file")  # fmt: skip
    assert older.json() == {"text": "and returns at six"}, older.text
    [first, second] = audio_requests(upstream)
    assert first["model"] == "whisper-1" and first["messages"][0]["content"] == "talk.mp3: 24 bytes"
    assert second["messages"][0]["content"] == "talk.m4a: 18 bytes"


def test_a_bad_recording_is_refused_before_the_model(
    speaking_app: ServiceApp, service_stack: Stack, service_admin: Admin, upstream: Any
) -> None:
    app = speaking_app
    nothing = app.client.post("/audio-to-text", data={"user": "alice"})
    assert_envelope(nothing, 400, "no_audio_uploaded", "Please upload your audio.")
    misnamed = app.client.post("/audio-to-text", files={"audio": ("a.mp3", b"x", "audio/mpeg")})
    assert_envelope(misnamed, 400, "no_audio_uploaded")
    text = heard(app, b"notes", name="notes.txt", mime="text/plain")
    assert_envelope(text, 415, "unsupported_audio_type", "Audio type not allowed.")
    long = heard(app, b"\x00" * (30 * MB + 1))
    assert_envelope(long, 413, "audio_too_large", "Audio size exceeded.")
    silent = service_app(service_stack, service_admin, mode="chat")  # speech not enabled
    disabled = heard(silent, b"hello")
    assert_envelope(disabled, 400, "bad_request", "Speech to text is not enabled for this app.")
    assert audio_requests(upstream) == []


def test_a_text_or_a_messages_answer_is_read_aloud(speaking_app: ServiceApp, upstream: Any) -> None:
    app = speaking_app
    spoken = app.client.post("/text-to-audio", json={"text": "Good morning.", "user": "alice"})
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["content-type"] == "audio/mpeg"
    assert spoken.content == b"ID3nova:Good morning."  # the app's voice
    chosen = app.client.post(
        "/text-to-audio", json={"text": "Hi.", "user": "alice", "voice": "echo", "streaming": True}
    )
    assert chosen.content == b"ID3echo:Hi."
    asked = app.client.post(
        "/chat-messages",
        json={"inputs": {}, "query": "read me", "user": "alice", "auto_generate_name": False},
    ).json()
    answer = app.client.post(
        "/text-to-audio",
        json={"message_id": asked["message_id"], "text": "not this", "user": "alice"},
    )
    assert answer.content == b"ID3nova:" + asked["answer"].encode()  # the message wins
    # Another user's message is not found; nothing to say is a 400.
    theirs = app.client.post(
        "/text-to-audio", json={"message_id": asked["message_id"], "user": "mallory"}
    )
    assert_envelope(theirs, 404, "not_found", "Message Not Exists.")
    assert_envelope(
        app.client.post("/text-to-audio", json={"user": "alice"}), 400, "invalid_param", "text"
    )
    assert_envelope(
        app.client.post("/text-to-audio", json={"text": 5, "user": "alice"}),
        400,
        "invalid_param",
        "text must be a string",
    )


def test_a_long_text_is_read_in_pieces_joined(speaking_app: ServiceApp, upstream: Any) -> None:
    sentences = [f"Sentence number {n} of a long answer." for n in range(300)]  # ~11,000 chars
    spoken = speaking_app.client.post(
        "/text-to-audio", json={"text": " ".join(sentences), "user": "alice"}
    )
    assert spoken.status_code == 200, spoken.text
    requests = audio_requests(upstream)
    assert len(requests) == 3
    said = [r["messages"][0]["content"].removeprefix("nova: ") for r in requests]
    assert all(len(piece) <= 4000 and piece.endswith("answer.") for piece in said)
    assert " ".join(said) == " ".join(sentences)
    assert spoken.content == b"".join(b"ID3nova:" + piece.encode() for piece in said)


def test_speech_not_enabled_or_refused_by_the_provider(
    service_stack: Stack, service_admin: Admin, upstream: Any
) -> None:
    silent = service_app(service_stack, service_admin, mode="chat")
    assert_envelope(
        silent.client.post("/text-to-audio", json={"text": "hi", "user": "alice"}),
        400,
        "bad_request",
        "Text to speech is not enabled for this app.",
    )
    upstream.reset()
    upstream.control(mode="status-500", times=1)
    app = service_app(service_stack, service_admin, mode="chat", **SPEECH)
    failed = app.client.post("/text-to-audio", json={"text": "hi", "user": "alice"})
    assert_envelope(failed, 400, "completion_request_error", "HTTP 500")


def test_the_web_tier_speaks_for_its_end_user(
    speaking_app: ServiceApp, service_stack: Stack, service_admin: Admin
) -> None:
    code = site_code(service_admin, speaking_app.app_id)
    browser, other = WebUser(service_stack, code), WebUser(service_stack, code)
    said = browser.client.post(
        "/audio-to-text", files={"file": ("talk.wav", b"where is the market", "audio/wav")}
    )
    assert said.status_code == 200, said.text
    assert said.json() == {"text": "where is the market"}
    asked = browser.chat("where is the market")
    spoken = browser.client.post("/text-to-audio", json={"message_id": asked["message_id"]})
    assert spoken.status_code == 200, spoken.text
    assert spoken.content == b"ID3nova:" + asked["answer"].encode()
    theirs = other.client.post("/text-to-audio", json={"message_id": asked["message_id"]})
    assert_envelope(theirs, 404, "not_found")


def test_the_debugger_speaks_as_its_account(speaking_app: ServiceApp, service_admin: Admin) -> None:
    base = f"/console/api/apps/{speaking_app.app_id}"
    said = service_admin.client.post(
        f"{base}/audio-to-text", files={"file": ("q.mp3", b"is the pier open", "audio/mpeg")}
    )
    assert said.status_code == 200, said.text
    assert said.json() == {"text": "is the pier open"}
    asked = service_admin.client.post(
        f"{base}/chat-messages",
        json={"inputs": {}, "query": "is the pier open", "response_mode": "blocking"},
    )
    assert asked.status_code == 200, asked.text
    spoken = service_admin.client.post(
        f"{base}/text-to-audio", json={"message_id": asked.json()["message_id"]}
    )
    assert spoken.status_code == 200, spoken.text
    assert spoken.content == b"ID3nova:" + asked.json()["answer"].encode()
    # A Service API user's message is not the debugger's.
    theirs = speaking_app.client.post(
        "/chat-messages",
        json={"inputs": {}, "query": "hi", "user": "alice", "auto_generate_name": False},
    ).json()
    assert_envelope(
        service_admin.client.post(
            f"{base}/text-to-audio", json={"message_id": theirs["message_id"]}
        ),
        404,
        "not_found",
    )
