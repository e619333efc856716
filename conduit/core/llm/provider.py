"""The model provider interface: streaming chat completion with deltas and token usage.

A provider yields `Delta`s (a piece of the answer, or several that arrived together), then
exactly one `Finished` (with usage); a model asked with `tools` may yield one `ToolCalls`
before it. Cancellation is by closing the async iterator (`aclose()`)
or cancelling the task that iterates it: the provider must then close its upstream stream at
once (HTTP response closed, local generation stopped). Failures are
`conduit.core.llm.errors.ModelError` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@runtime_checkable
class SpeechModel(Protocol):
    """A provider that also turns speech into text and text into speech (an OpenAI-compatible
    endpoint's `/audio/transcriptions` and `/audio/speech`; the local model does neither)."""

    async def transcribe(self, audio: bytes, *, filename: str, mime_type: str, model: str) -> str:
        """The audio's text."""
        ...

    async def speech(self, text: str, *, model: str, voice: str) -> tuple[bytes, str]:
        """The text spoken: the audio's bytes and their content type."""
        ...


@dataclass(frozen=True)
class ToolCall:
    """A function the model asked to call: the call's `id` (its result names it), the
    function's `name` and its `arguments` as the model wrote them (JSON, not checked)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    # Content parts after the text, in the OpenAI chat format (`{"type": "image_url", ...}`):
    # the images a user message was sent with. A provider that takes text only leaves them.
    parts: tuple[dict[str, Any], ...] = ()
    # An assistant message's calls of functions (function calling), and a "tool" message's
    # answer to one of them (`tool_call_id`).
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class GenerationParams:
    model: str
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)
    # Functions the model may call (OpenAI's `tools`: `{"type": "function", "function":
    # {name, description, parameters}}`); a provider without function calling refuses them.
    tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Delta:
    """A piece of the answer, in order. Pieces that reached the provider together (one read
    of its stream) may come as one Delta: `pieces` lists them, in order, and `text` is them
    joined; a Delta of one piece leaves `pieces` empty. A consumer that streams pieces one by
    one (the runner: an event each) uses `parts`; one that wants the text uses `text`."""

    text: str
    pieces: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        return self.pieces or (self.text,)


@dataclass(frozen=True)
class Finished:
    """The end of a generation: token usage (counted by the provider, or estimated)."""

    usage: Usage
    finish_reason: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """The functions the model asked to call instead of (or after) answering, in order; comes
    once, after the last `Delta` and before `Finished`."""

    calls: tuple[ToolCall, ...]


StreamItem = Delta | ToolCalls | Finished


class ChatModel(Protocol):
    """One configured provider (an endpoint with its credentials) serving one or more models."""

    @property
    def provider_name(self) -> str:
        """A short name for usage records and errors, e.g. "openai_api_compatible"."""

    def stream_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[StreamItem]:
        """Stream the answer: `Delta`s then one `Finished`. Raises `ModelError`."""

    async def aclose(self) -> None:
        """Release connections, threads and models."""
