"""Apps as Dify's DSL (YAML): import (new app, or a workflow app's draft overwritten), the
confirmation of a pending import, and export.

Dify's rules: a file without `version` is 0.1.0; one newer than `CURRENT_DSL_VERSION`, or of an
older major version, waits for a confirmation (`pending`, kept `PENDING_TTL` seconds in the
cache); an older minor version imports `completed-with-warnings`. A failed import writes
nothing and says why in `error`. Model providers are mapped onto this server's
(`provider_mapping.py`), knowledge datasets that are not this workspace's are dropped, and what
either did is in `warnings` / `provider_mappings` (a warning makes the import
`completed-with-warnings`). A workflow or chatflow import writes the app's draft: it runs on
the Service API once published.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.apps.knowledge import RERANKING_MODEL, reranking
from conduit.db.models import (
    App,
    AppMode,
    Dataset,
    IconType,
    Membership,
    Role,
    Workflow,
    new_id,
)
from conduit.errors import AppNotFound, InvalidParam, NotFound
from conduit.infra.cache import MISSING, Cache
from conduit.infra.ssrf import AllowList, resolve_target
from conduit.services import api_tools, apps, workflows
from conduit.services._workflow_store import WORKFLOW_MODES, graph_dataset_ids
from conduit.services.apps import AppFields, require_role
from conduit.services.datasets import rerank
from conduit.services.datasets.retrieval import reranker_model
from conduit.services.model_config import agent_mode, validate_model_config
from conduit.services.provider_mapping import ProviderMapper

CURRENT_DSL_VERSION = "0.3.1"
DSL_MAX_SIZE = 10 * 1024 * 1024  # bytes of YAML
PENDING_TTL = 10 * 60  # seconds a pending import waits for its confirmation
FETCH_TIMEOUT = 10.0  # seconds, each of connect and read (Dify's)
MAX_REDIRECTS = 3
MAX_INT = 2**63 - 1
_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class ImportStatus(enum.StrEnum):
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed-with-warnings"
    PENDING = "pending"
    FAILED = "failed"


class DslImportError(InvalidParam):
    """Why an import failed: its message is the import's `error`."""


@dataclass
class ImportRequest:
    """Dify's import body."""

    mode: str
    yaml_content: str | None = None
    yaml_url: str | None = None
    name: str | None = None
    description: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None
    app_id: str | None = None


@dataclass(frozen=True)
class ImportContext:
    """What an import needs of the server."""

    server_secret: str
    server_provider: str  # "local" | "openai_api_compatible": what `default` ends at
    allow: AllowList = field(default_factory=AllowList)  # private targets a yaml_url may reach


@dataclass
class ImportResult:
    """Dify's `Import`, plus what the mapping of providers and datasets did."""

    id: str
    status: ImportStatus
    app_id: str | None = None
    app_mode: str | None = None
    current_dsl_version: str = CURRENT_DSL_VERSION
    imported_dsl_version: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    provider_mappings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        return {ImportStatus.FAILED: 400, ImportStatus.PENDING: 202}.get(self.status, 200)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def pending_key(import_id: str) -> str:
    return f"app-import:{import_id}"


# --- import -----------------------------------------------------------------------------------


def import_app(
    session: Session,
    cache: Cache,
    *,
    member: Membership,
    request: ImportRequest,
    context: ImportContext,
) -> ImportResult:
    """Import a DSL file: a new app, or the draft of the workflow app `request.app_id`."""
    require_role(member, Role.EDITOR, "import apps")
    import_id = new_id()
    try:
        content = _content(request, context.allow)
        document, version, status = read_document(content)
        target = _target_app(session, member, request.app_id)
    except InvalidParam as error:
        return ImportResult(import_id, ImportStatus.FAILED, error=error.message)
    if status == ImportStatus.PENDING:
        pending = {
            "tenant_id": member.tenant_id,
            "account_id": member.account_id,
            "yaml_content": content,
            "request": {**asdict(request), "yaml_content": None, "yaml_url": None},
        }
        cache.set(pending_key(import_id), pending, ttl=PENDING_TTL)
        return ImportResult(import_id, status, app_id=request.app_id, imported_dsl_version=version)
    return _complete(
        session, member, import_id, document, version, status, request, target, context
    )


