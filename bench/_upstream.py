"""The fake OpenAI-compatible upstream (`tests/fakes/fake_openai.py`) for the SSE benchmark.

    python bench/_upstream.py --port N [--pace-ms P] [--poll S] [--reuse-port]

It imports and runs the test fake unchanged, with two knobs the test entry point does not have:

- `--poll S` sets the fake's module-level `POLL` (default 0.01 s): how often a pacing handler
  wakes up to look for a client disconnect. At 10 ms, 9,000 paced streams would cost the fake
  900,000 timer wake-ups per second and starve the 2 shared cores; with S ≥ the pace a stream
  wakes once per token. Only disconnect detection gets slower (the benchmark never relies on it).
- `--reuse-port` binds with SO_REUSEPORT, so several of these processes can share one port (the
  kernel spreads connections over them) when one process is not enough.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from tests.fakes import fake_openai  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds (the fake's POLL)")
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args(argv)
    fake_openai.POLL = args.poll
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a project dependency
        pass
    settings = fake_openai.Settings(pace_ms=args.pace_ms)
    print(f"fake-openai listening on http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(
        fake_openai.build_app(settings),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
        reuse_port=args.reuse_port,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
