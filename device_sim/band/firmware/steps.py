"""Step counting on the wrist accelerometer.

The magnitude of acceleration is band-passed to the gait band (0.6-4 Hz, i.e. 36-240
steps per minute), peaks are found with an adaptive threshold and a refractory distance,
and a peak counts as a step only inside a run of regularly spaced peaks: at least
``min_run`` peaks whose intervals are plausible step intervals and change little from one
to the next. That rejects the isolated or irregular peaks of desk gestures, while a
confirmed run is counted from its first peak, as commercial pedometers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from device_sim.band.firmware.dsp import F64, StreamingFir, bandpass_fir
from device_sim.band.firmware.seconds import PerSecondMean


@dataclass(frozen=True)
class StepCounterConfig:
    """Tuning of the step counter (all times in seconds, amplitudes in g)."""

    low_hz: float = 0.6
    high_hz: float = 4.0
    filter_s: float = 3.0  # FIR length
    min_peak_g: float = 0.06  # absolute floor for a step peak
    rel_threshold: float = 0.6  # peak must exceed this x the local RMS of the filtered signal
    rms_window_s: float = 2.0
    min_interval_s: float = 0.27  # 222 steps/min
    max_interval_s: float = 1.6  # 37 steps/min
    max_interval_ratio: float = 1.6  # consecutive intervals may differ by this factor
    min_run: int = 6  # regular peaks needed before a run counts


@dataclass(frozen=True)
class StepOutput:
    """What one block gives: counted step times and per-second movement.

    ``step_times`` are absolute UTC seconds of the steps confirmed by this block (steps of
    a run are confirmed together, so some may lie in earlier blocks). ``motion`` holds the
    mean absolute band-passed acceleration magnitude (g) per second from ``motion_start``.
    """

    step_times: F64
    motion_start: int
    motion: F64


class StepCounter:
    """Counts steps from 3-axis acceleration, carrying filter and run state between blocks."""

    def __init__(self, rate: int, config: StepCounterConfig | None = None) -> None:
        self.rate = rate
        self.config = cfg = config or StepCounterConfig()
        self._fir = StreamingFir(
            bandpass_fir(rate, cfg.low_hz, cfg.high_hz, int(cfg.filter_s * rate))
        )
        self._rms_fir = StreamingFir(np.full(int(cfg.rms_window_s * rate) | 1, 1.0))
        self._rms_fir.taps = self._rms_fir.taps / len(self._rms_fir.taps)
        self._half = max(1, int(cfg.min_interval_s * rate / 2))
        self._motion = PerSecondMean(rate)
        self.reset(0.0)

    def reset(self, t0: float) -> None:
        """Start a new continuous stream at UTC ``t0`` (an integer second)."""
        self._t0 = float(t0)
        self._n = 0  # input samples consumed
        self._fir.reset()
        self._rms_fir.reset()
        self._motion.reset()
        self._buf_y = np.zeros(0)
        self._buf_thr = np.zeros(0)
        self._last_peak: float | None = None
        self._last_interval: float | None = None
        self._pending: list[float] = []  # peaks of the current run before it is confirmed
        self._run_confirmed = False
        self.total_steps = 0

    def push(self, acc: F64) -> StepOutput:
        cfg = self.config
        mag = np.sqrt(np.einsum("ij,ij->i", acc, acc))
        y = self._fir.apply(mag)
        power = self._rms_fir.apply(y * y)
        thr = np.maximum(cfg.min_peak_g, cfg.rel_threshold * np.sqrt(power))
        # filtered sample j describes input sample j - delay
        first_aligned = self._n - self._fir.delay
        self._n += len(mag)
        motion_start, motion = self._motion_seconds(np.abs(y), first_aligned)

        peaks = self._find_peaks(y, thr)
        times = self._t0 + (peaks - self._fir.delay) / self.rate
        counted = self._confirm(times)
        self.total_steps += len(counted)
        return StepOutput(np.asarray(counted, dtype=np.float64), motion_start, motion)

    def _motion_seconds(self, a: F64, first_aligned: int) -> tuple[int, F64]:
        if first_aligned < 0:
            a = a[-first_aligned:]
            first_aligned = 0
        sec, means = self._motion.push(a, first_aligned)
        return int(self._t0) + sec, means

    def _find_peaks(self, y: F64, thr: F64) -> F64:
        """Absolute filtered-sample numbers of local maxima above threshold."""
        h = self._half
        base = self._n - len(y) - len(self._buf_y)
        z = np.concatenate((self._buf_y, y))
        zt = np.concatenate((self._buf_thr, thr))
        self._buf_y = z[max(0, len(z) - 2 * h) :]
        self._buf_thr = zt[max(0, len(zt) - 2 * h) :]
        if len(z) < 2 * h + 1:
            return np.zeros(0)
        wmax = sliding_window_view(z, 2 * h + 1).max(axis=1)
        centre = z[h : len(z) - h]
        is_peak = (
            (centre >= wmax) & (centre > zt[h : len(z) - h]) & (centre > z[h - 1 : len(z) - h - 1])
        )
        return (np.flatnonzero(is_peak) + h + base).astype(np.float64)

    def _confirm(self, times: F64) -> list[float]:
        """Apply the run rules; return the step times that now count."""
        cfg = self.config
        counted: list[float] = []
        for t in times.tolist():  # one iteration per candidate peak, not per sample
            last = self._last_peak
            regular = False
            if last is not None:
                dt = t - last
                if cfg.min_interval_s <= dt <= cfg.max_interval_s:
                    prev = self._last_interval
                    regular = prev is None or (
                        1 / cfg.max_interval_ratio <= dt / prev <= cfg.max_interval_ratio
                    )
                    self._last_interval = dt
                else:
                    self._last_interval = None
            self._last_peak = t
            if not regular:
                self._pending = [t]
                self._run_confirmed = False
                continue
            if self._run_confirmed:
                counted.append(t)
                continue
            self._pending.append(t)
            if len(self._pending) >= cfg.min_run:
                counted.extend(self._pending)
                self._pending = []
                self._run_confirmed = True
        return counted
