"""Render every Conduit setting (`describe_settings()`) as docs/settings.md.

python scripts/generate_settings_doc.py            # write docs/settings.md
python scripts/generate_settings_doc.py --check    # exit 1 if docs/settings.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "settings.md"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conduit.infra.settings import describe_settings  # noqa: E402


def _cell(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else "*(unset)*"


def render() -> str:
    lines = [
        "# Settings",
        "",
        "*Generated from `conduit.infra.settings` by `scripts/generate_settings_doc.py`; "
        "do not edit by hand.*",
        "",
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for env, kind, default, description in describe_settings():
        lines.append(f"| `{env}` | {_code(kind)} | {_code(default)} | {_cell(description)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the markdown file")
    args = parser.parse_args(argv)
    expected = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != expected:
            print(
                f"{args.output} is out of date; run: python scripts/generate_settings_doc.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(expected, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
