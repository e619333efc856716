"""A `ChatModel` for any OpenAI-compatible endpoint: streaming chat completions over aiohttp.

aiohttp, not httpx, on the token path: it relays about 5x more SSE events per core
(design.md §10). One `ClientSession` per model object, created lazily on the running loop, with
an unlimited connector so thousands of concurrent streams never queue for a connection.

Reliability rules:
* Retries (exponential backoff with jitter, honouring a short `Retry-After`) only for retryable
  errors and only before the first delta: a half-streamed answer is never replayed.
* The circuit breaker is consulted before every attempt; retryable failures feed it.
* `read_timeout` bounds the silence between two reads (headers included), not the whole answer.
* Closing or cancelling the iterator closes the HTTP response at once, so the upstream sees the
  disconnect and stops generating (and billing).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from conduit.core.llm.circuit import CircuitBreaker
from conduit.core.llm.errors import (
    ModelBadRequest,
    ModelError,
    ModelNotSupported,
    ModelRateLimited,
    ModelServerError,
    ModelTimeout,
    ProviderAuthError,
    ProviderQuotaExceeded,
)
from conduit.core.llm.provider import (
    ChatMessage,
    Delta,
    Finished,
    GenerationParams,
    StreamItem,
    ToolCall,
    ToolCalls,
    Usage,
)

CHARS_PER_TOKEN = (
    4  # the usual rule of thumb for English; only used when the upstream gives no usage
)
_DRAIN_AFTER_DONE = 0.1  # seconds to wait for the end of the body after [DONE], to reuse the socket
_MAX_ERROR_BODY = 2000


def estimate_tokens(text_chars: int) -> int:
    """Estimated tokens for `text_chars` characters (chars / 4, rounded up)."""
    return math.ceil(text_chars / CHARS_PER_TOKEN)


def estimate_usage(messages: Sequence[ChatMessage], completion_chars: int) -> Usage:
    """Usage when the upstream reports none: chars / 4 for the prompt and for the answer."""
    prompt_chars = sum(len(message.content) for message in messages)
    return Usage(estimate_tokens(prompt_chars), estimate_tokens(completion_chars))


class OpenAICompatibleChatModel:
    """Streams `POST {base_url}/chat/completions`; one instance per endpoint and credentials."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        provider_name: str = "openai_api_compatible",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 2,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        breaker: CircuitBreaker | None = None,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        connection_limit: int = 0,
    ) -> None:
        self._provider_name = provider_name
        self._base_url = base_url.rstrip("/")
        self._url = self._base_url + "/chat/completions"
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **(headers or {}),
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # connect bounds DNS + TCP (+ TLS); sock_read bounds each silence, headers included.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._max_retries = max_retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.breaker = breaker if breaker is not None else CircuitBreaker(name=provider_name)
        self._session = session
        self._owns_session = session is None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._connection_limit = connection_limit

    @property
    def provider_name(self) -> str:
        return self._provider_name

    async def stream_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[StreamItem]:
        """Stream `Delta`s then one `Finished`; raises a `ModelError` subclass."""
        body = orjson.dumps(_request_body(messages, params))
        try:
            upstream = await self._open(body)
        except ModelError as error:
            if not (error.retryable and self._max_retries > 0):
                raise
            upstream = await self._retry_open(body, error)
        completed = False
        try:
            texts = upstream.first
            while texts is not None:
                # Everything one read brought is one Delta: consumers pay per read, not per piece.
                yield Delta(texts[0]) if len(texts) == 1 else Delta("".join(texts), tuple(texts))
                texts = await upstream.next_texts()
            if upstream.tool_calls:
                yield ToolCalls(upstream.calls())
            usage = upstream.usage or estimate_usage(messages, upstream.completion_chars)
            completed = True
            yield Finished(usage, upstream.finish_reason)
        except ModelError as error:
            self.breaker.record_failure(error)
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            mapped = self._transport_error(exc)
            self.breaker.record_failure(mapped)
            raise mapped from exc
        finally:
            if completed:
                await upstream.finish()
            else:
                # Consumer closed/cancelled, or the stream failed: drop the connection now.
                upstream.response.close()

    async def aclose(self) -> None:
        """Close the session this object created (an injected session is its owner's to close)."""
        if not self._owns_session:
            return
        session, self._session = self._session, None
        self._session_loop = None
        if session is not None:
            await session.close()

    # -- speech (SpeechModel) ---------------------------------------------------------------

    async def transcribe(self, audio: bytes, *, filename: str, mime_type: str, model: str) -> str:
        """`POST {base_url}/audio/transcriptions` (multipart): the audio's text."""
        form = aiohttp.FormData()
        form.add_field("model", model)
        form.add_field("file", audio, filename=filename, content_type=mime_type)
        body, _ = await self._call("audio/transcriptions", form)
        try:
            text = orjson.loads(body).get("text")
        except (orjson.JSONDecodeError, AttributeError):
            text = None
        if not isinstance(text, str):
            raise ModelServerError(f"[{self._provider_name}] The transcription has no text.")
        return text

    async def speech(self, text: str, *, model: str, voice: str) -> tuple[bytes, str]:
        """`POST {base_url}/audio/speech`: the text spoken (MP3), and its content type."""
        request = {"model": model, "input": text, "voice": voice, "response_format": "mp3"}
        return await self._call("audio/speech", orjson.dumps(request), json=True)

    async def _call(
        self, path: str, data: bytes | aiohttp.FormData, *, json: bool = False
    ) -> tuple[bytes, str]:
        """One request that is not a chat stream (no retry: the caller's client may ask
        again), through the circuit breaker: the reply's body and content type."""
        self.breaker.before_call()
        headers = {k: v for k, v in self._headers.items() if k not in ("Content-Type", "Accept")}
        if json:
            headers["Content-Type"] = "application/json"
        try:
            async with self._get_session().post(
                f"{self._base_url}/{path}", data=data, headers=headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise await self._http_error(response)
                body = await response.read()
                kind = response.headers.get("Content-Type", "application/octet-stream")
        except ModelError as error:
            self.breaker.record_failure(error)
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            mapped = self._transport_error(exc)
            self.breaker.record_failure(mapped)
            raise mapped from exc
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return body, kind

    # -- one attempt -----------------------------------------------------------------------

    async def _open(self, body: bytes) -> _Upstream:
        """One attempt: POST, check the status, read up to the first piece of text."""
        self.breaker.before_call()  # raises ProviderUnavailable; outside the try on purpose
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self._get_session().post(
                self._url, data=body, headers=self._headers, timeout=self._timeout
            )
            if response.status != 200:
                raise await self._http_error(response)
            upstream = _Upstream(response, self._provider_name)
            upstream.first = await upstream.next_texts()
        except ModelError as error:
            self._close_quietly(response)
            self.breaker.record_failure(error)
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._close_quietly(response)
            mapped = self._transport_error(exc)
            self.breaker.record_failure(mapped)
            raise mapped from exc
        except BaseException:
            self._close_quietly(response)
            self.breaker.release()
            raise
        self.breaker.record_success()
        return upstream

    async def _retry_open(self, body: bytes, first: ModelError) -> _Upstream:
        """The attempts after a retryable failure of the first: at most `max_retries`, each
        after its backoff (tenacity). Only a failed first attempt builds the retry loop: its
        objects reference each other, so each one left about two dozen objects per run to
        the garbage collector's cycle detection, which ran longer for it under load."""
        await asyncio.sleep(self._backoff(1, first))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries),
            wait=self._next_backoff,
            retry=retry_if_exception(lambda exc: isinstance(exc, ModelError) and exc.retryable),
            reraise=True,
        )
        upstream: _Upstream = await retrying(self._open, body)
        return upstream

    def _next_backoff(self, retry_state: RetryCallState) -> float:
        """The wait before the retry loop's next attempt (its first is the run's second)."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return self._backoff(retry_state.attempt_number + 1, error)

    def _backoff(self, failed_attempts: int, error: BaseException | None) -> float:
        """Exponential backoff with jitter (half fixed, half random); a short `Retry-After` wins."""
        if isinstance(error, ModelError):
            retry_after = error.extra.get("retry_after")
            if isinstance(retry_after, float) and retry_after <= self._backoff_max:
                return float(retry_after)
        ceiling = min(self._backoff_max, self._backoff_initial * 2.0 ** (failed_attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None:
            if self._owns_session and self._session_loop is not loop:
                raise RuntimeError(
                    "This OpenAICompatibleChatModel's session belongs to another event loop; "
                    "use one model object per loop (and aclose() it there)."
                )
            return self._session
        # limit=0: no pool ceiling, so concurrent streams never wait for a free connection.
        connector = aiohttp.TCPConnector(
            limit=self._connection_limit, limit_per_host=0, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._session_loop = loop
        return self._session

    @staticmethod
    def _close_quietly(response: aiohttp.ClientResponse | None) -> None:
        if response is not None:
            response.close()

    def _transport_error(self, exc: BaseException) -> ModelError:
        prefix = f"[{self._provider_name}] "
        # Timeout first: aiohttp's timeout errors are also ClientConnectionErrors.
        if isinstance(exc, TimeoutError):
            return ModelTimeout(f"{prefix}The model provider did not answer in time ({exc}).")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return ModelServerError(f"{prefix}The model provider broke off the stream ({exc}).")
        return ModelServerError(f"{prefix}Cannot reach the model provider ({exc}).")

    async def _http_error(self, response: aiohttp.ClientResponse) -> ModelError:
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        status = response.status
        message, code, kind = _error_fields(raw)
        detail = message or response.reason or f"HTTP {status}"
        prefix = f"[{self._provider_name}] "
        if status in (401, 403):
            return ProviderAuthError(f"{prefix}Authentication failed (HTTP {status}): {detail}")
        if status == 404 or code == "model_not_found":
            return ModelNotSupported(f"{prefix}{detail}")
        if status == 429:
            if "insufficient_quota" in (code, kind):
                return ProviderQuotaExceeded(f"{prefix}{detail}")
            return ModelRateLimited(
                f"{prefix}Rate limited: {detail}",
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if 400 <= status < 500:
            return ModelBadRequest(f"{prefix}HTTP {status}: {detail}")
        return ModelServerError(f"{prefix}HTTP {status}: {detail}")


class _Upstream:
    """One open streaming response: SSE parsing and the answer's bookkeeping."""

    def __init__(self, response: aiohttp.ClientResponse, provider_name: str) -> None:
        self.response = response
        self.provider_name = provider_name
        self.reader = _SSEReader(response.content)
        self.first: list[str] | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.completion_chars = 0
        # The calls of functions asked for, by their index in the stream: each call's id,
        # name and arguments come in fragments.
        self.tool_calls: dict[int, dict[str, str]] = {}
        # Some servers ignore "stream": true and answer with one JSON document.
        self._plain_json = response.content_type == "application/json"

    async def next_texts(self) -> list[str] | None:
        """The next pieces of the answer: one, waited for, and every further one already read
        (without waiting); None at the end of the stream."""
        text = await self.next_text()
        if text is None:
            return None
        texts = [text]
        while self.reader.has_events:
            event = self.reader.pop_event()
            if event is None:
                break  # [DONE]: the next call ends the stream
            text = self._apply_chunk(event)
            if text:
                texts.append(text)
        return texts

    async def next_text(self) -> str | None:
        """The next non-empty piece of the answer, or None at the end of the stream."""
        if self._plain_json:
            self._plain_json = False
            raw = await self.response.read()
            try:
                return self._apply_document(orjson.loads(raw))
            except orjson.JSONDecodeError:
                raise ModelServerError(
                    f"[{self.provider_name}] The model provider sent malformed JSON: {raw[:200]!r}"
                ) from None
        while True:
            event = await self.reader.next_event()
            if event is None:
                if not self.reader.saw_done and self.finish_reason is None:
                    raise ModelServerError(
                        f"[{self.provider_name}] The stream ended before the answer was complete."
                    )
                return None
            text = self._apply_chunk(event)
            if text:
                return text

    def _apply_chunk(self, event: Any) -> str | None:
        if not isinstance(event, dict):
            return None
        if "error" in event:
            raise _in_stream_error(event, self.provider_name)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage)
        choices = event.get("choices")
        if not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        if "tool_calls" in delta:
            self._add_calls(delta["tool_calls"])
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.completion_chars += len(content)
            return content
        return None

    def _apply_document(self, document: Any) -> str | None:
        if not isinstance(document, dict):
            return None
        usage = document.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage)
        choices = document.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        self.finish_reason = str(choice.get("finish_reason") or "stop")
        message = choice.get("message")
        if isinstance(message, dict) and "tool_calls" in message:
            self._add_calls(message["tool_calls"])
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and content:
            self.completion_chars += len(content)
            return content
        return None

    def _add_calls(self, fragments: Any) -> None:
        """Fragments of calls of functions: the first of a call names its id and function,
        the rest add to its arguments (a whole document gives each call whole)."""
        if not isinstance(fragments, list):
            return
        for fragment in fragments:
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index")
            if not isinstance(index, int):
                # No index (some servers send each call whole): a new id is a new call.
                index = max(self.tool_calls, default=-1)
                current = self.tool_calls.get(index)
                if current is None or (fragment.get("id") and current["id"] != fragment["id"]):
                    index += 1
            call = self.tool_calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if isinstance(fragment.get("id"), str) and fragment["id"]:
                call["id"] = fragment["id"]
            function = fragment.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str) and function["name"]:
                    call["name"] = function["name"]
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    call["arguments"] += arguments
                    self.completion_chars += len(arguments)
                elif isinstance(arguments, dict):  # some servers send an object
                    call["arguments"] = orjson.dumps(arguments).decode()

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls asked for, in order (a call without an id gets one from its index)."""
        return tuple(
            ToolCall(call["id"] or f"call_{index}", call["name"], call["arguments"])
            for index, call in sorted(self.tool_calls.items())
            if call["name"]
        )

    async def finish(self) -> None:
        """After a complete answer: wait briefly for the body's end so the socket is reused."""
        content = self.response.content
        try:
            if not content.is_eof():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_DRAIN_AFTER_DONE):
                        await content.read()
        finally:
            # release() keeps the connection only if the body was read to its end.
            self.response.release()


