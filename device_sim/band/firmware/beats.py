"""Beat-to-beat intervals from the wrist PPG, for heart-rate variability (RMSSD).

Each pulse's upstroke is the steepest rise of the PPG: the band finds the peaks of its
slope (a derivative smoothed over 0.12 s, whatever the sample rate), which breathing
and baseline drift barely touch,
and places each with parabolic interpolation between samples (a few ms at 25 Hz). A
peak counts when it rises above half the recent main upstrokes' steepness (the dicrotic
wave's upstroke stays under that) and at least ``min_ibi_s`` after the previous beat.
Successive intervals that are implausible (out of ``min_ibi_s``..``max_ibi_s``) or jump
by more than ``max_jump`` of the previous one (a missed or extra beat) are left out, as in
the usual artefact correction of RMSSD. The pulse wave stretches with its interval, so
these are pulse-rate intervals: their RMSSD reads a little under an ECG's.

Per second the output holds the sum of squared successive differences (ms²) and their
count, attributed to the second of the later beat: any span's RMSSD is the square root
of its sums over its counts. The sleep stager uses it per 30-second epoch: deep sleep
has the highest beat-to-beat variability, REM the lowest (vagal tone; Stein & Pu 2012).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from device_sim.band.firmware.dsp import F64


@dataclass(frozen=True)
class BeatConfig:
    """Tuning of the beat detector."""

    threshold: float = 0.5  # share of the recent main upstrokes' steepness a beat must reach
    level_follow: float = 0.05  # how fast that level sinks towards weaker upstrokes, per beat
    min_ibi_s: float = 0.3  # 200 bpm
    max_ibi_s: float = 2.0  # 30 bpm
    max_jump: float = 0.2  # a successive interval this much off is an artefact
    level_decay_s: float = 5.0  # the detection bar's memory of the last upstroke heights
    refractory: float = 0.6  # share of the last interval before another beat may come
    smooth_s: float = 0.12  # span of the slope's smoothing (Hann), in seconds


@dataclass(frozen=True)
class BeatOutput:
    """Per second from ``start``: squared successive differences (ms²) and their count.

    ``start`` is the second before the block's first (beats in its last samples are found
    with the next block): add these to what the previous block gave, do not overwrite.
    """

    start: int
    ssd_sum: F64
    ssd_count: F64


class BeatDetector:
    """Finds beats in streamed PPG blocks and reports successive interval differences.

    Blocks must hold whole seconds of samples (the firmware's sensor blocks do). The
    result does not depend on how the stream is cut into such blocks: the slope is
    evaluated a few samples behind the newest one, and the detection threshold follows
    the accepted beats' own upstrokes beat by beat.
    """

    def __init__(self, ppg_rate: int, config: BeatConfig | None = None) -> None:
        self.config = cfg = config or BeatConfig()
        self.rate = ppg_rate
        # the slope's smoothing spans smooth_s whatever the rate (3 taps at 25 Hz)
        taps = max(3, round(cfg.smooth_s * ppg_rate) | 1)
        kernel = np.hanning(taps + 2)[1:-1]
        self._kernel = kernel / kernel.sum()
        # samples after a sample that its smoothed slope and the peak test need
        self._lag = taps // 2 + 2
        self.reset(0)

    def reset(self, t0: int) -> None:
        self._t0 = t0  # UTC second of stream sample 0
        self._seen = 0  # samples pushed so far
        self._tail = np.zeros(0)  # the last samples, for the slope across blocks
        self._level: float | None = None  # running height of accepted upstrokes
        self._last_beat: float | None = None  # stream seconds
        self._last_height = 0.0
        self._last_ibi: float | None = None  # ms
        self._steady = False  # the last two intervals agreed (a rhythm to go by)
        self._eval_from = 0  # stream index of the first sample whose slope is not tested yet

    def push(self, ppg: F64) -> BeatOutput:
        fs = self.rate
        n = len(ppg)
        # from the second before this block's: beats in its last samples are found now
        first_sec = max(0, self._seen // fs - 1)
        secs = (self._seen + n) // fs - first_sec
        ssd_sum = np.zeros(secs)
        ssd_count = np.zeros(secs)
        x = np.concatenate((self._tail, ppg))
        offset = self._seen - len(self._tail)  # stream index of x[0]
        self._seen += n
        self._tail = x[-(2 * self._lag + 2) :]
        # the slope at x[i] is exact for LAG <= i < len(x) - LAG; samples after that wait
        lo_i = max(self._lag, self._eval_from - offset)
        hi_i = len(x) - self._lag
        if hi_i <= lo_i:
            return BeatOutput(self._t0 + first_sec, ssd_sum, ssd_count)
        self._eval_from = offset + hi_i
        slope = np.gradient(x) * fs
        slope = np.convolve(slope, self._kernel, "same")
        idx = np.arange(lo_i, hi_i)
        mid = slope[idx]
        cand = idx[(mid > slope[idx - 1]) & (mid >= slope[idx + 1]) & (mid > 0)]
        lo, mid, hi = slope[cand - 1], slope[cand], slope[cand + 1]
        den = lo - 2 * mid + hi
        shift = np.where(den != 0, 0.5 * (lo - hi) / np.where(den != 0, den, 1.0), 0.0)
        times = ((offset + cand + np.clip(shift, -0.5, 0.5)) / fs).tolist()
        for t, h in zip(times, mid.tolist(), strict=True):
            self._candidate(t, h, first_sec, ssd_sum, ssd_count)
        return BeatOutput(self._t0 + first_sec, ssd_sum, ssd_count)

    def _candidate(self, t: float, h: float, first_sec: int, ssd_sum: F64, ssd_count: F64) -> None:
        cfg = self.config
        last = self._last_beat
        level = self._level
        if level is not None and last is not None:
            # the level fades while no beat is found (weaker pulse, lost contact, or a
            # motion spike that set it too high)
            level *= math.exp(-(t - last) / cfg.level_decay_s)
            if h < cfg.threshold * level:
                return
        # in a steady rhythm a beat cannot follow the last one much sooner than the last
        # interval: an upstroke there is the dicrotic wave's (or noise), unless stronger
        refractory = cfg.min_ibi_s
        if self._steady and self._last_ibi is not None:
            refractory = max(refractory, cfg.refractory * self._last_ibi / 1000.0)
        if last is not None and t - last < refractory:
            if h <= self._last_height:
                return
            # the stronger of two close upstrokes is the beat: replace the last one
            self._last_beat, self._last_height = t, h
            self._last_ibi = None  # its interval is now unknown
            self._steady = False
            return
        if last is not None:
            ibi = (t - last) * 1000.0
            prev = self._last_ibi
            if not cfg.min_ibi_s * 1000 <= ibi <= cfg.max_ibi_s * 1000:
                self._last_ibi = None
                self._steady = False
            else:
                self._steady = prev is not None and abs(ibi - prev) <= cfg.max_jump * prev
                if self._steady:
                    assert prev is not None
                    sec = int(t) - first_sec
                    ssd_sum[sec] += (ibi - prev) ** 2
                    ssd_count[sec] += 1
                self._last_ibi = ibi
        # the level rises quickly to a stronger upstroke (at most doubling per beat) and
        # sinks slowly: it stays near the main upstrokes' height, so the smaller dicrotic
        # upstroke stays under the bar
        if level is None:
            self._level = h
        elif h > level:
            self._level = min(h, 2.0 * level)
        else:
            self._level = level + cfg.level_follow * (h - level)
        self._last_beat, self._last_height = t, h
