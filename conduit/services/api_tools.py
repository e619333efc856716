"""A workspace's custom API tools (Dify's "custom tool" providers, console
`/workspaces/current/tool-provider/api/*`): an OpenAPI 3 document of the workspace's own
service (`core/tools/openapi.py` reads it), its operations offered to agents as tools, and the
key sent with each call (encrypted with the server's secret, shown masked, never sent to
another server: a changed document keeps it only for its own server).

Calls go through the SSRF guard (`CONDUIT_WEBHOOK_ALLOWED_*`), as every URL a user gives. A
provider an agent app uses cannot be deleted (409 naming the app); a provider's name is unique
in its workspace. Reading needs a member; writing an editor.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.core.tools.base import Tool, ToolError
from conduit.core.tools.openapi import (
    ApiAuth,
    ApiOperation,
    ApiTool,
    SchemaError,
    header_name,
    key_value,
    parse,
)
from conduit.core.workflow import agent_node
from conduit.db.models import ApiToolProvider, App, Membership, Role, Workflow
from conduit.errors import Conflict, InvalidParam, NotFound
from conduit.infra.crypto import DecryptionError, cipher, mask
from conduit.infra.db import Database
from conduit.infra.ssrf import AllowList
from conduit.services._fields import text as _text
from conduit.services.apps import require_role

API = "api"
HIDDEN = "[__HIDDEN__]"  # what Dify's console sends back for a key it did not change
AUTH_TYPES = ("none", "api_key")
PREFIXES = ("basic", "bearer", "custom")
DEFAULT_ICON = {"background": "#E0EAFF", "content": "🔧"}


@dataclass
class ApiToolFields:
    """A provider as Dify's console sends it (`provider`, `schema`, `credentials`, ...),
    checked; `api_key` None keeps the stored one."""

    name: str
    schema: str
    server_url: str
    operations: list[ApiOperation]
    auth_type: str
    header: str
    prefix: str
    api_key: str | None
    icon: dict[str, Any]
    privacy_policy: str
    custom_disclaimer: str

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ApiToolFields:
        name = _text(body.get("provider"), "provider", 255).strip()
        if not name:
            raise InvalidParam("provider: must name the tool provider")
        schema_type = body.get("schema_type", "openapi")
        if schema_type != "openapi":
            raise InvalidParam("schema_type: only openapi is served")
        schema = body.get("schema")
        parsed = parsed_schema(schema)
        credentials = body.get("credentials") or {}
        if not isinstance(credentials, Mapping):
            raise InvalidParam("credentials: must be an object")
        auth_type = credentials.get("auth_type", "none")
        if auth_type not in AUTH_TYPES:
            raise InvalidParam(
                "credentials.auth_type: must be one of the following: [none, api_key]"
            )
        header = _text(
            credentials.get("api_key_header") or "Authorization", "credentials.api_key_header", 255
        )
        if not header_name(header):
            raise InvalidParam("credentials.api_key_header: must be an HTTP header's name")
        prefix = credentials.get("api_key_header_prefix") or "custom"
        if prefix not in PREFIXES:
            raise InvalidParam(
                "credentials.api_key_header_prefix: must be one of the following: "
                "[basic, bearer, custom]"
            )
        key = credentials.get("api_key_value")
        api_key: str | None = None
        if auth_type == "api_key" and key != HIDDEN:
            api_key = _text(key, "credentials.api_key_value", 4096)
            if not api_key:
                raise InvalidParam("credentials.api_key_value: the key is required for api_key")

        given = body.get("icon")
        icon: Mapping[str, Any] = given if isinstance(given, Mapping) else DEFAULT_ICON
        return cls(
            name=name,
            schema=str(schema),
            server_url=parsed.server_url,
            operations=list(parsed.operations),
            auth_type=str(auth_type),
            header=header,
            prefix=str(prefix),
            api_key=api_key,
            icon={
                "background": str(icon.get("background", ""))[:32],
                "content": str(icon.get("content", ""))[:255],
            },
            privacy_policy=_text(body.get("privacy_policy") or "", "privacy_policy", 2048),
            custom_disclaimer=_text(body.get("custom_disclaimer") or "", "custom_disclaimer", 2048),
        )


def parsed_schema(schema: Any) -> Any:
    try:
        return parse(schema)
    except SchemaError as error:
        raise InvalidParam(str(error)) from None


def schema_view(schema: Any) -> dict[str, Any]:
    """Dify's `/api/schema` answer: the document's tools, each with its server and parameters."""
    parsed = parsed_schema(schema)
    return {
        "schema_type": "openapi",
        "parameters_schema": [
            {**_tool_bundle(op), "server_url": parsed.server_url} for op in parsed.operations
        ],
        "credentials_schema": [],
        "warning": {},
    }


def _tool_bundle(operation: ApiOperation) -> dict[str, Any]:
    return {
        "operation_id": operation.name,
        "method": operation.method,
        "path": operation.path,
        "summary": operation.description,
        "author": "",
        "parameters": [
            {
                "name": p.name,
                "label": {"en_US": p.name},
                "human_description": {"en_US": p.description},
                "llm_description": p.description,
                "type": p.type,
                "form": "llm",
                "required": p.required,
                "in": p.location,
                "default": p.default,
            }
            for p in operation.parameters
        ],
    }


def _operations(provider: ApiToolProvider) -> list[ApiOperation]:
    return [ApiOperation.from_json(item) for item in provider.operations or []]


def provider_view(provider: ApiToolProvider, secret: str) -> dict[str, Any]:
    """A provider as Dify's console reads it (`/api/get`): the key masked."""
    credentials = dict(provider.credentials or {})
    if provider.encrypted_api_key:
        try:
            key: str | None = cipher(secret).decrypt(provider.encrypted_api_key)
        except DecryptionError:
            key = None
        credentials["api_key_value"] = mask(key) or ""
    return {
        "id": provider.id,
        "provider": provider.name,
        "schema_type": provider.schema_type,
        "schema": provider.schema,
        "server_url": provider.server_url,
        "icon": provider.icon,
        "credentials": credentials,
        "privacy_policy": provider.privacy_policy,
        "custom_disclaimer": provider.custom_disclaimer,
        "tools": [_tool_bundle(op) for op in _operations(provider)],
        "labels": [],
    }


