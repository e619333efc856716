"""The workspace's tools, as Dify's console lists them: the built-in providers and their
tools (what an agent-chat app's `agent_mode.tools` may name)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.deps import CurrentIdentity
from conduit.services import tools

router = APIRouter(prefix="/workspaces/current", tags=["console: tools"])


@router.get("/tool-providers")
def tool_providers(
    identity: CurrentIdentity,
    type: Annotated[str | None, Query(description="builtin, api, workflow or mcp.")] = None,
) -> list[dict[str, Any]]:
    return tools.providers(type)


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
