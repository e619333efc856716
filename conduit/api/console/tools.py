"""The workspace's tools, as Dify's console lists them: the built-in providers and their
tools, and the workspace's custom API tools (`services/api_tools.py`): what an agent-chat
app's `agent_mode.tools` may name."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.deps import AppSettings, CurrentIdentity, DbSession
from conduit.api.v1.schemas import JsonBody
from conduit.db.models import Role
from conduit.errors import InvalidParam, NotFound
from conduit.infra.ssrf import AllowList
from conduit.services import api_tools, tools
from conduit.services.apps import require_role

router = APIRouter(prefix="/workspaces/current", tags=["console: tools"])


@router.get("/tool-providers")
def tool_providers(
    identity: CurrentIdentity,
    session: DbSession,
    type: Annotated[str | None, Query(description="builtin, api, workflow or mcp.")] = None,
) -> list[dict[str, Any]]:
    """The built-in providers, then the workspace's custom API tools."""
    found = tools.providers(type)
    if type in (None, "", "api"):
        found += [
            api_tools.listed(p)
            for p in api_tools.list_providers(session, identity.membership.tenant_id)
        ]
    return found


@router.get("/tools/builtin")
def builtin_tools(identity: CurrentIdentity) -> list[dict[str, Any]]:
    return tools.providers("builtin")


# (`{provider_id:path}`: Dify 1.x's ids are `langgenius/<id>/<id>`.)
@router.get("/tool-provider/builtin/{provider_id:path}/tools")
def provider_tools(provider_id: str, identity: CurrentIdentity) -> list[dict[str, Any]]:
    return [tool.to_json() for tool in tools.provider(provider_id).tools]


@router.get("/tool-provider/builtin/{provider_id:path}/info")
def provider_info(provider_id: str, identity: CurrentIdentity) -> dict[str, Any]:
    return tools.provider(provider_id).to_json()


# --- custom API tools (Dify's /tool-provider/api/*) ----------------------------------------


def _allow(settings: Any) -> AllowList:
    return AllowList.of(settings.webhook)


@router.post("/tool-provider/api/schema")
def parse_schema(identity: CurrentIdentity, body: JsonBody) -> dict[str, Any]:
    """The tools an OpenAPI document describes (nothing is saved)."""
    return api_tools.schema_view(body.get("schema"))


@router.post("/tool-provider/api/add")
def add_api_provider(
    identity: CurrentIdentity, session: DbSession, settings: AppSettings, body: JsonBody
) -> dict[str, Any]:
    require_role(identity.membership, Role.EDITOR, "add custom tools")
    fields = api_tools.ApiToolFields.parse(body)
    api_tools.add_provider(session, identity.membership, fields, settings.secret_key())
    return {"result": "success"}


@router.get("/tool-provider/api/get")
def get_api_provider(
    identity: CurrentIdentity,
    session: DbSession,
    settings: AppSettings,
    provider: Annotated[str, Query(description="The provider's name.")],
) -> dict[str, Any]:
    found = api_tools.get_provider(session, identity.membership.tenant_id, provider)
    return api_tools.provider_view(found, settings.secret_key())


@router.get("/tool-provider/api/tools")
def api_provider_tools(
    identity: CurrentIdentity,
    session: DbSession,
    provider: Annotated[str, Query(description="The provider's name.")],
) -> list[dict[str, Any]]:
    found = api_tools.get_provider(session, identity.membership.tenant_id, provider)
    return api_tools.listed(found)["tools"]  # type: ignore[no-any-return]


@router.post("/tool-provider/api/update")
def update_api_provider(
    identity: CurrentIdentity, session: DbSession, settings: AppSettings, body: JsonBody
) -> dict[str, Any]:
    """`original_provider` names it; the rest is the whole provider (the key: `[__HIDDEN__]`
    keeps the stored one)."""
    require_role(identity.membership, Role.EDITOR, "change custom tools")
    original = body.get("original_provider") or body.get("provider")
    if not isinstance(original, str):
        raise InvalidParam("original_provider: must name the provider to change")
    fields = api_tools.ApiToolFields.parse(body)
    api_tools.update_provider(session, identity.membership, original, fields, settings.secret_key())
    return {"result": "success"}


@router.post("/tool-provider/api/delete")
def delete_api_provider(
    identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    require_role(identity.membership, Role.EDITOR, "delete custom tools")
    name = body.get("provider")
    if not isinstance(name, str):
        raise InvalidParam("provider: must name the provider to delete")
    api_tools.delete_provider(session, identity.membership, name)
    return {"result": "success"}


@router.post("/tool-provider/api/test/pre")
def test_api_tool(
    identity: CurrentIdentity, session: DbSession, settings: AppSettings, body: JsonBody
) -> dict[str, Any]:
    """One operation of a document (saved or not) called with `parameters`: `{result}` or
    `{error}`. No transaction waits on the service."""
    member = identity.membership
    require_role(member, Role.EDITOR, "test custom tools")
    fields = api_tools.ApiToolFields.parse(
        {**body, "provider": body.get("provider_name") or body.get("provider") or "test"}
    )
    stored = None
    if isinstance(body.get("provider_name"), str):
        with contextlib.suppress(NotFound):
            stored = api_tools.get_provider(session, member.tenant_id, body["provider_name"])
    session.commit()
    return api_tools.test_call(
        fields,
        body.get("tool_name"),
        body.get("parameters") or {},
        stored=stored,
        secret=settings.secret_key(),
        allow=_allow(settings),
    )


@router.get("/tools/api")
def api_providers(identity: CurrentIdentity, session: DbSession) -> list[dict[str, Any]]:
    return [
        api_tools.listed(p)
        for p in api_tools.list_providers(session, identity.membership.tenant_id)
    ]
