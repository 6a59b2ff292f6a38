"""The band's bound on unauthenticated links: pair, encrypt or leave.

A band takes one connection at a time and stops advertising while it has it, so a central
that connects and then does nothing would keep the owner out for as long as it liked.
Real bands drop such a link; :class:`AuthenticationDeadline` does it for the simulated
one. Every new link gets ``timeout_s`` seconds of the band's clock to become
authenticated (encrypted after pairing or with a bond, which ownership proofs require
too); a link that is not by then is dropped with Remote User Terminated. A link that is
authenticated in time is never checked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from device_sim.clock import Clock
from protocol.errors import UsageError

#: The default bound, in seconds of the band's clock (as long as SMP's own timeout).
AUTH_TIMEOUT_S = 30.0


class AuthenticationDeadline:
    """Drops links that are not authenticated ``timeout_s`` band seconds after connecting.

    ``authenticated(handle)`` says whether a link is authenticated now; ``drop(handle)``
    takes it down. ``timeout_s`` None disables the bound (a test rig driving the band by
    hand on a clock it advances).
    """

    def __init__(
        self,
        clock: Clock,
        timeout_s: float | None,
        authenticated: Callable[[int], bool],
        drop: Callable[[int], None],
    ) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise UsageError("the authentication timeout must be > 0 seconds (or None for none)")
        self.clock = clock
        self.timeout_s = timeout_s
        self._authenticated = authenticated
        self._drop = drop
        self._timers: dict[int, asyncio.Task[None]] = {}

    def connected(self, handle: int) -> None:
        """Start the bound for a new link."""
        if self.timeout_s is None:
            return
        self.disconnected(handle)
        loop = asyncio.get_running_loop()
        # the deadline is fixed now, at connection time, not when the timer task first runs
        deadline = self.clock.now() + self.timeout_s
        self._timers[handle] = loop.create_task(self._expire(handle, deadline))

    def disconnected(self, handle: int) -> None:
        """The link is gone: forget its bound."""
        timer = self._timers.pop(handle, None)
        if timer is not None:
            timer.cancel()

    async def _expire(self, handle: int, deadline: float) -> None:
        await self.clock.sleep_until(deadline)
        self._timers.pop(handle, None)
        if not self._authenticated(handle):
            self._drop(handle)
