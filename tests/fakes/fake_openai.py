"""A fake OpenAI-compatible server: the edge of the world for tests (the only fake we allow).

Run it as a process:  python -m tests.fakes.fake_openai --port 8399 [--pace-ms 5] [--answer TEXT]
or in a thread:       with fake_openai(pace_ms=5) as fake: fake.base_url  # http://127.0.0.1:N/v1

Endpoints:
    POST /v1/chat/completions   streaming (SSE) or not; answers "You said: <last user message>"
                                (or the configured answer), one word per chunk, `pace_ms` apart
    POST /v1/embeddings         deterministic feature-hashed unit vectors (64 dimensions, or
                                the body's `dimensions`), listed in reverse `index` order; the
                                same modes (status-<NNN>, hang-before-headers) and `api_key`
    POST /v1/rerank             Jina/Cohere-style `{model, query, documents, top_n}`: each
                                document scored by the share of the query's words it holds,
                                `{"results": [{index, relevance_score}]}` best first; the
                                same modes (status-<NNN>) and `api_key`; model
                                `fake:reversed` puts the last document first, `fake:logits`
                                answers 4 * share - 2
    POST /v1/audio/transcriptions  multipart (`model`, `file`): `{"text": the file's bytes as
                                UTF-8}`, so that a test's "recording" is its own transcript
    POST /v1/audio/speech       `{"model", "input", "voice"}`: "audio" (`audio/mpeg`) that is
                                b"ID3" + the voice + ":" + the input, so a test can read it back
    GET  /v1/models             a one-model list
    POST /control               {"mode": M, "times": N}: the next N chat requests behave as M
                                ("ok" clears the queue); also sets "pace_ms", "answer",
                                "usage", "keepalive", "api_key" when given
    POST /reset                 forget queued modes and stats; restore start-up settings
    GET  /stats                 requests, connections, disconnects, per-request log

A request's mode comes from, in order: the `X-Fake-Mode` header, a model named `fake:<mode>`,
the queue filled by /control, else "ok". Modes: ok, no-usage, fragmented, burst (the whole
stream in one write), status-<NNN> (e.g.
status-500, status-401), model-not-found, quota (429 insufficient_quota), hang-before-headers,
hang-before-first-token, drop-mid-stream (closes the connection after half the answer), qa
(question-and-answer pairs about the message's text, one per sentence: `qa_pairs`),
tool-loop (calls the first offered function every time it is offered one).

Agents (`agent_turn`): a request with `tools` calls each function the last user message
names (arguments: the JSON object right after the name, e.g. `eval_expression {"expression":
"2*21"}`, else none), saying "Calling <names>." first; once the calls' results follow the
user message, it answers "Tool said: <results>". A request whose system prompt asks for ReAct
(`Final Answer:`) gets the same in ReAct's format. `stop` sequences cut the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

HANG_LIMIT = 300.0  # a hanging request gives up after this long even if nobody disconnects
POLL = 0.01  # how often a waiting handler checks for a client disconnect

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request: the prompt was rejected."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake***."),
    403: ("permission_denied", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded."),
}


@dataclass
class Settings:
    pace_ms: float = 0.0
    answer: str | None = None
    usage: bool = True  # send the usage chunk when the request asks for it
    keepalive: bool = True  # open each stream with an SSE comment, as some proxies do
    api_key: str | None = None


@dataclass
class RequestRecord:
    id: int
    model: str
    mode: str
    stream: bool
    peer: str
    outcome: str = "pending"  # completed | error-<status> | client-disconnected | dropped | ...
    chunks_sent: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)  # the prompt, as received
    tools: list[str] = field(default_factory=list)  # the functions offered, by name
    # Each offered function's parameters (the names its JSON Schema lists), by its name.
    tool_parameters: dict[str, list[str]] = field(default_factory=dict)
    tool_calls: list[str] = field(default_factory=list)  # the functions it called, by name
    started: float = field(default_factory=time.time)
    ended: float | None = None


class FakeState:
    def __init__(self, settings: Settings) -> None:
        self.initial = settings
        self.settings = Settings(**asdict(settings))
        self.queue: deque[str] = deque()
        self.log: list[RequestRecord] = []
        self.connections: set[str] = set()
        self.stopping = asyncio.Event()

    def reset(self) -> None:
        self.settings = Settings(**asdict(self.initial))
        self.queue.clear()
        self.log.clear()
        self.connections.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.log),
            "connections": len(self.connections),
            "disconnects": sum(r.outcome == "client-disconnected" for r in self.log),
            "completed": sum(r.outcome == "completed" for r in self.log),
            "in_flight": sum(r.outcome == "pending" for r in self.log),
            "queued_modes": list(self.queue),
            "log": [asdict(r) for r in self.log],
        }


def hashed_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector from the text's lower-cased words: texts sharing words are near."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()) or [""]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def answer_tokens(text: str) -> list[str]:
    """Word tokens that concatenate back to `text` exactly."""
    return re.findall(r"\s*\S+(?:\s+$)?", text) or [text]


def _error_body(status: int, code: str | None = None, message: str | None = None) -> dict[str, Any]:
    etype, ecode, emessage = _ERRORS.get(
        status,
        (
            "server_error" if status >= 500 else "invalid_request_error",
            None,
            f"Fake error {status}.",
        ),
    )
    return {
        "error": {
            "message": message or emessage,
            "type": etype,
            "param": None,
            "code": code or ecode,
        }
    }


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts (a vision
    model's input) with a note per image, as `[image]`."""
    if not isinstance(content, list):
        return str(content)
    return " ".join(
        str(part.get("text", "")) if part.get("type") == "text" else f"[{part.get('type')}]"
        for part in content
        if isinstance(part, dict)
    )


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