def listed(provider: ApiToolProvider) -> dict[str, Any]:
    """The provider as `/tool-providers` lists it (Dify's `api` type)."""
    return {
        "id": provider.id,
        "author": "",
        "name": provider.name,
        "description": {"en_US": f"Operations of {provider.server_url}"},
        "icon": provider.icon or DEFAULT_ICON,
        "label": {"en_US": provider.name},
        "type": API,
        "team_credentials": {},
        "is_team_authorization": True,
        "allow_delete": True,
        "tools": [_listed_tool(op) for op in _operations(provider)],
        "labels": [],
    }


def _listed_tool(operation: ApiOperation) -> dict[str, Any]:
    return {
        "author": "",
        "name": operation.name,
        "label": {"en_US": operation.name},
        "description": {"en_US": operation.description},
        "parameters": _tool_bundle(operation)["parameters"],
        "labels": [],
    }


def list_providers(session: Session, tenant_id: str) -> list[ApiToolProvider]:
    return list(
        session.scalars(
            select(ApiToolProvider)
            .where(ApiToolProvider.tenant_id == tenant_id)
            .order_by(ApiToolProvider.created_at, ApiToolProvider.id)
        )
    )


def get_provider(session: Session, tenant_id: str, name: str) -> ApiToolProvider:
    found = session.scalar(
        select(ApiToolProvider).where(
            ApiToolProvider.tenant_id == tenant_id, ApiToolProvider.name == name
        )
    )
    if found is None:
        raise NotFound(f"No custom tool provider {name!r} in this workspace.")
    return found


def provider_by_id(session: Session, tenant_id: str, provider_id: str) -> ApiToolProvider | None:
    found = session.get(ApiToolProvider, provider_id)
    return found if found is not None and found.tenant_id == tenant_id else None


