"""Time for simulated components: every timer and sleep goes through a :class:`Clock`.

Firmware and sensor code never call ``time.time()``, ``datetime.now()`` or
``asyncio.sleep()``; they are given a Clock. Three kinds:

- :class:`RealClock`: wall time.
- :class:`AcceleratedClock`: simulated time runs ``factor`` times faster than wall time.
- :class:`ManualClock`: time moves only when a test calls :meth:`ManualClock.advance`
  (or :meth:`ManualClock.jump` for a clock fault); sleepers wake in deadline order.

``now()`` is UTC seconds since the Unix epoch (a float).
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import itertools
import time

from protocol.errors import UsageError


class Clock(abc.ABC):
    """A source of simulated UTC time with sleeps measured in that time."""

    @abc.abstractmethod
    def now(self) -> float:
        """Current simulated UTC time, seconds since the epoch."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` of simulated time."""

    async def sleep_until(self, when: float) -> None:
        """Suspend the caller until simulated time ``when``."""
        delay = when - self.now()
        if delay > 0:
            await self.sleep(delay)

    def to_wall(self, seconds: float) -> float:
        """Wall seconds that ``seconds`` of simulated time take (for timeouts)."""
        return seconds


class RealClock(Clock):
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock(Clock):
    """Simulated time that runs ``factor`` times faster than wall time from ``start``."""

    def __init__(self, factor: float, start: float | None = None) -> None:
        if not factor > 0:
            raise UsageError(f"clock speed factor must be > 0, got {factor!r}")
        self.factor = float(factor)
        self._sim_origin = time.time() if start is None else float(start)
        self._wall_origin = time.monotonic()

    def now(self) -> float:
        return self._sim_origin + (time.monotonic() - self._wall_origin) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)

    def to_wall(self, seconds: float) -> float:
        return seconds / self.factor


class ManualClock(Clock):
    """Time that moves only when told; deterministic for tests and trace replay."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper at its own deadline."""
        if seconds < 0:
            raise UsageError("ManualClock.advance takes a non-negative duration; use jump()")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            # let the woken task (and whatever it schedules) run before moving on
            for _ in range(3):
                await asyncio.sleep(0)
        self._now = target
        await asyncio.sleep(0)

    def jump(self, seconds: float) -> None:
        """A clock fault: time leaps by ``seconds`` (either way) without waking sleepers."""
        self._now += seconds

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())
