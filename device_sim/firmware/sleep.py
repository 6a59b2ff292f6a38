"""Sleep: sleep/wake by actigraphy, sleep periods, four stages from heart rate, night summary.

Per 30-second epoch the firmware gets movement, steps and heart-rate features
(:class:`EpochFeatures`).

- Sleep/wake: the Cole-Kripke actigraphy score (a weighted sum of activity over the four
  minutes before and two after an epoch; sleep when below 1), with weights from Cole et al.
  (1992) spread over half-minute epochs, and a scale for this band's movement units.
- Sleep period: it starts when most of the last ``onset_window_epochs`` epochs score sleep;
  bed time goes back from sleep onset over the quiet epochs before it; it ends when the
  wearer stays awake or walks about; out of bed is the first walking after the final wake.
- Stages: a four-state hidden Markov model over the period (Viterbi), whose observations are
  the movement score and the heart rate relative to that night's own level and its
  minute-to-minute variability: deep sleep has a low, steady heart rate; REM a higher,
  irregular one with no movement; wake has movement and the highest rate. The emission
  parameters were fitted once on training seeds of the person model (never the test seeds)
  and are constants of the firmware, as a band's are.
- Online: while a period is open, :meth:`SleepTracker.current_stage` gives a causal estimate
  (the HMM's forward filter) for the smart alarm; the final stages are emitted as
  :class:`SleepEpoch` records, with a :class:`SleepSummary`, when the period ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device_sim.firmware.dsp import F64
from protocol.records import SleepEpoch, SleepStage, SleepSummary

EPOCH_S = 30
# Cole-Kripke (1992) minute weights for A(-4)..A(+2), spread over two 30-s epochs each
_CK_MINUTE_WEIGHTS = np.array([404, 598, 326, 441, 1408, 508, 350], dtype=np.float64)
CK_PAST = 8  # epochs before the scored one that take part
CK_FUTURE = 4  # epochs after


def _ck_weights() -> F64:
    # epochs -8..+4 relative to the scored one; the scored minute is epochs (-1, 0)
    w = np.zeros(CK_PAST + CK_FUTURE + 1)
    for m, weight in zip(range(-4, 3), _CK_MINUTE_WEIGHTS, strict=True):
        for e in (2 * m - 1, 2 * m):
            if -CK_PAST <= e <= CK_FUTURE:
                w[e + CK_PAST] += weight * 0.001
    return w


@dataclass(frozen=True)
class EpochFeatures:
    """What the firmware measured over one 30-second epoch."""

    start: int
    move: float  # mean band-passed acceleration magnitude, g
    steps: int
    hr: float  # mean valid heart rate, bpm; 0 = none
    hr_sd: float  # spread of the 1 Hz heart rate within the epoch, bpm
    worn: bool


@dataclass(frozen=True)
class StageModel:
    """Gaussian emissions per stage (WAKE, LIGHT, DEEP, REM) over the observation vector
    (log movement score, heart rate z-score, heart-rate variability z-score), and the
    epoch-to-epoch transition matrix."""

    means: tuple[tuple[float, float, float], ...] = (
        (1.0, 1.0, 0.8),
        (-1.5, 0.0, -0.1),
        (-2.0, -1.0, -0.7),
        (-2.2, 0.6, 0.9),
    )
    sds: tuple[tuple[float, float, float], ...] = (
        (1.2, 1.0, 1.2),
        (0.8, 0.8, 0.9),
        (0.7, 0.6, 0.6),
        (0.7, 0.8, 1.0),
    )
    stay: tuple[float, float, float, float] = (0.9, 0.97, 0.97, 0.97)
    # where a stage goes when it changes (rows: from; columns: to), before normalising
    moves: tuple[tuple[float, float, float, float], ...] = (
        (0.0, 1.0, 0.05, 0.1),
        (0.4, 0.0, 0.4, 0.2),
        (0.2, 0.8, 0.0, 0.05),
        (0.4, 0.6, 0.05, 0.0),
    )
    prior: tuple[float, float, float, float] = (0.5, 0.4, 0.05, 0.05)

    def log_transition(self) -> F64:
        moves = np.array(self.moves)
        moves = moves / moves.sum(axis=1, keepdims=True)
        stay = np.array(self.stay)
        trans = moves * (1 - stay)[:, None] + np.diag(stay)
        return np.asarray(np.log(trans))

    def log_emission(self, obs: F64) -> F64:
        """obs (n, 3) -> log likelihood (n, 4); missing values (nan) are ignored."""
        means = np.array(self.means)[None, :, :]
        sds = np.array(self.sds)[None, :, :]
        z = (obs[:, None, :] - means) / sds
        ll = -0.5 * z * z - np.log(sds)
        return np.asarray(np.where(np.isnan(ll), 0.0, ll).sum(axis=2))


@dataclass(frozen=True)
class SleepConfig:
    """Tuning of sleep detection."""

    ck_scale: float = 12.0  # Cole-Kripke P for this band's movement units (g)
    onset_window_epochs: int = 30  # 15 min
    onset_fraction: float = 0.85
    end_wake_epochs: int = 40  # 20 min awake ends the period
    end_steps: int = 60  # this many steps within end_steps_epochs ends it too
    end_steps_epochs: int = 10
    min_sleep_epochs: int = 120  # a period with less than 1 h of sleep is not a night
    max_bed_lead_epochs: int = 180  # bed time at most 90 min before onset
    quiet_move_g: float = 0.05  # above this an epoch is not "lying in bed"
    history_epochs: int = 240
    max_period_epochs: int = 40 * 60 * 2  # safety bound: 40 h
    model: StageModel = field(default_factory=StageModel)


@dataclass(frozen=True)
class SleepOutput:
    """Records a night produces when it ends."""

    epochs: list[SleepEpoch]
    summary: SleepSummary | None


class SleepTracker:
    """Follows the wearer's sleep epoch by epoch; emits a night's records when it ends."""

    def __init__(self, config: SleepConfig | None = None) -> None:
        self.config = config or SleepConfig()
        self._w = _ck_weights()
        self._logA = self.config.model.log_transition()
        self.reset()

    def reset(self) -> None:
        self._epochs: list[EpochFeatures] = []  # history, or the open period and its lead
        self._ck: list[float] = []  # Cole-Kripke scores of the epochs scored so far
        self._in_period = False
        self._period_first = 0  # index in _epochs of the first epoch that may be in bed
        self._awake_run = 0
        self._alpha: F64 | None = None  # forward log-probabilities, open period only
        self._online: SleepStage | None = None

    @property
    def asleep_period(self) -> bool:
        """True while a sleep period is open (the wearer is in bed for the night)."""
        return self._in_period

    def current_stage(self) -> SleepStage | None:
        """The causal stage estimate of the latest epoch, None outside a sleep period."""
        return self._online if self._in_period else None

    def add(self, epoch: EpochFeatures, tz_offset_min: int) -> SleepOutput | None:
        self._epochs.append(epoch)
        self._online_update(epoch)
        n = len(self._epochs)
        idx = n - 1 - CK_FUTURE  # the epoch that can now be scored
        if idx < 0:
            return None
        self._ck.append(self._ck_score(idx))
        out = self._advance(idx, tz_offset_min)
        self._trim()
        return out

    def flush(self, tz_offset_min: int) -> SleepOutput | None:
        """End an open period now (band taken off, gap in data)."""
        if not self._in_period:
            self.reset()
            return None
        last = len(self._ck) - 1
        out = self._close(last, last + 1, tz_offset_min)
        self.reset()
        return out

    # -- scoring -------------------------------------------------------------------------
    def _activity(self, e: EpochFeatures) -> float:
        # steps mark wake regardless of how the wrist moved
        return e.move + 0.02 * e.steps if e.worn else 1.0

    def _ck_score(self, idx: int) -> float:
        lo = idx - CK_PAST
        acts = [
            self._activity(self._epochs[i]) if 0 <= i < len(self._epochs) else 0.0
            for i in range(lo, idx + CK_FUTURE + 1)
        ]
        return float(self.config.ck_scale * np.dot(self._w, acts))

    def _online_update(self, e: EpochFeatures) -> None:
        """Causal stage for the smart alarm: forward filter with no look-ahead."""
        if not self._in_period:
            self._online = None
            return
        obs = self._observations(self._epochs[-1:], self._period_stats())
        ll = self.config.model.log_emission(obs)[0]
        if self._alpha is None:
            alpha = np.log(np.array(self.config.model.prior)) + ll
        else:
            alpha = _logsumexp(self._alpha[:, None] + self._logA, axis=0) + ll
        self._alpha = alpha - _logsumexp(alpha, axis=0)
        post = np.exp(self._alpha)
        best = int(np.argmax(post))
        causal_wake = self._activity(e) * self.config.ck_scale * 1.4 >= 1.0
        self._online = SleepStage.WAKE if causal_wake else SleepStage(best)

    # -- periods -------------------------------------------------------------------------
    def _advance(self, idx: int, tz: int) -> SleepOutput | None:
        cfg = self.config
        asleep = self._ck[idx] < 1.0
        if not self._in_period:
            w = cfg.onset_window_epochs
            if idx + 1 >= w:
                recent = np.array(self._ck[idx + 1 - w : idx + 1]) < 1.0
                recent_steps = sum(e.steps for e in self._epochs[idx + 1 - w : idx + 1])
                if recent.mean() >= cfg.onset_fraction and recent_steps < 20:
                    self._open(idx + 1 - w + int(np.argmax(recent)))
            return None
        self._awake_run = 0 if asleep else self._awake_run + 1
        lo = max(0, idx + 1 - cfg.end_steps_epochs)
        walking = sum(e.steps for e in self._epochs[lo : idx + 1]) >= cfg.end_steps
        if self._awake_run >= cfg.end_wake_epochs or walking:
            return self._close(idx, idx + 1, tz)
        if idx - self._period_first > cfg.max_period_epochs:
            return self._close(idx, idx + 1, tz)
        return None

    def _open(self, onset_idx: int) -> None:
        cfg = self.config
        first = onset_idx
        while (
            first > 0
            and onset_idx - first < cfg.max_bed_lead_epochs
            and self._epochs[first - 1].steps == 0
            and self._epochs[first - 1].worn
            and self._epochs[first - 1].move < cfg.quiet_move_g
        ):
            first -= 1
        self._in_period = True
        self._period_first = first
        self._awake_run = 0
        self._alpha = None

    def _close(self, last_idx: int, end_idx: int, tz: int) -> SleepOutput | None:
        cfg = self.config
        first = self._period_first
        ck = np.array(self._ck[first : last_idx + 1])
        sleep_mask = ck < 1.0
        self._in_period = False
        self._alpha = None
        if sleep_mask.sum() < cfg.min_sleep_epochs:
            return None
        epochs = self._epochs[first : last_idx + 1]
        stages = self._stage(epochs, sleep_mask)
        asleep = stages != SleepStage.WAKE
        onset = int(np.argmax(asleep))
        final = len(stages) - int(np.argmax(asleep[::-1]))  # one past the last sleep epoch
        # out of bed: the first epoch with steps after the final wake
        out = final
        while out < len(epochs) and epochs[out].steps == 0:
            out += 1
        stages[:onset] = SleepStage.WAKE
        stages[final:] = SleepStage.WAKE
        kept = stages[:out]
        records = [SleepEpoch(epochs[i].start, tz, SleepStage(int(s))) for i, s in enumerate(kept)]
        in_sleep = kept[onset:final]
        awakenings = int(
            np.sum((in_sleep[1:] == SleepStage.WAKE) & (in_sleep[:-1] != SleepStage.WAKE))
        )
        counts = np.bincount(kept, minlength=4)
        bed = epochs[0].start
        out_time = epochs[0].start + out * EPOCH_S
        asleep_epochs = int(counts[1:].sum())
        summary = SleepSummary(
            bed_time=bed,
            tz_offset_min=tz,
            sleep_onset=epochs[onset].start,
            final_wake=epochs[0].start + final * EPOCH_S,
            out_of_bed=out_time,
            efficiency_pct=round(100 * asleep_epochs / max(1, len(kept))),
            awakenings=awakenings,
            light_min=int(counts[SleepStage.LIGHT]) // 2,
            deep_min=int(counts[SleepStage.DEEP]) // 2,
            rem_min=int(counts[SleepStage.REM]) // 2,
            wake_min=int(counts[SleepStage.WAKE]) // 2,
        )
        # epochs after the period stay as history for the next one
        self._epochs = self._epochs[end_idx:]
        self._ck = self._ck[end_idx:]
        return SleepOutput(records, summary)

    def _trim(self) -> None:
        if self._in_period:
            return
        extra = len(self._ck) - self.config.history_epochs
        if extra > 0:
            del self._epochs[:extra]
            del self._ck[:extra]

    # -- staging -------------------------------------------------------------------------
    def _period_stats(self) -> tuple[float, float, float, float]:
        """This night's heart-rate level and spread, from the period so far."""
        epochs = self._epochs[self._period_first :]
        return _hr_stats(epochs)

    def _observations(
        self, epochs: list[EpochFeatures], stats: tuple[float, float, float, float]
    ) -> F64:
        med, scale, var_med, var_scale = stats
        move = np.array([self._activity(e) for e in epochs])
        hr = np.array([e.hr if e.hr > 0 else np.nan for e in epochs])
        var = np.array([e.hr_sd if e.hr > 0 else np.nan for e in epochs])
        return np.column_stack(
            (
                np.log(self.config.ck_scale * move + 1e-3),
                (hr - med) / scale,
                (var - var_med) / var_scale,
            )
        )

    def _stage(self, epochs: list[EpochFeatures], sleep_mask: np.ndarray) -> np.ndarray:
        stats = _hr_stats(epochs)
        obs = self._observations(epochs, stats)
        obs[:, 1] = _smooth(obs[:, 1], 5)
        obs[:, 2] = _smooth(obs[:, 2], 5)
        ll = self.config.model.log_emission(obs)
        # actigraphy decides wake vs sleep; the HMM decides among the sleep stages
        ll[:, SleepStage.WAKE] += np.where(sleep_mask, -3.0, 3.0)
        return _viterbi(ll, self._logA, np.log(np.array(self.config.model.prior)))


