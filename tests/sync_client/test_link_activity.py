"""LinkActivity: a wait fails after a stretch of silence, never for its total length."""

from __future__ import annotations

import asyncio

import pytest

from protocol.errors import UsageError
from sync_client.link_activity import LinkActivity
from tests.virtual_time import VirtualTimeLoop


def _run(coro: object) -> object:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def test_a_wait_that_keeps_seeing_progress_outlives_its_timeout() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        activity = LinkActivity(10.0)

        async def slow_but_moving() -> str:
            for _ in range(30):  # 30 chunks 5 s apart: 150 s in all, never 10 s of silence
                await asyncio.sleep(5.0)
                activity.touch()
            return "done"

        started = loop.time()
        assert await activity.wait(slow_but_moving()) == "done"
        return loop.time() - started

    assert _run(main()) == pytest.approx(150.0)


def test_a_wait_fails_after_the_timeout_of_silence() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        activity = LinkActivity(10.0)

        async def stalls() -> None:
            await asyncio.sleep(3.0)
            activity.touch()  # one last sign of life, then nothing
            await asyncio.sleep(3600.0)

        started = loop.time()
        with pytest.raises(TimeoutError):
            await activity.wait(stalls())
        return loop.time() - started

    assert _run(main()) == pytest.approx(13.0)


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(UsageError):
        LinkActivity(0.0)