def add_provider(
    session: Session, member: Membership, fields: ApiToolFields, secret: str
) -> ApiToolProvider:
    require_role(member, Role.EDITOR, "add custom tools")
    fields.api_key = _given_key(fields, None, secret)
    if fields.auth_type == "api_key" and not fields.api_key:
        raise InvalidParam("credentials.api_key_value: the key is required for api_key")
    provider = ApiToolProvider(tenant_id=member.tenant_id, created_by=member.account_id)
    _apply(provider, fields, secret)
    session.add(provider)
    _flush(session, fields.name)
    return provider


def update_provider(
    session: Session, member: Membership, original: str, fields: ApiToolFields, secret: str
) -> ApiToolProvider:
    require_role(member, Role.EDITOR, "change custom tools")
    provider = get_provider(session, member.tenant_id, original)
    fields.api_key = _given_key(fields, provider, secret)
    kept = {op.name for op in fields.operations}
    for app, tools in _users(session, provider):
        gone = sorted({str(t.get("tool_name")) for t in tools} - kept)
        if gone:
            raise Conflict(
                f"The app {app.name!r} uses {gone[0]!r}, which the new document does "
                "not have: take it out of the app first."
            )
    keeps_key = fields.api_key is None and fields.auth_type == "api_key"
    if keeps_key and (not provider.encrypted_api_key or fields.server_url != provider.server_url):
        # The stored key goes only to the server it was given for.
        raise InvalidParam(
            "credentials.api_key_value: give the key again (the server changed, or none is kept)"
        )
    _apply(provider, fields, secret)
    _flush(session, fields.name)
    return provider


def _apply(provider: ApiToolProvider, fields: ApiToolFields, secret: str) -> None:
    provider.name = fields.name
    provider.schema_type = "openapi"
    provider.schema = fields.schema
    provider.server_url = fields.server_url
    provider.operations = [op.to_json() for op in fields.operations]
    provider.credentials = {
        "auth_type": fields.auth_type,
        "api_key_header": fields.header,
        "api_key_header_prefix": fields.prefix,
    }
    if fields.auth_type != "api_key":
        provider.encrypted_api_key = None
    elif fields.api_key is not None:
        provider.encrypted_api_key = cipher(secret).encrypt(fields.api_key)
    provider.icon = fields.icon
    provider.privacy_policy = fields.privacy_policy
    provider.custom_disclaimer = fields.custom_disclaimer


def _flush(session: Session, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"A custom tool provider is already called {name!r}.") from None


def delete_provider(session: Session, member: Membership, name: str) -> None:
    require_role(member, Role.EDITOR, "delete custom tools")
    provider = get_provider(session, member.tenant_id, name)
    for app, _ in _users(session, provider):
        raise Conflict(f"The app {app.name!r} uses {name!r}: take it out first.")
    session.delete(provider)


def _users(session: Session, provider: ApiToolProvider) -> list[tuple[App, list[dict[str, Any]]]]:
    """The workspace's apps that name the provider — an agent's tools, a workflow's tool
    nodes (its draft or a published version) — each with its tools of it."""
    found = []
    in_graphs: dict[str, list[dict[str, Any]]] = {}
    for app_id, graph in session.execute(
        select(Workflow.app_id, Workflow.graph).where(Workflow.tenant_id == provider.tenant_id)
    ):
        nodes = graph.get("nodes") if isinstance(graph, dict) else None
        for node in nodes if isinstance(nodes, list) else []:
            for _, data, _ in _graph_api_tools(node):
                if provider.id in _tool_provider_ids(data):
                    in_graphs.setdefault(app_id, []).append(data)
    for app_id, tools in in_graphs.items():
        app = session.get(App, app_id)
        if app is not None:
            found.append((app, tools))
    for app in session.scalars(select(App).where(App.tenant_id == provider.tenant_id)):
        mode = (app.model_config_ or {}).get("agent_mode")
        listed = mode.get("tools") if isinstance(mode, dict) else None
        mine = [
            t
            for t in (listed if isinstance(listed, list) else [])
            if isinstance(t, dict) and t.get("provider_id") == provider.id
        ]
        if mine:
            found.append((app, mine))
    return found


