"""An app's site settings (`/apps/{app_id}/site`): what its web page and `/v1/site` show."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conduit.api.deps import CurrentIdentity, DbSession
from conduit.services import sites
from conduit.services.sites import SiteFields

router = APIRouter(prefix="/apps", tags=["console: apps"])


@router.post("/{app_id}/site")
def update_site(
    app_id: str, body: SiteFields, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    """Dify's site fields, all optional: only those given change. The body is typed by
    `SiteFields` itself (FastAPI checks the types); lengths and formats are checked by the
    service, which names the field."""
    site = sites.update_site(session, member=identity.membership, app_id=app_id, fields=body)
    return {"data": sites.snapshot(site)}


@router.post("/{app_id}/site/access-token-reset")
def reset_site_access_token(
    app_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    site = sites.reset_access_token(session, member=identity.membership, app_id=app_id)
    return {"data": sites.snapshot(site)}
