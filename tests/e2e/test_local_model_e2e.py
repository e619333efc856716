"""The bundled local model through the whole server, and `conduit quickstart` (slow: real model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from conduit.core.llm.local import local_model_available
from tests.e2e.conftest import make_admin, running_stack, service_app
from tests.e2e.sse import answer_of, frames

AVAILABLE, HOW_TO = local_model_available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not AVAILABLE, reason=HOW_TO)]
QUESTION = "What is the capital of France? Answer in one sentence."


def test_the_local_model_answers_a_real_prompt(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        admin = make_admin(stack)
        app = service_app(
            stack,
            admin,
            mode="chat",
            model={"completion_params": {"temperature": 0, "max_tokens": 40}},
        )
        response = app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": QUESTION, "user": "u", "auto_generate_name": False},
        )
        assert response.status_code == 200, response.text
        assert "Paris" in response.json()["answer"]
        body = {
            "inputs": {},
            "query": QUESTION,
            "user": "u",
            "response_mode": "streaming",
            "auto_generate_name": False,
        }
        with app.client.stream("POST", "/chat-messages", json=body) as streamed:
            items = [f for f in frames(streamed) if f.event != "ping"]
        assert items[-1].event == "message_end"
        assert "Paris" in answer_of(items)
        app.client.close()
        admin.client.close()


def test_quickstart_prints_a_curl_that_streams_from_the_running_server(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        first = stack.cli("quickstart")
        assert first.returncode == 0, first.stderr
        again = stack.cli("quickstart")
        assert again.returncode == 0, again.stderr
        key = re.search(r"API key (app-[A-Za-z0-9]{24})", first.stdout)
        assert key is not None, first.stdout
        assert key.group(1) in again.stdout  # reused, not a new key each time
        assert "reusing" in again.stdout
        curl = next(line for line in first.stdout.splitlines() if line.startswith("curl -N "))
        assert f"Bearer {key.group(1)}" in curl
        body = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
        url = curl.split()[2].replace("5001", str(stack.port))
        with httpx.stream(
            "POST",
            url,
            json={**body, "auto_generate_name": False},
            headers={"Authorization": f"Bearer {key.group(1)}"},
            timeout=60,
        ) as response:
            items = [f for f in frames(response) if f.event != "ping"]
        assert items[-1].event == "message_end"
        assert answer_of(items)
