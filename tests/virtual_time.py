"""An asyncio event loop on virtual time, and a simulation Clock that reads it.

:class:`VirtualTimeLoop` never sleeps: when nothing is ready it moves its clock straight to
the next timer. Everything scheduled on the loop (``asyncio.sleep``, ``wait_for``,
``asyncio.timeout``, call_later) then runs in loop order at its virtual moment, so a
minute-long transfer over a slow simulated link takes as long as its CPU work, and a
timeout fires only when virtual time, not a busy test machine, says so. Sockets still
work (they are polled without waiting), but the loop is meant for in-process rigs.

:class:`LoopClock` is a :class:`~device_sim.clock.Clock` on the running loop's time, so the
radio's link model, the band and the client's timeouts all share one virtual clock.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

from device_sim.clock import Clock


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without blocking; an idle wait advances the owning loop's virtual time."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            # None means no timer is due at all: wait for I/O for real (nothing else can run)
            return ready if ready or timeout is not None else super().select(None)
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (see the module docstring)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._virtual.now


class LoopClock(Clock):
    """A simulation Clock reading the running event loop's time, from ``start`` UTC."""

    def __init__(self, start: float) -> None:
        self._origin = start - asyncio.get_running_loop().time()

    def now(self) -> float:
        return self._origin + asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def jump(self, seconds: float) -> None:
        """Move this clock (not the loop) by ``seconds``: a band's backlog lived before now."""
        self._origin += seconds
