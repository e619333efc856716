"""The Web API (`/api`): Dify's WebApp API, for the end users of an app's site. A passport
(`GET /api/passport`, by the site's code) names the app and a "browser" end user; every other
route reads it from `Authorization: Bearer` (`deps.py`). No `user` field anywhere."""

from fastapi import APIRouter

from conduit.api.web import (
    app,
    audio,
    conversations,
    files,
    forms,
    messages,
    passport,
    runs,
    saved_messages,
)

router = APIRouter(prefix="/api")
router.include_router(passport.router)
router.include_router(app.router)
router.include_router(runs.router)
router.include_router(forms.router)
router.include_router(conversations.router)
router.include_router(messages.router)
router.include_router(saved_messages.router)
router.include_router(files.router)
router.include_router(audio.router)

__all__ = ["router"]
