"""The browser side, served by `conduit serve` itself: the console at `/` (a single page whose
scripts live under `/ui/`), and the end-user web app at `/chat/{code}`, `/completion/{code}`
and `/workflow/{code}`, which talks to the web tier (`/api`) only. The files are in
`conduit/web/` (ADR 0017): plain ES modules and a vendored Preact + htm, no build step.

The files are read once, when the app is built, and served from memory. The two HTML pages
name their assets under `/ui/{version}/`, where the version is a digest of every file: those
URLs never change meaning, so a browser keeps them for good (`immutable`) and a returning
visit asks for none of them; the modules import each other by relative paths, so they all
stay under the version. An upgrade is a new version, hence new URLs. The same files under
plain `/ui/…` are revalidated (`no-cache` + ETag) for whoever links them directly.
`js/boot.js` is written into both pages where they name it, so that a first visit sends the
page's first reads while the modules are still on their way.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_REVALIDATE = "no-cache"
_FOREVER = "public, max-age=31536000, immutable"
# Inlined into both pages, in place of its <script src>: it runs before any module arrives.
_BOOT = "js/boot.js"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


_IMPORT = re.compile(rb"""^\s*(?:import|export)\b[^;'"]*?\bfrom\s*["'](\.{1,2}/[^"']+)["']""", re.M)


def _module_deps(files: dict[str, _File]) -> dict[str, list[str]]:
    """Each module under `js/` → every module it imports, directly or not (static imports by
    relative path), as paths from `js/`: what js/boot.js preloads with a page's module."""
    direct: dict[str, list[str]] = {}
    for name, found in files.items():
        if name.endswith(".js"):
            base = posixpath.dirname(name)
            direct[name] = [
                posixpath.normpath(posixpath.join(base, spec.decode()))
                for spec in _IMPORT.findall(found.body)
            ]
    closed: dict[str, list[str]] = {}
    for name in direct:
        if not name.startswith("js/"):
            continue
        seen: list[str] = []
        todo = list(direct[name])
        while todo:
            dep = todo.pop()
            if dep not in seen and dep != name:
                seen.append(dep)
                todo.extend(direct.get(dep, []))
        if seen:
            closed[name.removeprefix("js/")] = sorted(posixpath.relpath(d, "js") for d in seen)
    return closed


class WebAssets:
    """`conduit/web/` in memory, and its version."""

    def __init__(self, root: Path = WEB_DIR) -> None:
        self.files: dict[str, _File] = {}
        version = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            body = path.read_bytes()
            version.update(name.encode() + b"\0" + body)
            media_type = _TYPES.get(path.suffix) or (
                mimetypes.guess_type(name)[0] or "application/octet-stream"
            )
            if media_type.startswith("text/") and "charset" not in media_type:
                media_type += "; charset=utf-8"
            etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
            self.files[name] = _File(body, media_type, etag)
        self.version = version.hexdigest()[:12]
        deps = json.dumps(_module_deps(self.files), separators=(",", ":")).encode()
        boot = self.files[_BOOT].body.replace(b"/*deps*/{}", deps)
        if b"</script" in boot.lower():
            raise ValueError(f"{_BOOT} cannot be inlined: it contains </script")
        self.pages = {
            name: self.files[name]
            .body.replace(
                f'<script src="/ui/{_BOOT}"></script>'.encode(), b"<script>" + boot + b"</script>"
            )
            .replace(b'"/ui/', f'"/ui/{self.version}/'.encode())
            for name in ("index.html", "webapp.html")
        }

    def page(self, name: str) -> Response:
        return Response(
            self.pages[name],
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": _REVALIDATE},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The `/ui` mount: `/ui/{version}/{file}` for good, `/ui/{file}` revalidated."""
        # Mounted at /ui: the scope's path is the whole path, its root_path "/ui".
        path = scope["path"].removeprefix(scope.get("root_path", "")).lstrip("/")
        caching = _REVALIDATE
        version, _, rest = path.partition("/")
        if version == self.version:
            path, caching = rest, _FOREVER
        found = self.files.get(path)
        if scope["method"] not in ("GET", "HEAD"):
            response = Response(status_code=405, headers={"Allow": "GET, HEAD"})
        elif found is None or path.endswith(".html"):
            response = Response("Not Found", status_code=404, media_type="text/plain")
        else:
            headers = {"Cache-Control": caching, "ETag": found.etag}
            if Request(scope).headers.get("if-none-match") == found.etag:
                response = Response(status_code=304, headers=headers)
            else:
                body = b"" if scope["method"] == "HEAD" else found.body
                response = Response(body, media_type=found.media_type, headers=headers)
                if scope["method"] == "HEAD":
                    response.headers["content-length"] = str(len(found.body))
        await response(scope, receive, send)


def install_ui(app: FastAPI, assets: WebAssets | None = None) -> None:
    web = assets or WebAssets()
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def console_page() -> Response:
        return web.page("index.html")

    @router.get("/chat/{code}")
    @router.get("/completion/{code}")
    @router.get("/workflow/{code}")
    def web_app_page(code: str) -> Response:
        """The end-user page of an app's site; the page reads the code from its own address."""
        return web.page("webapp.html")

    app.include_router(router)
    app.mount("/ui", web, name="ui")
