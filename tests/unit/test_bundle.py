"""`api/bundle.py`: a page's ES modules as one script. Each module's imports become bindings
of other modules' export objects, its exports the object it returns; what it cannot take is
refused by name (the server does not start), never sent to a browser half-understood."""

from __future__ import annotations

import pytest

from conduit.api.bundle import BundleError, bundle, imports_of, wrap
from conduit.api.ui import WEB_DIR, WebAssets


def test_each_import_form_becomes_a_binding_of_the_module_it_names() -> None:
    source = (
        'import { a, b as c } from "./x.js";\n'
        "import {\n  d,\n  e as f,\n} from '../y.js';\n"
        'import G from "./g.js";\n'
        'import * as ns from "./n.js";\n'
        'import "./side.js";\n'
        "const z = a + c + d + f;\n"
    )
    body = wrap("js/pages/p.js", source)
    assert 'const { a, b: c } = __require("js/pages/x.js");' in body
    assert 'const { d, e: f } = __require("js/y.js");' in body
    assert 'const G = __require("js/pages/g.js").default;' in body
    assert 'const ns = __require("js/pages/n.js");' in body
    assert '__require("js/pages/side.js");' in body
    assert "const z = a + c + d + f;" in body
    assert "import " not in body
    assert imports_of("js/pages/p.js", source) == [
        "js/pages/x.js", "js/y.js", "js/pages/g.js", "js/pages/n.js", "js/pages/side.js"
    ]  # fmt: skip


def test_each_export_form_goes_into_the_object_the_module_returns() -> None:
    source = (
        "export function one() {}\n"
        "export async function two() {}\n"
        "export const three = 3;\n"
        "export class Four {}\n"
        "const five = 5, six = 6;\n"
        "export { five, six as seven };\n"
        "export default function Page() {}\n"
    )
    body = wrap("js/m.js", source)
    assert "export" not in body
    assert "function one() {}" in body and "async function two() {}" in body
    assert "const three = 3;" in body and "class Four {}" in body
    assert "function Page() {}" in body
    assert body.rstrip().endswith(
        'return { "default": Page, one, two, three, Four, five, "seven": six };\n};'
    )


def test_a_minified_export_list_and_a_dynamic_import() -> None:
    body = wrap("vendor/v.js", "var a=1,fe=2;function q(){return a}export{a as h,fe as html};")
    assert "export" not in body
    assert 'return { "h": a, "html": fe };' in body
    loader = wrap(
        "js/app.js", "const m = await import(name);\nload(x).then(() => import('./p.js'));"
    )
    assert 'await __import("js/app.js", name);' in loader
    assert """__import("js/app.js", './p.js')""" in loader
    assert "async () =>" not in loader
    assert "async () =>" in wrap("js/app.js", "await 1;", entry=True)


@pytest.mark.parametrize(
    ("source", "refusal"),
    [
        ("export let a = 1;", "cannot bundle the export at line 1: 'export let a = 1;'"),
        ("export var a = 1;", "cannot bundle the export at line 1"),
        ("const x = 1;\nexport default x;", "cannot bundle the export at line 2"),
        ("export const { a } = o;", "cannot bundle the export at line 1"),
        ('import a, { b } from "./x.js";', "cannot bundle the import at line 1"),
        ('import { a } from "preact";', "only relative imports are bundled, not 'preact'"),
        ('import { a-b } from "./x.js";', "cannot read the name 'a-b'"),
    ],
)
def test_what_it_cannot_take_is_refused_by_name(source: str, refusal: str) -> None:
    with pytest.raises(BundleError, match=f"^js/m.js: {refusal}".replace("(", r"\(")):
        wrap("js/m.js", source)


def test_a_bundle_holds_the_entry_what_it_loads_and_their_imports_once() -> None:
    sources = {
        "js/app.js": 'import { u } from "./ui.js";\nawait import("./pages/a.js");',
        "js/ui.js": 'import { h } from "../vendor/v.js";\nexport const u = h;',
        "js/pages/a.js": 'import { u } from "../ui.js";\nexport default function A() {}',
        "js/pages/unused.js": "export const never = 1;",
        "vendor/v.js": "const h=1;export{h};",
    }
    script = bundle(sources, "js/app.js", also=["js/pages/a.js"])
    for module in ("js/app.js", "js/ui.js", "js/pages/a.js", "vendor/v.js"):
        assert script.count(f'__defs["{module}"] = ') == 1
    assert "js/pages/unused.js" not in script
    assert '__defs["js/app.js"] = async () =>' in script
    assert script.rstrip().endswith('await __require("js/app.js");')
    with pytest.raises(BundleError, match=r"js/gone\.js is imported but not found"):
        bundle({"js/app.js": 'import "./gone.js";'}, "js/app.js")


def test_the_servers_own_pages_bundle_every_module_they_load() -> None:
    assets = WebAssets()
    console = assets.files["bundles/index.js"].body.decode()
    webapp = assets.files["bundles/webapp.js"].body.decode()
    pages = sorted(
        p.relative_to(WEB_DIR).as_posix() for p in (WEB_DIR / "js" / "pages").glob("*.js")
    )
    kinds = sorted(
        p.relative_to(WEB_DIR).as_posix() for p in (WEB_DIR / "js" / "webapp").glob("*.js")
    )
    assert pages and kinds
    for module in [*pages, "js/app.js", "vendor/htm-preact-3.1.1.module.js"]:
        assert f'__defs["{module}"] = ' in console, module
    for module in [*kinds, "vendor/htm-preact-3.1.1.module.js"]:
        assert f'__defs["{module}"] = ' in webapp, module
    assert '__defs["js/boot.js"]' not in console + webapp  # inline in the pages
