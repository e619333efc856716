"""An app's webhook secret and its callback deliveries (dead letters among them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.console.apps import int_param
from conduit.api.deps import AppSettings, CurrentIdentity, DbSession, ServerSecret
from conduit.api.responses import page_body
from conduit.services import webhooks

router = APIRouter(prefix="/apps/{app_id}", tags=["console: webhooks"])


@router.get("/webhook-secret")
def read_secret(
    app_id: str, identity: CurrentIdentity, session: DbSession, secret: ServerSecret
) -> dict[str, Any]:
    return webhooks.read_secret(
        session, member=identity.membership, app_id=app_id, server_secret=secret
    ).as_dict()


@router.post("/webhook-secret/rotate")
def rotate_secret(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    secret: ServerSecret,
    settings: AppSettings,
) -> dict[str, Any]:
    return webhooks.rotate_secret(
        session,
        member=identity.membership,
        app_id=app_id,
        server_secret=secret,
        grace_seconds=settings.webhook.secret_grace_seconds,
    ).as_dict()


@router.get("/webhook-deliveries")
def list_deliveries(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    status: Annotated[
        str | None, Query(description="pending, delivered or dead (dead letters); all by default.")
    ] = None,
    page: Annotated[str | None, Query(description="Page number, from 1.")] = None,
    limit: Annotated[str | None, Query(description="Items per page, 1–100.")] = None,
) -> dict[str, Any]:
    page_number = int_param("page", page, default=1, low=1, high=100_000)
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    rows, total = webhooks.list_deliveries(
        session,
        member=identity.membership,
        app_id=app_id,
        status=webhooks.parse_status(status),
        page=page_number,
        limit=page_size,
    )
    return page_body(
        [webhooks.display(row) for row in rows], page=page_number, limit=page_size, total=total
    )


@router.get("/webhook-deliveries/{delivery_id}")
def get_delivery(
    app_id: str, delivery_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    delivery, attempts = webhooks.get_delivery(
        session, member=identity.membership, app_id=app_id, delivery_id=delivery_id
    )
    return {"data": webhooks.display_detail(delivery, attempts)}


@router.post("/webhook-deliveries/{delivery_id}/redeliver", status_code=202)
def redeliver(
    app_id: str, delivery_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    delivery = webhooks.redeliver(
        session, member=identity.membership, app_id=app_id, delivery_id=delivery_id
    )
    return {"data": webhooks.display(delivery)}
