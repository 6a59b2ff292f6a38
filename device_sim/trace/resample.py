"""Timing and rate conversion for imported recordings: from whatever a device wrote to the
uniform, whole-second grid the firmware reads.

A recording's samples come with a stated rate or with timestamps that may jitter, tick
coarsely (a 16 ms host clock), drift or stop (gaps). :func:`segments` splits the samples at
gaps and fits each run with a steady clock; :func:`to_grid` then moves one run onto a grid
of ``target_hz`` samples per second that starts and ends on whole UTC seconds, with an
anti-aliasing polyphase resampler (``scipy.signal.resample_poly``) for the rate change and a
cubic spline only for the last sub-sample alignment. The firmware takes whole-Hz rates and
blocks that start on whole seconds; :func:`choose_rate` picks the rate (see docs/traces.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicSpline
from scipy.signal import resample_poly

F64 = npt.NDArray[np.float64]

#: Native rates kept as they are (whole Hz only): the range the firmware's estimators cover.
MIN_KEPT_HZ, MAX_KEPT_HZ = 25, 128
#: Rates an imported file may have, and an explicit output rate may ask for.
MIN_INPUT_HZ, MAX_INPUT_HZ = 8.0, 1000.0
#: A sample whose time is within this fraction of a period of the grid counts as on it.
_ALIGN_TOLERANCE = 0.05
#: Timestamps that stay within this many periods of a steady clock are that clock, jittered
#: or quantised (a 16 ms tick at 50 Hz is off by up to 0.8 periods); beyond it, the samples
#: themselves are irregular and are interpolated at their times.
_RETIME_PERIODS = 1.5
_MAX_RATIO_DENOMINATOR = 1000


def choose_rate(native_hz: float) -> int:
    """The whole-Hz rate a channel sampled at ``native_hz`` is stored at.

    A whole rate within 25..128 Hz is kept (no resampling). Faster rates are decimated by
    the smallest whole factor that brings them to 128 Hz or less (250 -> 125, 1000 -> 125),
    slower ones are raised to 25 Hz, and a fractional rate goes to the nearest whole Hz
    (51.2 -> 51).
    """
    if native_hz > MAX_KEPT_HZ:
        native_hz /= math.ceil(native_hz / MAX_KEPT_HZ - 1e-9)
    rounded = round(native_hz)
    return int(min(max(rounded, MIN_KEPT_HZ), MAX_KEPT_HZ))


@dataclass(frozen=True)
class Segment:
    """A run of samples without a gap, on a steady clock: sample ``i`` of the run (index
    ``first + i`` in the recording) was taken at ``t0 + i / rate_hz`` UTC seconds."""

    first: int
    count: int
    t0: float
    rate_hz: float
    timing: str  # "stated", "regular", "retimed" or "interpolated"
    max_error_s: float  # largest distance of a timestamp from the steady clock
    times: F64 | None = None  # the raw times, kept only when timing is "interpolated"

    @property
    def end(self) -> float:
        """When the run's last sample period ends."""
        if self.times is not None:
            return float(self.times[-1]) + 1.0 / self.rate_hz
        return self.t0 + self.count / self.rate_hz


def nominal_rate(rate_hz: float) -> float:
    """A rate estimated from timestamps, snapped to a simple nominal one (50, 51.2, 31.25)
    when within 0.2 %: what the device was configured for."""
    snapped = float(Fraction(rate_hz).limit_denominator(20))
    return snapped if abs(snapped - rate_hz) <= 0.002 * rate_hz else rate_hz


def estimate_rate(times: F64) -> float:
    """The sample rate of timestamped samples without gaps: samples per second over the span
    (robust to jitter and coarse clock ticks, unlike the median step)."""
    return (len(times) - 1) / float(times[-1] - times[0])


def gap_starts(times: F64, gap_s: float) -> npt.NDArray[np.intp]:
    """Indices where a new run starts because the step before it exceeds ``gap_s``."""
    return np.flatnonzero(np.diff(times) > gap_s) + 1


