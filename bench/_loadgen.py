"""The load generator of the SSE benchmark: one process, aiohttp, many concurrent SSE streams.

    python bench/_loadgen.py '<json config>'

Prints JSON lines on stdout, `{"progress": {...}}`, every half second; at the end writes the result
(JSON) to `config["result_path"]`.
Two modes (`config["mode"]`):

- `steady`: `concurrency` workers, each opening a stream, reading it to its end, and opening the
  next one (a closed loop, no think time). Worker g of the whole run (`offset` + local index)
  starts at `start_at + ramp * g / total`, so the streams are spread over one ramp instead of
  connecting at once. Measured in the window `[start_at + ramp + warmup, ... + window]`:
  TTFB of every stream *started* in it, and every `data:` frame *received* in it.
  After the window no stream is started; with `drain` the ones in flight are read to their end
  (so that a slow first byte is counted rather than censored), else they are dropped.
- `hold`: open `streams` long streams and keep them open. They are started at most `rate` per
  second (this process: `rate / procs`) and never while `max_pending` of them still wait for
  their response headers, so the ramp follows what the server can set up instead of piling a
  connection storm onto it. SIGUSR1 (sent by the orchestrator once every stream of every load
  generator is open, or once too many failed) closes them all and ends the run.
  Progress reports how many are open (first `data:` frame received, not ended).

TTFB: from just before the POST to the arrival of the first chunk holding a `data:` frame.
A stream counts as an error when the status is not 200, when the connection fails or breaks,
when an `error` event arrives, or when it ends without a `message_end` frame (in `hold`, streams
closed by the release are not errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

DATA = b"data:"
END = b'"event":"message_end"'
ERROR = b'"event":"error"'
TAIL = 32  # bytes kept from the previous chunk, so that a marker split over two chunks is seen


@dataclass
class Stats:
    ttfb_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    events_in_window: int = 0
    events_total: int = 0
    ok_in_window: int = 0
    started: int = 0
    pending: int = 0  # started, response headers not yet received
    open: int = 0  # first frame received, not ended
    peak_open: int = 0
    done: int = 0


class Generator:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.url: str = config["url"]
        self.headers = {"Content-Type": "application/json"}
        if config.get("token"):
            self.headers["Authorization"] = f"Bearer {config['token']}"
        words = int(config.get("words", 8))
        self.query = " ".join(f"w{i % 10}" for i in range(words))
        self.stats = Stats()
        self.window = (0.0, 0.0)
        self.session: aiohttp.ClientSession | None = None
        self.released = False
        self.stop = asyncio.Event()  # hold: set by the release (SIGUSR1)
        self.slot = asyncio.Event()  # set whenever a stream stops waiting for its headers

    def failed(self, kind: str, detail: str = "") -> None:
        stats = self.stats
        stats.errors[kind] += 1
        if detail and len(stats.error_samples) < 5:
            stats.error_samples.append(f"{kind}: {detail}"[:300])

    def body(self, user: str) -> bytes:
        return json.dumps(
            {
                "inputs": {},
                "query": self.query,
                "user": user,
                "response_mode": "streaming",
                "auto_generate_name": False,
            }
        ).encode()

    async def stream(self, user: str) -> None:
        """One stream, read to its end (or until cancelled)."""
        assert self.session is not None
        stats = self.stats
        stats.started += 1
        stats.pending += 1
        waiting = True
        started = time.time()
        opened = False
        tail = b""
        saw_end = False
        lo, hi = self.window
        try:
            async with self.session.post(self.url, data=self.body(user)) as response:
                waiting = False
                stats.pending -= 1
                self.slot.set()
                if response.status != 200:
                    text = (await response.text())[:200]
                    self.failed(f"http-{response.status}", text)
                    return
                async for chunk in response.content.iter_any():
                    now = time.time()
                    view = tail + chunk
                    frames = view.count(DATA) - tail.count(DATA)
                    if frames:
                        stats.events_total += frames
                        if lo <= now < hi:
                            stats.events_in_window += frames
                        if not opened:
                            opened = True
                            if lo <= started < hi:
                                stats.ttfb_ms.append((now - started) * 1000)
                            stats.open += 1
                            stats.peak_open = max(stats.peak_open, stats.open)
                    if END in view:
                        saw_end = True
                    if ERROR in view:
                        self.failed("error-event", view[-200:].decode(errors="replace"))
                        return
                    tail = view[-TAIL:]
            if not saw_end:
                self.failed("no-message_end", tail.decode(errors="replace"))
            elif lo <= time.time() < hi:
                stats.ok_in_window += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.failed(type(error).__name__, str(error))
        finally:
            if waiting:
                stats.pending -= 1
                self.slot.set()
            if opened:
                stats.open -= 1
            stats.done += 1

    # --- steady ----------------------------------------------------------------------------------

    async def steady_worker(self, index: int, begin: float, stop: float, drain: bool) -> None:
        user = f"u{index}"
        await asyncio.sleep(max(0.0, begin - time.time()))
        while time.time() < stop:
            task = asyncio.ensure_future(self.stream(user))
            if drain:
                await task
                continue
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, stop - time.time()))
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return

    async def steady(self) -> None:
        cfg = self.config
        start_at = float(cfg["start_at"])
        total, offset, local = int(cfg["total"]), int(cfg["offset"]), int(cfg["concurrency"])
        ramp, warmup, window = float(cfg["ramp"]), float(cfg["warmup"]), float(cfg["window"])
        lo = start_at + ramp + warmup
        self.window = (lo, lo + window)
        drain = bool(cfg.get("drain", True))
        await asyncio.gather(
            *(
                self.steady_worker(
                    offset + i, start_at + ramp * (offset + i) / max(1, total), lo + window, drain
                )
                for i in range(local)
            )
        )

    # --- hold ------------------------------------------------------------------------------------

    async def hold(self) -> None:
        cfg = self.config
        procs, offset, local = int(cfg.get("procs", 1)), int(cfg["offset"]), int(cfg["streams"])
        gap = procs / float(cfg["rate"])
        max_pending = max(1, int(cfg.get("max_pending", 64)) // procs)
        self.window = (0.0, float("inf"))
        loop = asyncio.get_running_loop()

        def release() -> None:
            self.released = True
            self.stop.set()

        loop.add_signal_handler(signal.SIGUSR1, release)
        tasks: list[asyncio.Task[None]] = []

        async def start_all() -> None:
            next_at = float(cfg["start_at"])
            for i in range(local):
                while self.stats.pending >= max_pending:
                    self.slot.clear()
                    await self.slot.wait()
                next_at = max(next_at, time.time())
                await asyncio.sleep(next_at - time.time())
                next_at += gap
                tasks.append(asyncio.ensure_future(self.stream(f"h{offset + i * procs}")))

        starter = asyncio.ensure_future(start_all())
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({starter, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not self.stop.is_set():
            everything = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
            await asyncio.wait({everything, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in [starter, stopped, *tasks]:
            task.cancel()
        await asyncio.gather(starter, stopped, *tasks, return_exceptions=True)

    # --- driver ----------------------------------------------------------------------------------

    async def report(self) -> None:
        stats = self.stats
        while True:
            progress = {
                "t": time.time(),
                "started": stats.started,
                "pending": stats.pending,
                "open": stats.open,
                "done": stats.done,
                "errors": sum(stats.errors.values()),
            }
            with contextlib.suppress(BlockingIOError):  # a full pipe: skip this report
                print(json.dumps({"progress": progress}), flush=True)
            await asyncio.sleep(0.5)

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=float(cfg.get("connect_timeout", 60)), sock_read=180
        )
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self.headers
        )
        reporter = asyncio.ensure_future(self.report())
        try:
            await (self.steady() if cfg["mode"] == "steady" else self.hold())
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            await self.session.close()
        stats = self.stats
        return {
            "ttfb_ms": stats.ttfb_ms,
            "errors": dict(stats.errors),
            "error_samples": stats.error_samples,
            "events_in_window": stats.events_in_window,
            "events_total": stats.events_total,
            "ok_in_window": stats.ok_in_window,
            "started": stats.started,
            "done": stats.done,
            "peak_open": stats.peak_open,
            "window": list(self.window),
            "released": self.released,
        }


def main() -> None:
    config = json.loads(sys.argv[1])
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(Generator(config).run())
    path = Path(config["result_path"])
    path.with_suffix(".tmp").write_text(json.dumps(result))
    path.with_suffix(".tmp").rename(path)


if __name__ == "__main__":
    main()
