"""The models a workspace can use, as Dify's `GET /workspaces/current/models/model-types/{type}`
lists them for the Knowledge API: the embedding models a dataset can use (the local MiniLM,
provider `conduit`, and each workspace provider's `embedding_models`), the rerank models (each
workspace provider's `rerank_models`) and the chat models (the server's own, and each provider
the workspace added)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from conduit.core.rag.embed.local import CONTENT_TOKENS
from conduit.core.rag.embed.local import MODEL_ID as LOCAL_MODEL_ID
from conduit.errors import InvalidParam
from conduit.infra.settings import Settings
from conduit.services.model_providers import readable_providers, workspace_reference

LOCAL_PROVIDER = "conduit"
MODEL_TYPES = ("llm", "text-embedding", "rerank", "speech2text", "moderation", "tts")


def _label(text: str) -> dict[str, str]:
    return {"en_US": text, "zh_Hans": text}


def _model(name: str, model_type: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": name,
        "label": _label(name),
        "model_type": model_type,
        "features": None,
        "fetch_from": "predefined-model",
        "model_properties": properties,
        "deprecated": False,
        "status": "active",
        "load_balancing_enabled": False,
    }


def _provider(provider: str, label: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tenant_id": None,
        "provider": provider,
        "label": _label(label),
        "icon_small": None,
        "icon_large": None,
        "status": "active",
        "models": models,
    }


def available_models(
    session: Session, tenant_id: str, model_type: str, settings: Settings
) -> list[dict[str, Any]]:
    if model_type not in MODEL_TYPES:
        raise InvalidParam(f"model_type must be one of: {', '.join(MODEL_TYPES)}.")
    if model_type == "text-embedding":
        found = [
            _provider(
                LOCAL_PROVIDER,
                "Conduit (local)",
                [_model(LOCAL_MODEL_ID, model_type, {"context_size": CONTENT_TOKENS})],
            )
        ]
        for row in session.scalars(readable_providers(tenant_id)):
            if row.embedding_models:
                found.append(
                    _provider(
                        workspace_reference(row.id),
                        row.name,
                        [_model(name, model_type, {}) for name in row.embedding_models],
                    )
                )
        return found
    if model_type == "rerank":
        return [
            _provider(
                workspace_reference(row.id),
                row.name,
                [_model(name, model_type, {}) for name in row.rerank_models],
            )
            for row in session.scalars(readable_providers(tenant_id))
            if row.rerank_models
        ]
    if model_type != "llm":
        return []  # no speech or moderation models here
    server = "openai_api_compatible" if settings.model.base_url else "local"
    found = [
        _provider(server, "Server default", [_model(settings.model.name, "llm", {"mode": "chat"})])
    ]
    for row in session.scalars(readable_providers(tenant_id)):
        found.append(
            _provider(
                workspace_reference(row.id),
                row.name,
                [_model(name, "llm", {"mode": "chat"}) for name in row.models or []],
            )
        )
    return found


__all__ = ["LOCAL_MODEL_ID", "LOCAL_PROVIDER", "MODEL_TYPES", "available_models"]