_END_OF_EVENT = [b""]


class _SSEReader:
    """Incremental server-sent-events parser over an aiohttp body (events may span reads)."""

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._partial = b""
        self._data: list[bytes] = []
        self._events: deque[bytes] = deque()
        self._eof = False
        self.saw_done = False

    async def next_event(self) -> Any:
        """The next `data:` payload, JSON-decoded; None after `[DONE]` or at the end of the body."""
        while not self._events:
            if self._eof:
                return None
            chunk = await self._content.readany()
            if chunk:
                self.feed(chunk)
            else:
                self._eof = True
                self.feed(b"\n\n")  # an unterminated last event still counts
        return self.pop_event()

    @property
    def has_events(self) -> bool:
        """Whether events already read are waiting (`pop_event` then needs no read)."""
        return bool(self._events)

    def pop_event(self) -> Any:
        """The next event already read (there must be one), like `next_event`."""
        data = self._events.popleft()
        if data == b"[DONE]":
            self.saw_done = True
            self._eof = True
            self._events.clear()
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ModelServerError(
                f"The model provider sent a malformed stream chunk: {data[:200]!r}"
            ) from None

    def feed(self, chunk: bytes) -> None:
        buffer = self._partial + chunk
        if self._data or b"\r" in buffer:
            # Line by line: CR LF line ends, or the rest of an event begun in an earlier read.
            lines = buffer.split(b"\n")
            self._partial = lines.pop()
            self._lines(lines)
            return
        # LF only, at an event's start (the usual): event by event, and the usual event, a
        # single `data: ` line, without splitting it into lines.
        blocks = buffer.split(b"\n\n")
        self._partial = blocks.pop()
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                self._events.append(block[6:])
            else:
                self._lines(block.split(b"\n"))
                self._lines(_END_OF_EVENT)

    def _lines(self, lines: list[bytes]) -> None:
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    self._events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            # Comments (":" keep-alives) and the event/id/retry fields carry nothing we use.


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """The text alone, or the text and the message's parts (its images) as a list."""
    if not message.parts:
        return message.content
    return [{"type": "text", "text": message.content}, *message.parts]