def _given_key(fields: ApiToolFields, stored: ApiToolProvider | None, secret: str) -> str | None:
    """The key a request gives: None to keep the stored one — `[__HIDDEN__]`, or the masked
    key Dify's console sends back as it was shown."""
    given = fields.api_key
    if given is not None and stored is not None and stored.encrypted_api_key:
        try:
            current = cipher(secret).decrypt(stored.encrypted_api_key)
        except DecryptionError:
            current = None
        if current is not None and given == mask(current):
            return None
    if given is not None and not key_value(given):
        raise InvalidParam("credentials.api_key_value: must be printable ASCII (no line breaks)")
    return given


def auth_of(provider: ApiToolProvider, secret: str) -> ApiAuth:
    credentials = provider.credentials or {}
    key = ""
    if provider.encrypted_api_key:
        try:
            key = cipher(secret).decrypt(provider.encrypted_api_key)
        except DecryptionError:
            key = ""
    return ApiAuth(
        auth_type=str(credentials.get("auth_type") or "none"),
        header=str(credentials.get("api_key_header") or "Authorization"),
        prefix=str(credentials.get("api_key_header_prefix") or "custom"),
        key=key,
    )


def tools_of(provider: ApiToolProvider, secret: str | None, allow: AllowList) -> dict[str, Tool]:
    """The provider's operations as tools, by name, ready to call (without `secret`: its key
    left out, to read their parameters)."""
    auth = auth_of(provider, secret) if secret is not None else ApiAuth()
    return {
        op.name: ApiTool(provider.id, provider.server_url, op, auth, allow).tool()
        for op in _operations(provider)
    }


def test_call(
    fields: ApiToolFields,
    tool_name: Any,
    parameters: Any,
    *,
    stored: ApiToolProvider | None,
    secret: str,
    allow: AllowList,
) -> dict[str, Any]:
    """Dify's `/api/test/pre`: one operation of a document not saved yet, called with the
    given parameters: `{"result": its answer}` or `{"error": why not}`."""
    operation = next((op for op in fields.operations if op.name == tool_name), None)
    if operation is None:
        raise InvalidParam(f"tool_name: the schema has no operation {tool_name!r}")
    if not isinstance(parameters, Mapping):
        raise InvalidParam("parameters: must be an object")
    key = _given_key(fields, stored, secret)
    if fields.auth_type == "api_key" and key is None:
        if stored is None or stored.server_url != fields.server_url:
            raise InvalidParam("credentials.api_key_value: give the key to test with")
        key = auth_of(stored, secret).key
    auth = ApiAuth(fields.auth_type, fields.header, fields.prefix, key or "")
    tool = ApiTool("test", fields.server_url, operation, auth, allow).tool()
    try:
        return {"result": tool.invoke(tool.arguments(parameters, {}))}
    except ToolError as error:
        return {"error": str(error)}


class ApiToolResolver:
    """What an agent run's api tools are when it starts (`core/apps/chat.py`'s
    `ToolResolver`): its workspace's providers read by id, their keys decrypted."""

    def __init__(self, db: Database, secret: str, allow: AllowList) -> None:
        self._db = db
        self._secret = secret
        self._allow = allow

    async def __call__(self, tenant_id: str, wanted: Sequence[tuple[str, str]]) -> dict[str, Tool]:
        return await asyncio.to_thread(self._resolve, tenant_id, wanted)

    def _resolve(self, tenant_id: str, wanted: Sequence[tuple[str, str]]) -> dict[str, Tool]:
        ids = sorted({provider_id for provider_id, _ in wanted})
        with self._db.transaction() as session:
            rows = session.scalars(
                select(ApiToolProvider).where(
                    ApiToolProvider.tenant_id == tenant_id, ApiToolProvider.id.in_(ids)
                )
            )
            found = {row.id: tools_of(row, self._secret, self._allow) for row in rows}
        tools: dict[str, Tool] = {}
        for provider_id, name in wanted:
            tool = found.get(provider_id, {}).get(name)
            if tool is not None:
                tools[name] = tool
        return tools