STATE = web.AppKey("state", FakeState)


def build_app(settings: Settings | None = None) -> web.Application:
    state = FakeState(settings or Settings())
    app = web.Application()
    app[STATE] = state

    async def on_shutdown(_: web.Application) -> None:
        state.stopping.set()  # hanging handlers return instead of waiting for shutdown_timeout

    app.on_shutdown.append(on_shutdown)

    def pick_mode(request: web.Request, model: str) -> str:
        if mode := request.headers.get("X-Fake-Mode"):
            return mode
        if model.startswith("fake:"):
            return model.removeprefix("fake:")
        return state.queue.popleft() if state.queue else "ok"

    async def wait_for_disconnect(request: web.Request, record: RequestRecord) -> None:
        deadline = time.monotonic() + HANG_LIMIT
        while time.monotonic() < deadline and not state.stopping.is_set():
            if _gone(request):
                record.outcome = "client-disconnected"
                return
            await asyncio.sleep(POLL)
        record.outcome = "hang-ended"

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        stream = bool(body.get("stream", False))
        peername = request.transport.get_extra_info("peername") if request.transport else None
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        state.connections.add(peer)
        record = RequestRecord(len(state.log) + 1, model, pick_mode(request, model), stream, peer)
        record.messages = [dict(m) for m in body.get("messages") or [] if isinstance(m, dict)]
        record.tools = [
            str((t.get("function") or {}).get("name"))
            for t in body.get("tools") or []
            if isinstance(t, dict)
        ]
        record.tool_parameters = {
            str((t.get("function") or {}).get("name")): sorted(
                ((t.get("function") or {}).get("parameters") or {}).get("properties") or {}
            )
            for t in body.get("tools") or []
            if isinstance(t, dict)
        }
        state.log.append(record)
        try:
            return await _chat(request, body, record)
        finally:
            record.ended = time.time()
            if record.outcome == "pending":
                record.outcome = "completed"

    async def _chat(
        request: web.Request, body: dict[str, Any], record: RequestRecord
    ) -> web.StreamResponse:
        cfg = state.settings
        mode = record.mode
        if cfg.api_key and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            record.outcome = "error-401"
            return web.json_response(_error_body(401), status=401)
        if mode.startswith("status-"):
            status = int(mode.removeprefix("status-"))
            record.outcome = f"error-{status}"
            return web.json_response(_error_body(status), status=status)
        if mode == "model-not-found":
            record.outcome = "error-404"
            return web.json_response(_error_body(404), status=404)
        if mode == "quota":
            record.outcome = "error-429"
            return web.json_response(
                _error_body(
                    429,
                    "insufficient_quota",
                    "You exceeded your current quota, please check your plan and billing details.",
                ),
                status=429,
            )
        if mode == "hang-before-headers":
            await wait_for_disconnect(request, record)
            return web.Response(status=504)

        messages = body.get("messages") or []
        last_user = next(
            (_text_of(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        text = cfg.answer if cfg.answer is not None else f"You said: {last_user}"
        if mode == "qa":
            text = qa_pairs(last_user)
        turn = agent_turn(
            messages, body.get("tools"), last_user, loop=mode == "tool-loop", extra=cfg.answer
        )
        calls: list[dict[str, Any]] = []
        if turn is not None:
            text, calls = turn
        for stop in body.get("stop") or []:
            if isinstance(stop, str) and stop and stop in text:
                text = text[: text.index(stop)]
        record.tool_calls = [c["function"]["name"] for c in calls]
        tokens = answer_tokens(text) if text else []
        finish = "tool_calls" if calls else "stop"
        if isinstance(body.get("max_tokens"), int) and body["max_tokens"] < len(tokens):
            tokens, finish = tokens[: body["max_tokens"]], "length"
        prompt_tokens = sum(len(_text_of(m.get("content", "")).split()) + 3 for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        cid, created, model = f"chatcmpl-fake-{record.id}", int(time.time()), record.model

        if not record.stream:
            record.chunks_sent = 1
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(tokens),
                                **({"tool_calls": calls} if calls else {}),
                            },
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                }
            )

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
        except ConnectionError:  # the client went away before the response's headers
            record.outcome = "client-disconnected"
            raise

        burst: list[bytes] | None = [] if mode == "burst" else None

        async def send(payload: bytes) -> bool:
            """Write one event; False once the client is gone."""
            if _gone(request):
                record.outcome = "client-disconnected"
                return False
            if burst is not None:  # the whole stream goes out as one write at the end
                burst.append(payload)
                record.chunks_sent += 1
                return True
            try:
                if mode == "fragmented":
                    # Split events across TCP writes so the client must reassemble them.
                    cut = max(1, len(payload) // 3)
                    for piece in (payload[:cut], payload[cut : 2 * cut], payload[2 * cut :]):
                        await response.write(piece)
                        await asyncio.sleep(0.002)
                else:
                    await response.write(payload)
            except (ConnectionError, RuntimeError):
                record.outcome = "client-disconnected"
                return False
            record.chunks_sent += 1
            return True

        async def pause() -> bool:
            """Sleep `pace_ms`, watching for a disconnect; False once the client is gone."""
            deadline = time.monotonic() + cfg.pace_ms / 1000
            while True:
                if _gone(request):
                    record.outcome = "client-disconnected"
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                await asyncio.sleep(min(left, POLL))

        if cfg.keepalive and not await send(b": keep-alive\n\n"):
            return response
        if mode == "hang-before-first-token":
            await wait_for_disconnect(request, record)
            return response
        if not await send(chunk({"role": "assistant", "content": ""})):
            return response
        drop_after = max(1, len(tokens) // 2) if mode == "drop-mid-stream" else None
        for index, token in enumerate(tokens):
            if not await pause() or not await send(chunk({"content": token})):
                return response
            if drop_after is not None and index + 1 >= drop_after:
                record.outcome = "dropped"
                # close(), not abort(): the client must receive the tokens already written.
                if request.transport is not None:
                    request.transport.close()
                return response
        for index, call in enumerate(calls):
            # A call's id and name first, then its arguments in two fragments (as OpenAI).
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {**call, "index": index, "function": {"name": call["function"]["name"]}}
            head["function"]["arguments"] = ""
            fragments = [head] + [
                {"index": index, "function": {"arguments": part}}
                for part in (arguments[:half], arguments[half:])
                if part
            ]
            for fragment in fragments:
                if not await pause() or not await send(chunk({"tool_calls": [fragment]})):
                    return response
        if not await pause() or not await send(chunk({}, finish)):
            return response
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage and cfg.usage and mode != "no-usage":
            usage_chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            if not await send(b"data: " + json.dumps(usage_chunk).encode() + b"\n\n"):
                return response
        if await send(b"data: [DONE]\n\n"):
            with contextlib.suppress(ConnectionError, RuntimeError):
                if burst:
                    await response.write(b"".join(burst))
                await response.write_eof()
        return response

    def logged(request: web.Request, model: str, inputs: list[str]) -> RequestRecord:
        """A request that is not a chat's, in the log: its inputs as its messages."""
        peername = request.transport.get_extra_info("peername") if request.transport else None
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        record = RequestRecord(len(state.log) + 1, model, pick_mode(request, model), False, peer)
        record.messages = [{"role": "input", "content": text} for text in inputs]
        state.log.append(record)
        return record

    def refusal(request: web.Request, record: RequestRecord) -> web.Response | None:
        cfg = state.settings
        if cfg.api_key and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            record.outcome = "error-401"
            return web.json_response(_error_body(401), status=401)
        if record.mode.startswith("status-"):
            status = int(record.mode.removeprefix("status-"))
            record.outcome = f"error-{status}"
            return web.json_response(_error_body(status), status=status)
        return None

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body.get("model", ""))
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        record = logged(request, model, [str(t) for t in texts])
        try:
            refused = refusal(request, record)
            if refused is not None:
                return refused
            if record.mode == "hang-before-headers":
                await wait_for_disconnect(request, record)
                return web.Response(status=504)
            dimensions = int(body.get("dimensions") or 64)
            data = [
                {"object": "embedding", "index": i, "embedding": hashed_vector(str(t), dimensions)}
                for i, t in enumerate(texts)
            ]
            tokens = sum(len(str(t).split()) for t in texts)
            return web.json_response(
                {
                    "object": "list",
                    "data": data[::-1],
                    "model": model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )
        finally:
            record.ended = time.time()
            if record.outcome == "pending":
                record.outcome = "completed"

    async def rerank(request: web.Request) -> web.Response:
        """Jina/Cohere-style rerank: each document scored by the share of the query's words
        it holds (deterministic), best first, `top_n` of them."""
        body = await request.json()
        model = str(body.get("model", ""))
        query, documents = str(body.get("query", "")), [str(d) for d in body.get("documents", [])]
        record = logged(request, model, [query, *documents])
        try:
            refused = refusal(request, record)
            if refused is not None:
                return refused
            asked = set(re.findall(r"[a-z0-9]+", query.lower()))
            scored = [
                (i, len(asked & set(re.findall(r"[a-z0-9]+", d.lower()))) / (len(asked) or 1))
                for i, d in enumerate(documents)
            ]
            if record.mode == "reversed":  # the last document best: an order a test can tell
                scored = [(i, (i + 1) / len(documents)) for i in range(len(documents))]
            elif record.mode == "logits":  # unbounded scores, as cross-encoders give
                scored = [(i, 4.0 * s - 2.0) for i, s in scored]
            scored.sort(key=lambda pair: -pair[1])
            top = int(body.get("top_n") or len(scored))
            return web.json_response(
                {
                    "model": model,
                    "results": [{"index": i, "relevance_score": s} for i, s in scored[:top]],
                    "usage": {"total_tokens": sum(len(d.split()) for d in documents)},
                }
            )
        finally:
            record.ended = time.time()
            if record.outcome == "pending":
                record.outcome = "completed"

    async def transcriptions(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        data = upload.file.read() if isinstance(upload, web.FileField) else b""
        name = upload.filename if isinstance(upload, web.FileField) else ""
        record = logged(request, str(form.get("model", "")), [f"{name}: {len(data)} bytes"])
        refused = refusal(request, record)
        if refused is not None:
            return refused
        record.outcome = "completed"
        return web.json_response({"text": data.decode("utf-8", errors="replace")})

    async def speech(request: web.Request) -> web.Response:
        body = await request.json()
        text, voice = str(body.get("input", "")), str(body.get("voice", ""))
        record = logged(request, str(body.get("model", "")), [f"{voice}: {text}"])
        refused = refusal(request, record)
        if refused is not None:
            return refused
        record.outcome = "completed"
        return web.Response(body=b"ID3" + f"{voice}:{text}".encode(), content_type="audio/mpeg")

    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def control(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if "mode" in body:
            mode, times = str(body["mode"]), int(body.get("times", 1))
            if mode == "ok":
                state.queue.clear()
            else:
                state.queue.extend([mode] * times)
        for key in ("pace_ms", "answer", "usage", "keepalive", "api_key"):
            if key in body:
                setattr(state.settings, key, body[key])
        return web.json_response(
            {"settings": asdict(state.settings), "queued_modes": list(state.queue)}
        )

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/embeddings", embeddings)
    app.router.add_post("/v1/rerank", rerank)
    app.router.add_post("/rerank", rerank)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/control", control)
    app.router.add_post("/reset", reset)
    app.router.add_get("/stats", stats)
    return app


_REACT_TOOLS = re.compile(r'\("action", one of: ([^)]*)\)')


def agent_turn(
    messages: list[dict[str, Any]],
    tools: Any,
    last_user: str,
    *,
    loop: bool = False,
    extra: str | None = None,
) -> tuple[str, list[dict[str, Any]]] | None:
    """An agent's turn (see the module's docstring): the text and the calls; None when the
    request is not an agent's. `extra` (the configured answer) follows an answer from the
    tools' results."""
    more = f" {extra}" if extra else ""
    system = next((_text_of(m.get("content")) for m in messages if m.get("role") == "system"), "")
    if isinstance(tools, list) and tools:
        names = [str((t.get("function") or {}).get("name")) for t in tools if isinstance(t, dict)]
        after = messages[_last_user_index(messages) + 1 :]
        results = [_text_of(m.get("content")) for m in after if m.get("role") == "tool"]
        wanted = names[:1] if loop else [n for n in names if re.search(rf"\b{n}\b", last_user)]
        if (results and not loop) or not wanted:
            said = f"Tool said: {'; '.join(results)}{more}"
            return (said if results else f"You said: {last_user}"), []
        calls = [
            {
                "id": f"call_{n}_{len(after)}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(_arguments(last_user, n))},
            }
            for n in wanted
        ]
        return f"Calling {', '.join(wanted)}.", calls
    found = _REACT_TOOLS.search(system) if "Final Answer:" in system else None
    if found is None:
        return None
    if last_user.startswith("Observation:"):
        observed = last_user.removeprefix("Observation:").split("\n\n", 1)[0].strip()
        return f"Thought: I know the answer.\nFinal Answer: Tool said: {observed}{more}", []
    names = [n.strip() for n in found.group(1).split(",") if n.strip() and n.strip() != "none"]
    wanted = [n for n in names if re.search(rf"\b{n}\b", last_user)]
    if not wanted:
        return f"Thought: I need no tool.\nFinal Answer: You said: {last_user}", []
    action = {"action": wanted[0], "action_input": _arguments(last_user, wanted[0])}
    return (
        f"Thought: I should use {wanted[0]}.\nAction:\n```\n{json.dumps(action)}\n```\n"
        "Observation: (the fake would make one up)"
    ), []


def _last_user_index(messages: list[dict[str, Any]]) -> int:
    return max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)


def _arguments(text: str, name: str) -> dict[str, Any]:
    """The JSON object right after `name` in `text` (none: {})."""
    found = re.search(rf"\b{name}\b\s*(?=\{{)", text)
    if found is None:
        return {}
    try:
        value, _ = json.JSONDecoder().raw_decode(text, found.end())
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def qa_pairs(message: str) -> str:
    """Mode `qa` (a model named `fake:qa`): Dify's Q&A format about the text of the message
    (inside `<text>…</text>` when it has them): each sentence an answer, asked about by its
    first three words."""
    found = re.search(r"<text>(.*?)</text>", message, re.DOTALL)
    text = (found.group(1) if found else message).strip()
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return "\n".join(
        f"Q{n}: What does the text say about {' '.join(s.split()[:3])}?\nA{n}: {s}"
        for n, s in enumerate(sentences, start=1)
    )


class FakeOpenAIClient:
    """Controls a running fake over HTTP (the same API for the thread and the process)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client's `base_url` should be (OpenAI style, with /v1)."""
        return f"{self.url}/v1"

    def control(self, mode: str | None = None, times: int = 1, **settings: Any) -> dict[str, Any]:
        body: dict[str, Any] = dict(settings)
        if mode is not None:
            body.update(mode=mode, times=times)
        import httpx  # imported here: the server process itself never needs it

        result: dict[str, Any] = httpx.post(f"{self.url}/control", json=body, timeout=5).json()
        return result

    def stats(self) -> dict[str, Any]:
        import httpx

        result: dict[str, Any] = httpx.get(f"{self.url}/stats", timeout=5).json()
        return result

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.url}/reset", timeout=5).raise_for_status()

    def wait_for_stats(self, check: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Poll /stats until `check(stats)` is true; returns those stats or raises AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.stats()
            if check(current):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"fake OpenAI stats never matched: {current}")
            time.sleep(0.02)


class FakeOpenAIThread(FakeOpenAIClient):
    """The fake on its own event loop in a daemon thread of this process."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as error:
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]

    async def _serve(self) -> None:
        app = build_app(self.settings)
        self._app = app
        # A short shutdown_timeout: hanging handlers are told to stop, and must not hold up tests.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._loop = self._thread = None


class FakeOpenAIProcess(FakeOpenAIClient):
    """The fake as a child process (`python -m tests.fakes.fake_openai`)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        if port == 0:
            from tests.support import free_port

            port = free_port()
        super().__init__(host, port)
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import httpx

        args = [
            sys.executable,
            "-m",
            "tests.fakes.fake_openai",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        args += ["--pace-ms", str(self.settings.pace_ms)]
        if self.settings.answer is not None:
            args += ["--answer", self.settings.answer]
        if self.settings.api_key:
            args += ["--api-key", self.settings.api_key]
        if not self.settings.usage:
            args.append("--no-usage")
        if not self.settings.keepalive:
            args.append("--no-keepalive")
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the fake OpenAI server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def fake_openai(
    *,
    pace_ms: float = 0.0,
    answer: str | None = None,
    api_key: str | None = None,
    usage: bool = True,
    keepalive: bool = True,
    port: int = 0,
) -> Iterator[FakeOpenAIThread]:
    """Run the fake in a thread of this process; yields a handle (`.base_url`, `.control()`, `.stats()`)."""
    server = FakeOpenAIThread(Settings(pace_ms, answer, usage, keepalive, api_key), port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def fake_openai_process(
    *,
    pace_ms: float = 0.0,
    answer: str | None = None,
    api_key: str | None = None,
    usage: bool = True,
    keepalive: bool = True,
    port: int = 0,
) -> Iterator[FakeOpenAIProcess]:
    """Run the fake as a subprocess (a free port unless given); yields the same handle API."""
    server = FakeOpenAIProcess(Settings(pace_ms, answer, usage, keepalive, api_key), port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8399)
    parser.add_argument("--pace-ms", type=float, default=0.0, help="milliseconds between chunks")
    parser.add_argument("--answer", default=None, help="a fixed answer (default: echo the user)")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--no-usage", action="store_true", help="never send a usage chunk")
    parser.add_argument(
        "--no-keepalive", action="store_true", help="no SSE comment at stream start"
    )
    args = parser.parse_args(argv)
    settings = Settings(
        args.pace_ms, args.answer, not args.no_usage, not args.no_keepalive, args.api_key
    )
    print(f"fake-openai listening on http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(
        build_app(settings),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
