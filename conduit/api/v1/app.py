"""App metadata: GET /v1/ (no auth), /info, /parameters, /meta, /site."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

import conduit
from conduit.api.deps import AppCaller, DbSession
from conduit.api.files import Links
from conduit.db.models import AppMode
from conduit.errors import AppUnavailable, Forbidden
from conduit.services import sites

router = APIRouter(tags=["service: app"])

FILE_LIMITS = {
    "file_size_limit": 15,
    "image_file_size_limit": 10,
    "audio_file_size_limit": 50,
    "video_file_size_limit": 100,
    "workflow_file_upload_limit": 10,
}


@router.get("/")
async def welcome() -> dict[str, Any]:
    return {"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": conduit.__version__}


@router.get("/info")
def info(caller: AppCaller) -> dict[str, Any]:
    app = caller.app
    return {
        "name": app.name,
        "description": app.description,
        "tags": [],
        "mode": app.mode.value,
        "author_name": "",
    }


def _enabled(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    return dict(value) if isinstance(value, dict) else {"enabled": False}


@router.get("/parameters")
def parameters(caller: AppCaller, request: Request) -> dict[str, Any]:
    if caller.app.mode in (AppMode.WORKFLOW, AppMode.ADVANCED_CHAT):
        # Their parameters come from a published workflow, which this server cannot run yet.
        raise AppUnavailable()
    config = caller.app.model_config_ or {}
    upload = request.app.state.settings.upload
    retriever = config.get("retriever_resource")
    return {
        "opening_statement": config.get("opening_statement") or None,
        "suggested_questions": list(config.get("suggested_questions") or []),
        "suggested_questions_after_answer": _enabled(config, "suggested_questions_after_answer"),
        "speech_to_text": _enabled(config, "speech_to_text"),
        "text_to_speech": _enabled(config, "text_to_speech"),
        "retriever_resource": dict(retriever) if isinstance(retriever, dict) else {"enabled": True},
        "annotation_reply": _enabled(config, "annotation_reply"),
        "more_like_this": _enabled(config, "more_like_this"),
        "sensitive_word_avoidance": config.get("sensitive_word_avoidance")
        or {"enabled": False, "type": "", "configs": []},
        "user_input_form": list(config.get("user_input_form") or []),
        "file_upload": config.get("file_upload")
        or {
            "image": {
                "enabled": False,
                "number_limits": 3,
                "detail": "high",
                "transfer_methods": ["remote_url", "local_file"],
            }
        },
        "system_parameters": {
            **FILE_LIMITS,
            "file_size_limit": upload.file_size_limit_mb,
            "image_file_size_limit": upload.image_size_limit_mb,
        },
    }


@router.get("/meta")
def meta(caller: AppCaller) -> dict[str, Any]:
    return {"tool_icons": {}}


@router.get("/site")
def site(caller: AppCaller, session: DbSession, links: Links) -> dict[str, Any]:
    found = sites.site_of(session, caller.app)
    if found is None or not caller.app.enable_site:
        raise Forbidden("Site is not enabled for this app.")
    icon = sites.icon_file_id(session, found, tenant_id=caller.app.tenant_id)
    return sites.service_view(found, icon_url=links.preview(icon) if icon else None)
