"""The browser side, served by `conduit serve` itself: the console at `/` (a single page whose
scripts live under `/ui/`), and the end-user web app at `/chat/{code}`, `/completion/{code}`
and `/workflow/{code}`, which talks to the web tier (`/api`) only. The files are in
`conduit/web/` (ADR 0017): plain ES modules and a vendored Preact + htm, no build step.

The files are read once, when the app is built, and served from memory. The two HTML pages
name their assets under `/ui/{version}/`, where the version is a digest of every file: those
URLs never change meaning, so a browser keeps them for good (`immutable`) and a returning
visit asks for none of them. Each page's entry module is named as one bundle of every module
the page loads (`api/bundle.py`, built here, served at `/ui/{version}/bundles/{page}.js`): a
first visit asks for one script, not a dozen modules one wave after another. An upgrade is a
new version, hence new URLs. The files under plain `/ui/…` (the modules one by one too) are
revalidated (`no-cache` + ETag) for whoever links them directly. `js/boot.js` is written into
both pages where they name it, so that a first visit sends the page's first reads while its
script is still on its way.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conduit.api.bundle import bundle

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


# Each page's entry module, and the folder of the modules it loads with `import()`: with every
# module they import, one bundle (`api/bundle.py`), named by the page in place of the entry.
_BUNDLES = {
    "index.html": ("js/app.js", "js/pages/"),
    "webapp.html": ("js/webapp/app.js", "js/webapp/"),
}


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
        sources = {
            name: found.body.decode()
            for name, found in self.files.items()
            if name.endswith(".js") and name != _BOOT
        }
        entries: dict[str, tuple[str, str]] = {}  # page → (its entry's address, its bundle's)
        for page, (entry, loaded) in _BUNDLES.items():
            if entry not in sources:
                continue
            also = [name for name in sources if name.startswith(loaded)]
            body = bundle(sources, entry, also).encode()
            name = f"bundles/{posixpath.splitext(page)[0]}.js"
            version.update(name.encode() + b"\0" + body)  # the bundler's own changes too
            etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
            self.files[name] = _File(body, _TYPES[".js"], etag)
            entries[page] = (f'src="/ui/{entry}"', f'src="/ui/{name}"')
        self.version = version.hexdigest()[:12]
        boot = self.files[_BOOT].body
        if b"</script" in boot.lower():
            raise ValueError(f"{_BOOT} cannot be inlined: it contains </script")
        self.pages = {}
        for page in ("index.html", "webapp.html"):
            html = self.files[page].body.replace(
                f'<script src="/ui/{_BOOT}"></script>'.encode(), b"<script>" + boot + b"</script>"
            )
            if page in entries:
                named, bundled = entries[page]
                html = html.replace(named.encode(), bundled.encode())
            self.pages[page] = html.replace(b'"/ui/', f'"/ui/{self.version}/'.encode())

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

    @router.get("/form/{token}")
    def form_page(token: str) -> Response:
        """The page of a paused workflow run's human-input form (its link), on the web tier."""
        return web.page("webapp.html")

    app.include_router(router)
    app.mount("/ui", web, name="ui")
