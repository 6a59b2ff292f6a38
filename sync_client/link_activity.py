"""Timeouts that follow progress: a wait fails only after ``idle_s`` with nothing moving.

A sync over a slow link (1M PHY, 50 ms connection interval, 27-byte PDUs, one packet per
event moves about 540 bytes a second) spends minutes on one transfer, and a control-point
write can sit behind hundreds of queued record chunks. A timeout on the total duration of
such a wait fails every slow sync although the link works; a timeout on *progress* fails
only a link that stopped. :class:`LinkActivity` is that clock: every notification or
indication that arrives and every GATT operation that completes is progress
(:meth:`LinkActivity.touch`), and :meth:`LinkActivity.wait` gives up only when ``idle_s``
seconds pass without any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from protocol.errors import UsageError

_T = TypeVar("_T")


class LinkActivity:
    """When a link last showed progress, and waits bounded by time since then."""

    def __init__(self, idle_s: float) -> None:
        if not idle_s > 0:
            raise UsageError("the timeout must be a positive number of seconds")
        self.idle_s = idle_s
        self._last: float | None = None
        self._waits: set[asyncio.Timeout] = set()

    def touch(self) -> None:
        """Something moved on the link (a value arrived, an operation completed)."""
        now = asyncio.get_running_loop().time()
        self._last = now
        for timeout in self._waits:
            if not timeout.expired():
                timeout.reschedule(now + self.idle_s)

    def idle_for(self) -> float:
        """Seconds since the last progress (0 before any)."""
        if self._last is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._last

    async def wait(self, awaitable: Awaitable[_T]) -> _T:
        """Await ``awaitable``; TimeoutError once ``idle_s`` pass with no progress.

        Starting the wait counts as progress (it is measured from now at the earliest);
        completing it does too.
        """
        self.touch()
        async with asyncio.timeout(self.idle_s) as timeout:
            self._waits.add(timeout)
            try:
                result = await awaitable
            finally:
                self._waits.discard(timeout)
        self.touch()
        return result
