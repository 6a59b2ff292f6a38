"""Heart rate from the wrist PPG, with motion-artefact rejection from the accelerometer.

Spectral estimation: every ``hop_s`` an 8-second window of PPG, centred on a whole second,
is detrended, Hann-windowed and zero-padded to an FFT. When the wrist moves, what the
accelerometer explains is removed first: a least-squares fit of the window on the three
axes and their products (adaptive noise cancellation with the accelerometer as the
reference, as in the accelerometer-assisted methods of the IEEE SPC 2015 literature). The
accelerometer's spectrum then marks the frequencies the wrist moved at (arm swing, cadence
and their harmonics): what the fit left there is damped, and during gait those bins count
as "no evidence either way", since a pulse there and the artefact's residual look alike.
A hidden Markov model over the FFT bins (a heart rate moves a few bpm per second at most)
follows the pulse through the cleaned spectra with a causal forward filter, so a pulse
hidden for a few windows (or passing through the cadence) is carried by the windows
around it. Off the wrist the PPG has no pulse: when no spectral peak stands out, there is
no reading (bpm 0). Rates are read from 30 to 210 bpm (a fit wearer asleep reaches the
30s; a band starting at 40 reads such a pulse at a harmonic, near 115), but from 40 only
while the wrist moves, where the lowest bins hold arm-swing artefact, not a pulse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from device_sim.band.firmware.dsp import F64


@dataclass(frozen=True)
class HeartRateConfig:
    """Tuning of the heart-rate estimator."""

    window_s: int = 8
    hop_s: int = 1
    # the FFT spans this many seconds (zero-padded window): bins are fs / (fs * 20.48 s),
    # 0.049 Hz (2.9 bpm) whatever the sample rate
    spectrum_s: float = 20.48
    harmonics: int = 3  # the pulse's fundamental and its harmonics are summed...
    harmonic_cap: float = 3.0  # ...each up to this many times the fundamental's own power
    contact_hz: float = 0.15  # half-width of the spectral lines the contact test counts
    min_bpm: float = 30.0  # a fit athlete asleep can dip to the mid-30s
    max_bpm: float = 210.0
    # a moving wrist's rate is not followed below this: its artefacts crowd the lowest bins
    # and no one walks or runs with a heart rate in the 30s
    moving_min_bpm: float = 40.0
    min_concentration: float = 0.4  # share of power on the pulse's lines for a pulse to exist
    concentration_windows: int = 5  # averaged over this many windows: noise peaks wander
    motion_g: float = 0.03  # acc std above which motion suppression is applied
    suppression: float = 1.0  # strength of attenuation at the wrist's motion frequencies
    max_slew_bpm_s: float = 2.0  # sd of the tracked rate's move per second
    gap_slew_bpm: float = 10.0  # sd of its move over a short loss of contact
    jump_floor: float = 1e-7  # odds of any other rate (re-acquisition after a wrong lock)
    emission_power: float = 2.0  # how sharply the spectrum's peaks pull the tracker
    emission_floor: float = 0.02
    track_memory_s: int = 10  # seconds without contact before the tracked rate is dropped
    relock_share: float = 0.12  # peak share of a still window that re-locks the tracker
    clean_peak_share: float = 0.08  # a picked peak this prominent earns more confidence
    gait_motion_g: float = 0.1  # acc std of walking or running
    notch_level: float = 0.3  # acc spectral peaks above this share of the largest...
    notch_hz: float = 0.1  # ...are notched this far each side...
    blind_emission: float = 0.3  # ...and there the tracker's evidence is this, either way
    cancel_motion: bool = True  # regress the accelerometer out of the PPG first
    ridge: float = 1e-3  # regularisation of the motion-artefact regression


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
        # every length below is in Hz or seconds, so that the estimates do not depend on
        # the sample rate: the FFT's bins, the contact lines, the notches
        self._nfft = max(self._win, round(cfg.spectrum_s * ppg_rate))
        freqs = np.fft.rfftfreq(self._nfft, 1.0 / ppg_rate)
        df = float(freqs[1])
        self._band = np.flatnonzero((freqs >= cfg.min_bpm / 60) & (freqs <= cfg.max_bpm / 60))
        self._freqs_bpm = np.asarray(freqs[self._band] * 60.0, dtype=np.float64)
        self._bin_bpm = df * 60.0
        # the spectrum the harmonics need: up to the top rate's highest harmonic
        top = min(cfg.harmonics * cfg.max_bpm / 60 + 2 * cfg.contact_hz, 0.95 * ppg_rate / 2)
        self._full = int(np.searchsorted(freqs, top, side="right"))
        self._lo_bin = int(self._band[0])
        # fractional bins of each band bin's harmonics (k = 2..harmonics) for the sum
        pos = [k * self._band.astype(np.float64) for k in range(2, cfg.harmonics + 1)]
        self._harm_pos = [p[p <= self._full - 1] for p in pos]
        self._contact_bins = max(1, round(cfg.contact_hz / df))
        self._notch_bins = max(1, round(cfg.notch_hz / df))
        self._below_moving_min = self._freqs_bpm < cfg.moving_min_bpm
        self._hann = np.hanning(self._win)

        self._ahann = np.hanning(self._awin)
        self._step = _transition(self._freqs_bpm, cfg.max_slew_bpm_s * cfg.hop_s, cfg.jump_floor)
        self._gap_step = _transition(self._freqs_bpm, cfg.gap_slew_bpm, cfg.jump_floor)
        # the accelerometer's spectrum is read on the PPG's frequency grid
        self._anfft = max(self._awin, round(cfg.spectrum_s * acc_rate))
        afreqs = np.fft.rfftfreq(self._anfft, 1.0 / acc_rate)
        self._acc_grid = (freqs[: self._full], afreqs)
        self.reset(0.0)

    def reset(self, t0: float) -> None:
        self._t0 = int(t0)
        self._ppg = np.zeros(0)
        self._acc = np.zeros((0, 3))
        self._first_sec = 0  # stream second of the first buffered sample
        self._next_sec = self.config.window_s // 2  # next centre second to estimate
        self._alpha: F64 | None = None  # tracker's probabilities over the band's bins
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
        full = _power(pw, self._hann, self._nfft)[:, : self._full]
        motion = aw.std(axis=2).max(axis=1)
        moving = motion > cfg.motion_g
        summed_full = self._harmonic_sum(full)
        # wrist contact: a periodic optical signal (pulse, or motion artefact on skin)
        pulse = self._contact(full, summed_full, moving)
        clean = full.copy()
        blind = np.zeros((len(full), len(self._band)), dtype=bool)
        if moving.any():
            if cfg.cancel_motion:
                acc_on_ppg = _resample_windows(aw[moving], self._win)
                residual = _cancel_motion(pw[moving], acc_on_ppg, cfg.ridge)
                clean[moving] = _power(residual, self._hann, self._nfft)[:, : self._full]
            # what the regression left at the wrist's own frequencies (and, for the
            # pulse's harmonics, at theirs) is attenuated too
            acc_power = self._acc_spectrum(aw[moving])
            acc_power[:, : self._lo_bin] = 0.0
            acc_band = acc_power[:, self._band]
            acc_band[:, self._below_moving_min] = 0.0
            peak = np.maximum(acc_band.max(axis=1, keepdims=True), 1e-12)
            clean[moving] = clean[moving] / (1.0 + cfg.suppression * acc_power / peak)
            # rhythmic gait: at the arm-swing and step peaks the spectrum says nothing
            # either way (the artefact's residual and a pulse there look alike), so the
            # tracker neither follows a peak there nor leaves a rate that sits there
            gait = (motion[moving] > cfg.gait_motion_g)[:, None]
            blind[moving] = self._widen((acc_band / peak > cfg.notch_level) & gait)
        summed = summed_full
        if moving.any():
            summed = summed_full.copy()
            summed[moving] = self._harmonic_sum(clean[moving])
        # a moving wrist's band starts at moving_min_bpm: below it is only artefact
        summed[moving[:, None] & self._below_moving_min[None, :]] = 0.0
        norm = summed / (summed.sum(axis=1, keepdims=True) + 1e-12)
        # in a moving window nothing below moving_min_bpm, nor its edge bin, is a peak
        no_peak = np.zeros(norm.shape, dtype=bool)
        no_peak[moving, : int(self._below_moving_min.sum()) + 1] = True
        bpm, strength = self._track(norm, blind | no_peak, blind, pulse, ~moving)
        conf = np.where(pulse, 1 + (strength > cfg.clean_peak_share) + (~moving), 0)
        conf = np.where(bpm > 0, conf, 0)
        return bpm, conf.astype(np.float64), pulse.astype(np.float64), motion

    def _widen(self, hot: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """``hot`` bins and the notch width around them."""
        out = hot.copy()
        for off in range(1, self._notch_bins + 1):
            out[:, off:] |= hot[:, :-off]
            out[:, :-off] |= hot[:, off:]
        return out

    def _harmonic_sum(self, power: F64) -> F64:
        """Each band bin's power plus that at its 2nd, 3rd... harmonic (the larger of the
        neighbouring bins there: the harmonics of a varying rate smear), each harmonic
        counting at most ``harmonic_cap`` times the bin's own power. The dicrotic notch
        gives a real pulse more power at its 2nd and 3rd harmonics than at its
        fundamental; summed, the fundamental stands above its own harmonics (their
        harmonics fall between the pulse's lines). The cap is the subharmonic check: a
        rate with next to no power of its own (half the pulse rate, or the arm swing
        under a pulse at the step rate) gains next to nothing from the lines above it."""
        widened = power.copy()
        widened[:, 1:] = np.maximum(widened[:, 1:], power[:, :-1])
        widened[:, :-1] = np.maximum(widened[:, :-1], power[:, 1:])
        base = power[:, self._band]
        cap = self.config.harmonic_cap * base
        out = base.copy()
        for pos in self._harm_pos:
            lo = np.floor(pos).astype(np.int64)
            frac = pos - lo
            hi = np.minimum(lo + 1, power.shape[1] - 1)
            at_harmonic = widened[:, lo] * (1 - frac) + widened[:, hi] * frac
            out[:, : len(pos)] += np.minimum(at_harmonic, cap[:, : len(pos)])
        return np.asarray(out)

    def _acc_spectrum(self, aw: F64) -> F64:
        """Summed power of the acceleration axes on the PPG spectrum's grid."""
        acc = _power(aw, self._ahann, self._anfft).sum(axis=1)
        if self._anfft * self.ppg_rate == self._nfft * self.acc_rate:
            return np.asarray(acc[:, : self._full] * 1.0)
        grid, afreqs = self._acc_grid
        idx = np.clip(np.searchsorted(afreqs, grid), 1, len(afreqs) - 1)
        w = (grid - afreqs[idx - 1]) / (afreqs[idx] - afreqs[idx - 1])
        return np.asarray(acc[:, idx - 1] * (1 - w) + acc[:, idx] * w)

    def _contact(self, power: F64, summed: F64, moving: npt.NDArray[np.bool_]) -> F64:
        """Share of the spectrum (fundamental to the top harmonic) on the strongest
        harmonic series, averaged over recent windows: a pulse (or a rhythmic artefact on
        skin) puts its power on a few lines, sensor noise spreads it. Line widths and the
        span are in Hz, so the test reads the same at any sample rate."""
        cfg = self.config
        summed = np.where(moving[:, None] & self._below_moving_min[None, :], 0.0, summed)
        best = self._band[np.argmax(summed, axis=1)]
        rows = np.arange(len(power))
        span = power[:, self._lo_bin :].sum(axis=1) + 1e-12
        on_lines = np.zeros(len(power))
        c = self._contact_bins
        offs = np.arange(-c, c + 1)
        for k in range(1, cfg.harmonics + 1):
            idx = k * best[:, None] + offs[None, :]
            ok = idx < power.shape[1]
            on_lines += np.where(
                ok, power[rows[:, None], np.minimum(idx, power.shape[1] - 1)], 0
            ).sum(axis=1)
        near = on_lines / span
        k = cfg.concentration_windows
        history = np.concatenate((self._recent_conc, near))
        cs = np.concatenate(([0.0], np.cumsum(history)))
        j = np.arange(1, len(history) + 1)
        lo = np.maximum(0, j - k)
        smoothed = ((cs[j] - cs[lo]) / (j - lo))[len(history) - len(near) :]
        self._recent_conc = history[max(0, len(history) - (k - 1)) :]
        return np.asarray(smoothed >= cfg.min_concentration)

    def _track(
        self,
        norm: F64,
        no_peak: npt.NDArray[np.bool_],
        blind: npt.NDArray[np.bool_],
        pulse: F64,
        still: npt.NDArray[np.bool_],
    ) -> tuple[F64, F64]:
        """Follow the heart rate through the cleaned spectra with a hidden Markov model
        over the FFT bins (forward filter, causal): a heart rate moves a few bpm per second
        at most, so a pulse that one window's artefact residual hides is carried by the
        windows around it. Returns the rates and the chosen bins' share of the spectrum."""
        cfg = self.config
        # only interior local maxima are peaks: the band's edge bins slope up into the
        # breathing and drift below it, or into the harmonics above
        local = np.zeros_like(norm)
        local[:, 1:-1] = np.where(
            (norm[:, 1:-1] > norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:]), norm[:, 1:-1], 0.0
        )
        local = np.where(no_peak, 0.0, local)
        peak = local.max(axis=1, keepdims=True)
        emission = (local / np.maximum(peak, 1e-12)) ** cfg.emission_power + cfg.emission_floor
        emission = np.where(blind, cfg.blind_emission, emission)
        ordered = -np.sort(-norm, axis=1)[:, :2]
        clear = still & (ordered[:, 0] > cfg.relock_share) & (ordered[:, 0] > 2 * ordered[:, 1])
        picked = np.full(len(norm), -1)
        for i, ok in enumerate(pulse.tolist()):  # one iteration per window (per second)
            if not ok:
                self._track_age += 1
                if self._track_age > cfg.track_memory_s:
                    self._alpha = None
                continue
            if self._alpha is None or clear[i]:
                alpha = emission[i]
            else:
                move = self._step if self._track_age == 0 else self._gap_step
                alpha = (self._alpha @ move) * emission[i]
            alpha = alpha / alpha.sum()
            self._alpha = alpha
            self._track_age = 0
            picked[i] = alpha.argmax()
        ok = picked >= 0
        out = np.zeros(len(norm))
        strength = np.zeros(len(norm))
        if ok.any():
            out[ok] = self._refine(norm[ok], picked[ok])
            strength[ok] = norm[ok, picked[ok]]
        return out, strength

    def _refine(self, spectra: F64, bins: npt.NDArray[np.int64]) -> F64:
        """Sub-bin rates: parabolic interpolation at the spectral peak at or next to each
        picked bin (one per row of ``spectra``)."""
        last = spectra.shape[1] - 1
        rows = np.arange(len(bins))
        k = np.clip(bins, 1, last - 1)
        k = k - 1 + np.argmax(np.stack([spectra[rows, k + d] for d in (-1, 0, 1)], axis=1), 1)
        k = np.where((bins > 0) & (bins < last), k, bins)
        inner = (k > 0) & (k < last)
        kc = np.clip(k, 1, last - 1)
        lo, mid, hi = spectra[rows, kc - 1], spectra[rows, kc], spectra[rows, kc + 1]
        denom = lo - 2 * mid + hi
        safe = np.where(np.abs(denom) > 1e-12, denom, 1.0)
        shift = np.where(inner & (np.abs(denom) > 1e-12), 0.5 * (lo - hi) / safe, 0.0)
        return np.asarray(self._freqs_bpm[k] + np.clip(shift, -0.5, 0.5) * self._bin_bpm)


