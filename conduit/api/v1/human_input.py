"""The Service API's human-input forms (Dify 1.13+): a paused workflow run's form, read and
answered by its token (`form_token` of `human_input_required`); an answer resumes the run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from conduit.api import runs as run_controller
from conduit.api.deps import AppCaller, DbSession
from conduit.api.v1.schemas import json_body, required_user
from conduit.db.models import App, AppMode
from conduit.errors import NotWorkflowApp
from conduit.services import human_input
from conduit.services.human_input import FormScope

router = APIRouter(tags=["workflows"])


def _workflow_app(app: App) -> App:
    if app.mode not in (AppMode.WORKFLOW, AppMode.ADVANCED_CHAT):
        raise NotWorkflowApp()
    return app


@router.get("/form/human_input/{form_token}", name="get_human_input_form")
def get_form(form_token: str, caller: AppCaller, session: DbSession) -> dict[str, Any]:
    """The form: its content, fields, default values (as text) and actions, and when it
    expires; 412 once it was answered or its time ran out."""
    app = _workflow_app(caller.app)
    return human_input.form_view(session, scope=FormScope.of_app(app), token=form_token)


@router.post("/form/human_input/{form_token}", name="submit_human_input_form")
async def submit_form(form_token: str, request: Request, caller: AppCaller) -> dict[str, Any]:
    """Answer the form: `{inputs: {field: text}, action: <action id>, user}`; the run resumes
    (follow it with `GET /v1/workflow/{workflow_run_id}/events`)."""
    app = _workflow_app(caller.app)
    body = await json_body(request)
    user = required_user(body.get("user"))
    await human_input.submit_form(
        run_controller.runs_of(request),
        scope=FormScope.of_app(app),
        token=form_token,
        inputs=body.get("inputs"),
        action=body.get("action"),
        answered_by=user,
    )
    return {}
