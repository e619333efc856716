"""A real external knowledge service for the tests (aiohttp, in a thread, on 127.0.0.1 and a
free port), speaking Dify's External Knowledge API: `POST /retrieval` with `Authorization:
Bearer <key>` and `{knowledge_id, query, retrieval_setting: {top_k, score_threshold}}`,
answering `{"records": [{content, score, title, metadata}]}` from an in-memory corpus, scored
by the share of the query's words a passage holds. Errors as the API's convention has them:
403 `{"error_code": 1001|1002}` for a missing or wrong key, 404 `{"error_code": 2001}` for an
unknown knowledge id. `fail_with(status)` makes every answer that status until cleared;
`answer_raw(body)` makes every answer that JSON body (whatever was asked) until cleared: a
service that ignores `top_k` and the threshold, or answers records of the wrong shape.

    with external_knowledge(key="secret") as service:
        service.add("kb-1", "The ferry leaves at nine.", title="ferry.md")
        service.base_url        # http://127.0.0.1:N (the endpoint: /retrieval is added)
        service.requests        # every request's JSON body, in order
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class ExternalKnowledgeService:
    def __init__(self, key: str) -> None:
        self.key = key
        self.port = 0
        self._corpus: dict[str, list[dict[str, Any]]] = {}
        self._requests: list[dict[str, Any]] = []
        self._status: int | None = None
        self._raw: Any = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def add(self, knowledge_id: str, content: str, *, title: str, **metadata: Any) -> None:
        with self._lock:
            self._corpus.setdefault(knowledge_id, []).append(
                {"content": content, "title": title, "metadata": metadata}
            )

    def fail_with(self, status: int | None) -> None:
        with self._lock:
            self._status = status

    def answer_raw(self, body: Any) -> None:
        with self._lock:
            self._raw = body

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/retrieval", self._retrieval)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self.port = int(listener.getsockname()[1])
        await web.SockSite(self._runner, listener).start()

    async def _retrieval(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(body if isinstance(body, dict) else {"raw": raw.decode()})
            status, raw = self._status, self._raw
            corpus = {k: list(v) for k, v in self._corpus.items()}
        if status is not None:
            return web.Response(status=status, text=f"failing with {status}")
        if raw is not None:
            return web.json_response(raw)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _error(403, 1001, "Invalid Authorization header format.")
        if header.removeprefix("Bearer ") != self.key:
            return _error(403, 1002, "Authorization failed")
        if not isinstance(body, dict) or body.get("knowledge_id") not in corpus:
            return _error(404, 2001, "The knowledge does not exist")
        setting = body.get("retrieval_setting") or {}
        asked = _words(str(body.get("query", "")))
        scored = []
        for passage in corpus[body["knowledge_id"]]:
            score = len(asked & _words(passage["content"])) / len(asked) if asked else 0.0
            if score >= float(setting.get("score_threshold") or 0.0) and score > 0:
                scored.append({**passage, "score": round(score, 4)})
        scored.sort(key=lambda item: -item["score"])
        return web.json_response({"records": scored[: int(setting.get("top_k") or 5)]})


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error_code": code, "error_msg": message}, status=status)


@contextmanager
def external_knowledge(key: str = "ek-secret-key-0001") -> Iterator[ExternalKnowledgeService]:
    service = ExternalKnowledgeService(key)
    service.start()
    try:
        yield service
    finally:
        service.stop()