def _transition(freqs_bpm: F64, sd_bpm: float, floor: float) -> F64:
    """Row-stochastic bin-to-bin move of the heart rate over one hop."""
    d = (freqs_bpm[None, :] - freqs_bpm[:, None]) / sd_bpm
    move = np.exp(-0.5 * d * d) + floor
    return np.asarray(move / move.sum(axis=1, keepdims=True))


def _power(windows: F64, taper: F64, nfft: int) -> F64:
    """Power spectra of linearly detrended, tapered windows along the last axis."""
    n = windows.shape[-1]
    t = np.arange(n) - (n - 1) / 2
    mean = windows.mean(axis=-1, keepdims=True)
    slope = (windows @ t)[..., None] / float(t @ t)
    detrended = (windows - mean - slope * t) * taper
    spec = np.fft.rfft(detrended, nfft, axis=-1)
    return np.asarray(spec.real**2 + spec.imag**2)


def _resample_windows(windows: F64, n: int) -> F64:
    """Windows (m, 3, k) linearly interpolated onto n samples over the same span (the
    accelerometer's windows on the PPG's sample times when their rates differ)."""
    k = windows.shape[-1]
    if k == n:
        return windows
    pos = (np.arange(n) + 0.5) * k / n - 0.5
    lo = np.clip(np.floor(pos).astype(np.int64), 0, k - 1)
    hi = np.minimum(lo + 1, k - 1)
    w = np.clip(pos - lo, 0.0, 1.0)
    return np.asarray(windows[..., lo] * (1 - w) + windows[..., hi] * w)


