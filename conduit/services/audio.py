"""Speech, as Dify's `/audio-to-text` and `/text-to-audio`: an end user's recording turned into
text, and a text (or one of their messages' answer) read aloud, by the app's model provider
(an OpenAI-compatible endpoint's `/audio/transcriptions` and `/audio/speech`, with the models
the settings name; the local model does no speech). Either only when the app enables it
(`speech_to_text`, `text_to_speech` in its features, as `/parameters` shows them)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from conduit.core.llm.provider import SpeechModel
from conduit.db.models import App, EndUser
from conduit.errors import (
    AudioTooLarge,
    BadRequest,
    InvalidParam,
    NoAudioUploaded,
    ProviderNotSupportSpeechToText,
    ProviderNotSupportTextToSpeech,
    UnsupportedAudioType,
)
from conduit.services import app_parameters, messages

# Dify's: what a recording may be (its MIME type `audio/<one of these>`, or its extension),
# and how large.
AUDIO_TYPES = frozenset({"mp3", "mp4", "mpeg", "mpga", "m4a", "wav", "webm", "amr"})
AUDIO_LIMIT_MB = 30
# What one speech request reads at most (OpenAI's limit: 4,096 characters); a longer text is
# read in pieces, cut after a sentence where it can be, their MP3s joined.
SPEECH_PIECE = 4000
TEXT_LIMIT = 100_000
_SENTENCE_END = re.compile(r"(?<=[.!?。！？\n])\s+")


@dataclass(frozen=True)
class Recording:
    filename: str
    mime_type: str
    data: bytes


@dataclass(frozen=True)
class Speech:
    audio: bytes
    content_type: str


def check_recording(filename: str | None, mime_type: str | None, data: bytes) -> Recording:
    """A recording the provider may be given: Dify's types and size (415, 413)."""
    if not data:
        raise NoAudioUploaded()
    subtype = (mime_type or "").lower().partition(";")[0].strip()
    extension = (filename or "").rsplit(".", 1)[-1].lower() if "." in (filename or "") else ""
    if not (
        (subtype.startswith("audio/") and subtype.removeprefix("audio/") in AUDIO_TYPES)
        or extension in AUDIO_TYPES
    ):
        raise UnsupportedAudioType()
    if len(data) > AUDIO_LIMIT_MB * 1024 * 1024:
        raise AudioTooLarge(f"Audio size exceeded. {len(data)} > {AUDIO_LIMIT_MB} MB")
    return Recording(filename or f"audio.{extension or 'mp3'}", subtype or "audio/mpeg", data)


def _features(session: Session, app: App, upload: Any) -> dict[str, Any]:
    return app_parameters.app_parameters(session, app, upload=upload)


def _enabled(features: dict[str, Any], name: str) -> bool:
    setting = features.get(name)
    return isinstance(setting, dict) and bool(setting.get("enabled"))


async def _speech_model(context: Any, app: App) -> SpeechModel | None:
    from conduit.services.runs import model_ref

    model = await context.models.resolve(model_ref(app, context.settings))
    return model if isinstance(model, SpeechModel) else None


async def transcribe(context: Any, *, app: App, recording: Recording) -> str:
    """The recording's text (the app must enable speech to text)."""
    db, settings = context.db, context.settings

    def features() -> dict[str, Any]:
        with db.reads() as session:
            return _features(session, session.merge(app, load=False), settings.upload)

    if not _enabled(await asyncio.to_thread(features), "speech_to_text"):
        raise BadRequest("Speech to text is not enabled for this app.")
    model = await _speech_model(context, app)
    if model is None:
        raise ProviderNotSupportSpeechToText()
    return await model.transcribe(
        recording.data,
        filename=recording.filename,
        mime_type=recording.mime_type,
        model=settings.model.speech_to_text_model,
    )


async def read_aloud(
    context: Any,
    *,
    app: App,
    end_user: Callable[[Session], EndUser],
    message_id: str | None,
    text: str | None,
    voice: str | None,
) -> Speech:
    """`text`, or the answer of the end user's message `message_id` (which wins), spoken by
    the app's provider in `voice` (else the app's, else the settings')."""
    db, settings = context.db, context.settings

    def load() -> tuple[dict[str, Any], str | None]:
        with db.transaction() as session:
            merged = session.merge(app, load=False)
            features = _features(session, merged, settings.upload)
            if not message_id:
                return features, None
            found = messages.get_message(session, merged, end_user(session), message_id)
            return features, found.answer

    features, answer = await asyncio.to_thread(load)
    if not _enabled(features, "text_to_speech"):
        raise BadRequest("Text to speech is not enabled for this app.")
    spoken = answer if message_id else text
    if not spoken or not spoken.strip():
        raise InvalidParam("text is required" if not message_id else "the message has no answer")
    if len(spoken) > TEXT_LIMIT:
        raise InvalidParam(f"text must be at most {TEXT_LIMIT} characters")
    model = await _speech_model(context, app)
    if model is None:
        raise ProviderNotSupportTextToSpeech()
    configured = features.get("text_to_speech") or {}
    chosen = voice or configured.get("voice") or settings.model.text_to_speech_voice
    parts: list[bytes] = []
    content_type = "audio/mpeg"
    for piece in pieces(spoken):
        audio, content_type = await model.speech(
            piece, model=settings.model.text_to_speech_model, voice=str(chosen)
        )
        parts.append(audio)
    return Speech(b"".join(parts), content_type.partition(";")[0] or "audio/mpeg")


def pieces(text: str, size: int = SPEECH_PIECE) -> list[str]:
    """`text` in pieces of at most `size` characters, each ended after a sentence where one
    fits (else cut at `size`)."""
    found: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        while len(sentence) > size:
            if current:
                found.append(current)
                current = ""
            found.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + 1 + len(sentence) > size:
            found.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        found.append(current)
    return found