def _hr_stats(epochs: list[EpochFeatures]) -> tuple[float, float, float, float]:
    hr = np.array([e.hr for e in epochs if e.hr > 0])
    var = np.array([e.hr_sd for e in epochs if e.hr > 0])
    if len(hr) < 4:
        return 60.0, 5.0, 1.0, 1.0
    q25, med, q75 = np.percentile(hr, [25, 50, 75])
    v25, vmed, v75 = np.percentile(var, [25, 50, 75])
    return (
        float(med),
        max(1.5, float(q75 - q25) / 1.35),
        float(vmed),
        max(0.2, float(v75 - v25) / 1.35),
    )


def _smooth(x: F64, width: int) -> F64:
    """Centred moving mean that ignores nan."""
    ok = ~np.isnan(x)
    kernel = np.ones(width)
    num = np.convolve(np.where(ok, x, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(np.float64), kernel, mode="same")
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _logsumexp(a: F64, axis: int) -> F64:
    m = np.max(a, axis=axis, keepdims=True)
    return np.asarray(np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis)))


def _viterbi(ll: F64, log_a: F64, log_prior: F64) -> np.ndarray:
    n, k = ll.shape
    back = np.zeros((n, k), dtype=np.int64)
    score = log_prior + ll[0]
    for i in range(1, n):  # one step per 30-s epoch of a night
        cand = score[:, None] + log_a
        back[i] = np.argmax(cand, axis=0)
        score = cand[back[i], np.arange(k)] + ll[i]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path