def _cancel_motion(ppg: F64, acc: F64, ridge: float) -> F64:
    """Remove from each PPG window what its wrist acceleration explains.

    Adaptive noise cancellation with the accelerometer as the reference: a least-squares
    fit of the PPG window on the detrended acceleration axes and their products (motion
    moves the sensor against the skin both linearly and through the size of the jolt),
    subtracted. Windows: ppg (m, n), acc (m, 3, n) at the same rate.
    """
    a = acc - acc.mean(axis=2, keepdims=True)
    x, y, z = a[:, 0], a[:, 1], a[:, 2]
    ramp = np.broadcast_to(np.linspace(-1.0, 1.0, a.shape[2]), x.shape)
    terms = [x, y, z, x * x, y * y, z * z, x * y, x * z, y * z, ramp]
    reg = np.stack([t - t.mean(axis=1, keepdims=True) for t in terms], axis=2)  # (m, n, k)
    target = ppg - ppg.mean(axis=1, keepdims=True)
    gram = np.matmul(reg.transpose(0, 2, 1), reg)
    scale = np.trace(gram, axis1=1, axis2=2)[:, None, None] / gram.shape[1]
    gram = gram + ridge * scale * np.eye(gram.shape[1])[None]
    rhs = np.matmul(target[:, None, :], reg)[:, 0, :]
    beta = np.linalg.solve(gram, rhs[:, :, None])
    return np.asarray(target - np.matmul(reg, beta)[:, :, 0])