def own_graph_tools(session: Session, tenant_id: str, graph: Any) -> Any:
    """A workflow graph (a copy) whose custom API tools (tool nodes, agent nodes' tools) name
    this workspace's providers: found by id, else by name (an import from another workspace),
    their ids written in; a 400 naming the node and field when one is not this workspace's,
    lacks the operation, or an agent node fixes a value the operation refuses."""
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        return graph
    graph = copy.deepcopy(graph)
    for node in graph["nodes"]:
        for place, data, agent in _graph_api_tools(node):
            where = (
                f"node {node.get('id')!r} ({node['data'].get('title') or node.get('id')}){place}"
            )
            provider = _own_tool(session, tenant_id, where, data, agent=agent)
            if not agent:
                continue
            try:  # an agent node's values of the operation's parameters
                fixed, _ = agent_node.fixed_given(data, where)
                if fixed:
                    tool = tools_of(provider, None, AllowList())[str(data["tool_name"])]
                    agent_node.fixed_values(tool, fixed)
            except ToolError as error:
                message = str(error)
                raise InvalidParam(
                    message if message.startswith(where) else f"{where}.parameters: {message}"
                ) from None
    return graph


def _graph_api_tools(node: Any) -> list[tuple[str, dict[str, Any], bool]]:
    """The custom API tools a graph's node names, each with its place in the node and
    whether it is an agent node's: a tool node's own data, or each of an agent node's tools
    (dicts of the graph, to read or to write)."""
    data = node.get("data") if isinstance(node, dict) else None
    if not isinstance(data, dict):
        return []
    if data.get("type") == "tool":
        return [("", data, False)] if data.get("provider_type") == API else []
    if data.get("type") == "agent":
        return [(place, item, True) for place, item in agent_node.api_tools(data)]
    return []


def _tool_provider_ids(data: dict[str, Any]) -> set[str]:
    """The ids a graph's custom API tool may name its provider by: a tool node's
    `provider_id`; an agent node's tool's `provider_name` (Dify keeps the id there)."""
    return {str(data.get(key)) for key in ("provider_id", "provider_name") if data.get(key)}


def _own_tool(
    session: Session, tenant_id: str, where: str, data: dict[str, Any], *, agent: bool
) -> ApiToolProvider:
    """A graph's custom API tool named by this workspace's provider: found by id, else by
    name (an import from another workspace), its id written in (Dify's places: a tool node's
    `provider_id`, with the name in `provider_name`; an agent node's tool's `provider_name`,
    with the name in `provider_show_name`); a 400 naming `where` when the provider is not this
    workspace's or lacks the operation."""
    provider = None
    for key in ("provider_id", "provider_name"):
        if provider is None and isinstance(data.get(key), str):
            provider = provider_by_id(session, tenant_id, data[key])
    for key in ("provider_show_name", "provider_name"):
        if provider is None and isinstance(data.get(key), str):
            provider = session.scalar(
                select(ApiToolProvider).where(
                    ApiToolProvider.tenant_id == tenant_id, ApiToolProvider.name == data[key]
                )
            )
    if provider is None:
        named = (
            data.get("provider_show_name") or data.get("provider_name") or data.get("provider_id")
        )
        field = "provider_name" if agent else "provider_id"
        raise InvalidParam(f"{where}.{field}: no custom tool provider {named!r} in this workspace")
    operations = [op.name for op in _operations(provider)]
    if data.get("tool_name") not in operations:
        raise InvalidParam(
            f"{where}.tool_name: {provider.name} has no operation {data.get('tool_name')!r}; "
            f"its operations: {', '.join(operations)}"
        )
    if agent:
        data["provider_name"] = provider.id
        data["provider_show_name"] = provider.name
        data.pop("provider_id", None)
    else:
        data["provider_id"] = provider.id
        data["provider_name"] = provider.name
    return provider
