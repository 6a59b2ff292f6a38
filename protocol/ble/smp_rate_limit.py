"""Repeated Attempts: exponential back-off after failed pairings (Vol 3 Part H 2.3.6).

The caller passes the time in (seconds from any monotonic origin, e.g. the band's clock);
nothing here reads a clock.

What counts as a failure is the caller's call, and the rule is the same everywhere: an
attempt that could test a secret (a pairing that showed its passkey and then failed, an
ownership proof that was checked) and did not succeed. An attempt refused before that
point (a Pairing Request answered with Repeated Attempts, legacy or Just Works pairing,
too short a key, or a request made while the back-off runs) tested nothing, so it neither
counts nor extends the wait.
"""

from __future__ import annotations

from protocol.errors import UsageError


class FailureBackoff:
    """Decides whether a new attempt may start, doubling the wait after each failure.

    The first ``free_failures`` consecutive failures cost nothing. After ``n`` failures
    beyond them, a new attempt is allowed ``base_delay_s * 2**(n-1)`` seconds (capped at
    ``max_delay_s``) after the last failure. A success resets the count.
    """

    def __init__(
        self, *, base_delay_s: float = 2.0, max_delay_s: float = 600.0, free_failures: int = 0
    ) -> None:
        if base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise UsageError("base_delay_s must be positive and max_delay_s at least as large")
        if free_failures < 0:
            raise UsageError("free_failures must be 0 or more")
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._free = free_failures
        self._failures = 0
        self._last_failure_at = 0.0

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def current_delay_s(self) -> float:
        """The waiting interval that applies after the failures so far (0 with none)."""
        counted = self._failures - self._free
        if counted <= 0:
            return 0.0
        # Cap the exponent so a long run of failures never overflows a float.
        exponent = min(counted - 1, 64)
        return min(self._base_delay_s * 2.0**exponent, self._max_delay_s)

    def retry_after(self, now: float) -> float:
        """Seconds until a new attempt is allowed (0.0 when it is allowed now)."""
        delay = self.current_delay_s()
        if delay == 0.0:
            return 0.0
        return max(0.0, self._last_failure_at + delay - now)

    def allows(self, now: float) -> bool:
        """True when an attempt may start at ``now``."""
        return self.retry_after(now) == 0.0

    def record_failure(self, now: float) -> None:
        """An attempt that tested the secret failed at ``now``."""
        self._failures += 1
        self._last_failure_at = now

    def record_success(self) -> None:
        """An attempt succeeded: start again from no back-off."""
        self._failures = 0


class PairingRateLimiter(FailureBackoff):
    """The band's Repeated Attempts rule for pairing.

    Until :meth:`allows` the band answers a Pairing Request with Pairing Failed (Repeated
    Attempts, 0x09); that refusal is not a failure. Record a failure only for a pairing
    that showed its passkey and then failed (wrong passkey, DHKey check failed, timed out,
    given up by the peer).
    """

    def __init__(self, *, base_delay_s: float = 2.0, max_delay_s: float = 600.0) -> None:
        super().__init__(base_delay_s=base_delay_s, max_delay_s=max_delay_s)
