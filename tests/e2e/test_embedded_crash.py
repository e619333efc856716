"""kill -9 of an embedded server mid-stream (its runs, its event logs and its worker die with
it): at its next start every run it left `running` ends `failed` with the answer it had
checkpointed (about every second while it streamed), a prefix of what its client saw; nothing
stays `running`, and the restarted server serves new runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DISTRIBUTED
from tests.e2e.conftest import make_admin, running_stack, service_app
from tests.e2e.sse import answer_of, frames

pytestmark = pytest.mark.skipif(DISTRIBUTED, reason="the embedded mode's own recovery")


def test_kill_9_mid_stream_then_restart_keeps_each_runs_checkpoint(
    tmp_path: Path, upstream: Any
) -> None:
    upstream.control(answer=" ".join(f"w{n}" for n in range(200)), pace_ms=20)
    with running_stack(
        tmp_path, CONDUIT_MODEL_BASE_URL=upstream.base_url, CONDUIT_MODEL_MAX_RETRIES="0"
    ) as stack:
        admin = make_admin(stack)
        app = service_app(stack, admin)
        seen: list[list[Any]] = [[], []]

        def stream(index: int) -> None:
            try:
                with app.client.stream(
                    "POST",
                    "/chat-messages",
                    json={
                        "inputs": {},
                        "query": "hi",
                        "user": f"u{index}",
                        "response_mode": "streaming",
                    },
                ) as response:
                    for frame in frames(response):
                        seen[index].append(frame)
            except httpx.HTTPError:
                pass  # the server died under it

        clients = [threading.Thread(target=stream, args=(n,)) for n in range(2)]
        for client in clients:
            client.start()
        time.sleep(2.5)  # about half of each answer, past two checkpoints
        stack.server.kill()
        for client in clients:
            client.join(10)
        stack.server.start()
        stack.wait_ready()
        rows = stack.sql("SELECT status, answer, error FROM messages ORDER BY created_at")
        assert len(rows) == 2
        for status, answer, error in rows:
            assert status == "failed" and "interrupted" in str(error)
            assert answer, "the checkpoint was lost"
        streamed = {answer_of(frames_) for frames_ in seen}
        for _, answer, _ in rows:
            assert any(str(text).startswith(str(answer)) for text in streamed), (answer, streamed)
        # The restarted server runs new work.
        again = app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": "again", "user": "u0", "response_mode": "blocking"},
        )
        assert again.status_code == 200, again.text
        admin.client.close()
        app.client.close()
    upstream.reset()
