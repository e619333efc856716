"""A workflow or chatflow app's workflows: the draft (read, synced whole, guarded by its hash),
publishing it as a new version, the versions, and the loaders the run path calls.

A draft's graph is checked (`WorkflowGraph.parse`: a bad graph is a 400 naming the node) and
its model providers mapped onto this server's (`provider_mapping.py`) every time it is
written. Secret environment variables are stored encrypted with the server secret; routes show
them masked, exports empty them unless asked, and runs read them with `environment_values`.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from conduit.core.workflow.graph import WorkflowGraph
from conduit.db.models import Account, App, AppMode, Membership, Role, Workflow, new_id, utcnow
from conduit.db.models.workflow import DRAFT
from conduit.errors import Conflict, Forbidden, InvalidParam, NotFound
from conduit.infra.crypto import DecryptionError, cipher, mask
from conduit.services import api_tools
from conduit.services._workflow_store import (
    WORKFLOW_MODES,
    find_draft,
    find_published,
    new_draft,
)
from conduit.services.apps import get_app, require_role
from conduit.services.provider_mapping import ProviderMapper
from conduit.signals import (
    app_draft_workflow_was_synced,
    app_published_workflow_was_updated,
    send_after_commit,
)

SECRETS = "conduit/workflow-secrets/v1"  # the purpose label of secret variables' key
HIDDEN = "[__HIDDEN__]"  # what Dify's editor sends back for a secret it did not change
ENVIRONMENT_TYPES = ("string", "number", "secret")
CONVERSATION_TYPES = (
    "string",
    "number",
    "boolean",
    "object",
    "array[string]",
    "array[number]",
    "array[boolean]",
    "array[object]",
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_EMPTY: dict[str, Any] = {"string": "", "number": 0, "boolean": False, "object": {}}


class NotWorkflowApp(InvalidParam):
    code = "not_workflow_app"
    default_message = "Please check if your app mode matches the right API route."


class DraftWorkflowNotExist(NotFound):
    code = "draft_workflow_not_exist"
    default_message = "Draft workflow need to be initialized."


class DraftWorkflowNotSync(Conflict):
    code = "draft_workflow_not_sync"
    default_message = "Workflow graph might have been modified, please refresh and resubmit."


class PublishedWorkflowNotFound(NotFound):
    code = "published_workflow_not_exist"
    default_message = "The app has no published workflow: publish its draft first."


@dataclass
class DraftContent:
    """A draft as written: checked, providers mapped, secrets encrypted."""

    graph: dict[str, Any]
    features: dict[str, Any]
    environment_variables: list[dict[str, Any]]
    conversation_variables: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    provider_mappings: list[dict[str, Any]] = field(default_factory=list)


# --- loaders (the run path) -------------------------------------------------------------------


def published_workflow(session: Session, app_id: str) -> Workflow | None:
    """The app's latest published workflow: what the Service API runs."""
    return find_published(session, app_id)


def draft_workflow(session: Session, app_id: str) -> Workflow | None:
    return find_draft(session, app_id)


def workflow_by_id(session: Session, app_id: str, workflow_id: str) -> Workflow | None:
    """One version of the app's workflow by id: a published one or the draft (a caller that
    must not run drafts checks `version != "draft"`)."""
    query = select(Workflow).where(Workflow.app_id == app_id, Workflow.id == workflow_id)
    return session.scalars(query.limit(1)).first()


def environment_values(workflow: Workflow, *, server_secret: str) -> dict[str, Any]:
    """The workflow's environment variables by name, secrets decrypted (what `env.<name>`
    reads in a run). A secret that cannot be decrypted is a 400 naming it."""
    values: dict[str, Any] = {}
    for variable in workflow.environment_variables or []:
        values[variable["name"]] = variable_value(variable, server_secret)
    return values


def variable_value(variable: dict[str, Any], server_secret: str) -> Any:
    """An environment variable's value as stored, a secret decrypted."""
    value = variable.get("value")
    if variable.get("value_type") != "secret" or not value:
        return value
    try:
        return cipher(server_secret, SECRETS).decrypt(str(value))
    except DecryptionError as error:
        raise InvalidParam(f"environment_variables.{variable['name']}: {error}") from None


# --- the console: draft, publish, versions ---------------------------------------------------


