"""Seeded random streams keyed by what they are for, never by call order.

Every random draw in the person model, the sensor models and the summary model comes from
a generator seeded with ``(seed, stream, index...)``: the same seed gives byte-identical
output however the caller slices time into blocks, because a value at a given instant
always comes from the same generator and the same position in it.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def stream_key(name: str) -> int:
    """A stable 32-bit number for a stream name (crc32 is stable across runs and hosts)."""
    return zlib.crc32(name.encode("ascii"))


def rng_for(seed: int, name: str, *index: int) -> np.random.Generator:
    """A generator for one named stream at one index (a day, a chunk, an hour...)."""
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, stream_key(name)]
    # Negative indices (days before the plan's start) must not collide with positive ones.
    words.extend(int(i) & 0xFFFFFFFFFFFFFFFF for i in index)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


class ChunkedNormal:
    """Standard normal (or, with ``uniform``, [0, 1) uniform) draws addressed by absolute
    sample index.

    Sample ``i`` of a stream always has the same value: draws are made a fixed-size chunk
    at a time from ``rng_for(seed, name, chunk)``, and the most recent chunks are kept so
    that consecutive blocks cost one generation per chunk.
    """

    def __init__(
        self, seed: int, name: str, width: int = 1, chunk: int = 1 << 15, uniform: bool = False
    ) -> None:
        self._uniform = uniform
        self._seed = seed
        self._name = name
        self._width = width
        self._chunk = chunk
        self._cache: dict[int, F64] = {}

    def _chunk_values(self, c: int) -> F64:
        values = self._cache.get(c)
        if values is None:
            rng = rng_for(self._seed, self._name, c)
            shape = (self._chunk, self._width)
            values = rng.random(shape) if self._uniform else rng.standard_normal(shape)
            if len(self._cache) >= 3:
                self._cache.pop(next(iter(self._cache)))
            self._cache[c] = values
        return values

    def take(self, start: int, stop: int) -> F64:
        """Draws for absolute indices ``[start, stop)``, shape (stop - start, width)."""
        n = stop - start
        if n <= 0:
            return np.zeros((0, self._width))
        c0, c1 = start // self._chunk, (stop - 1) // self._chunk
        if c0 == c1:
            base = c0 * self._chunk
            return self._chunk_values(c0)[start - base : stop - base]
        parts = [self._chunk_values(c) for c in range(c0, c1 + 1)]
        joined = np.concatenate(parts)
        base = c0 * self._chunk
        return joined[start - base : stop - base]


def smooth_noise(seed: int, name: str, t: F64, period_s: float, width: int = 1) -> F64:
    """Smooth zero-mean unit-variance noise at times ``t``: knots every ``period_s``,
    interpolated with a smoothstep blend so it has no corners. Shape (len(t), width).

    Knots sit at absolute multiples of ``period_s``, so the value at an instant does not
    depend on the span asked for.
    """
    if t.size == 0:
        return np.zeros((0, width))
    pos = t / period_s
    whole = np.floor(pos)
    k0 = int(whole.min())
    k1 = int(whole.max()) + 2
    knots = _knot_values(seed, name, k0, k1, width)
    i = whole.astype(np.int64) - k0
    frac = pos - whole
    w = frac * frac * (3.0 - 2.0 * frac)  # smoothstep: no corners at the knots
    if width == 1:
        flat = knots[:, 0]
        a = flat[i]
        out = a + (flat[i + 1] - a) * w
        return out[:, None]
    a2 = knots[i]
    return a2 + (knots[i + 1] - a2) * w[:, None]


_KNOT_CHUNK = 4096


def _knot_values(seed: int, name: str, k0: int, k1: int, width: int) -> F64:
    c0, c1 = k0 // _KNOT_CHUNK, (k1 - 1) // _KNOT_CHUNK
    parts = [_knot_chunk(seed, name, c, width) for c in range(c0, c1 + 1)]
    joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
    base = c0 * _KNOT_CHUNK
    return joined[k0 - base : k1 - base]


@lru_cache(maxsize=64)
def _knot_chunk(seed: int, name: str, c: int, width: int) -> F64:
    values = rng_for(seed, name, c, width).standard_normal((_KNOT_CHUNK, width))
    values.flags.writeable = False  # shared through the cache
    return values
