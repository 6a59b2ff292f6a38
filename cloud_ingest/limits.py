"""Per-band rate limiting: a token bucket per band pseudonym."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """``rate`` batches per second per band, with bursts of up to ``burst``.

    ``check`` answers 0 when a batch may go ahead (and spends a token), else the seconds
    until one will be available, for the Retry-After header.
    """

    rate: float
    burst: float
    max_bands: int = 100_000
    _buckets: dict[bytes, tuple[float, float]] = field(default_factory=dict)

    def check(self, band: bytes, now: float) -> float:
        tokens, last = self._buckets.get(band, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._store(band, tokens - 1.0, now)
            return 0.0
        self._store(band, tokens, now)
        return (1.0 - tokens) / self.rate

    def retry_after_header(self, wait: float) -> str:
        return str(max(1, math.ceil(wait)))

    def _store(self, band: bytes, tokens: float, now: float) -> None:
        if band not in self._buckets and len(self._buckets) >= self.max_bands:
            # Full buckets carry no state worth keeping: forget them to bound memory.
            full = [b for b, (t, _) in self._buckets.items() if t >= self.burst - 1.0]
            for key in full[: max(1, len(full))]:
                del self._buckets[key]
        self._buckets[band] = (tokens, now)
