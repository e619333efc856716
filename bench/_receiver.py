"""The async benchmark's callback receiver, a process of its own (`bench/async_runs.py`).

    python bench/_receiver.py --port N

Answers 200 to every `POST /hook` and writes one line per callback to stdout:
`<task_id> <time.monotonic() at arrival> <status>`. CLOCK_MONOTONIC is the machine's, so the
benchmark compares these times with its own. In a process of its own, the receiver's HTTP
work does not take the GIL from the benchmark's submitters (whose latency it would add to).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from aiohttp import web


async def hook(request: web.Request) -> web.Response:
    now = time.monotonic()
    body = json.loads(await request.read())
    sys.stdout.write(f"{body['task_id']} {now:.6f} {body.get('status', '')}\n")
    sys.stdout.flush()
    return web.Response(text="ok")


async def health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