def fit_segment(times: F64, first: int, stated_hz: float | None, exact: bool = False) -> Segment:
    """Fit a steady clock to one gap-free run of timestamps (at least two).

    ``exact``: the times are computed from a stated rate (no time column), so a distance
    from the clock means samples are missing and is interpolated, never retimed."""
    n = len(times)
    idx = np.arange(n, dtype=np.float64)
    if stated_hz is not None:
        rate = stated_hz
        t0 = float(np.median(times - idx / rate))
    else:
        slope, intercept = np.polyfit(idx, times - times[0], 1)
        rate = 1.0 / float(slope)
        t0 = float(times[0] + intercept)
    error = times - (t0 + idx / rate)
    max_error = float(np.max(np.abs(error)))
    period = 1.0 / rate
    if max_error <= _ALIGN_TOLERANCE * period:
        timing = "regular"
    elif max_error <= _RETIME_PERIODS * period and not exact:
        timing = "retimed"
    else:
        return Segment(first, n, float(times[0]), rate, "interpolated", max_error, times)
    return Segment(first, n, t0, rate, timing, max_error)


def grid_span(segment: Segment) -> tuple[int, int]:
    """The whole UTC seconds ``[start, end)`` a run fully covers (it may cover none)."""
    period = 1.0 / segment.rate_hz
    start = math.ceil(segment.t0 - _ALIGN_TOLERANCE * period)
    end = math.floor(segment.end + _ALIGN_TOLERANCE * period)
    return start, max(start, end)


def to_grid(
    values: F64, segment: Segment, target_hz: int, start: int, end: int
) -> tuple[F64, bool]:
    """Samples of one run, ``values`` shaped (count, channels), on the grid of ``target_hz``
    samples per second over whole seconds ``[start, end)``; and whether they were changed
    (False: the samples are the input's own, copied)."""
    n_out = (end - start) * target_hz
    rate = segment.rate_hz
    if segment.times is not None:
        values = _uniform(values, segment.times, rate)
        t0 = float(segment.times[0])
    else:
        t0 = segment.t0
    offset = (start - t0) * rate  # the first grid point, in input samples
    if math.isclose(rate, target_hz, rel_tol=1e-9) and abs(offset - round(offset)) <= (
        _ALIGN_TOLERANCE
    ):
        first = max(0, round(offset))
        kept = np.asarray(values[first : first + n_out], dtype=np.float64)
        return _fit_length(kept, n_out), segment.times is not None
    ratio = Fraction(target_hz / nominal_rate(rate)).limit_denominator(_MAX_RATIO_DENOMINATOR)
    if ratio != 1:
        # the filter needs samples beyond the run's ends: continue the run by a second of
        # odd reflection (value and slope carry on) rather than padding with a constant
        k = min(len(values) - 1, max(1, round(rate)))
        values = np.concatenate(
            (2 * values[:1] - values[k:0:-1], values, 2 * values[-1:] - values[-2 : -k - 2 : -1])
        )
        t0 -= k / rate
        # the polyphase filter's phases differ slightly in DC gain: resample around the mean
        # so a large PPG baseline (or gravity) does not turn into a ripple
        mean = values.mean(axis=0)
        values = mean + resample_poly(
            values - mean, ratio.numerator, ratio.denominator, axis=0, padtype="line"
        )
        rate *= ratio.numerator / ratio.denominator
    positions = (start - t0) * rate + np.arange(n_out) * (rate / target_hz)
    if np.allclose(positions, np.round(positions), atol=_ALIGN_TOLERANCE):
        # the grid falls on the samples themselves (a clock drifting by under a twentieth of a
        # sample over the run): take them as they are
        picked = np.clip(np.round(positions).astype(np.intp), 0, len(values) - 1)
        unchanged = ratio == 1 and segment.times is None
        return np.asarray(values[picked], dtype=np.float64), not unchanged
    spline = CubicSpline(np.arange(len(values)), values, axis=0, extrapolate=True)
    return np.asarray(spline(positions), dtype=np.float64), True


def _fit_length(values: F64, n: int) -> F64:
    """``values`` cut or padded (by repeating its last sample) to ``n`` rows: a run whose
    last sample period ends within a twentieth of a period before a whole second."""
    if len(values) >= n:
        return values[:n]
    return np.concatenate((values, np.repeat(values[-1:], n - len(values), axis=0)))


def _uniform(values: F64, times: F64, rate: float) -> F64:
    """Irregularly timed samples interpolated onto a steady clock at ``rate`` from the first
    sample's time (samples sharing a timestamp are averaged first)."""
    unique, inverse, counts = np.unique(times, return_inverse=True, return_counts=True)
    sums = np.zeros((len(unique), values.shape[1]))
    np.add.at(sums, inverse, values)
    averaged = sums / counts[:, None]
    grid = unique[0] + np.arange(math.floor((unique[-1] - unique[0]) * rate + 1e-6) + 1) / rate
    return np.column_stack(
        [np.interp(grid, unique, averaged[:, c]) for c in range(values.shape[1])]
    )