def workflow_app(session: Session, member: Membership, app_id: str, action: str) -> App:
    """The app, when the member may `action` it and it is a workflow or chatflow app."""
    require_role(member, Role.EDITOR, action)
    app = get_app(session, member.tenant_id, app_id)
    if app.mode not in WORKFLOW_MODES:
        raise NotWorkflowApp(
            f"The app is a {app.mode.value} app: only workflow and advanced-chat apps have "
            "workflows (a chat, agent-chat or completion app has a model config)."
        )
    return app


def get_draft(session: Session, *, member: Membership, app_id: str) -> Workflow:
    app = workflow_app(session, member, app_id, "edit workflows")
    draft = find_draft(session, app.id)
    if draft is None:
        raise DraftWorkflowNotExist()
    return draft


def sync_draft(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    raw: dict[str, Any],
    unique_hash: str | None,
    server_secret: str,
    server_provider: str,
) -> tuple[Workflow, DraftContent]:
    """Replace the draft with `raw` ({graph, features, environment_variables,
    conversation_variables}); a `unique_hash` that is not the current draft's is a 409."""
    app = workflow_app(session, member, app_id, "edit workflows")
    current = find_draft(session, app.id, for_update=True)
    if current is not None and unique_hash is not None and unique_hash != workflow_hash(current):
        raise DraftWorkflowNotSync()
    mapper = ProviderMapper.load(session, app.tenant_id, server_provider)
    raw = {**raw, "graph": api_tools.own_graph_tools(session, app.tenant_id, raw.get("graph"))}
    content = prepare_draft(
        raw,
        previous=current,
        mapper=mapper,
        server_secret=server_secret,
        chatflow=app.mode == AppMode.ADVANCED_CHAT,
    )
    draft = write_draft(session, app, content, account_id=member.account_id, draft=current)
    return draft, content


def prepare_draft(
    raw: dict[str, Any],
    *,
    previous: Workflow | None,
    mapper: ProviderMapper,
    server_secret: str,
    chatflow: bool = False,
) -> DraftContent:
    """A draft's content checked and made ready to store (nothing is written); a chatflow's
    (`chatflow`) also against what a chatflow cannot run."""
    graph, features = raw.get("graph"), raw.get("features")
    if not isinstance(graph, dict):
        raise InvalidParam("graph: must be an object with nodes and edges")
    if features is None:
        features = {}
    if not isinstance(features, dict):
        raise InvalidParam("features: must be an object")
    parsed = WorkflowGraph.parse(graph)
    if chatflow:
        parsed.check_chatflow()
    graph = mapper.map_graph(graph)
    environment = check_environment_variables(
        raw.get("environment_variables") or [],
        previous=previous.environment_variables if previous is not None else [],
        server_secret=server_secret,
    )
    conversation = check_conversation_variables(raw.get("conversation_variables") or [])
    return DraftContent(
        graph=graph,
        features=copy.deepcopy(features),
        environment_variables=environment,
        conversation_variables=conversation,
        warnings=list(mapper.warnings),
        provider_mappings=[mapping.to_dict() for mapping in mapper.mappings],
    )


def write_draft(
    session: Session,
    app: App,
    content: DraftContent,
    *,
    account_id: str | None,
    draft: Workflow | None = None,
) -> Workflow:
    """Store `content` as the app's draft (`draft`, else the one found, else a new one) and
    send `app-draft-workflow-was-synced` after the commit."""
    draft = draft or find_draft(session, app.id)
    if draft is None:
        draft = new_draft(app, account_id)
        session.add(draft)
    draft.graph = content.graph
    draft.features = content.features
    draft.environment_variables = content.environment_variables
    draft.conversation_variables = content.conversation_variables
    draft.updated_by = account_id
    draft.updated_at = utcnow()
    session.flush()
    send_after_commit(session, app_draft_workflow_was_synced, app, synced_draft_workflow=draft)
    return draft


