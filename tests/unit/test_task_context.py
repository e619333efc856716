"""`TaskContext.built()`: what the worker's SIGTERM handler reads. It must answer at once, even
on the thread that is inside `get()` building the parts (the handler interrupts that thread):
waiting there deadlocked a worker told to stop during its first task until it was killed."""

from __future__ import annotations

import signal
import threading
from typing import Any

from conduit.tasks.context import TaskContext


def test_built_answers_none_while_this_thread_is_building_and_the_parts_after() -> None:
    seen: list[Any] = []
    parts = object()

    def build() -> Any:
        seen.append(context.built())  # as the signal handler would, mid-build
        return parts

    context = TaskContext(build)  # type: ignore[arg-type]
    assert context.built() is None
    assert context.get() is parts
    assert seen == [None]
    assert context.built() is parts


def test_a_sigterm_handler_reading_it_during_the_build_does_not_deadlock() -> None:
    """The real shape: a signal handler on the main thread while `get()` holds its lock."""
    answers: list[Any] = []
    context: TaskContext

    def handler(signum: int, frame: Any) -> None:
        answers.append(context.built())

    def build() -> Any:
        signal.raise_signal(signal.SIGUSR1)  # delivered here, inside get()'s lock
        return "parts"

    context = TaskContext(build)  # type: ignore[arg-type]
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        done = threading.Event()
        timer = threading.Timer(5, lambda: done.is_set() or signal.raise_signal(signal.SIGINT))
        timer.start()
        assert context.get() == "parts"
        done.set()
        timer.cancel()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert answers == [None]
