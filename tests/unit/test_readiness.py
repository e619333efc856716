"""`/ready`'s checks (`api/ops.Readiness`): one round at a time however often it is asked, on
threads of their own, each check within its timeout."""

from __future__ import annotations

import asyncio
import threading
import time

from conduit.api.ops import CHECK_TIMEOUT, Readiness


def test_questions_asked_while_a_round_runs_share_its_answer() -> None:
    calls: list[float] = []

    def slow_dependency() -> None:
        calls.append(time.monotonic())
        time.sleep(0.3)

    async def scenario() -> None:
        readiness = Readiness({"slow": slow_dependency})
        try:
            answers = await asyncio.gather(*(readiness.components() for _ in range(20)))
            assert len(calls) == 1
            assert all(answer["slow"]["status"] == "ok" for answer in answers)
            await readiness.components()  # a question after the round: a round of its own
            assert len(calls) == 2
        finally:
            readiness.close()

    asyncio.run(scenario())


def test_a_failing_check_names_its_error_and_the_others_still_answer() -> None:
    def down() -> None:
        raise ConnectionError("Connection refused.")

    async def scenario() -> None:
        readiness = Readiness({"redis": down, "database": lambda: None})
        try:
            components = await readiness.components()
        finally:
            readiness.close()
        assert components["redis"] == {
            "status": "fail",
            "error": "ConnectionError: Connection refused.",
        }
        assert components["database"]["status"] == "ok"

    asyncio.run(scenario())


def test_a_hung_check_holds_none_of_the_threads_requests_use() -> None:
    released = threading.Event()

    def hung() -> None:
        released.wait(CHECK_TIMEOUT + 2)

    async def scenario() -> None:
        readiness = Readiness({"broker": hung})
        try:
            asking = []
            for _ in range(10):  # an orchestrator asking again and again meanwhile
                asking.append(asyncio.ensure_future(readiness.components()))
                await asyncio.sleep(0.05)
            # The loop's default executor (the requests' database and cache calls) is free.
            began = time.monotonic()
            await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.01) for _ in range(32)))
            assert time.monotonic() - began < 1.0
            for components in await asyncio.gather(*asking):
                assert components["broker"]["status"] == "fail"
                assert "no answer within" in components["broker"]["error"]
        finally:
            released.set()
            readiness.close()

    asyncio.run(scenario())