def publish(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    marked_name: str = "",
    marked_comment: str = "",
) -> Workflow:
    """A new published version: a copy of the draft, `version` the publish time as Dify
    writes it (`str` of the naive UTC time). Sends `app-published-workflow-was-updated`."""
    app = workflow_app(session, member, app_id, "publish workflows")
    draft = find_draft(session, app.id)
    if draft is None:
        raise DraftWorkflowNotExist()
    WorkflowGraph.parse(draft.graph)  # a draft is checked when written; this costs little
    now = utcnow()
    published = Workflow(
        tenant_id=app.tenant_id,
        app_id=app.id,
        type=draft.type,
        version=publish_version(now),
        graph=copy.deepcopy(draft.graph),
        features=copy.deepcopy(draft.features),
        environment_variables=copy.deepcopy(draft.environment_variables),
        conversation_variables=copy.deepcopy(draft.conversation_variables),
        marked_name=marked_name,
        marked_comment=marked_comment,
        created_by=member.account_id,
        updated_by=member.account_id,
        created_at=now,
        updated_at=now,
    )
    session.add(published)
    session.flush()
    send_after_commit(
        session, app_published_workflow_was_updated, app, published_workflow=published
    )
    return published


def publish_version(when: datetime) -> str:
    """Dify's version of a published workflow: `str(naive_utc_now())`."""
    return str(when.replace(tzinfo=None))


def get_published(session: Session, *, member: Membership, app_id: str) -> Workflow:
    app = workflow_app(session, member, app_id, "edit workflows")
    published = find_published(session, app.id)
    if published is None:
        raise PublishedWorkflowNotFound()
    return published


def list_versions(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    page: int,
    limit: int,
    user_id: str | None = None,
    named_only: bool = False,
) -> tuple[list[Workflow], bool]:
    """The draft, then the published versions newest first, as Dify lists them (nothing at
    all before the first publish); and whether more follow."""
    app = workflow_app(session, member, app_id, "edit workflows")
    if user_id and user_id != member.account_id:
        raise Forbidden("user_id: only your own versions can be listed")
    if find_published(session, app.id) is None:
        return [], False
    query = select(Workflow).where(Workflow.app_id == app.id)
    if user_id:
        query = query.where(Workflow.created_by == user_id)
    if named_only:
        query = query.where(Workflow.marked_name != "")
    query = query.order_by(
        case((Workflow.version == DRAFT, 0), else_=1),
        Workflow.created_at.desc(),
        Workflow.id,
    )
    found = list(session.scalars(query.offset((page - 1) * limit).limit(limit + 1)))
    return found[:limit], len(found) > limit


# --- shapes -----------------------------------------------------------------------------------


def workflow_hash(workflow: Workflow) -> str:
    """Dify's `unique_hash`: of the graph and the features (the draft's optimistic lock)."""
    return content_hash(workflow.graph, workflow.features)


