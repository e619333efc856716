"""The browser side, served by `conduit serve` itself: the console at `/` (a single page whose
scripts live under `/ui/`), and the end-user web app at `/chat/{code}`, `/completion/{code}`
and `/workflow/{code}`, which talks to the web tier (`/api`) only. The files are in
`conduit/web/` (ADR 0017): plain ES modules and a vendored Preact + htm, no build step."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# The pages name their scripts by fixed paths, so a browser must ask again whether they
# changed (an ETag answers 304) rather than keep a stale copy after an upgrade.
_REVALIDATE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def console_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers=_REVALIDATE)


@router.get("/chat/{code}")
@router.get("/completion/{code}")
@router.get("/workflow/{code}")
def web_app_page(code: str) -> FileResponse:
    """The end-user page of an app's site; the page reads the code from its own address."""
    return FileResponse(WEB_DIR / "webapp.html", headers=_REVALIDATE)


class _Assets(StaticFiles):
    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_REVALIDATE)
        return response


def install_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", _Assets(directory=WEB_DIR), name="ui")
