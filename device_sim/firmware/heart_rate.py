"""Heart rate from the wrist PPG, with motion-artefact rejection from the accelerometer.

Spectral estimation: every ``hop_s`` an 8-second window of PPG, centred on a whole second,
is detrended, Hann-windowed and zero-padded to an FFT. The accelerometer's spectrum over
the same window marks the frequencies the wrist moved at (arm swing, cadence and their
harmonics); PPG power there is attenuated, since a wrist moving at a frequency puts an
artefact into the optical signal at that frequency. The strongest remaining peaks are
candidates, and a tracker picks the one most consistent with the recent heart rate (a
heart rate changes by a few bpm per second at most). Off the wrist the PPG has no pulse:
when no spectral peak stands out, there is no reading (bpm 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from device_sim.firmware.dsp import F64


@dataclass(frozen=True)
class HeartRateConfig:
    """Tuning of the heart-rate estimator."""

    window_s: int = 8
    hop_s: int = 1
    nfft: int = 512
    min_bpm: float = 40.0
    max_bpm: float = 210.0
    min_concentration: float = 0.4  # share of band power near the peak for a pulse to exist
    concentration_windows: int = 5  # averaged over this many windows: noise peaks wander
    motion_g: float = 0.03  # acc std above which motion suppression is applied
    suppression: float = 4.0  # strength of attenuation at the wrist's motion frequencies
    max_slew_bpm_s: float = 4.0  # how fast the tracked rate may move per second
    candidates: int = 3


@dataclass(frozen=True)
class HeartRateOutput:
    """Per-second estimates from ``start`` (absolute UTC second).

    ``bpm`` 0 means no valid reading; ``confidence`` 0..3; ``pulse`` whether a pulse was
    detected at all (the wrist-contact signal); ``motion`` the acc std (g) in the window.
    """

    start: int
    bpm: F64
    confidence: F64
    pulse: F64
    motion: F64


class HeartRateEstimator:
    """Estimates heart rate once per second from PPG and acceleration blocks."""

    def __init__(self, ppg_rate: int, acc_rate: int, config: HeartRateConfig | None = None) -> None:
        self.config = cfg = config or HeartRateConfig()
        self.ppg_rate = ppg_rate
        self.acc_rate = acc_rate
        self._win = cfg.window_s * ppg_rate
        self._awin = cfg.window_s * acc_rate
        freqs = np.fft.rfftfreq(cfg.nfft, 1.0 / ppg_rate)
        self._band = np.flatnonzero((freqs >= cfg.min_bpm / 60) & (freqs <= cfg.max_bpm / 60))
        self._freqs_bpm = freqs[self._band] * 60.0
        self._bin_bpm = float(freqs[1] * 60.0)
        self._hann = np.hanning(self._win)
        self._ahann = np.hanning(self._awin)
        # the accelerometer FFT gets the same bin spacing as the PPG one
        self._anfft = cfg.nfft * acc_rate // ppg_rate
        self.reset(0.0)

    def reset(self, t0: float) -> None:
        self._t0 = int(t0)
        self._ppg = np.zeros(0)
        self._acc = np.zeros((0, 3))
        self._first_sec = 0  # stream second of the first buffered sample
        self._next_sec = self.config.window_s // 2  # next centre second to estimate
        self._track: float | None = None
        self._track_age = 0
        self._recent_conc = np.zeros(0)

    def push(self, ppg: F64, acc: F64) -> HeartRateOutput:
        cfg = self.config
        self._ppg = np.concatenate((self._ppg, ppg))
        self._acc = np.concatenate((self._acc, acc))
        half = cfg.window_s // 2
        buffered_secs = len(self._ppg) // self.ppg_rate
        last_centre = self._first_sec + buffered_secs - half  # windows end inside the buffer
        centres = np.arange(self._next_sec, last_centre + 1, cfg.hop_s)
        start = self._t0 + self._next_sec
        if len(centres) == 0:
            empty = np.zeros(0)
            return HeartRateOutput(start, empty, empty, empty, empty)
        first_win = centres[0] - half - self._first_sec
        pw = sliding_window_view(self._ppg, self._win)[
            first_win * self.ppg_rate :: cfg.hop_s * self.ppg_rate
        ]
        aw = sliding_window_view(self._acc, self._awin, axis=0)[
            first_win * self.acc_rate :: cfg.hop_s * self.acc_rate
        ]
        pw = pw[: len(centres)]
        aw = aw[: len(centres)]
        bpm, conf, pulse, motion = self._estimate(pw, aw)
        # seconds between hop centres take the value of the previous centre
        n_out = centres[-1] + cfg.hop_s - self._next_sec if cfg.hop_s > 1 else len(centres)
        rep = np.repeat
        out = HeartRateOutput(
            start,
            rep(bpm, cfg.hop_s)[:n_out],
            rep(conf, cfg.hop_s)[:n_out],
            rep(pulse, cfg.hop_s)[:n_out],
            rep(motion, cfg.hop_s)[:n_out],
        )
        self._next_sec = int(centres[-1]) + cfg.hop_s
        # keep only what the next window needs
        keep_from_sec = self._next_sec - half
        drop = keep_from_sec - self._first_sec
        if drop > 0:
            self._ppg = self._ppg[drop * self.ppg_rate :]
            self._acc = self._acc[drop * self.acc_rate :]
            self._first_sec = keep_from_sec
        return out

    def _estimate(self, pw: F64, aw: F64) -> tuple[F64, F64, F64, F64]:
        cfg = self.config
        ppg_power = _power(pw, self._hann, cfg.nfft)[:, self._band]
        # aw: (m, 3, n) -> per-axis spectra summed
        motion = aw.std(axis=2).max(axis=1)
        moving = motion > cfg.motion_g
        clean = ppg_power.copy()
        if moving.any():
            acc_power = _power(aw[moving], self._ahann, self._anfft).sum(axis=1)[:, self._band]
            acc_norm = acc_power / np.maximum(acc_power.max(axis=1, keepdims=True), 1e-12)
            clean[moving] = ppg_power[moving] / (1.0 + cfg.suppression * acc_norm)
        total = clean.sum(axis=1) + 1e-12
        norm = clean / total[:, None]
        # local maxima; the K strongest are the candidates
        interior = (norm[:, 1:-1] > norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:])
        peaks = np.where(interior, norm[:, 1:-1], 0.0)
        k = cfg.candidates
        idx = np.argsort(-peaks, axis=1)[:, :k] + 1
        rows = np.arange(len(norm))[:, None]
        cand_pow = norm[rows, idx]
        # parabolic interpolation of each candidate's frequency
        lo, mid, hi = norm[rows, idx - 1], cand_pow, norm[rows, idx + 1]
        denom = lo - 2 * mid + hi
        shift = np.where(
            np.abs(denom) > 1e-12, 0.5 * (lo - hi) / np.where(denom == 0, 1, denom), 0.0
        )
        cand_bpm = self._freqs_bpm[idx] + np.clip(shift, -0.5, 0.5) * self._bin_bpm
        # spectral concentration around the best peak: a pulse stands out, noise does not
        width = 3
        near = np.zeros(len(norm))
        for off in range(-width, width + 1):  # a handful of bins, vectorised over windows
            near += norm[rows[:, 0], np.clip(idx[:, 0] + off, 0, norm.shape[1] - 1)]
        k = cfg.concentration_windows
        history = np.concatenate((self._recent_conc, near))
        c = np.concatenate(([0.0], np.cumsum(history)))
        j = np.arange(1, len(history) + 1)
        lo = np.maximum(0, j - k)
        smoothed = (c[j] - c[lo]) / (j - lo)
        smoothed = smoothed[len(smoothed) - len(near) :]
        self._recent_conc = history[max(0, len(history) - (k - 1)) :]
        pulse = smoothed >= cfg.min_concentration
        bpm = self._track_rates(cand_bpm, cand_pow, pulse)
        conf = np.where(pulse, 1 + (near > 0.55) + (~moving), 0)
        conf = np.where(bpm > 0, conf, 0)
        return bpm, conf.astype(np.float64), pulse.astype(np.float64), motion

    def _track_rates(self, cand_bpm: F64, cand_pow: F64, pulse: F64) -> F64:
        """Pick, window by window, the candidate most consistent with the tracked rate."""
        cfg = self.config
        out = np.zeros(len(cand_bpm))
        slew = cfg.max_slew_bpm_s * cfg.hop_s
        bpms = cand_bpm.tolist()
        pows = cand_pow.tolist()
        for i, ok in enumerate(pulse.tolist()):  # one iteration per window (per second)
            if not ok:
                self._track_age += 1
                if self._track_age > 10:
                    self._track = None
                continue
            track = self._track
            if track is None:
                best = bpms[i][0]
            else:
                # power weighted by closeness to the tracked rate
                best, best_score = track, -1.0
                for b, p in zip(bpms[i], pows[i], strict=True):
                    d = (b - track) / (slew * (1 + self._track_age) + 4.0)
                    score = p / (1.0 + d * d)
                    if score > best_score:
                        best, best_score = b, score
                best = min(
                    max(best, track - slew * (1 + self._track_age)),
                    track + slew * (1 + self._track_age),
                )
            self._track = best
            self._track_age = 0
            out[i] = best
        return out


def _power(windows: F64, taper: F64, nfft: int) -> F64:
    """Power spectra of linearly detrended, tapered windows along the last axis."""
    n = windows.shape[-1]
    t = np.arange(n) - (n - 1) / 2
    mean = windows.mean(axis=-1, keepdims=True)
    slope = (windows @ t)[..., None] / float(t @ t)
    detrended = (windows - mean - slope * t) * taper
    spec = np.fft.rfft(detrended, nfft, axis=-1)
    return np.asarray(spec.real**2 + spec.imag**2)
