"""End-to-end fixtures: a real `conduit serve` (and `conduit worker` in the distributed mode)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conduit.db.migrations import upgrade
from conduit.infra.db import Database, build_engine
from conduit.services import accounts
from tests import support
from tests.conftest import DISTRIBUTED, stack_env

_emails = itertools.count(1)


@contextlib.contextmanager
def running_stack(
    workdir: Path, *, broker_url: str | None = None, redis_url: str | None = None, **extra: str
) -> Iterator[support.Stack]:
    """A started stack of the current mode; `broker_url` / `redis_url` override the defaults."""
    workdir.mkdir(parents=True, exist_ok=True)
    if DISTRIBUTED:
        leased = [support.fresh_redis_url() for given in (redis_url, broker_url) if not given]
        own = iter(leased)
        with support.fresh_pg_database() as database_url:
            upgrade(database_url)
            env = stack_env(
                workdir,
                database_url=database_url,
                redis_url=redis_url or next(own),
                broker_url=broker_url or next(own),
                **extra,
            )
            stack = support.Stack(workdir, env, distributed=True)
            try:
                stack.start()
                yield stack
            finally:
                stack.stop()
                for url in leased:
                    support.release_redis_url(url)
    else:
        env = stack_env(workdir, database_url=None, redis_url=redis_url, broker_url=None, **extra)
        stack = support.Stack(workdir, env, distributed=False)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@dataclass
class Admin:
    email: str
    password: str
    token: str
    refresh_token: str
    client: httpx.Client


def create_admin(
    stack: support.Stack, *, workspace: str = "Acme", email: str | None = None
) -> tuple[str, str]:
    """An owner account with its own workspace, written straight into the stack's database
    (the `conduit create-admin` command itself is tested in test_cli.py)."""
    email = email or f"owner{next(_emails)}@example.com"
    password = "correct horse battery"
    database = Database(build_engine(stack.database_url, null_pool=True))
    try:
        with database.transaction() as session:
            accounts.create_admin(session, email=email, password=password, workspace=workspace)
    finally:
        database.dispose()
    return email, password


def make_admin(stack: support.Stack, *, workspace: str = "Acme") -> Admin:
    return login(stack, *create_admin(stack, workspace=workspace))


def login(stack: support.Stack, email: str, password: str) -> Admin:
    with stack.client() as anonymous:
        response = anonymous.post("/console/api/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return Admin(
        email,
        password,
        data["access_token"],
        data["refresh_token"],
        stack.client(data["access_token"]),
    )


def add_member(stack: support.Stack, owner: Admin, role: str) -> Admin:
    """A new account added to `owner`'s workspace with `role`, logged in and switched to it."""
    email, password = create_admin(stack, workspace="Elsewhere")
    added = owner.client.post(
        "/console/api/workspaces/current/members", json={"email": email, "role": role}
    )
    assert added.status_code == 201, added.text
    member = login(stack, email, password)
    workspace_id = owner.client.get("/console/api/workspaces/current").json()["data"]["id"]
    switched = member.client.post(
        "/console/api/workspaces/switch", json={"tenant_id": workspace_id}
    )
    assert switched.status_code == 200, switched.text
    return member


@pytest.fixture
def admin(stack: support.Stack) -> Iterator[Admin]:
    owner = make_admin(stack)
    yield owner
    owner.client.close()


AppFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_app(admin: Admin) -> AppFactory:
    def create(client: httpx.Client | None = None, **overrides: Any) -> dict[str, Any]:
        body = {"name": "Support bot", "mode": "chat", **overrides}
        response = (client or admin.client).post("/console/api/apps", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["data"])

    return create


# --- the Service API: a stack whose model is the fake OpenAI-compatible upstream ---------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    """The fake model server (a subprocess), paced so that streams take a little while."""
    from tests.fakes.fake_openai import fake_openai_process

    with fake_openai_process(pace_ms=5) as fake:
        yield fake


@dataclass
class ServiceApp:
    """An app with a Service API key, on a stack whose model is the fake upstream."""

    stack: support.Stack
    app_id: str
    key: str
    client: httpx.Client  # authenticated with the app key

    def url(self, path: str) -> str:
        return f"{self.stack.base_url}/v1{path}"


def service_app(
    stack: support.Stack, admin: Admin, *, mode: str = "chat", **config: Any
) -> ServiceApp:
    created = admin.client.post(
        "/console/api/apps", json={"name": f"{mode} app", "mode": mode, "model_config": config}
    )
    assert created.status_code == 201, created.text
    app_id = created.json()["data"]["id"]
    key = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]["token"]
    client = httpx.Client(
        base_url=f"{stack.base_url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return ServiceApp(stack, app_id, key, client)


@pytest.fixture(scope="module")
def service_broker_url() -> str | None:
    """The broker of `service_stack` (None: the mode's default); a module may override it."""
    return None


@pytest.fixture(scope="module")
def service_stack(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Any,
    service_broker_url: str | None,
    request: pytest.FixtureRequest,
) -> Iterator[support.Stack]:
    """A stack on the fake upstream; a module may set `EXECUTOR = "celery"` to run runs on Celery,
    and `STACK_ENV` (settings) for its own needs."""
    executor = getattr(request.module, "EXECUTOR", "inline")
    with running_stack(
        tmp_path_factory.mktemp("service"),
        broker_url=service_broker_url,
        CONDUIT_MODEL_BASE_URL=upstream.base_url,
        CONDUIT_MODEL_MAX_RETRIES="0",
        CONDUIT_RUNS_EXECUTOR=executor,
        CONDUIT_HTTP_SHUTDOWN_TIMEOUT="2",
        **getattr(request.module, "STACK_ENV", {}),
    ) as started:
        yield started


@pytest.fixture(scope="module")
def service_admin(service_stack: support.Stack) -> Iterator[Admin]:
    owner = make_admin(service_stack)
    yield owner
    owner.client.close()


@pytest.fixture
def chat_app(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> Iterator[ServiceApp]:
    upstream.reset()
    found = service_app(
        service_stack, service_admin, mode="chat", pre_prompt="You are a test assistant."
    )
    yield found
    found.client.close()


@pytest.fixture
def completion_app(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> Iterator[ServiceApp]:
    upstream.reset()
    found = service_app(
        service_stack,
        service_admin,
        mode="completion",
        pre_prompt="Translate to French: {{text}}",
        user_input_form=[
            {
                "text-input": {
                    "label": "Text",
                    "variable": "text",
                    "required": True,
                    "max_length": 200,
                }
            }
        ],
    )
    yield found
    found.client.close()
