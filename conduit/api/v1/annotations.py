"""An app's annotations and its annotation reply (`/v1/apps/annotations`,
`/v1/apps/annotation-reply/{action}`), called with the app's key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from conduit.api.deps import AppCaller, DbSession
from conduit.api.responses import page_body
from conduit.api.v1.schemas import JsonBody, int_query, optional
from conduit.services import app_annotations

router = APIRouter(tags=["service: annotations"])
Text = Annotated[str | None, Query()]


@router.get("/apps/annotations")
def list_annotations(
    caller: AppCaller,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
) -> dict[str, Any]:
    page_number = int_query("page", page, default=1, low=1, high=1_000_000)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, total = app_annotations.list_annotations(
        session, caller.app, page=page_number, limit=page_size, keyword=optional(keyword)
    )
    return page_body(
        [app_annotations.view(item) for item in items],
        page=page_number,
        limit=page_size,
        total=total,
    )


@router.post("/apps/annotations", status_code=201)
def create_annotation(caller: AppCaller, session: DbSession, body: JsonBody) -> dict[str, Any]:
    created = app_annotations.create_annotation(session, caller.app, body, account_id=None)
    return app_annotations.view(created)


@router.put("/apps/annotations/{annotation_id}")
def update_annotation(
    annotation_id: str, caller: AppCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    updated = app_annotations.update_annotation(session, caller.app, annotation_id, body)
    return app_annotations.view(updated)


@router.delete("/apps/annotations/{annotation_id}", status_code=204)
def delete_annotation(annotation_id: str, caller: AppCaller, session: DbSession) -> Response:
    app_annotations.delete_annotation(session, caller.app, annotation_id)
    return Response(status_code=204)


@router.post("/apps/annotation-reply/{action}")
def annotation_reply(
    action: str, caller: AppCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    return app_annotations.start_job(session, caller.app, action, body)


@router.get("/apps/annotation-reply/{action}/status/{job_id}")
def annotation_reply_status(
    action: str, job_id: str, caller: AppCaller, session: DbSession
) -> dict[str, Any]:
    return app_annotations.job_view(session, caller.app, action, job_id)