def confirm_import(
    session: Session, cache: Cache, *, member: Membership, import_id: str, context: ImportContext
) -> ImportResult:
    """Carry out a pending import (it is forgotten once it succeeded)."""
    require_role(member, Role.EDITOR, "import apps")
    pending = cache.get(pending_key(import_id))
    if (
        pending is MISSING
        or not isinstance(pending, dict)
        or pending.get("tenant_id") != member.tenant_id
    ):
        return ImportResult(
            import_id,
            ImportStatus.FAILED,
            error="Import information expired or does not exist",
        )
    request = ImportRequest(**pending["request"])
    try:
        document, version, _ = read_document(str(pending["yaml_content"]))
        target = _target_app(session, member, request.app_id)
    except InvalidParam as error:
        return ImportResult(import_id, ImportStatus.FAILED, error=error.message)
    status = ImportStatus.COMPLETED
    result = _complete(
        session, member, import_id, document, version, status, request, target, context
    )
    if result.status != ImportStatus.FAILED:
        cache.delete(pending_key(import_id))
    return result


def check_dependencies(session: Session, *, member: Membership, app_id: str) -> list[Any]:
    """Dify's plugin dependencies an imported app lacks: none here (no plugins)."""
    apps.get_app(session, member.tenant_id, app_id)
    return []


def _content(request: ImportRequest, allow: AllowList) -> str:
    if request.mode == "yaml-url":
        if not request.yaml_url:
            raise DslImportError("yaml_url is required when import_mode is yaml-url")
        content = fetch_yaml(request.yaml_url, allow)
        if not content:
            raise DslImportError("Empty content from url")
    elif request.mode == "yaml-content":
        if not request.yaml_content:
            raise DslImportError("yaml_content is required when import_mode is yaml-content")
        content = request.yaml_content
    else:
        raise DslImportError(f"Invalid import_mode: {request.mode}")
    if len(content) > DSL_MAX_SIZE or len(content.encode()) > DSL_MAX_SIZE:
        raise DslImportError("File size exceeds the limit of 10MB")
    return content


def read_document(content: str) -> tuple[dict[str, Any], str, ImportStatus]:
    """The DSL document, its version and what Dify's version rules make of it."""
    try:
        loaded = yaml.load(content, Loader=_YAML_LOADER)  # noqa: S506 (CSafeLoader or SafeLoader)
    except yaml.YAMLError as error:
        raise DslImportError(f"Invalid YAML format: {error}") from None
    except RecursionError:
        raise DslImportError("Invalid YAML format: nested too deeply") from None
    if not isinstance(loaded, dict):
        raise DslImportError("Invalid YAML format: content must be a mapping")
    try:
        document = _storable(loaded)
    except RecursionError:
        raise DslImportError("Invalid YAML format: nested too deeply") from None
    if not document.get("version"):
        document["version"] = "0.1.0"
    document["kind"] = "app"
    version = document["version"]
    if not isinstance(version, str):
        raise DslImportError(f"Invalid version type, expected str, got {type(version)}")
    status = version_status(version, CURRENT_DSL_VERSION)
    if status == ImportStatus.FAILED:
        raise DslImportError(f"Invalid DSL version: {version!r} (expected e.g. 0.3.1)")
    if not isinstance(document.get("app"), dict) or not document["app"]:
        raise DslImportError("Missing app data in YAML content")
    return document, version, status


def version_status(imported: str, current: str) -> ImportStatus:
    """Dify's `check_version_compatibility`."""
    mine, theirs = _version(current), _version(imported)
    if mine is None or theirs is None:
        return ImportStatus.FAILED
    if theirs > mine or theirs[0] < mine[0]:
        return ImportStatus.PENDING
    if theirs[1] < mine[1]:
        return ImportStatus.COMPLETED_WITH_WARNINGS
    return ImportStatus.COMPLETED


