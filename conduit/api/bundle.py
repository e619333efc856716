"""A page's ES modules as one script, built when the server starts (ADR 0017, amended): a
first visit then asks for one file instead of a dozen, which on a busy machine is most of
what the browser side adds (bench/README.md `ui.py`).

Not a general bundler: it takes the subset of module syntax `conduit/web/` is written in and
refuses anything else by name, so that a module written otherwise fails the server's start
(and the tests), never a browser. Each module becomes a function in a registry, run once on
its first `__require` (as a module is evaluated once), its imports `const` bindings of the
modules' export objects and its exports that object:

- `import { a, b as c } from "./m.js"`, `import d from "./m.js"`, `import * as n from "./m.js"`,
  `import "./m.js"` (relative specifiers only);
- `export function|async function|const|class name`, `export default function Name`,
  `export { a, b as c }` (also as minified, e.g. the vendored Preact's last statement).
  `export let`/`var` are refused: importers would not see a later assignment (a live binding);
- `import(spec)` → the registry's module, from a promise, as `import()` gives it;
- the entry may use top-level `await` (its function is `async`); no other module may.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping

_IMPORT = re.compile(
    r"""^import\s*(?:(?P<names>\{[^}]*\})|\*\s*as\s+(?P<star>[\w$]+)|(?P<default>[\w$]+))"""
    r"""\s*from\s*(?P<q>["'])(?P<spec>[^"']+)(?P=q)\s*;?[ \t]*$""",
    re.M,
)
_BARE_IMPORT = re.compile(r"""^import\s*(?P<q>["'])(?P<spec>[^"']+)(?P=q)\s*;?[ \t]*$""", re.M)
_ANY_IMPORT = re.compile(r"^import\b(?!\s*\()", re.M)
_DYNAMIC_IMPORT = re.compile(r"(?<![\w$.])import\s*\(")
_EXPORT_DEFAULT = re.compile(r"^export\s+default\s+(?=(?:async\s+)?function\b\*?\s*([\w$]+))", re.M)
_EXPORT_DECLARATION = re.compile(
    r"^export\s+(?=(?:async\s+function\b\*?|function\b\*?|const|class)\s*([\w$]+))", re.M
)
_EXPORT_LIST = re.compile(r"(?:^|(?<=[;}]))export\s*(\{[^}]*\})\s*;?", re.M)
_ANY_EXPORT = re.compile(r"(?:^|(?<=[;}]))export\b", re.M)
_NAME = re.compile(r"^[\w$]+$")

RUNTIME = """\
// Built by conduit/api/bundle.py from the ES modules beside it: each module is a function
// run once, on its first __require; its exports are the object it returns.
const __defs = Object.create(null);
const __done = new Map();
const __require = (name) => {
  if (!__done.has(name)) {
    if (!(name in __defs)) throw new Error(`${name} is not in this page's bundle`);
    __done.set(name, undefined);
    __done.set(name, __defs[name]());
  }
  return __done.get(name);
};
const __import = (from, spec) => {
  const name = new URL(spec, `https://m/${from}`).pathname.slice(1);
  return Promise.resolve().then(() => __require(name));
};
"""


class BundleError(ValueError):
    """A module the bundler cannot take, naming it and what it found."""


def _names(listed: str, module: str, *, exports: bool) -> list[tuple[str, str]]:
    """`{ a, b as c }` → [(a, a), (b, c)]: (the exporting module's name, the local name)."""
    pairs = []
    for item in listed.strip().strip("{}").split(","):
        item = " ".join(item.split())
        if not item:
            continue
        left, _, right = item.partition(" as ")
        right = right or left
        if not (_NAME.match(left) and _NAME.match(right)):
            raise BundleError(f"{module}: cannot read the name {item!r}")
        pairs.append((left, right) if not exports else (right, left))
    return pairs


def _resolve(module: str, spec: str) -> str:
    if not spec.startswith(("./", "../")):
        raise BundleError(f"{module}: only relative imports are bundled, not {spec!r}")
    return posixpath.normpath(posixpath.join(posixpath.dirname(module), spec))


def imports_of(module: str, source: str) -> list[str]:
    """The modules `module` imports statically, as paths like its own."""
    found = [m["spec"] for m in _IMPORT.finditer(source)]
    found += [m["spec"] for m in _BARE_IMPORT.finditer(source)]
    return [_resolve(module, spec) for spec in found]


def wrap(module: str, source: str, *, entry: bool = False) -> str:
    """One module as a registry entry: its imports bindings of other entries, its exports the
    object its function returns."""
    exported: dict[str, str] = {}  # the exported name → the local one

    def imported(match: re.Match[str]) -> str:
        name = json.dumps(_resolve(module, match["spec"]))
        if match["star"]:
            return f"const {match['star']} = __require({name});"
        if match["default"]:
            return f"const {match['default']} = __require({name}).default;"
        pairs = _names(match["names"], module, exports=False)
        fields = ", ".join(left if left == right else f"{left}: {right}" for left, right in pairs)
        return f"const {{ {fields} }} = __require({name});"

    def default(match: re.Match[str]) -> str:
        exported["default"] = match[1]
        return ""

    def declared(match: re.Match[str]) -> str:
        exported[match[1]] = match[1]
        return ""

    def listed(match: re.Match[str]) -> str:
        for name, local in _names(match[1], module, exports=True):
            exported[name] = local
        return ""

    body = _IMPORT.sub(imported, source)
    body = _BARE_IMPORT.sub(
        lambda m: f"__require({json.dumps(_resolve(module, m['spec']))});", body
    )
    if stray := _ANY_IMPORT.search(body):
        raise BundleError(f"{module}: cannot bundle the import at {_line(body, stray.start())}")
    body = _EXPORT_DEFAULT.sub(default, body)
    body = _EXPORT_DECLARATION.sub(declared, body)
    body = _EXPORT_LIST.sub(listed, body)
    if stray := _ANY_EXPORT.search(body):
        raise BundleError(
            f"{module}: cannot bundle the export at {_line(body, stray.start())}"
            " (export let/var would be a live binding; use const, function or class)"
        )
    body = _DYNAMIC_IMPORT.sub(f"__import({json.dumps(module)}, ", body)
    fields = ", ".join(
        name if name == local else f"{json.dumps(name)}: {local}"
        for name, local in exported.items()
    )
    kind = "async () =>" if entry else "() =>"
    return (
        f"// --- {module}\n__defs[{json.dumps(module)}] = {kind} {{\n"
        f"{body.rstrip()}\nreturn {{ {fields} }};\n}};\n"
    )


def _line(text: str, at: int) -> str:
    number = text.count("\n", 0, at) + 1
    return f"line {number}: {text[at:].splitlines()[0][:80]!r}"


def bundle(sources: Mapping[str, str], entry: str, also: Iterable[str] = ()) -> str:
    """The entry module, the modules in `also` (those it imports with `import()`), and every
    module they import, as one module script that runs the entry."""
    wanted, todo = [], [entry, *also]
    while todo:
        module = todo.pop()
        if module in wanted:
            continue
        if module not in sources:
            raise BundleError(f"{module} is imported but not found")
        wanted.append(module)
        todo.extend(imports_of(module, sources[module]))
    parts = [RUNTIME]
    parts += [wrap(m, sources[m], entry=m == entry) for m in sorted(wanted)]
    parts.append(f"await __require({json.dumps(entry)});\n")
    return "\n".join(parts)
