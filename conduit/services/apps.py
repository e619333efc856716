"""Apps: create, read (cache-aside), list, update, copy, rename, delete; and their site and
installed-app records. Every query goes through `_readable()`, the one tenant-scoping helper."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from conduit.db.models import (
    Account,
    App,
    AppDatasetJoin,
    AppMode,
    AppStatus,
    Dataset,
    IconType,
    InstalledApp,
    Membership,
    Role,
    Site,
    Workflow,
    utcnow,
)
from conduit.errors import AppNotFound, Forbidden
from conduit.infra.cache import Cache, get_or_load
from conduit.infra.outbox import enqueue
from conduit.services import webhook_secrets
from conduit.services._workflow_store import (
    WORKFLOW_MODES,
    find_draft,
    find_published,
    graph_dataset_ids,
    new_draft,
)
from conduit.signals import (
    app_model_config_was_updated,
    app_was_created,
    app_was_deleted,
    app_was_updated,
    send_after_commit,
)

_Row = TypeVar("_Row")
APP_CACHE_TTL = 600
PROVISION_TASK = "conduit.ops.provision_app"


def app_cache_key(app_id: str) -> str:
    return f"app:{app_id}"


def tenant_apps_tag(tenant_id: str) -> str:
    return f"tenant-apps:{tenant_id}"


@dataclass
class AppFields:
    """What a caller may set on an app; None means "leave as is" on update."""

    name: str | None = None
    description: str | None = None
    mode: AppMode | None = None
    icon_type: IconType | None = None
    icon: str | None = None
    icon_background: str | None = None
    enable_site: bool | None = None
    enable_api: bool | None = None
    max_active_requests: int | None = None
    model_config: dict[str, Any] | None = field(default=None)
    workflow: Workflow | None = None  # create: the draft to copy (workflow and chatflow apps)


def _readable(tenant_id: str) -> Select[App]:
    """The only way to select apps: scoped to one workspace."""
    return select(App).where(App.tenant_id == tenant_id)


def require_role(member: Membership, role: Role, action: str) -> None:
    if not member.role.at_least(role):
        raise Forbidden(f"Your role ({member.role.value}) cannot {action}.")


def snapshot(app: App) -> dict[str, Any]:
    """The app as the console shows it (also what the cache holds)."""
    return {
        "id": app.id,
        "name": app.name,
        "description": app.description,
        "mode": app.mode.value,
        "icon_type": app.icon_type.value,
        "icon": app.icon,
        "icon_background": app.icon_background,
        "status": app.status.value,
        "enable_site": app.enable_site,
        "enable_api": app.enable_api,
        "max_active_requests": app.max_active_requests,
        "model_config": app.model_config_,
        "tenant_id": app.tenant_id,
        "created_by": app.created_by,
        "created_at": int(app.created_at.timestamp()),
        "updated_at": int(app.updated_at.timestamp()),
    }


def serving_snapshot(app: App, tenant_status: str) -> dict[str, Any]:
    """What the Service API needs of an app on every request (cached under the app's tags)."""
    data = snapshot(app)
    data["updated_by"] = app.updated_by
    data["created_at"] = app.created_at.timestamp()
    data["updated_at"] = app.updated_at.timestamp()
    data["tenant_status"] = tenant_status
    return data


def app_from_snapshot(data: dict[str, Any]) -> App:
    """A detached App rebuilt from `serving_snapshot()`: readable like a loaded one, and
    `session.merge(app, load=False)` attaches it without a query."""
    app = App(
        id=data["id"],
        tenant_id=data["tenant_id"],
        name=data["name"],
        description=data["description"],
        mode=AppMode(data["mode"]),
        icon_type=IconType(data["icon_type"]),
        icon=data["icon"],
        icon_background=data["icon_background"],
        status=AppStatus(data["status"]),
        enable_site=data["enable_site"],
        enable_api=data["enable_api"],
        model_config_=data["model_config"],
        max_active_requests=data["max_active_requests"],
        created_by=data["created_by"],
        updated_by=data.get("updated_by"),
        created_at=datetime.fromtimestamp(data["created_at"], UTC),
        updated_at=datetime.fromtimestamp(data["updated_at"], UTC),
    )
    make_transient_to_detached(app)
    return app


def get_app(session: Session, tenant_id: str, app_id: str, *, for_update: bool = False) -> App:
    statement = _readable(tenant_id).where(App.id == app_id)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    app = session.scalars(statement).first()
    if app is None:
        raise AppNotFound()
    return app


def get_app_snapshot(session: Session, cache: Cache, tenant_id: str, app_id: str) -> dict[str, Any]:
    """Cache-aside read; the tenant check runs on the cached value too."""
    data = get_or_load(
        cache,
        app_cache_key(app_id),
        lambda: _load_snapshot(session, app_id),
        ttl=APP_CACHE_TTL,
        tags=[app_cache_key(app_id)],
    )
    if data is None or data.get("tenant_id") != tenant_id:
        raise AppNotFound()
    return data


def _load_snapshot(session: Session, app_id: str) -> dict[str, Any] | None:
    app = session.get(App, app_id)
    return snapshot(app) if app is not None else None


def list_apps(
    session: Session,
    tenant_id: str,
    *,
    page: int,
    limit: int,
    mode: AppMode | None,
    name: str | None,
) -> tuple[list[App], int]:
    query = _readable(tenant_id)
    if mode is not None:
        query = query.where(App.mode == mode)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(App.name.ilike(f"%{escaped}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(App.created_at.desc(), App.id).offset((page - 1) * limit).limit(limit)
    )
    return list(items), int(total)


def create_app(
    session: Session, *, member: Membership, fields: AppFields, server_secret: str
) -> App:
    """A new app with its webhook secret (encrypted with `server_secret`)."""
    require_role(member, Role.EDITOR, "create apps")
    assert fields.name is not None and fields.mode is not None
    app = App(
        tenant_id=member.tenant_id,
        name=fields.name.strip(),
        description=fields.description or "",
        mode=fields.mode,
        icon_type=fields.icon_type or IconType.EMOJI,
        icon=fields.icon or "🤖",
        icon_background=fields.icon_background or "#FFEAD5",
        model_config_=kept_reply(fields.model_config or {}, {}),
        max_active_requests=fields.max_active_requests,
        created_by=member.account_id,
        updated_by=member.account_id,
    )
    session.add(app)
    session.flush()
    if app.mode in WORKFLOW_MODES:
        session.add(new_draft(app, member.account_id, fields.workflow))
    sync_dataset_joins(session, app)
    webhook_secrets.create_secret(session, app.id, server_secret=server_secret)
    # The handlers create the site and installed-app records at once; the outbox task is the
    # durable guarantee that they exist even if this process dies right after the commit.
    enqueue(session, PROVISION_TASK, queue="ops", kwargs={"app_id": app.id})
    send_after_commit(session, app_was_created, app, account_id=member.account_id)
    return app


def copy_app(
    session: Session, *, member: Membership, app_id: str, fields: AppFields, server_secret: str
) -> App:
    """A copy of an app, with a webhook secret of its own."""
    require_role(member, Role.EDITOR, "copy apps")
    source = get_app(session, member.tenant_id, app_id)
    copy = AppFields(
        name=fields.name or f"{source.name} (copy)",
        description=fields.description if fields.description is not None else source.description,
        mode=source.mode,
        icon_type=fields.icon_type or source.icon_type,
        icon=fields.icon or source.icon,
        icon_background=fields.icon_background or source.icon_background,
        max_active_requests=source.max_active_requests,
        model_config=dict(source.model_config_),
        workflow=find_draft(session, source.id) if source.mode in WORKFLOW_MODES else None,
    )
    return create_app(session, member=member, fields=copy, server_secret=server_secret)


def config_dataset_ids(config: dict[str, Any] | None) -> list[str]:
    """The enabled datasets of a model config's `dataset_configs` (Dify's shape:
    `{"datasets": {"datasets": [{"dataset": {"enabled", "id"}}]}}`), in order, once each."""
    entries = (((config or {}).get("dataset_configs") or {}).get("datasets") or {}).get("datasets")
    ids: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        dataset = entry.get("dataset") if isinstance(entry, dict) else None
        if not isinstance(dataset, dict) or not dataset.get("enabled", True):
            continue
        if dataset.get("id") and str(dataset["id"]) not in ids:
            ids.append(str(dataset["id"]))
    return ids


def sync_dataset_joins(session: Session, app: App) -> None:
    """Make the app's dataset joins what it retrieves from: the datasets its model config names
    or, for a workflow or chatflow app, the knowledge-retrieval nodes of its latest published
    workflow (a draft's count once published); of its own workspace only (what `app_count`
    and `dataset_in_use` read)."""
    if app.mode in WORKFLOW_MODES:
        published = find_published(session, app.id)
        wanted = graph_dataset_ids(published.graph if published is not None else None)
    else:
        wanted = config_dataset_ids(app.model_config_)
    session.execute(
        delete(AppDatasetJoin).where(
            AppDatasetJoin.app_id == app.id, AppDatasetJoin.dataset_id.not_in(wanted)
        )
    )
    if not wanted:
        return
    present = set(
        session.scalars(select(AppDatasetJoin.dataset_id).where(AppDatasetJoin.app_id == app.id))
    )
    owned = session.scalars(
        select(Dataset.id).where(Dataset.tenant_id == app.tenant_id, Dataset.id.in_(wanted))
    )
    session.add_all(
        AppDatasetJoin(app_id=app.id, dataset_id=dataset_id)
        for dataset_id in owned
        if dataset_id not in present
    )
    session.flush()


def sync_dataset_joins_of(session: Session, app_id: str) -> None:
    """`sync_dataset_joins` by app id (nothing when the app is gone)."""
    app = session.get(App, app_id)
    if app is not None:
        sync_dataset_joins(session, app)


def kept_reply(config: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`config` with the app's current `annotation_reply`: the setting belongs to the
    annotation reply's jobs (`services/app_annotations.py`), which embed the annotations before
    they switch it on; an edit or an import never changes it."""
    kept = {name: value for name, value in config.items() if name != "annotation_reply"}
    if "annotation_reply" in current:
        kept["annotation_reply"] = current["annotation_reply"]
    return kept


def update_app(session: Session, *, member: Membership, app_id: str, fields: AppFields) -> App:
    require_role(member, Role.EDITOR, "edit apps")
    # Locked: the annotation reply's job writes the same `model_config` (PostgreSQL; SQLite's
    # write lock already serialises the two).
    app = get_app(session, member.tenant_id, app_id, for_update=True)
    for name in (
        "name",
        "description",
        "icon_type",
        "icon",
        "icon_background",
        "enable_site",
        "enable_api",
        "max_active_requests",
    ):
        value = getattr(fields, name)
        if value is not None:
            setattr(app, name, value.strip() if name == "name" else value)
    config = (
        None
        if fields.model_config is None
        else kept_reply(fields.model_config, app.model_config_ or {})
    )
    config_changed = config is not None and config != app.model_config_
    if config is not None and config_changed:
        app.model_config_ = config
    app.updated_by = member.account_id
    app.updated_at = utcnow()
    session.flush()
    if config_changed:
        sync_dataset_joins(session, app)
    send_after_commit(session, app_was_updated, app)
    if config_changed:
        send_after_commit(session, app_model_config_was_updated, app)
    return app


def delete_app(session: Session, *, member: Membership, app_id: str) -> None:
    require_role(member, Role.EDITOR, "delete apps")
    app = get_app(session, member.tenant_id, app_id)
    session.delete(app)  # sites, keys, conversations and messages go by ON DELETE CASCADE
    session.flush()
    send_after_commit(session, app_was_deleted, app)


# --- site and installed-app records (idempotent: handlers and the provision task both call) ---

SITE_CODE_ALPHABET = string.ascii_letters + string.digits


def ensure_site(session: Session, app_id: str) -> Site | None:
    app = session.get(App, app_id)
    if app is None:
        return None  # deleted meanwhile: nothing to provision
    site = session.scalars(select(Site).where(Site.app_id == app_id)).first()
    if site is not None:
        return site
    site = Site(
        app_id=app.id,
        title=app.name,
        icon_type=app.icon_type.value,
        icon=app.icon,
        icon_background=app.icon_background,
        description=app.description,
        code="".join(secrets.choice(SITE_CODE_ALPHABET) for _ in range(16)),
    )
    return _insert_once(
        session, site, lambda: session.scalars(select(Site).where(Site.app_id == app_id)).first()
    )


def ensure_installed_app(session: Session, app_id: str) -> InstalledApp | None:
    app = session.get(App, app_id)
    if app is None:
        return None
    query = select(InstalledApp).where(
        InstalledApp.app_id == app_id, InstalledApp.tenant_id == app.tenant_id
    )
    installed = session.scalars(query).first()
    if installed is not None:
        return installed
    installed = InstalledApp(
        tenant_id=app.tenant_id,
        app_id=app.id,
        app_owner_tenant_id=app.tenant_id,
        created_at=utcnow(),
    )
    return _insert_once(session, installed, lambda: session.scalars(query).first())


def _insert_once(session: Session, row: _Row, reload: Any) -> _Row | None:
    """Insert in a savepoint; if a concurrent writer won the unique constraint, use theirs."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return reload()  # type: ignore[no-any-return]
    return row


def provision_app(session: Session, app_id: str) -> bool:
    """Make sure the app's site and installed-app records exist. False when the app is gone."""
    site = ensure_site(session, app_id)
    installed = ensure_installed_app(session, app_id)
    return site is not None and installed is not None


def author_name(session: Session, app: App) -> str:
    """The name of the account that created the app ("" when it is gone or unknown)."""
    if not app.created_by:
        return ""
    return session.scalars(select(Account.name).where(Account.id == app.created_by)).first() or ""