def _version(text: str) -> tuple[int, int, int] | None:
    found = _VERSION.match(text.strip())
    if found is None:
        return None
    major, minor, patch = (int(part or 0) for part in found.groups())
    return major, minor, patch


def _storable(value: Any) -> Any:
    """A copy of loaded YAML that JSON columns can hold. Refuses what they cannot (NUL,
    non-finite or 64+-bit numbers, binary), and anchors reused by aliases: an alias is a
    reference, and a file of nested aliases would grow exponentially once stored."""
    seen: set[int] = set()

    def walk(item: Any, path: str) -> Any:
        if isinstance(item, dict | list):
            if id(item) in seen:
                raise DslImportError(f"Invalid YAML format: {path}: aliases (*) are not supported")
            seen.add(id(item))
            if isinstance(item, list):
                return [walk(child, f"{path}[{index}]") for index, child in enumerate(item)]
            return {key_of(key, path): walk(child, f"{path}.{key}") for key, child in item.items()}
        if isinstance(item, str):
            if "\x00" in item:
                raise DslImportError(f"{path}: must not contain NUL characters")
            return item
        if item is None or isinstance(item, bool):
            return item
        if isinstance(item, int):
            if abs(item) > MAX_INT:
                raise DslImportError(f"{path}: integer out of range (64 bits at most)")
            return item
        if isinstance(item, float):
            if not math.isfinite(item):
                raise DslImportError(f"{path}: numbers must be finite")
            return item
        if isinstance(item, dt.date):  # an unquoted timestamp: keep it as the text it was
            return item.isoformat()
        raise DslImportError(f"{path}: a {type(item).__name__} value is not supported")

    def key_of(key: Any, path: str) -> str:
        if isinstance(key, str):
            if "\x00" in key:
                raise DslImportError(f"{path}: keys must not contain NUL characters")
            return key
        if isinstance(key, bool) or key is None:
            return {True: "true", False: "false", None: "null"}[key]
        if isinstance(key, int | float):
            return str(key)
        raise DslImportError(f"{path}: a {type(key).__name__} key is not supported")

    return walk(value, "$")