def content_hash(graph: Any, features: Any) -> str:
    text = orjson.dumps({"graph": graph, "features": features}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def snapshot(session: Session, workflow: Workflow, *, server_secret: str) -> dict[str, Any]:
    """The workflow as Dify's console shows it; secret values masked."""
    return {
        "id": workflow.id,
        "graph": workflow.graph,
        "features": workflow.features,
        "hash": workflow_hash(workflow),
        "version": workflow.version,
        "marked_name": workflow.marked_name,
        "marked_comment": workflow.marked_comment,
        "created_by": _account(session, workflow.created_by),
        "created_at": int(workflow.created_at.timestamp()),
        "updated_by": _account(session, workflow.updated_by),
        "updated_at": int(workflow.updated_at.timestamp()),
        "tool_published": False,
        "environment_variables": [
            {**item, "value": _masked(item, server_secret)}
            for item in workflow.environment_variables or []
        ],
        "conversation_variables": list(workflow.conversation_variables or []),
        "rag_pipeline_variables": [],
    }


def _account(session: Session, account_id: str | None) -> dict[str, Any] | None:
    account = session.get(Account, account_id) if account_id else None
    if account is None:
        return None
    return {"id": account.id, "name": account.name, "email": account.email}


def _masked(variable: dict[str, Any], server_secret: str) -> Any:
    if variable.get("value_type") != "secret":
        return variable.get("value")
    try:
        return mask(variable_value(variable, server_secret)) or ""
    except InvalidParam:
        return ""


# --- variables --------------------------------------------------------------------------------


def _variable_head(
    item: Any, where: str, types: tuple[str, ...], seen: set[str]
) -> tuple[str, str, str, str]:
    """(id, name, value_type, description) of a declared variable, checked."""
    if not isinstance(item, dict):
        raise InvalidParam(f"{where}: must be an object with name, value_type and value")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParam(
            f"{where}.name: must start with a letter or _ and hold only letters, digits and _ "
            "(at most 64)"
        )
    if name in seen:
        raise InvalidParam(f"{where}.name: {name!r} is declared twice")
    seen.add(name)
    value_type = item.get("value_type")
    if value_type not in types:
        raise InvalidParam(f"{where}.value_type: must be one of {', '.join(types)}")
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise InvalidParam(f"{where}.description: must be a string")
    variable_id = item.get("id")
    if variable_id is not None and (not isinstance(variable_id, str) or len(variable_id) > 255):
        raise InvalidParam(f"{where}.id: must be a string of at most 255 characters")
    return variable_id or new_id(), name, str(value_type), description


def check_environment_variables(
    raw: Any, *, previous: list[dict[str, Any]], server_secret: str
) -> list[dict[str, Any]]:
    """Environment variables ({id, name, value_type: string|number|secret, value,
    description}) checked; secret values encrypted. A secret sent back as Dify's hidden
    marker or as its masked value keeps its stored value."""
    if not isinstance(raw, list):
        raise InvalidParam("environment_variables: must be a list")
    before = {item.get("id"): item for item in previous if item.get("value_type") == "secret"}
    seen: set[str] = set()
    variables: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = f"environment_variables[{index}]"
        variable_id, name, value_type, description = _variable_head(
            item, where, ENVIRONMENT_TYPES, seen
        )
        value = item.get("value")
        if value_type == "number":
            value = _number(value, f"{where}.value")
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            raise InvalidParam(f"{where}.value: must be a string")
        if value_type == "secret" and value:
            value = _sealed(value, before.get(variable_id), server_secret)
        variables.append(
            {
                "id": variable_id,
                "name": name,
                "value_type": value_type,
                "value": value,
                "description": description,
            }
        )
    return variables


def _sealed(value: str, stored: dict[str, Any] | None, server_secret: str) -> str:
    if stored is not None and stored.get("value"):
        if value == HIDDEN:
            return str(stored["value"])
        try:
            if mask(variable_value(stored, server_secret)) == value:
                return str(stored["value"])
        except InvalidParam:
            pass
    if value == HIDDEN:
        return ""  # nothing stored to keep
    return cipher(server_secret, SECRETS).encrypt(value)


def _number(value: Any, where: str) -> int | float:
    if value is None or value == "":
        return 0
    if isinstance(value, str):  # older files write numbers as text
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise InvalidParam(f"{where}: must be a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParam(f"{where}: must be a number")
    return value


def check_conversation_variables(raw: Any) -> list[dict[str, Any]]:
    """A chatflow's conversation variables ({id, name, value_type, value, description}),
    each value of its type (null: the type's empty value)."""
    if not isinstance(raw, list):
        raise InvalidParam("conversation_variables: must be a list")
    seen: set[str] = set()
    variables: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = f"conversation_variables[{index}]"
        variable_id, name, value_type, description = _variable_head(
            item, where, CONVERSATION_TYPES, seen
        )
        value = _typed(item.get("value"), value_type, f"{where}.value")
        variables.append(
            {
                "id": variable_id,
                "name": name,
                "value_type": value_type,
                "value": value,
                "description": description,
            }
        )
    return variables


def _typed(value: Any, value_type: str, where: str) -> Any:
    if value is None:
        return copy.deepcopy(_EMPTY.get(value_type, []))
    if value_type == "number":
        return _number(value, where)
    checks: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "boolean": bool,
        "object": dict,
        "array[string]": str,
        "array[number]": (int, float),
        "array[boolean]": bool,
        "array[object]": dict,
    }
    wanted = checks[value_type]
    if not value_type.startswith("array["):
        if not isinstance(value, wanted):
            raise InvalidParam(f"{where}: must be a {value_type}")
        return value
    if not isinstance(value, list) or not all(
        isinstance(item, wanted) and not (value_type == "array[number]" and isinstance(item, bool))
        for item in value
    ):
        raise InvalidParam(f"{where}: must be an {value_type}")
    return value
