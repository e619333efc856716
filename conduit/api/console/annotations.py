"""A chat app's annotations and annotation reply in the console (Dify's console routes under
`/console/api/apps/{app_id}/annotation…`): the Service API's verbs, for the app's workspace
(editors and above write; another workspace's app is a 404), and "annotate this answer" from a
message of the app's logs (`message_id`); the import of annotations from a CSV file, their
export, and each annotation's hit history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from conduit.api.console.apps import int_param
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.responses import page_body
from conduit.api.v1.files import UploadForm, read_upload
from conduit.api.v1.schemas import JsonBody
from conduit.db.models import App, Role
from conduit.services import app_annotations, apps

router = APIRouter(prefix="/apps/{app_id}", tags=["console: annotations"])
Text = Annotated[str | None, Query()]


def _app(identity: CurrentIdentity, session: DbSession, app_id: str, *, write: bool) -> App:
    app = apps.get_app(session, identity.membership.tenant_id, app_id)
    if write:
        apps.require_role(identity.membership, Role.EDITOR, "edit annotations")
    return app


def _paging(page: str | None, limit: str | None) -> tuple[int, int]:
    """The page number and its size (20 unless asked, at most 100)."""
    return (
        int_param("page", page, default=1, low=1, high=1_000_000),
        int_param("limit", limit, default=20, low=1, high=100),
    )


@router.get("/annotations")
def list_annotations(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=False)
    page_number, page_size = _paging(page, limit)
    items, total = app_annotations.list_annotations(
        session, app, page=page_number, limit=page_size, keyword=keyword or None
    )
    data = [app_annotations.view(item) for item in items]
    return page_body(data, page=page_number, limit=page_size, total=total)


@router.get("/annotations/count")
def count_annotations(app_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=False)
    return {"count": app_annotations.count_annotations(session, app)}


# (Before `/annotations/{annotation_id}`, whose POST edits one.)
@router.get("/annotations/export")
def export_annotations(
    app_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=False)
    return {"data": app_annotations.export_annotations(session, app)}


@router.post("/annotations/batch-import")
def import_annotations(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    form: Annotated[UploadForm, Depends(read_upload)],
) -> dict[str, Any]:
    """A CSV file (part `file`): its annotations written at once, all or none."""
    app = _app(identity, session, app_id, write=True)
    return app_annotations.import_annotations(
        session, app, form.filename or "", form.data, account_id=identity.membership.account_id
    )


@router.get("/annotations/batch-import-status/{job_id}")
def import_status(
    app_id: str, job_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=False)
    return app_annotations.import_view(session, app, job_id)


@router.get("/annotations/{annotation_id}/hit-histories")
def hit_histories(
    app_id: str,
    annotation_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=False)
    page_number, page_size = _paging(page, limit)
    items, total = app_annotations.hit_histories(
        session, app, annotation_id, page=page_number, limit=page_size
    )
    return page_body(items, page=page_number, limit=page_size, total=total)


@router.post("/annotations")
def create_annotation(
    app_id: str, identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=True)
    created = app_annotations.create_annotation(
        session, app, body, account_id=identity.membership.account_id
    )
    return app_annotations.view(created)


@router.post("/annotations/{annotation_id}")
@router.put("/annotations/{annotation_id}")
def update_annotation(
    app_id: str, annotation_id: str, identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=True)
    return app_annotations.view(
        app_annotations.update_annotation(session, app, annotation_id, body)
    )


@router.delete("/annotations/{annotation_id}", status_code=204)
def delete_annotation(
    app_id: str, annotation_id: str, identity: CurrentIdentity, session: DbSession
) -> Response:
    app = _app(identity, session, app_id, write=True)
    app_annotations.delete_annotation(session, app, annotation_id)
    return Response(status_code=204)


@router.get("/annotation-setting")
def annotation_setting(
    app_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    return app_annotations.setting_view(_app(identity, session, app_id, write=False))


@router.post("/annotation-reply/{action}")
def annotation_reply(
    app_id: str, action: str, identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=True)
    return app_annotations.start_job(session, app, action, body)


@router.get("/annotation-reply/{action}/status/{job_id}")
def annotation_reply_status(
    app_id: str, action: str, job_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    app = _app(identity, session, app_id, write=False)
    return app_annotations.job_view(session, app, action, job_id)