def fetch_yaml(url: str, allow: AllowList) -> str:
    """A DSL file over HTTP(S), behind the SSRF guard (`infra/ssrf.py`: each hop's host is
    resolved and checked, and the checked address is the one connected to); a GitHub "blob"
    page is fetched raw."""
    url = url.strip()
    parts = urlsplit(url)
    if (
        parts.scheme == "https"
        and parts.netloc == "github.com"
        and "/blob/" in parts.path
        and parts.path.endswith((".yml", ".yaml"))
    ):
        url = url.replace("https://github.com", "https://raw.githubusercontent.com", 1)
        url = url.replace("/blob/", "/", 1)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            target = resolve_target(url, allow, field="yaml_url")
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            with (
                httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False, trust_env=False) as c,
                c.stream(
                    "GET",
                    target.connect_url,
                    headers={"Host": target.host_header, "Accept": "application/x-yaml, */*"},
                    extensions=extensions,
                ) as response,
            ):
                if response.is_redirect and response.headers.get("location"):
                    url = urljoin(url, response.headers["location"])
                    continue
                if not response.is_success:
                    raise DslImportError(
                        f"Error fetching YAML from URL: HTTP {response.status_code}"
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > DSL_MAX_SIZE:
                        raise DslImportError("File size exceeds the limit of 10MB")
                return body.decode("utf-8")
    except httpx.HTTPError as error:
        raise DslImportError(
            f"Error fetching YAML from URL: {type(error).__name__}: {error}"
        ) from None
    except UnicodeDecodeError:
        raise DslImportError("Error fetching YAML from URL: the file is not UTF-8 text") from None
    raise DslImportError(f"Error fetching YAML from URL: more than {MAX_REDIRECTS} redirects")


def _target_app(session: Session, member: Membership, app_id: str | None) -> App | None:
    if not app_id:
        return None
    try:
        app = apps.get_app(session, member.tenant_id, app_id)
    except AppNotFound:
        raise DslImportError("App not found") from None
    if app.mode not in WORKFLOW_MODES:
        raise DslImportError("Only workflow or advanced chat apps can be overwritten")
    return app


def _complete(
    session: Session,
    member: Membership,
    import_id: str,
    document: dict[str, Any],
    version: str,
    status: ImportStatus,
    request: ImportRequest,
    target: App | None,
    context: ImportContext,
) -> ImportResult:
    """Write the import (all or nothing: a savepoint) and say how it went."""
    warnings: list[str] = []
    if status == ImportStatus.COMPLETED_WITH_WARNINGS:
        warnings.append(
            f"The file's DSL version {version} is older than this server's "
            f"{CURRENT_DSL_VERSION}: check the app once imported."
        )
    try:
        with session.begin_nested():
            app, more, mappings = _write(session, member, document, request, target, context)
    except InvalidParam as error:
        return ImportResult(
            import_id, ImportStatus.FAILED, imported_dsl_version=version, error=error.message
        )
    warnings.extend(more)
    if warnings:
        status = ImportStatus.COMPLETED_WITH_WARNINGS
    return ImportResult(
        import_id,
        status,
        app_id=app.id,
        app_mode=app.mode.value,
        imported_dsl_version=version,
        warnings=warnings,
        provider_mappings=mappings,
    )


def _write(
    session: Session,
    member: Membership,
    document: dict[str, Any],
    request: ImportRequest,
    target: App | None,
    context: ImportContext,
) -> tuple[App, list[str], list[dict[str, Any]]]:
    app_data: dict[str, Any] = document["app"]
    mode = _mode(app_data)
    if target is not None and target.mode != mode:
        raise DslImportError(
            f"The file is a {mode.value} app: it cannot overwrite the {target.mode.value} app "
            f"{target.name!r}"
        )
    mapper = ProviderMapper.load(session, member.tenant_id, context.server_provider)
    fields = _app_fields(app_data, request, mode)
    if mode in WORKFLOW_MODES:
        raw = document.get("workflow")
        if not isinstance(raw, dict) or not raw:
            raise DslImportError("Missing workflow data for workflow/advanced chat app")
        graph, dropped = _own_graph_datasets(session, member.tenant_id, raw.get("graph"))
        graph = api_tools.own_graph_tools(session, member.tenant_id, graph)
        previous = workflows.draft_workflow(session, target.id) if target is not None else None
        content = workflows.prepare_draft(
            {**raw, "graph": graph},
            previous=previous,
            mapper=mapper,
            server_secret=context.server_secret,
            chatflow=mode == AppMode.ADVANCED_CHAT,
        )
        if target is None:
            app = apps.create_app(
                session, member=member, fields=fields, server_secret=context.server_secret
            )
        else:
            fields.mode = None
            app = apps.update_app(session, member=member, app_id=target.id, fields=fields)
        workflows.write_draft(session, app, content, account_id=member.account_id)
        return app, [*dropped, *content.warnings], content.provider_mappings
    config = document.get("model_config")
    if not isinstance(config, dict) or not config:
        raise DslImportError("Missing model_config for chat/agent-chat/completion app")
    config = copy.deepcopy(config)
    if isinstance(config.get("model"), dict):
        config["model"] = mapper.map_model(config["model"], "model_config.model")
    dropped = [
        *_own_config_datasets(session, member.tenant_id, config),
        *_served_tools(session, member.tenant_id, config),
    ]
    fields.model_config = validate_model_config(session, member.tenant_id, config)
    app = apps.create_app(
        session, member=member, fields=fields, server_secret=context.server_secret
    )
    mappings = [mapping.to_dict() for mapping in mapper.mappings]
    return app, [*dropped, *mapper.warnings], mappings


def _mode(app_data: dict[str, Any]) -> AppMode:
    mode = app_data.get("mode")
    if not mode:
        raise DslImportError("Missing app mode in YAML content (app.mode)")
    try:
        return AppMode(mode)
    except ValueError:
        allowed = ", ".join(m.value for m in AppMode)
        raise DslImportError(f"app.mode: {mode!r} is not one of {allowed}") from None


def _app_fields(app_data: dict[str, Any], request: ImportRequest, mode: AppMode) -> AppFields:
    name = _text(request.name or app_data.get("name"), "app.name", 255).strip()
    if not name:
        raise DslImportError("app.name: must not be empty (give one in the file or as name)")
    icon_type = request.icon_type or app_data.get("icon_type")
    return AppFields(
        name=name,
        description=_text(
            request.description or app_data.get("description"), "app.description", 4000
        ),
        mode=mode,
        icon_type=IconType(icon_type) if icon_type in tuple(IconType) else IconType.EMOJI,
        icon=_text(request.icon or app_data.get("icon"), "app.icon", 255) or None,
        icon_background=_text(
            request.icon_background or app_data.get("icon_background"), "app.icon_background", 32
        )
        or None,
    )


def _text(value: Any, where: str, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DslImportError(f"{where}: must be a string")
    text = str(value)
    if len(text) > limit:
        raise DslImportError(f"{where}: must be at most {limit} characters")
    return text


def _owned(session: Session, tenant_id: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    query = select(Dataset.id).where(Dataset.tenant_id == tenant_id, Dataset.id.in_(ids))
    return set(session.scalars(query))


def _dropped_warning(where: str, dataset_id: str) -> str:
    return (
        f"{where}: dataset {dataset_id!r} is not a dataset of this workspace and was left out "
        "(Dify encrypts dataset ids when it exports; choose the datasets again)"
    )


def _own_graph_datasets(session: Session, tenant_id: str, graph: Any) -> tuple[Any, list[str]]:
    """The graph with each knowledge-retrieval node's `dataset_ids` kept to this workspace's
    datasets; a warning for each one left out."""
    if not isinstance(graph, dict):
        return graph, []
    owned = _owned(session, tenant_id, graph_dataset_ids(graph))
    graph = copy.deepcopy(graph)
    warnings: list[str] = []
    nodes = graph.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        data = node.get("data") if isinstance(node, dict) else None
        if not isinstance(data, dict) or data.get("type") != "knowledge-retrieval":
            continue
        if not isinstance(data.get("dataset_ids"), list):
            continue
        where = f"node {node.get('id')!r} ({data.get('title') or node.get('id')})"
        kept = [item for item in data["dataset_ids"] if item in owned]
        warnings.extend(
            _dropped_warning(where, str(item)) for item in data["dataset_ids"] if item not in owned
        )
        data["dataset_ids"] = kept
        if isinstance(data.get("multiple_retrieval_config"), dict):
            warnings.extend(
                _offered_reranking(
                    session, tenant_id, data["multiple_retrieval_config"],
                    f"{where}.multiple_retrieval_config",
                )
            )  # fmt: skip
    return graph, warnings


def _offered_reranking(
    session: Session, tenant_id: str, config: dict[str, Any], where: str
) -> list[str]:
    """Multiple retrieval's rerank model (an app's `dataset_configs`, a node's
    `multiple_retrieval_config`; in place) turned off when this workspace does not offer it
    (an export names its own workspace's providers); the warning says which."""
    chosen = reranking(config)
    if chosen is None or chosen.mode != RERANKING_MODEL:
        return []
    try:
        rerank.resolve(
            session, tenant_id, reranker_model(chosen), secret=None,
            field=f"{where}.reranking_model",
        )  # fmt: skip
    except InvalidParam as error:
        config["reranking_enable"] = False
        if "reranking_enabled" in config:
            config["reranking_enabled"] = False
        return [f"{error.message} Reranking was turned off."]
    return []


def _served_tools(session: Session, tenant_id: str, config: dict[str, Any]) -> list[str]:
    """An agent's tools kept to those this server serves (in place: Dify's plugin and
    workflow tools are left out, and API tools of providers this workspace does not have by
    that id or name, as are tools whose settings it refuses); a warning for each one left
    out."""
    mode = config.get("agent_mode")
    tools = mode.get("tools") if isinstance(mode, dict) else None
    if not isinstance(mode, dict) or not isinstance(tools, list):
        return []
    kept, warnings = [], []
    for index, item in enumerate(tools):
        try:
            kept.append(
                agent_mode({"tools": [item]}, session=session, tenant_id=tenant_id)["tools"][0]
            )
        except InvalidParam as error:
            name = item.get("tool_name") if isinstance(item, dict) else None
            warnings.append(
                f"The agent's tool {name or index!r} was left out: "
                f"{error.message.replace('agent_mode.tools[0]', 'its')}"
            )
    mode["tools"] = kept
    return warnings


def _own_config_datasets(session: Session, tenant_id: str, config: dict[str, Any]) -> list[str]:
    """The model config's `dataset_configs` kept to this workspace's datasets (in place), and
    its reranking turned off when this workspace does not offer its rerank model; a warning
    for each change."""
    configs = config.get("dataset_configs")
    if not isinstance(configs, dict):
        return []
    warnings = _offered_reranking(session, tenant_id, configs, "model_config.dataset_configs")
    holder = configs.get("datasets")
    entries = holder.get("datasets") if isinstance(holder, dict) else None
    if not isinstance(holder, dict) or not isinstance(entries, list):
        return warnings
    ids = [
        str(entry["dataset"]["id"])
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("dataset"), dict)
        and entry["dataset"].get("id")
    ]
    owned = _owned(session, tenant_id, ids)
    kept = []
    for entry in entries:
        dataset = entry.get("dataset") if isinstance(entry, dict) else None
        dataset_id = str(dataset.get("id")) if isinstance(dataset, dict) else ""
        if dataset_id in owned:
            kept.append(entry)
        else:
            warnings.append(_dropped_warning("model_config.dataset_configs", dataset_id))
    holder["datasets"] = kept
    return warnings


# --- export -----------------------------------------------------------------------------------


def export_app(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    include_secret: bool,
    workflow_id: str | None,
    server_secret: str,
) -> str:
    """The app as a DSL file of version `CURRENT_DSL_VERSION`: its draft workflow (or the
    version `workflow_id`), or its model config. Secret environment variables are empty
    unless `include_secret`; dataset ids are written as they are (Dify encrypts them)."""
    require_role(member, Role.EDITOR, "export apps")
    app = apps.get_app(session, member.tenant_id, app_id)
    document: dict[str, Any] = {
        "version": CURRENT_DSL_VERSION,
        "kind": "app",
        "app": {
            "name": app.name,
            "mode": app.mode.value,
            "icon": app.icon,
            "icon_type": app.icon_type.value,
            "icon_background": app.icon_background,
            "description": app.description,
            "use_icon_as_answer_icon": False,
        },
        "dependencies": [],
    }
    if app.mode in WORKFLOW_MODES:
        if workflow_id:
            workflow = workflows.workflow_by_id(session, app.id, workflow_id)
            if workflow is None:
                raise NotFound(f"Workflow not found with id: {workflow_id}")
        else:
            workflow = workflows.draft_workflow(session, app.id)
            if workflow is None:
                raise workflows.DraftWorkflowNotExist(
                    "Missing draft workflow configuration, please check."
                )
        document["workflow"] = _workflow_section(workflow, include_secret, server_secret)
    else:
        document["model_config"] = copy.deepcopy(app.model_config_ or {})
    return yaml.dump(document, Dumper=_YAML_DUMPER, allow_unicode=True, sort_keys=True)


def _workflow_section(
    workflow: Workflow, include_secret: bool, server_secret: str
) -> dict[str, Any]:
    environment = []
    for variable in workflow.environment_variables or []:
        value = variable.get("value")
        if variable.get("value_type") == "secret":
            value = workflows.variable_value(variable, server_secret) if include_secret else ""
        environment.append({**variable, "value": value, "selector": ["env", variable["name"]]})
    conversation = [
        {**variable, "selector": ["conversation", variable["name"]]}
        for variable in workflow.conversation_variables or []
    ]
    return {
        "graph": workflow.graph,
        "features": workflow.features,
        "environment_variables": environment,
        "conversation_variables": conversation,
        "rag_pipeline_variables": [],
    }
