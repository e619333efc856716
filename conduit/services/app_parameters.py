"""An app's parameters (`GET /v1/parameters`): its features and its input form, as Dify gives
them. A chat, agent-chat or completion app's come from its model config; a workflow or
chatflow app's from its published workflow (the workflow's `features`, and the start node's
variables as the form). Such an app not published yet is unavailable (400), as in Dify: its
runs would be refused too, so no draft's form is shown for them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from conduit.db.models import App, AppMode
from conduit.errors import AppUnavailable
from conduit.infra.settings import UploadSettings
from conduit.services.runs.workflow import start_form
from conduit.services.workflows import published_workflow

WORKFLOW_FILE_UPLOAD_LIMIT = 10
DEFAULT_FILE_UPLOAD = {
    "image": {
        "enabled": False,
        "number_limits": 3,
        "detail": "high",
        "transfer_methods": ["remote_url", "local_file"],
    }
}
NO_WORD_AVOIDANCE = {"enabled": False, "type": "", "configs": []}


def app_parameters(session: Session, app: App, *, upload: UploadSettings) -> dict[str, Any]:
    """The app's `/parameters` body; 400 `app_unavailable` for an unpublished workflow app."""
    if app.mode in (AppMode.WORKFLOW, AppMode.ADVANCED_CHAT):
        workflow = published_workflow(session, app.id)
        if workflow is None:
            raise AppUnavailable()
        features: Mapping[str, Any] = workflow.features or {}
        reply = (app.model_config_ or {}).get("annotation_reply")
        if app.mode == AppMode.ADVANCED_CHAT and reply:
            # A chatflow's annotation reply is the app's (its jobs'), not the workflow's.
            features = {**features, "annotation_reply": reply}
        form = start_form(workflow.graph or {})
    else:
        features = app.model_config_ or {}
        form = list(features.get("user_input_form") or [])
    return parameters_view(features, form, upload=upload)


def _enabled(features: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = features.get(name)
    return dict(value) if isinstance(value, dict) else {"enabled": False}


def parameters_view(
    features: Mapping[str, Any], form: list[Any], *, upload: UploadSettings
) -> dict[str, Any]:
    """Dify's `get_parameters_from_feature_dict`: each feature, or its default when unset."""
    retriever = features.get("retriever_resource")
    return {
        "opening_statement": features.get("opening_statement") or None,
        "suggested_questions": list(features.get("suggested_questions") or []),
        "suggested_questions_after_answer": _enabled(features, "suggested_questions_after_answer"),
        "speech_to_text": _enabled(features, "speech_to_text"),
        "text_to_speech": _enabled(features, "text_to_speech"),
        "retriever_resource": dict(retriever) if isinstance(retriever, dict) else {"enabled": True},
        "annotation_reply": _enabled(features, "annotation_reply"),
        "more_like_this": _enabled(features, "more_like_this"),
        "sensitive_word_avoidance": features.get("sensitive_word_avoidance")
        or dict(NO_WORD_AVOIDANCE),
        "user_input_form": form,
        "file_upload": features.get("file_upload") or copy.deepcopy(DEFAULT_FILE_UPLOAD),
        "system_parameters": {
            "file_size_limit": upload.file_size_limit_mb,
            "image_file_size_limit": upload.image_size_limit_mb,
            "audio_file_size_limit": upload.audio_size_limit_mb,
            "video_file_size_limit": upload.video_size_limit_mb,
            "workflow_file_upload_limit": WORKFLOW_FILE_UPLOAD_LIMIT,
        },
    }
