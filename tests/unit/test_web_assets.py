"""The UI's files as `api/ui.py` serves them: the pages name their assets under a version
that is a digest of every file (kept for good by browsers), plain `/ui/…` is revalidated, and
an ETag answers 304."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from conduit.api.ui import WebAssets, install_ui

PAGE = (
    '<script src="/ui/js/boot.js"></script><link rel="stylesheet" href="/ui/css/app.css">'
    '<script type="module" src="/ui/js/app.js">'
)
BOOT = 'const reads = ["/apps"];'


def site(root: Path, script: str = "export const a = 1;", boot: str = BOOT) -> Path:
    (root / "js").mkdir(parents=True, exist_ok=True)
    (root / "css").mkdir(exist_ok=True)
    (root / "js" / "boot.js").write_text(boot)
    (root / "index.html").write_text(PAGE)
    (root / "webapp.html").write_text(PAGE.replace("app.js", "webapp.js"))
    (root / "js" / "app.js").write_text(script)
    (root / "css" / "app.css").write_text("body { margin: 0 }")
    return root


def client(root: Path) -> tuple[TestClient, WebAssets]:
    app = FastAPI()
    assets = WebAssets(root)
    install_ui(app, assets)
    return TestClient(app), assets


def test_pages_name_versioned_assets_kept_for_good(tmp_path: Path) -> None:
    web, assets = client(site(tmp_path))
    page = web.get("/")
    assert page.headers["cache-control"] == "no-cache"
    assert f'src="/ui/{assets.version}/bundles/index.js"' in page.text
    assert f"/ui/{assets.version}/css/app.css" in web.get("/chat/abc").text
    script = web.get(f"/ui/{assets.version}/js/app.js")
    assert script.status_code == 200 and script.text == "export const a = 1;"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_plain_paths_are_revalidated_with_their_etag(tmp_path: Path) -> None:
    web, _ = client(site(tmp_path))
    first = web.get("/ui/js/app.js")
    assert first.headers["cache-control"] == "no-cache"
    again = web.get("/ui/js/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert web.get("/ui/js/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_another_file_is_another_version(tmp_path: Path) -> None:
    _, before = client(site(tmp_path / "a"))
    _, after = client(site(tmp_path / "b", script="export const a = 2;"))
    _, same = client(site(tmp_path / "c"))
    assert before.version != after.version
    assert before.version == same.version


def test_refusals(tmp_path: Path) -> None:
    web, assets = client(site(tmp_path))
    assert web.get("/ui/js/missing.js").status_code == 404
    assert web.get("/ui/index.html").status_code == 404  # pages only at their own addresses
    assert web.get(f"/ui/{assets.version}/../index.html").status_code == 404
    assert web.post("/ui/js/app.js").status_code == 405
    head = web.head("/ui/css/app.css")
    assert head.status_code == 200 and head.headers["content-length"] == "18"


def test_the_boot_script_is_inlined_and_the_entry_is_a_bundle(tmp_path: Path) -> None:
    """js/boot.js runs before the page's script arrives: written into both pages. The console's
    entry module is named as one bundle of it, the page modules (js/pages/) and everything
    they import, under the version; the modules stay servable one by one."""
    root = site(tmp_path, script='import { b } from "./pages/b.js";\nexport const a = b;')
    (root / "js" / "pages").mkdir()
    (root / "js" / "pages" / "b.js").write_text(
        'import { v } from "../../vendor/v.js";\nexport const b = v;'
    )
    (root / "js" / "pages" / "c.js").write_text("export default function C() {}")
    (root / "vendor").mkdir()
    (root / "vendor" / "v.js").write_text("const w = 1;export{w as v};")
    web, assets = client(root)
    for address in ("/", "/chat/abc"):
        page = web.get(address).text
        assert '<script src="/ui/js/boot.js">' not in page and "/boot.js" not in page
        assert '<script>const reads = ["/apps"];</script>' in page
    page = web.get("/").text
    assert f'<script type="module" src="/ui/{assets.version}/bundles/index.js">' in page
    assert "/js/app.js" not in page
    script = web.get(f"/ui/{assets.version}/bundles/index.js")
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    for module in ("js/app.js", "js/pages/b.js", "js/pages/c.js", "vendor/v.js"):
        assert f'__defs["{module}"] = ' in script.text
    assert script.text.rstrip().endswith('await __require("js/app.js");')
    assert web.get(f"/ui/{assets.version}/js/pages/b.js").status_code == 200
    # the end-user page's entry (here js/webapp.js) is not one: it is named as it is
    assert f'src="/ui/{assets.version}/js/webapp.js"' in web.get("/chat/abc").text


def test_a_module_the_bundler_cannot_take_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"js/app.js: cannot bundle the export at line 1"):
        WebAssets(site(tmp_path, script="export let a = 1;"))


def test_a_boot_script_that_would_end_its_inline_tag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="</script"):
        WebAssets(site(tmp_path, boot='const s = "</SCRIPT>";'))
