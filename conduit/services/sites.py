"""An app's site settings (Dify's `sites`: the public web page's title, icon, colours, texts):
read by the Service API's `/v1/site`, edited from the console. Every query goes through
`_readable()`, the one tenant-scoping helper; the row itself is made by
`apps.ensure_site` when the app is created.

Nothing caches a site (`/v1/site` reads the row), so an update needs no invalidation.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from conduit.db.models import App, IconType, Membership, Role, Site, utcnow
from conduit.errors import AppNotFound, InvalidParam
from conduit.services import files
from conduit.services._fields import boolean, text
from conduit.services.apps import SITE_CODE_ALPHABET, ensure_site, get_app, require_role

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")  # en-US, zh-Hans, pt-BR
_TEXT_LIMITS = {  # the column's limit, or Dify's where it is stricter; other fields are booleans
    "title": 255,
    "icon_type": 32,
    "icon": 255,
    "icon_background": 32,
    "description": 4000,
    "default_language": 32,
    "chat_color_theme": 255,
    "customize_domain": 255,
    "copyright": 255,
    "privacy_policy": 255,
    "custom_disclaimer": 512,
    "input_placeholder": 255,
}


@dataclass
class SiteFields:
    """What a caller may set on a site; None means "leave as is" (as Dify: "" clears a text)."""

    title: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None
    description: str | None = None
    default_language: str | None = None
    chat_color_theme: str | None = None
    chat_color_theme_inverted: bool | None = None
    customize_domain: str | None = None
    copyright: str | None = None
    privacy_policy: str | None = None
    custom_disclaimer: str | None = None
    show_workflow_steps: bool | None = None
    use_icon_as_answer_icon: bool | None = None
    input_placeholder: str | None = None
    access_mode: str | None = None  # who may use the site (ACCESS_MODES)


# Who may use a site (Dify's web app access modes this server serves): anyone with its link,
# or the members of the app's workspace, signed in (`/api/login`). Dify's `private` (chosen
# members and groups) and `sso_verified` (an external identity provider) are not served.
PUBLIC = "public"
PRIVATE_ALL = "private_all"
ACCESS_MODES = (PUBLIC, PRIVATE_ALL)
NOT_SERVED_MODES = ("private", "sso_verified")


def _readable(tenant_id: str) -> Select[Site]:
    """The only way to select sites: those of one workspace's apps."""
    return select(Site).join(App, App.id == Site.app_id).where(App.tenant_id == tenant_id)


def site_of(session: Session, app: App) -> Site | None:
    """The site of an app the caller may already use (e.g. through its Service API key)."""
    return session.scalars(_readable(app.tenant_id).where(Site.app_id == app.id)).first()


def icon_file_id(session: Session, site: Site, *, tenant_id: str) -> str | None:
    """The upload an image icon names, when it is a file of the site's own app (the caller
    signs a link to it, as Dify's `icon_url`); None for an emoji or any other id."""
    if site.icon_type != IconType.IMAGE or not site.icon:
        return None
    found = files.find_file(session, tenant_id=tenant_id, app_id=site.app_id, file_id=site.icon)
    return found.id if found is not None else None


def service_view(site: Site, *, icon_url: str | None = None) -> dict[str, Any]:
    """The site as `GET /v1/site` shows it (Dify's shape); `icon_url` is the signed link
    to its image icon (`icon_file_id`)."""
    return {
        "title": site.title,
        "chat_color_theme": site.chat_color_theme,
        "chat_color_theme_inverted": site.chat_color_theme_inverted,
        "icon_type": site.icon_type,
        "icon": site.icon,
        "icon_background": site.icon_background,
        "icon_url": icon_url,
        "description": site.description,
        "copyright": site.copyright,
        "privacy_policy": site.privacy_policy,
        "input_placeholder": site.input_placeholder,
        "custom_disclaimer": site.custom_disclaimer or "",
        "default_language": site.default_language,
        "show_workflow_steps": site.show_workflow_steps,
        "use_icon_as_answer_icon": site.use_icon_as_answer_icon,
    }


def snapshot(site: Site, *, icon_url: str | None = None) -> dict[str, Any]:
    """The site as the console shows it (Dify's `app_site_fields`)."""
    return {
        **service_view(site, icon_url=icon_url),
        "app_id": site.app_id,
        "access_token": site.code,
        "code": site.code,
        "customize_domain": site.customize_domain,
        "status": site.status,
        "access_mode": site.access_mode,
        "created_at": int(site.created_at.timestamp()),
        "updated_at": int(site.updated_at.timestamp()),
    }


def _editable_site(session: Session, member: Membership, app_id: str, role: Role) -> Site:
    require_role(member, role, "edit apps" if role == Role.EDITOR else "reset site tokens")
    app = get_app(session, member.tenant_id, app_id)  # another workspace's app: 404
    site = site_of(session, app) or ensure_site(session, app.id)  # provisioning is idempotent
    if site is None:  # the app went away between the two reads
        raise AppNotFound()
    return site


def get_site(session: Session, *, member: Membership, app_id: str) -> Site:
    """The site of one of the workspace's apps, for the console (any member may read it; it is
    provisioned now if the app's provisioning has not run yet)."""
    app = get_app(session, member.tenant_id, app_id)  # another workspace's app: 404
    site = site_of(session, app) or ensure_site(session, app.id)
    if site is None:  # the app went away between the two reads
        raise AppNotFound()
    return site


def update_site(session: Session, *, member: Membership, app_id: str, fields: SiteFields) -> Site:
    """Set the given fields (validated first: a bad one is a 400 naming it, nothing written)."""
    site = _editable_site(session, member, app_id, Role.EDITOR)
    changes = _validated(fields)
    for name, value in changes.items():
        setattr(site, name, value)
    site.updated_at = utcnow()
    session.flush()
    return site


def reset_access_token(session: Session, *, member: Membership, app_id: str) -> Site:
    """A new site code (the web app's URL token); the old one stops working."""
    site = _editable_site(session, member, app_id, Role.ADMIN)
    site.code = "".join(secrets.choice(SITE_CODE_ALPHABET) for _ in range(16))  # 62**16 codes
    site.updated_at = utcnow()
    session.flush()
    return site


def _validated(given: SiteFields) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for spec in fields(given):
        value = getattr(given, spec.name)
        if value is None:
            continue
        if spec.name == "access_mode":
            if value in NOT_SERVED_MODES:
                raise InvalidParam(
                    f"access_mode: {value!r} is not served here; the modes: "
                    f"{', '.join(ACCESS_MODES)} (members of the app's workspace, signed in)"
                )
            if value not in ACCESS_MODES:
                raise InvalidParam(f"access_mode: must be one of: {', '.join(ACCESS_MODES)}")
            changes[spec.name] = value
        elif spec.name in _TEXT_LIMITS:
            changes[spec.name] = text(value, spec.name, _TEXT_LIMITS[spec.name])
        else:
            changes[spec.name] = boolean(value, spec.name)
    if "title" in changes:
        changes["title"] = changes["title"].strip()
        if not changes["title"]:
            raise InvalidParam("title: must not be empty")
    icon_type = changes.get("icon_type")
    if icon_type is not None and icon_type not in {t.value for t in IconType}:
        raise InvalidParam("icon_type: must be emoji or image")
    language = changes.get("default_language")
    if language is not None and (len(language) > 32 or not _LANGUAGE.match(language)):
        raise InvalidParam("default_language: must be a language tag such as en-US or zh-Hans")
    return changes
