"""The hot routes' table is read from the one router: the run-starting routes are in it, and
nothing else is (a route declared once, served by the fast path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conduit.api.app import create_app
from conduit.api.hot_routes import hot_routes
from conduit.infra.settings import load_settings


def test_the_table_holds_exactly_the_marked_run_starting_routes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    app = create_app(load_settings())  # nothing starts before the lifespan
    table = hot_routes(app.routes)
    assert set(table) == {("POST", "/v1/chat-messages"), ("POST", "/v1/completion-messages")}
    assert {route.path for route in table.values()} == {
        "/v1/chat-messages",
        "/v1/completion-messages",
    }
    # The same paths are FastAPI routes too (OpenAPI, and any other method).
    assert {"/v1/chat-messages", "/v1/completion-messages"} <= set(app.openapi()["paths"])
