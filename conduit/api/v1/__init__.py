"""The Service API (`/v1`): Dify's public API on the wire, app keys (`app-…`)."""

from fastapi import APIRouter

from conduit.api.hot_routes import Endpoint
from conduit.api.v1 import app, chat, completion, conversations, files
from conduit.api.v1._runs import hot_start

router = APIRouter(prefix="/v1")
router.include_router(app.router)
router.include_router(chat.router)
router.include_router(completion.router)
router.include_router(conversations.router)
router.include_router(files.router)

# The run-starting routes, also served ahead of FastAPI's router (conduit.api.hot_routes).
HOT_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat-messages"): hot_start("chat"),
    ("POST", "/v1/completion-messages"): hot_start("completion"),
}

__all__ = ["HOT_ROUTES", "router"]
