"""Breaths from the wrist PPG, for the regularity of breathing in sleep.

Breathing modulates the PPG's baseline (venous return and tissue blood volume follow the
chest's pressure: respiratory-induced intensity variation), its pulse amplitude and the
beat intervals (Charlton et al. 2018 review the ways to read respiration from PPG). The
band reads the baseline: the PPG is averaged over 0.2-second bins (5 Hz, whatever the
sample rate), band-passed to 0.1-0.5 Hz (6-30 breaths a minute; the pulse, at 0.75 Hz
and above even asleep, is filtered out), and each breath is a peak of that signal
standing above a share of its recent RMS, at least ``min_breath_s`` after the last.

Per second the output holds the sums of the log breath intervals, of their squares and
their count, attributed to the second of the later breath: any span's variability of
breathing is the spread of its log intervals. Breathing is slow and regular in deep
sleep and irregular in REM (Douglas et al. 1982; Gould et al. 1988), so the sleep stager
uses it where the heart rate cannot tell REM from light sleep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from device_sim.band.firmware.dsp import F64, StreamingFir, bandpass_fir

BIN_HZ = 5  # the breathing signal's rate


@dataclass(frozen=True)
class BreathConfig:
    """Tuning of the breath detector (times in seconds)."""

    low_hz: float = 0.1
    high_hz: float = 0.5
    filter_s: float = 20.0  # FIR length: a sharp edge between breathing and the pulse
    rms_window_s: float = 30.0
    rel_threshold: float = 0.3  # a breath's peak stands this far above 0, x the recent RMS
    min_breath_s: float = 1.6  # 37 breaths a minute
    max_breath_s: float = 15.0


@dataclass(frozen=True)
class BreathOutput:
    """Per second from ``start``: sums of log breath intervals, their squares, counts.

    Add these to what earlier blocks gave (a breath is found seconds after it)."""

    start: int
    log_sum: F64
    log_sq: F64
    count: F64


class BreathDetector:
    """Finds breaths in streamed PPG blocks of whole seconds."""

    def __init__(self, ppg_rate: int, config: BreathConfig | None = None) -> None:
        self.config = cfg = config or BreathConfig()
        self.rate = ppg_rate
        taps = bandpass_fir(BIN_HZ, cfg.low_hz, cfg.high_hz, int(cfg.filter_s * BIN_HZ))
        # no DC at all: the PPG's level is 50x its breathing swing
        self._fir = StreamingFir(taps - taps.mean())
        rms_taps = int(cfg.rms_window_s * BIN_HZ) | 1
        self._rms = StreamingFir(np.full(rms_taps, 1.0 / rms_taps))
        self._half = max(1, round(cfg.min_breath_s * BIN_HZ / 2))
        # which 0.2-s bin each sample of a second falls in
        self._bin_of = (np.arange(ppg_rate) * BIN_HZ) // ppg_rate
        self.reset(0)

    def reset(self, t0: int) -> None:
        self._t0 = t0
        self._fir.reset()
        self._rms.reset()
        self._n = 0  # 5-Hz bins pushed so far
        self._buf = np.zeros(0)  # filtered bins kept for the peak test across blocks
        self._buf_thr = np.zeros(0)
        self._last: float | None = None  # stream seconds of the last breath

    def push(self, ppg: F64) -> BreathOutput:
        fs = self.rate
        secs = len(ppg) // fs
        idx = (np.arange(secs)[:, None] * BIN_HZ + self._bin_of[None, :]).ravel()
        sums = np.bincount(idx, ppg[: secs * fs], secs * BIN_HZ)
        binned = np.asarray(sums / np.bincount(idx, None, secs * BIN_HZ), dtype=np.float64)
        y = self._fir.apply(binned)
        thr = self.config.rel_threshold * np.sqrt(self._rms.apply(y * y))
        base = self._n - len(self._buf)  # stream bin of z[0]
        self._n += len(binned)
        z = np.concatenate((self._buf, y))
        zt = np.concatenate((self._buf_thr, thr))
        h = self._half
        self._buf = z[max(0, len(z) - 2 * h) :]
        self._buf_thr = zt[max(0, len(zt) - 2 * h) :]
        times = np.zeros(0)
        if len(z) >= 2 * h + 1:
            windows = np.lib.stride_tricks.sliding_window_view(z, 2 * h + 1)
            centre = z[h : len(z) - h]
            peak = (centre >= windows.max(axis=1)) & (centre > zt[h : len(z) - h])
            times = (np.flatnonzero(peak) + h + base - self._fir.delay) / BIN_HZ
        times = times[times >= 0]
        if len(times) == 0:
            empty = np.zeros(0)
            return BreathOutput(self._t0, empty, empty, empty)
        first_sec = int(times[0])
        n_out = int(times[-1]) + 1 - first_sec
        log_sum, log_sq, count = np.zeros(n_out), np.zeros(n_out), np.zeros(n_out)
        for t in times.tolist():  # one iteration per breath (every few seconds)
            self._breath(t, first_sec, log_sum, log_sq, count)
        return BreathOutput(self._t0 + first_sec, log_sum, log_sq, count)

    def _breath(self, t: float, first_sec: int, log_sum: F64, log_sq: F64, count: F64) -> None:
        cfg = self.config
        last = self._last
        if last is not None and t - last < cfg.min_breath_s:
            return
        self._last = t
        if last is None or t - last > cfg.max_breath_s:
            return
        sec = int(t) - first_sec
        v = math.log(t - last)
        log_sum[sec] += v
        log_sq[sec] += v * v
        count[sec] += 1