def _message(message: ChatMessage) -> dict[str, Any]:
    """A message as OpenAI's chat format has it, with its calls of functions or the call it
    answers."""
    item: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.tool_calls:
        item["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        item["tool_call_id"] = message.tool_call_id
    return item


def _request_body(messages: Sequence[ChatMessage], params: GenerationParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": params.model,
        "messages": [_message(m) for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if params.tools:
        body["tools"] = list(params.tools)
    body.update(params.extra)
    return body


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _error_fields(raw: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, type) from an error body in OpenAI's shape or a common variant."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw[:_MAX_ERROR_BODY].decode(errors="replace").strip(), None, None
    if not isinstance(data, dict):
        return "", None, None
    error = data.get("error", data)
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        return "", None, None
    message = error.get("message") or error.get("detail") or ""
    code, kind = error.get("code"), error.get("type")
    return (
        str(message)[:_MAX_ERROR_BODY],
        str(code) if code is not None else None,
        str(kind) if kind is not None else None,
    )


def _in_stream_error(event: dict[str, Any], provider_name: str) -> ModelError:
    """An error object sent inside a 200 stream; we cannot know the status, so go by its code."""
    message, code, kind = _error_fields(orjson.dumps(event))
    text = f"[{provider_name}] {message or 'The model provider reported an error mid-stream.'}"
    if "insufficient_quota" in (code, kind):
        return ProviderQuotaExceeded(text)
    if code == "model_not_found":
        return ModelNotSupported(text)
    if code == "rate_limit_exceeded":
        return ModelRateLimited(text)
    return ModelServerError(text)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare for 429s; fall back to our own backoff
