"""Request ids, timing headers, health, readiness, metrics and the API docs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import DISTRIBUTED
from tests.e2e.conftest import Admin, AppFactory, running_stack
from tests.support import Stack, wait_for


def log_records(stack: Stack) -> list[dict[str, object]]:
    records = []
    for line in stack.logs().splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class TestRequestIds:
    def test_given_id_is_echoed_and_timing_is_reported(self, stack: Stack) -> None:
        with stack.client() as client:
            response = client.get("/health", headers={"X-Request-ID": "trace-abc-123"})
        assert response.headers["x-request-id"] == "trace-abc-123"
        assert response.headers["x-response-time"].endswith("ms")

    def test_missing_or_unsafe_id_is_replaced(self, stack: Stack) -> None:
        with stack.client() as client:
            generated = client.get("/health").headers["x-request-id"]
            unsafe = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"}).headers[
                "x-request-id"
            ]
        assert len(generated) == 32
        assert unsafe != "bad id\twith spaces" and len(unsafe) == 32

    def test_errors_carry_the_id_too(self, stack: Stack) -> None:
        with stack.client() as client:
            response = client.get("/console/api/apps", headers={"X-Request-ID": "err-1"})
        assert response.status_code == 401
        assert response.headers["x-request-id"] == "err-1"

    def test_the_id_reaches_the_celery_task_started_by_the_request(
        self, stack: Stack, admin: Admin
    ) -> None:
        response = admin.client.post(
            "/console/api/apps",
            json={"name": "traced", "mode": "chat"},
            headers={"X-Request-ID": "req-to-task-42"},
        )
        assert response.status_code == 201

        def task_records() -> list[dict[str, object]]:
            return [
                r
                for r in log_records(stack)
                if r.get("request_id") == "req-to-task-42"
                and str(r.get("logger", "")).startswith("conduit.tasks")
            ]

        records = wait_for(task_records, what="a task log record with the request id")
        assert any("provisioned app" in str(r["message"]) for r in records)

    def test_every_log_line_has_a_request_id_field(self, stack: Stack) -> None:
        records = log_records(stack)
        assert records and all("request_id" in r for r in records)


class TestHealth:
    def test_health_and_ready(self, stack: Stack) -> None:
        with stack.client() as client:
            assert client.get("/health").json() == {"status": "ok"}
            # A distributed server is ready once its worker's consumer has said so.
            ready = wait_for(
                lambda: (answer := client.get("/ready")).status_code == 200 and answer,
                timeout=15,
                what="/ready to answer 200",
            )
        components = ready.json()["components"]
        expected = (
            {"database", "broker", "redis", "consumers"}
            if stack.distributed
            else {"database", "broker"}
        )
        assert set(components) == expected
        assert all(c["status"] == "ok" for c in components.values())

    @pytest.mark.skipif(not DISTRIBUTED, reason="a worker process of its own: distributed only")
    def test_ready_is_503_naming_the_queue_while_no_worker_consumes_it(
        self, tmp_path: Path
    ) -> None:
        with running_stack(tmp_path / "no-consumer") as stack, stack.client() as client:
            assert stack.worker is not None
            wait_for(lambda: client.get("/ready").status_code == 200, timeout=15, what="ready")
            stack.worker.stop()
            stopped = time.monotonic()
            answer = wait_for(
                lambda: (found := client.get("/ready")).status_code == 503 and found,
                timeout=15,
                what="/ready to answer 503",
            )
            noticed = time.monotonic() - stopped
            body = answer.json()
            assert body["code"] == "not_ready"
            assert "consumers" in body["message"]
            error = body["components"]["consumers"]["error"]
            assert "generation" in error and "ops" in error, error
            assert body["components"]["broker"]["status"] == "ok"
            assert noticed <= 10, f"noticed after {noticed:.1f} s"

            stack.worker.start()
            wait_for(lambda: client.get("/ready").status_code == 200, timeout=20, what="ready")


class TestMetrics:
    def test_requests_are_counted_by_route_template_and_status(
        self, stack: Stack, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        admin.client.get(f"/console/api/apps/{app_id}")
        admin.client.get("/console/api/apps/does-not-exist")
        with stack.client() as client:
            text = client.get("/metrics").text
        assert (
            'conduit_http_requests_total{method="GET",route="/console/api/apps/{app_id}",status="200"}'
            in text
        )
        assert (
            'conduit_http_requests_total{method="GET",route="/console/api/apps/{app_id}",status="404"}'
            in text
        )
        assert "conduit_http_request_duration_seconds_bucket" in text
        assert "conduit_http_requests_in_flight" in text
        if not stack.distributed:  # the embedded worker's tasks are counted in the server process
            assert 'conduit_tasks_total{queue="ops",state="succeeded"}' in text


class TestDocs:
    def test_openapi_and_docs_are_served(self, stack: Stack) -> None:
        with stack.client() as client:
            spec = client.get("/openapi.json").json()
            docs = client.get("/docs")
        assert "/console/api/apps" in spec["paths"]
        assert "/console/api/apps/{app_id}/api-keys" in spec["paths"]
        assert docs.status_code == 200 and "swagger" in docs.text.lower()

    @pytest.mark.parametrize(
        ("page", "spec_in_page"), [("/docs", "url: '"), ("/redoc", 'spec-url="')]
    )
    def test_docs_pages_load_every_asset_from_this_server(
        self, stack: Stack, page: str, spec_in_page: str
    ) -> None:
        """Offline, a page whose scripts come from a CDN shows nothing."""
        with stack.client() as client:
            html = client.get(page)
            assert html.status_code == 200, html.text
            assert "://" not in html.text  # no CDN, no web fonts: every URL is on this server
            assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
            assert any(url.endswith(".js") for url in assets), html.text
            spec = html.text.split(spec_in_page, 1)[1].split(spec_in_page[-1], 1)[0]
            for url in [*assets, spec]:
                assert url.startswith("/") and not url.startswith("//"), url
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code)
                assert response.content, url
