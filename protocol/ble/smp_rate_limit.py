"""Repeated Attempts: exponential back-off after failed pairings (Vol 3 Part H 2.3.6).

The caller passes the time in (seconds from any monotonic origin, e.g. the band's clock);
nothing here reads a clock.
"""

from __future__ import annotations

from protocol.errors import UsageError


class PairingRateLimiter:
    """Decides whether a new pairing may start, doubling the wait after each failure.

    After ``n`` consecutive failures a new attempt is allowed ``base_delay_s * 2**(n-1)``
    seconds (capped at ``max_delay_s``) after the last failure; until then the band answers
    a Pairing Request with Pairing Failed (Repeated Attempts, 0x09). A successful pairing
    resets the count.
    """

    def __init__(self, *, base_delay_s: float = 2.0, max_delay_s: float = 600.0) -> None:
        if base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise UsageError("base_delay_s must be positive and max_delay_s at least as large")
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._failures = 0
        self._last_failure_at = 0.0

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def current_delay_s(self) -> float:
        """The waiting interval that applies after the failures so far (0 with none)."""
        if self._failures == 0:
            return 0.0
        # Cap the exponent so a long run of failures never overflows a float.
        exponent = min(self._failures - 1, 64)
        return min(self._base_delay_s * 2.0**exponent, self._max_delay_s)

    def retry_after(self, now: float) -> float:
        """Seconds until a new pairing is allowed (0.0 when it is allowed now)."""
        if self._failures == 0:
            return 0.0
        return max(0.0, self._last_failure_at + self.current_delay_s() - now)

    def allows(self, now: float) -> bool:
        """True when a pairing may start at ``now``."""
        return self.retry_after(now) == 0.0

    def record_failure(self, now: float) -> None:
        """A pairing failed at ``now`` (wrong passkey, timeout, peer gave up)."""
        self._failures += 1
        self._last_failure_at = now

    def record_success(self) -> None:
        """A pairing completed: start again from no back-off."""
        self._failures = 0
