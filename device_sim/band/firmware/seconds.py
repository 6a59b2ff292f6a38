"""Turning sample-rate streams into per-second values, block by block."""

from __future__ import annotations

import numpy as np

from device_sim.band.firmware.dsp import F64


class PerSecondMean:
    """Averages a sample stream over whole seconds, carrying the unfinished second.

    Samples are numbered from the start of the stream (sample ``k`` belongs to second
    ``k // rate``); only seconds whose samples have all arrived are emitted.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._carry = np.zeros(0)
        self._carry_first = 0  # sample number of the first carried sample

    def reset(self, first_sample: int = 0) -> None:
        self._carry = np.zeros(0)
        self._carry_first = first_sample

    def push(self, values: F64, first_sample: int) -> tuple[int, F64]:
        """Add samples numbered from ``first_sample``; return (first second, means)."""
        if len(self._carry) == 0:
            self._carry_first = first_sample
        joined = np.concatenate((self._carry, values)) if len(self._carry) else values
        # drop samples before the first whole second (happens only at stream start)
        skip = (-self._carry_first) % self.rate
        joined = joined[skip:]
        start_sample = self._carry_first + skip
        whole = len(joined) // self.rate
        means = joined[: whole * self.rate].reshape(whole, self.rate).mean(axis=1)
        self._carry = joined[whole * self.rate :].copy()
        self._carry_first = start_sample + whole * self.rate
        return start_sample // self.rate, means
