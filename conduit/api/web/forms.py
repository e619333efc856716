"""The web tier's human-input forms: the page a form's link opens (`/form/{token}`) reads and
answers it here. No passport, as in Dify: the token is the secret; the form's app must have
its site on. Each address may make `FORM_REQUESTS_PER_MINUTE` requests a minute (429
`web_form_rate_limit_exceeded`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from conduit.api import runs as run_controller
from conduit.api.v1.schemas import json_body
from conduit.errors import InvalidParam, TooManyRequests
from conduit.services import human_input
from conduit.services.human_input import FormScope

router = APIRouter(tags=["web: forms"])
FORM_REQUESTS_PER_MINUTE = 60
_SCOPE = FormScope(site=True)


class FormRateLimited(TooManyRequests):
    code = "web_form_rate_limit_exceeded"
    default_message = "Too many form requests. Please try again later."


async def _count(request: Request) -> None:
    address = request.client.host if request.client is not None else "unknown"
    limiter = run_controller.runs_of(request).backends.limiter
    wait = await limiter.hit(f"web-form:{address}", limit=FORM_REQUESTS_PER_MINUTE, window=60.0)
    if wait > 0:
        raise FormRateLimited(retry_after=wait)


@router.get("/form/human_input/{form_token}", name="web_get_human_input_form")
async def get_form(form_token: str, request: Request) -> dict[str, Any]:
    """The form, and the site of its app (its title and colours for the page)."""
    await _count(request)
    db = run_controller.runs_of(request).db
    return await asyncio.to_thread(human_input.web_form_view, db, form_token)


@router.post("/form/human_input/{form_token}", name="web_submit_human_input_form")
async def submit_form(form_token: str, request: Request) -> dict[str, Any]:
    """Answer the form: `{inputs, action}` (no `user`: the answer is the page's)."""
    await _count(request)
    body = await json_body(request)
    if "user" in body:
        raise InvalidParam("user is not accepted by the web API")
    await human_input.submit_form(
        run_controller.runs_of(request),
        scope=_SCOPE,
        token=form_token,
        inputs=body.get("inputs"),
        action=body.get("action"),
        answered_by="web-form",
    )
    return {}
