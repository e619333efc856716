"""Outages and crashes: Redis, the broker and PostgreSQL going away; the server killed with -9."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from conduit.db.migrations import upgrade
from tests.conftest import DISTRIBUTED, stack_env
from tests.e2e.conftest import Admin, make_admin, running_stack, service_app
from tests.e2e.sse import answer_of, frames
from tests.support import (
    PrivatePostgres,
    PrivateRedis,
    Stack,
    fresh_redis_url,
    release_redis_url,
    wait_for,
)

distributed_only = pytest.mark.skipif(not DISTRIBUTED, reason="needs the distributed mode")
embedded_only = pytest.mark.skipif(DISTRIBUTED, reason="the embedded mode's own recovery")


def create_app(admin: Admin, name: str = "resilient") -> str:
    response = admin.client.post("/console/api/apps", json={"name": name, "mode": "chat"})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


@pytest.fixture(scope="module")
def cache_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_stack(
    tmp_path_factory: pytest.TempPathFactory, cache_redis: PrivateRedis, upstream: Any
) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("redis-stack"),
        redis_url=cache_redis.url,
        CONDUIT_REDIS_RETRY_AFTER="0.3",
        CONDUIT_MODEL_BASE_URL=upstream.base_url,
        CONDUIT_MODEL_MAX_RETRIES="0",
    ) as stack:
        yield stack


class TestRedisOutage:
    def test_a_dead_redis_does_not_fail_requests(
        self, redis_stack: Stack, cache_redis: PrivateRedis
    ) -> None:
        admin = make_admin(redis_stack)
        app_id = create_app(admin, "before")
        assert admin.client.get(f"/console/api/apps/{app_id}").status_code == 200
        probe = redis.Redis.from_url(cache_redis.url)
        assert probe.exists(f"conduit:cache:k:app:{app_id}")

        cache_redis.stop()
        try:
            for i in range(3):
                started = time.monotonic()
                assert (
                    admin.client.put(
                        f"/console/api/apps/{app_id}", json={"name": f"during {i}"}
                    ).status_code
                    == 200
                )
                read = admin.client.get(f"/console/api/apps/{app_id}")
                assert read.status_code == 200 and read.json()["data"]["name"] == f"during {i}"
                assert time.monotonic() - started < 3
            assert create_app(admin, "created while redis is down")
        finally:
            cache_redis.start()

        def cached_again() -> bool:
            response = admin.client.get(f"/console/api/apps/{app_id}")
            assert response.json()["data"]["name"] == "during 2"
            return bool(
                redis.Redis.from_url(cache_redis.url).exists(f"conduit:cache:k:app:{app_id}")
            )

        wait_for(cached_again, timeout=10, interval=0.2, what="the cache to be used again")
        assert (
            admin.client.put(f"/console/api/apps/{app_id}", json={"name": "after"}).status_code
            == 200
        )
        assert admin.client.get(f"/console/api/apps/{app_id}").json()["data"]["name"] == "after"

    def test_runs_need_redis_a_503_while_it_is_down_and_the_first_start_after_it_succeeds(
        self, redis_stack: Stack, cache_redis: PrivateRedis
    ) -> None:
        chat = service_app(redis_stack, make_admin(redis_stack), pre_prompt="Be brief.")
        body = {"inputs": {}, "query": "hi", "user": "alice", "response_mode": "blocking"}
        first = chat.client.post("/chat-messages", json=body)
        assert first.status_code == 200, first.text
        task_id = first.json()["task_id"]
        with redis_stack.client() as client:
            # Ready once the worker's consumer has said so (`consumers`), a moment after start.
            wait_for(lambda: client.get("/ready").status_code == 200, timeout=15, what="ready")
        time.sleep(0.3)  # the run's events reach Redis behind this server's copy

        cache_redis.stop()
        try:
            for mode in ("blocking", "streaming"):
                started = time.monotonic()
                refused = chat.client.post("/chat-messages", json={**body, "response_mode": mode})
                assert time.monotonic() - started < 2
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"] == "1"
                assert refused.json() == {
                    "code": "redis_unavailable",
                    "message": "Redis is unavailable; retry shortly.",
                    "status": 503,
                }
            # A run written here is resumed from this process's copy (which knows whose it is);
            # one written elsewhere needs Redis.
            mine = chat.client.get(f"/chat-messages/{task_id}/events", params={"user": "alice"})
            assert mine.status_code == 200
            assert answer_of(list(frames(mine))) == first.json()["answer"]
            elsewhere = chat.client.get(
                f"/chat-messages/{uuid.uuid4()}/events", params={"user": "alice"}
            )
            assert elsewhere.status_code == 503 and elsewhere.headers["Retry-After"] == "1"
            # What needs no Redis keeps working on the database.
            assert chat.client.get("/parameters", params={"user": "alice"}).status_code == 200
            with redis_stack.client() as client:
                assert client.get("/ready").status_code == 503
        finally:
            cache_redis.start()  # empty
        # The very first requests after the return succeed: no dead pooled connection fails one.
        with redis_stack.client() as client:
            ready = client.get("/ready")
            assert ready.status_code == 200, ready.text
        again = chat.client.post("/chat-messages", json=body)
        assert again.status_code == 200, again.text
        with chat.client.stream(
            "POST", "/chat-messages", json={**body, "response_mode": "streaming"}
        ) as response:
            assert response.status_code == 200
            streamed = list(frames(response))
        assert streamed[-1].event == "message_end"
        assert answer_of(streamed) == again.json()["answer"]

    def test_ready_names_redis_while_it_is_down(
        self, redis_stack: Stack, cache_redis: PrivateRedis
    ) -> None:
        with redis_stack.client() as client:
            # Ready once the worker's consumer has said so (`consumers`), a moment after start.
            wait_for(lambda: client.get("/ready").status_code == 200, timeout=15, what="ready")
            cache_redis.stop()
            try:
                response = client.get("/ready")
                assert response.status_code == 503
                body = response.json()
                assert body["code"] == "not_ready" and "redis" in body["message"]
                assert body["components"]["redis"]["status"] == "fail"
                assert body["components"]["database"]["status"] == "ok"
            finally:
                cache_redis.start()
            wait_for(
                lambda: client.get("/ready").status_code == 200, timeout=10, what="ready again"
            )


@distributed_only
class TestBrokerOutage:
    def test_the_outbox_delivers_after_the_broker_returns_and_the_task_runs_once(
        self, tmp_path: Path
    ) -> None:
        broker = PrivateRedis(tmp_path)
        broker.start()
        with running_stack(tmp_path / "stack", broker_url=broker.url) as stack:
            admin = make_admin(stack)
            broker.stop()
            try:
                app_id = create_app(admin, "during the broker outage")
                query = "SELECT status, run_count, send_attempts FROM outbox WHERE CAST(kwargs AS TEXT) LIKE :p"
                pattern = f"%{app_id}%"
                wait_for(lambda: stack.sql(query, p=pattern)[0][2] >= 1, what="a refused send")
                assert stack.sql(query, p=pattern)[0][:2] == ("pending", 0)
            finally:
                broker.start()
            wait_for(
                lambda: stack.sql(query, p=pattern)[0][:2] == ("succeeded", 1),
                timeout=60,
                interval=0.2,
                what="the task to run after the broker came back",
            )
            time.sleep(1.5)
            assert stack.sql(query, p=pattern)[0][:2] == ("succeeded", 1)
            assert stack.sql("SELECT count(*) FROM sites WHERE app_id = :a", a=app_id) == [(1,)]
        broker.stop()


@embedded_only
class TestCrashRecovery:
    def test_kill_9_with_tasks_unfinished_then_restart_runs_each_to_completion_once_in_effect(
        self, tmp_path: Path
    ) -> None:
        with running_stack(tmp_path, CONDUIT_TASKS_EMBEDDED_CONCURRENCY="1") as stack:
            admin = make_admin(stack)
            app_ids: list[str] = []
            unfinished = 0
            for attempt in range(5):  # until the kill lands while some task is queued or running
                with ThreadPoolExecutor(8) as pool:
                    app_ids += list(
                        pool.map(lambda i: create_app(admin, f"crash {attempt}-{i}"), range(24))
                    )
                stack.server.kill()
                unfinished = stack.sql("SELECT count(*) FROM outbox WHERE status != 'succeeded'")[
                    0
                ][0]
                stack.server.start()
                stack.wait_ready()
                if unfinished:
                    break
            assert unfinished > 0, "the kill never caught a task before it finished"

            def all_done() -> bool:
                return stack.sql("SELECT count(*) FROM outbox WHERE status != 'succeeded'") == [
                    (0,)
                ]

            wait_for(
                all_done, timeout=60, interval=0.2, what="every task to finish after the restart"
            )
            sites = dict(stack.sql("SELECT app_id, count(*) FROM sites GROUP BY app_id"))
            installed = dict(
                stack.sql("SELECT app_id, count(*) FROM installed_apps GROUP BY app_id")
            )
            assert all(sites.get(a) == 1 for a in app_ids), "each app has exactly one site"
            assert all(installed.get(a) == 1 for a in app_ids), "each app is installed exactly once"
            assert stack.sql("SELECT count(*) FROM outbox") == [(len(app_ids),)]


@distributed_only
class TestPostgresOutage:
    def test_ready_turns_503_while_postgresql_is_stopped(self, tmp_path: Path) -> None:
        """On a PostgreSQL cluster of the test's own (the shared server is never stopped)."""
        postgres = PrivatePostgres()
        redis_url, broker_url = fresh_redis_url(), fresh_redis_url()
        try:
            postgres.create()
            upgrade(postgres.url)
            env = stack_env(
                tmp_path, database_url=postgres.url, redis_url=redis_url, broker_url=broker_url
            )
            stack = Stack(tmp_path, env, distributed=True)
            stack.start()
            try:
                self._outage(stack, postgres)
            finally:
                stack.stop()
        finally:
            postgres.destroy()
            release_redis_url(redis_url)
            release_redis_url(broker_url)

    def _outage(self, stack: Stack, postgres: PrivatePostgres) -> None:
        with stack.client() as client:
            # Ready once the worker's consumer has said so (`consumers`), a moment after start.
            wait_for(lambda: client.get("/ready").status_code == 200, timeout=15, what="ready")
            postgres.stop()
            try:
                response = client.get("/ready")
                assert response.status_code == 503
                assert "database" in response.json()["message"]
                assert response.json()["components"]["database"]["status"] == "fail"
            finally:
                postgres.start()
            wait_for(
                lambda: client.get("/ready").status_code == 200,
                timeout=30,
                interval=0.3,
                what="ready again",
            )
            assert client.get("/health").status_code == 200
