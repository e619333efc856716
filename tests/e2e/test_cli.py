"""The `conduit` command: settings errors, a taken port, create-admin, quickstart, migrate,
worker guard, graceful stop, and metrics summed over several server processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import DISTRIBUTED, stack_env
from tests.e2e.conftest import running_stack
from tests.support import CONDUIT, Stack, fresh_pg_database, fresh_redis_url, release_redis_url


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONDUIT, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def create_admin_args(
    email: str, *, password: str = "password-1", workspace: str = "A"
) -> list[str]:
    return ["create-admin", "--email", email, "--password", password, "--workspace", workspace]


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    return stack_env(tmp_path, database_url=None, redis_url=None, broker_url=None)


class TestBadSettings:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("CONDUIT_DATABASE_POOL_SIZE", "lots"),
            ("CONDUIT_DATABASE_URL", "mysql://db/app"),
            ("CONDUIT_REDIS_URL", "http://localhost:6379"),
            ("CONDUIT_HTTP_PORT", "70000"),
            ("CONDUIT_LOG_LEVEL", "LOUD"),
        ],
    )
    def test_a_bad_value_stops_the_start_with_one_line_naming_it(
        self, tmp_path: Path, embedded_env: dict[str, str], name: str, value: str
    ) -> None:
        result = run(["serve"], {**embedded_env, name: value}, tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {name}: "), lines[0]
        assert not (tmp_path / ".conduit" / "conduit.db").exists()

    def test_several_workers_need_the_distributed_mode(
        self, tmp_path: Path, embedded_env: dict[str, str]
    ) -> None:
        result = run(["serve", "--workers", "2"], embedded_env, tmp_path)
        assert result.returncode == 2
        assert "CONDUIT_HTTP_WORKERS" in result.stderr and "CONDUIT_BROKER_URL" in result.stderr

    def test_worker_and_beat_need_a_broker(
        self, tmp_path: Path, embedded_env: dict[str, str]
    ) -> None:
        for command in ("worker", "beat"):
            result = run([command], embedded_env, tmp_path)
            assert result.returncode == 2
            assert "CONDUIT_BROKER_URL" in result.stderr


class TestTakenPort:
    def test_serve_on_a_taken_port_stops_with_one_line_before_starting_anything(
        self, tmp_path: Path, embedded_env: dict[str, str]
    ) -> None:
        with socket.socket() as holder:  # e.g. the server the README's first command started
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            result = run(["serve", "--port", str(port)], embedded_env, tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0] == (
            f"error: 127.0.0.1:{port} is already in use (another conduit serve?); "
            "stop it or pass --port"
        )
        output = result.stdout + result.stderr
        assert " ready: " not in output and "startup" not in output  # nothing was started
        assert not (tmp_path / ".conduit").exists()


class TestCreateAdmin:
    def test_second_email_makes_a_second_workspace_and_same_email_is_reused(
        self, tmp_path: Path, embedded_env: dict[str, str]
    ) -> None:
        first = run(
            create_admin_args("a@example.com"),
            embedded_env,
            tmp_path,
        )
        assert first.returncode == 0, first.stderr
        assert "created" in first.stdout
        again = run(
            create_admin_args("A@example.com"),
            embedded_env,
            tmp_path,
        )
        assert again.returncode == 0 and "exists" in again.stdout
        second = run(
            create_admin_args("b@example.com", password="password-2", workspace="B"),
            embedded_env,
            tmp_path,
        )
        assert second.returncode == 0, second.stderr
        ids = {
            re.search(r"\(([0-9a-f-]{36})\)", out.stdout).group(1) for out in (first, again, second)
        }  # type: ignore[union-attr]
        assert len(ids) == 2

    def test_missing_arguments_without_a_terminal_fail_clearly(
        self, tmp_path: Path, embedded_env: dict[str, str]
    ) -> None:
        result = run(["create-admin", "--email", "a@example.com"], embedded_env, tmp_path)
        assert result.returncode == 2
        assert "--password is required" in result.stderr

    def test_a_malformed_email_is_refused_naming_it(
        self, tmp_path: Path, embedded_env: dict[str, str]
    ) -> None:
        result = run(
            create_admin_args("not-an-email"),
            embedded_env,
            tmp_path,
        )
        assert result.returncode == 2, result.stdout
        assert result.stderr.strip() == "error: email: must be an address like name@example.com"

    def test_an_admin_on_a_special_use_domain_logs_in_over_http(self, tmp_path: Path) -> None:
        with running_stack(tmp_path) as stack:
            created = stack.cli(*create_admin_args("Someone@Example.TEST"))
            assert created.returncode == 0, created.stderr
            assert "someone@example.test created" in created.stdout
            with stack.client() as anonymous:
                response = anonymous.post(
                    "/console/api/login",
                    json={"email": "someone@example.test", "password": "password-1"},
                )
            assert response.status_code == 200, response.text

    def test_short_password_is_refused(self, tmp_path: Path, embedded_env: dict[str, str]) -> None:
        result = run(
            create_admin_args("a@example.com", password="short"),
            embedded_env,
            tmp_path,
        )
        assert result.returncode == 2
        assert "password" in result.stderr


class TestQuickstart:
    def test_the_readme_quickstart_then_console_login_with_what_it_printed(
        self, tmp_path: Path
    ) -> None:
        with running_stack(tmp_path) as stack:
            result = stack.cli("quickstart")
            assert result.returncode == 0, result.stderr
            printed = re.search(r"admin (\S+) \(password: (\S+)\)", result.stdout)
            assert printed is not None, result.stdout
            email, password = printed.groups()
            assert email == "admin@conduit.local"  # the README's login names it
            with stack.client() as anonymous:
                response = anonymous.post(
                    "/console/api/login", json={"email": email, "password": password}
                )
            assert response.status_code == 200, response.text
            token = response.json()["data"]["access_token"]
            with stack.client(token) as console:
                apps = console.get("/console/api/apps", params={"mode": "chat"}).json()["data"]
            assert [app["name"] for app in apps] == ["Quickstart chat"]


class TestMigrate:
    def test_migrate_up_and_down(self, tmp_path: Path, embedded_env: dict[str, str]) -> None:
        if DISTRIBUTED:
            with fresh_pg_database() as url:
                env = {**embedded_env, "CONDUIT_DATABASE_URL": url}
                assert run(["migrate"], env, tmp_path).returncode == 0
                assert run(["migrate", "--downgrade", "base"], env, tmp_path).returncode == 0
                assert run(["migrate"], env, tmp_path).returncode == 0
        else:
            assert run(["migrate"], embedded_env, tmp_path).returncode == 0
            assert (tmp_path / ".conduit" / "conduit.db").exists()
            assert run(["migrate", "--downgrade", "base"], embedded_env, tmp_path).returncode == 0


class TestLifecycle:
    def test_sigterm_stops_the_server_cleanly(self, tmp_path: Path) -> None:
        with running_stack(tmp_path) as stack:
            # uvicorn re-raises the signal after a graceful shutdown, so the status says SIGTERM.
            assert stack.server.stop() in (0, -15)
            log = stack.server.log()
            assert "conduit stopped" in log and "Application shutdown complete" in log

    @pytest.mark.skipif(
        not DISTRIBUTED, reason="several server processes need the distributed mode"
    )
    def test_metrics_sum_over_several_server_processes(self, tmp_path: Path) -> None:
        cache_url, broker_url = fresh_redis_url(), fresh_redis_url()
        with fresh_pg_database() as url:
            from conduit.db.migrations import upgrade

            upgrade(url)
            env = stack_env(
                tmp_path,
                database_url=url,
                redis_url=cache_url,
                broker_url=broker_url,
            )
            env["CONDUIT_HTTP_WORKERS"] = "2"
            stack = Stack(tmp_path, env, distributed=False)
            stack.server.start()
            try:
                stack.wait_ready()
                pids = set()
                for _ in range(40):
                    with httpx.Client(base_url=stack.base_url) as fresh:  # new connection each time
                        assert fresh.get("/health").status_code == 200
                metrics_text = httpx.get(f"{stack.base_url}/metrics").text
                for line in metrics_text.splitlines():
                    if line.startswith(
                        'conduit_http_requests_total{method="GET",route="/health",status="200"}'
                    ):
                        pids.add(line)
                        assert float(line.rsplit(" ", 1)[1]) >= 40
                assert pids, metrics_text[:2000]
                assert len(os.listdir(tmp_path / ".conduit" / "prometheus")) >= 2
            finally:
                stack.server.stop()
                release_redis_url(cache_url)
                release_redis_url(broker_url)
