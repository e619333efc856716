"""The Service API (`/v1`): Dify's public API on the wire, app keys (`app-…`)."""

from fastapi import APIRouter

from conduit.api.v1 import (
    annotations,
    app,
    audio,
    chat,
    completion,
    conversations,
    datasets,
    documents,
    files,
    human_input,
    metadata,
    tags,
    tasks,
    workflow_logs,
    workflows,
)

router = APIRouter(prefix="/v1")
router.include_router(app.router)
router.include_router(annotations.router)
router.include_router(chat.router)
router.include_router(completion.router)
router.include_router(conversations.router)
router.include_router(tags.router)  # before datasets: /datasets/tags is no dataset
router.include_router(datasets.router)
router.include_router(documents.router)
router.include_router(metadata.router)
router.include_router(files.router)
router.include_router(audio.router)
router.include_router(tasks.router)
router.include_router(workflow_logs.router)
router.include_router(workflows.router)
router.include_router(human_input.router)

__all__ = ["router"]
