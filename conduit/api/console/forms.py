"""The console's human-input forms: a builder answers the form a draft run (the debugger)
or any run of the workspace's apps waits on. Editors and above, in the form's workspace
(another workspace's form is a 404)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from conduit.api import runs as run_controller
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.v1.schemas import json_body
from conduit.db.models import Role
from conduit.services import human_input
from conduit.services.apps import require_role
from conduit.services.human_input import FormScope

router = APIRouter(prefix="/form/human_input", tags=["console: workflow debugging"])


def form_scope(identity: CurrentIdentity, session: DbSession) -> FormScope:
    require_role(identity.membership, Role.EDITOR, "answer a workflow's forms")
    # End the sign-in's read transaction: an answer opens its own, and on SQLite every
    # transaction holds the write lock.
    session.commit()
    return FormScope(tenant_id=identity.membership.tenant_id)


Scope = Annotated[FormScope, Depends(form_scope)]


@router.get("/{form_token}")
async def get_form(form_token: str, request: Request, scope: Scope) -> dict[str, Any]:
    db = run_controller.runs_of(request).db

    def read() -> dict[str, Any]:
        with db.sessions() as session:
            return human_input.form_view(session, scope=scope, token=form_token)

    return await asyncio.to_thread(read)


@router.post("/{form_token}")
async def submit_form(
    form_token: str, request: Request, scope: Scope, identity: CurrentIdentity
) -> dict[str, Any]:
    body = await json_body(request)
    await human_input.submit_form(
        run_controller.runs_of(request),
        scope=scope,
        token=form_token,
        inputs=body.get("inputs"),
        action=body.get("action"),
        answered_by=f"account:{identity.membership.account_id}",
    )
    return {}
