"""The tools an agent may use, as Dify's console lists them (`/workspaces/current/tool-
providers` and friends), and the icons of an app's tools (`/meta`'s `tool_icons`). Only the
built-in providers are served (`core/tools/builtin.py`): no credentials, no network."""

from __future__ import annotations

from typing import Any

from conduit.core.tools import builtin
from conduit.core.tools.base import ToolProvider
from conduit.db.models import App, AppMode
from conduit.errors import NotFound

PROVIDER_TYPES = ("builtin", "api", "workflow", "mcp")


def providers(kind: str | None = None) -> list[dict[str, Any]]:
    """The built-in providers (none when `kind` asks for another kind)."""
    if kind not in (None, "", "builtin"):
        return []
    return [provider.to_json() for provider in builtin.PROVIDERS.values()]


def provider(provider_id: str) -> ToolProvider:
    found = builtin.PROVIDERS.get(builtin.provider_key(provider_id))
    if found is None:
        raise NotFound(
            f"No built-in tool provider {provider_id!r}; the providers: "
            f"{', '.join(builtin.PROVIDERS)}"
        )
    return found


def tool_icons(app: App) -> dict[str, Any]:
    """Dify's `tool_icons`: each of an agent app's tools by name, its provider's icon."""
    if app.mode != AppMode.AGENT_CHAT:
        return {}
    mode = (app.model_config_ or {}).get("agent_mode")
    listed = mode.get("tools") if isinstance(mode, dict) else None
    icons: dict[str, Any] = {}
    for item in listed if isinstance(listed, list) else []:
        if not isinstance(item, dict):
            continue
        found = builtin.PROVIDERS.get(builtin.provider_key(item.get("provider_id")))
        if found is not None and found.tool(str(item.get("tool_name") or "")) is not None:
            icons[str(item["tool_name"])] = found.icon_json()
    return icons
