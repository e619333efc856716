"""Speech's pure parts: a long text cut into pieces the provider reads (after a sentence
where one fits), a recording's checks, and which providers speak."""

from __future__ import annotations

import pytest

from conduit.core.llm.local import LocalChatModel
from conduit.core.llm.openai_compatible import OpenAICompatibleChatModel
from conduit.core.llm.provider import SpeechModel
from conduit.errors import AudioTooLarge, NoAudioUploaded, UnsupportedAudioType
from conduit.services.audio import check_recording, pieces


def test_pieces_end_after_a_sentence_and_keep_every_word() -> None:
    text = "One two. Three four five! Six? " + "x" * 25 + " End."
    found = pieces(text, size=20)
    assert found == ["One two.", "Three four five!", "Six?", "x" * 20, "xxxxx End."]
    assert all(len(piece) <= 20 for piece in found)
    assert pieces("Short.") == ["Short."]
    assert pieces("  ") == []


def test_a_recording_is_checked_as_dify_does() -> None:
    assert check_recording("a.mp3", "audio/mpeg", b"x").mime_type == "audio/mpeg"
    assert check_recording("a.M4A", "application/octet-stream", b"x").filename == "a.M4A"
    assert check_recording(None, "audio/wav; codecs=1", b"x").filename == "audio.mp3"
    with pytest.raises(NoAudioUploaded):
        check_recording("a.mp3", "audio/mpeg", b"")
    with pytest.raises(UnsupportedAudioType):
        check_recording("a.txt", "text/plain", b"x")
    with pytest.raises(UnsupportedAudioType):
        check_recording("a.ogg", "audio/ogg", b"x")
    with pytest.raises(AudioTooLarge):
        check_recording("a.mp3", "audio/mpeg", b"\x00" * (30 * 1024 * 1024 + 1))


def test_only_an_openai_compatible_endpoint_speaks() -> None:
    assert isinstance(OpenAICompatibleChatModel("http://127.0.0.1:9/v1"), SpeechModel)
    assert not issubclass(LocalChatModel, SpeechModel)
