"""Sleep: sleep/wake by actigraphy, sleep periods, four stages from pulse and breathing.

Per 30-second epoch the firmware gets movement, steps and heart-rate features
(:class:`EpochFeatures`).

- Sleep/wake: the Cole-Kripke actigraphy score (a weighted sum of activity over the four
  minutes before and two after an epoch; sleep when below 1), with weights from Cole et al.
  (1992) spread over half-minute epochs, and a scale for this band's movement units.
- Sleep period: it starts when most of the last ``onset_window_epochs`` epochs score sleep;
  bed time goes back from sleep onset over the quiet epochs before it; it ends when the
  wearer stays awake or walks about; out of bed is the first walking after the final wake.
- Stages: a four-state hidden Markov model over the period (Viterbi), whose observations are
  movement, the heart rate relative to that night's own level, its spread within the
  epoch, and the beat-to-beat variability (RMSSD, from :mod:`beats`) relative to the
  night's: deep sleep has a low heart rate and the highest variability; REM a higher rate
  and the lowest variability, with no movement; wake has movement and the highest rate.
  The variability matters because the heart rate's level wanders by a few percent within
  a stage, as much as REM and light sleep differ. So does the breathing's regularity (the
  spread of the breath intervals from :mod:`breathing`, over the night's level): regular
  in NREM sleep, irregular in REM. Without any heart rate all night (a recording without
  PPG) a night is sleep/wake by Cole-Kripke alone. The emission parameters were fitted
  once on training seeds of the person model (never the test seeds) with
  ``bench/fit_sleep_model.py`` and are constants of the firmware, as a band's are.
- Online: while a period is open, :meth:`SleepTracker.current_stage` gives a causal estimate
  (the HMM's forward filter, with heart-rate levels fitted for the night-so-far median it
  sees) and :meth:`SleepTracker.confident_stage` what the smart alarm may act on; the
  final stages are emitted as :class:`SleepEpoch` records, with a :class:`SleepSummary`,
  when the period ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device_sim.band.firmware.dsp import F64
from protocol.kme.records import SleepEpoch, SleepStage, SleepSummary

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
    tilt: float = 0.0  # how far the wrist's orientation moved over the epoch, g
    rmssd: float = 0.0  # beat-to-beat variability (RMSSD) over the epoch, ms; 0 = none
    # breaths ending in the epoch (from :mod:`breathing`): their number and the sums of
    # their log intervals and of those squared
    breaths: int = 0
    breath_log_sum: float = 0.0
    breath_log_sq: float = 0.0


@dataclass(frozen=True)
class StageModel:
    """A four-state hidden Markov model of sleep stages (WAKE, LIGHT, DEEP, REM).

    Observations per epoch: ``rel``, the log of the epoch's heart rate over the night's
    median (of still epochs), modelled as a Gaussian per stage with a broad outlier
    component; and ``moved``, whether the wrist moved, a Bernoulli per stage. Parameters
    were fitted on training seeds of the person and sensor models (see the module doc).
    """

    hr_mean: tuple[float, float, float, float] = (0.069, -0.004, -0.049, 0.044)
    hr_sd: tuple[float, float, float, float] = (0.057, 0.024, 0.032, 0.021)
    hr_outlier: float = 0.08
    hr_outlier_sd: float = 0.3
    p_moved: tuple[float, float, float, float] = (0.326, 0.063, 0.02, 0.038)
    # log(hr_sd + 0.2): the heart rate's spread within the epoch; awake it wanders most
    spread_mean: tuple[float, float, float, float] = (0.123, -0.064, 0.015, -0.078)
    spread_sd: tuple[float, float, float, float] = (0.354, 0.353, 0.344, 0.346)
    # log RMSSD over the night's median (of still epochs): beat-to-beat variability is
    # highest in deep sleep and lowest in REM (vagal tone); it does not wander with the
    # heart rate's level, so it tells REM from light sleep where the rate cannot
    hrv_mean: tuple[float, float, float, float] = (-0.022, -0.008, 0.172, -0.109)
    hrv_sd: tuple[float, float, float, float] = (0.129, 0.127, 0.155, 0.132)
    hrv_outlier: float = 0.05
    hrv_outlier_sd: float = 0.6
    # log spread of the breath intervals (the last two minutes) over the night's median
    # (of still epochs): breathing is regular in NREM sleep, irregular in REM and awake
    resp_mean: tuple[float, float, float, float] = (0.179, -0.095, -0.212, 0.766)
    resp_sd: tuple[float, float, float, float] = (0.315, 0.319, 0.38, 0.198)
    resp_outlier: float = 0.05
    resp_outlier_sd: float = 1.0
    transition: tuple[tuple[float, float, float, float], ...] = (
        (0.905, 0.062, 0.019, 0.014),
        (0.015, 0.968, 0.008, 0.009),
        (0.015, 0.022, 0.963, 0.0005),
        (0.018, 0.016, 0.001, 0.965),
    )
    prior: tuple[float, float, float, float] = (0.7, 0.28, 0.01, 0.01)

    def log_transition(self) -> F64:
        trans = np.array(self.transition)
        return np.asarray(np.log(trans / trans.sum(axis=1, keepdims=True)))

    def log_prior(self) -> F64:
        return np.asarray(np.log(np.array(self.prior)))

    def log_emission(
        self,
        rel: F64,
        moved: F64,
        spread: F64 | None = None,
        hrv: F64 | None = None,
        resp: F64 | None = None,
    ) -> F64:
        """(n,) log heart-rate ratios (nan: none), moved flags and, optionally, log heart-rate
        spreads, log RMSSD ratios and log breathing-spread ratios (nan: none) -> (n, 4) log
        likelihoods."""
        mean = np.array(self.hr_mean)[None, :]
        sd = np.array(self.hr_sd)[None, :]
        z = (rel[:, None] - mean) / sd
        core = (1 - self.hr_outlier) * np.exp(-0.5 * z * z) / sd
        wide = self.hr_outlier * np.exp(-0.5 * (rel[:, None] / self.hr_outlier_sd) ** 2)
        ll_hr = np.log(core + wide / self.hr_outlier_sd + 1e-300)
        ll_hr = np.where(np.isnan(rel)[:, None], 0.0, ll_hr)
        p = np.array(self.p_moved)[None, :]
        ll_move = np.where(moved[:, None] > 0, np.log(p), np.log1p(-p))
        out = ll_hr + ll_move
        if spread is not None:
            zs = (spread[:, None] - np.array(self.spread_mean)[None, :]) / np.array(self.spread_sd)
            ll_spread = -0.5 * zs * zs - np.log(np.array(self.spread_sd))[None, :]
            out = out + np.where(np.isnan(spread)[:, None], 0.0, ll_spread)
        if hrv is not None:
            sd_h = np.array(self.hrv_sd)[None, :]
            zh = (hrv[:, None] - np.array(self.hrv_mean)[None, :]) / sd_h
            core_h = (1 - self.hrv_outlier) * np.exp(-0.5 * zh * zh) / sd_h
            wide_h = self.hrv_outlier * np.exp(-0.5 * (hrv[:, None] / self.hrv_outlier_sd) ** 2)
            ll_hrv = np.log(core_h + wide_h / self.hrv_outlier_sd + 1e-300)
            out = out + np.where(np.isnan(hrv)[:, None], 0.0, ll_hrv)
        if resp is not None:
            out = out + _robust_gaussian(
                resp, self.resp_mean, self.resp_sd, self.resp_outlier, self.resp_outlier_sd
            )
        return np.asarray(out)


def _robust_gaussian(
    x: F64,
    mean: tuple[float, float, float, float],
    sd: tuple[float, float, float, float],
    outlier: float,
    outlier_sd: float,
) -> F64:
    """(n,) observations -> (n, 4) log likelihoods of a per-stage Gaussian with a broad
    outlier component; 0 where the observation is missing (nan)."""
    s = np.array(sd)[None, :]
    z = (x[:, None] - np.array(mean)[None, :]) / s
    core = (1 - outlier) * np.exp(-0.5 * z * z) / s
    wide = outlier * np.exp(-0.5 * (x[:, None] / outlier_sd) ** 2) / outlier_sd
    ll = np.log(core + wide + 1e-300)
    return np.asarray(np.where(np.isnan(x)[:, None], 0.0, ll))


# The causal filter sees the heart rate and RMSSD over their medians of the night so far,
# not the whole night's, so its stage levels differ a little; fitted the same way
# (``bench/fit_sleep_model.py --seeds 4``, the nights of training seeds 101-104).
ONLINE_STAGE_MODEL = StageModel(
    hr_mean=(0.062, 0.003, -0.039, 0.054),
    hr_sd=(0.042, 0.025, 0.032, 0.02),
    p_moved=(0.229, 0.064, 0.02, 0.038),
    spread_mean=(0.112, -0.064, 0.015, -0.078),
    spread_sd=(0.347, 0.353, 0.344, 0.346),
    hrv_mean=(-0.026, -0.036, 0.121, -0.136),
    hrv_sd=(0.131, 0.132, 0.151, 0.134),
    resp_mean=(0.22, -0.017, -0.098, 0.838),
    resp_sd=(0.317, 0.324, 0.37, 0.205),
)


@dataclass(frozen=True)
class SleepConfig:
    """Tuning of sleep detection."""

    tilt_floor_g: float = 0.035  # orientation change per epoch a still wrist shows (noise)
    move_floor_g: float = 0.0025
    move_gain: float = 20.0
    step_gain: float = 0.02
    moved_tilt_g: float = 0.06  # above these an epoch counts as "moved" for staging
    moved_move_g: float = 0.003
    ck_scale: float = 2.6  # Cole-Kripke P: sustained activity of 0.05 scores wake
    onset_window_epochs: int = 30  # 15 min
    onset_fraction: float = 0.85
    end_wake_epochs: int = 40  # 20 min scored awake ends the period
    end_steps: int = 60  # this many steps within end_steps_epochs ends it too
    end_steps_epochs: int = 10
    min_sleep_epochs: int = 120  # a period with less than 1 h of sleep is not a night...
    min_cut_sleep_epochs: int = 20  # ...unless the data ended while asleep: keep what was seen
    max_bed_lead_epochs: int = 180  # bed time at most 90 min before onset
    quiet_activity: float = 0.05  # above this an epoch is not "lying in bed"
    history_epochs: int = 240
    max_period_epochs: int = 40 * 60 * 2  # safety bound: 40 h
    alarm_confidence: float = 0.8
    alarm_sure_epochs: int = 6  # epochs in a row the filter must be sure of a stage (3 min)
    # light sleep whose heart rate moved this much (log ratio) against the mean of the
    # ``alarm_trend_epochs`` before is on its way into deep sleep or REM: not sure of it
    alarm_max_trend: float = 0.03
    # a still wrist's WAKE counts for the alarm only while REM is at most this likely
    alarm_still_wake_max_rem: float = 0.15
    alarm_trend_epochs: int = 2
    model: StageModel = field(default_factory=StageModel)
    # the causal filter's own heart-rate emissions (None: ``model``'s)
    online_model: StageModel | None = field(default_factory=lambda: ONLINE_STAGE_MODEL)


def epoch_activity(e: EpochFeatures, cfg: SleepConfig) -> float:
    """Actigraphy activity of an epoch: movement above the still-wrist noise floor."""
    if not e.worn:
        return 1.0
    return (
        max(0.0, e.tilt - cfg.tilt_floor_g)
        + cfg.move_gain * max(0.0, e.move - cfg.move_floor_g)
        + cfg.step_gain * e.steps
    )


def epoch_moved(e: EpochFeatures, cfg: SleepConfig) -> bool:
    return e.tilt > cfg.moved_tilt_g or e.move > cfg.moved_move_g or e.steps > 0


def night_observations(epochs: list[EpochFeatures], cfg: SleepConfig) -> tuple[F64, F64]:
    """(rel, moved): log heart rate over the night's median of still epochs, and movement."""
    hr = np.array([e.hr for e in epochs], dtype=np.float64)
    moved = np.array([epoch_moved(e, cfg) for e in epochs], dtype=np.float64)
    still = (hr > 0) & (moved == 0)
    ref = hr[still] if still.sum() >= 4 else hr[hr > 0]
    if len(ref) == 0:
        return np.full(len(hr), np.nan), moved
    base = float(np.median(ref))
    rel = np.where(hr > 0, np.log(np.maximum(hr, 1e-6) / base), np.nan)
    return rel, moved


BREATH_EPOCHS = 4  # the breathing's spread is read over the last two minutes...
MIN_BREATHS = 8  # ...from at least this many breath intervals


def breath_spread(epochs: list[EpochFeatures], i: int) -> float:
    """Standard deviation of the log breath intervals over the epochs up to ``i`` (the
    last BREATH_EPOCHS); nan with too few breaths."""
    window = epochs[max(0, i + 1 - BREATH_EPOCHS) : i + 1]
    n = sum(e.breaths for e in window)
    if n < MIN_BREATHS:
        return float("nan")
    mean = sum(e.breath_log_sum for e in window) / n
    var = sum(e.breath_log_sq for e in window) / n - mean * mean
    return float(np.sqrt(max(var, 1e-8)))


def night_resp(epochs: list[EpochFeatures], moved: F64) -> F64:
    """Log breathing spread over the night's median of still epochs (nan where none)."""
    spread = np.array([breath_spread(epochs, i) for i in range(len(epochs))])
    have = ~np.isnan(spread) & (moved == 0)
    if have.sum() < 4:
        return np.full(len(epochs), np.nan)
    logs = np.log(np.where(have, spread, 1.0))
    return np.where(have, logs - float(np.median(logs[have])), np.nan)


def night_hrv(epochs: list[EpochFeatures], moved: F64) -> F64:
    """Log RMSSD over the night's median of still epochs (nan where there is none)."""
    rmssd = np.array([e.rmssd for e in epochs], dtype=np.float64)
    have = rmssd > 0
    ref = rmssd[have & (moved == 0)]
    if len(ref) < 4:
        return np.full(len(rmssd), np.nan)
    base = float(np.median(np.log(ref)))
    return np.where(have & (moved == 0), np.log(np.maximum(rmssd, 1e-6)) - base, np.nan)


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
        self._log_a = self.config.model.log_transition()
        self.reset()

    def reset(self) -> None:
        self._epochs: list[EpochFeatures] = []  # history, or the open period and its lead
        self._acts: list[float] = []
        self._ck: list[float] = []  # Cole-Kripke scores of the epochs scored so far
        self._in_period = False
        self._period_first = 0  # index in _epochs of the first epoch that may be in bed
        self._awake_run = 0
        self._alpha: F64 | None = None  # forward log-probabilities, open period only
        self._still_hr: list[float] = []
        self._still_hrv: list[float] = []
        self._still_resp: list[float] = []
        self._online: SleepStage | None = None
        self._sure: SleepStage | None = None
        self._last_confident: SleepStage | None = None
        self._sure_run = 0
        self._rels: list[float] = []

    @property
    def asleep_period(self) -> bool:
        """True while a sleep period is open (the wearer is in bed for the night)."""
        return self._in_period

    def current_stage(self) -> SleepStage | None:
        """The causal stage estimate of the latest epoch, None outside a sleep period."""
        return self._online if self._in_period else None

    def confident_stage(self) -> SleepStage | None:
        """The causal stage when the band is sure of it (None otherwise): the same stage
        for the last ``alarm_sure_epochs`` epochs with a posterior of at least
        ``alarm_confidence``; for WAKE a moving wrist or REM unlikely (a raised heart rate
        alone is as likely REM; the breathing's regularity tells them apart); for LIGHT a
        steady heart rate too (one already falling or rising is often the start of deep
        sleep or REM, which the filter sees a few epochs late). A
        smart alarm must not wake someone from deep or REM sleep on a guess."""
        return self._sure if self._in_period else None

    def _update_sure(self, moved: bool) -> None:
        assert self._alpha is not None
        best = int(np.argmax(self._alpha))
        confident = float(np.exp(self._alpha[best])) >= self.config.alarm_confidence
        if best == SleepStage.WAKE and not moved:
            # a raised heart rate alone is as likely REM; with the breathing's regularity
            # the filter tells them apart, so a still wake counts once REM is unlikely
            rem = float(np.exp(self._alpha[SleepStage.REM]))
            confident = confident and rem <= self.config.alarm_still_wake_max_rem
        if best == SleepStage.LIGHT and confident:
            rels = np.array(self._rels)
            if len(rels) > 1 and not np.isnan(rels).any():
                trend = rels[-1] - float(np.mean(rels[:-1]))
                confident = abs(trend) <= self.config.alarm_max_trend
        stage = SleepStage(best) if confident else None
        same = stage is not None and stage == self._last_confident
        self._sure_run = self._sure_run + 1 if same else (1 if stage is not None else 0)
        self._sure = stage if self._sure_run >= self.config.alarm_sure_epochs else None
        self._last_confident = stage

    def add(self, epoch: EpochFeatures, tz_offset_min: int) -> SleepOutput | None:
        self._epochs.append(epoch)
        self._acts.append(epoch_activity(epoch, self.config))
        if self._in_period:
            self._online_update(epoch, len(self._epochs) - 1)
        idx = len(self._epochs) - 1 - CK_FUTURE  # the epoch that can now be scored
        if idx < 0:
            return None
        self._ck.append(self._ck_score(idx))
        out = self._advance(idx, tz_offset_min)
        self._trim()
        return out

    def flush(self, tz_offset_min: int) -> SleepOutput | None:
        """End an open period now (band taken off, gap in data)."""
        out = None
        if self._in_period:
            last = len(self._ck) - 1
            out = self._close(last, last + 1, tz_offset_min, cut=True)
        self.reset()
        return out

    # -- scoring -------------------------------------------------------------------------
    def _ck_score(self, idx: int) -> float:
        lo = idx - CK_PAST
        hi = idx + CK_FUTURE + 1
        acts = np.array(self._acts[max(0, lo) : hi])
        w = self._w[max(0, -lo) : max(0, -lo) + len(acts)]
        return float(self.config.ck_scale * np.dot(w, acts))

    def _online_update(self, e: EpochFeatures, idx: int) -> None:
        """Causal stage for the smart alarm: forward filter with no look-ahead."""
        cfg = self.config
        moved = epoch_moved(e, cfg)
        if e.hr > 0 and not moved:
            self._still_hr.append(e.hr)
        rel = np.nan
        if e.hr > 0 and len(self._still_hr) >= 4:
            rel = float(np.log(e.hr / np.median(self._still_hr)))
        spread = np.log(e.hr_sd + 0.2) if e.hr > 0 else np.nan
        hrv = np.nan
        if e.rmssd > 0 and not moved:
            self._still_hrv.append(float(np.log(e.rmssd)))
            if len(self._still_hrv) >= 4:
                hrv = self._still_hrv[-1] - float(np.median(self._still_hrv))
        resp = np.nan
        breathing = breath_spread(self._epochs, idx)
        if not moved and not np.isnan(breathing):
            self._still_resp.append(float(np.log(breathing)))
            if len(self._still_resp) >= 4:
                resp = self._still_resp[-1] - float(np.median(self._still_resp))
        model = cfg.online_model or cfg.model
        ll = model.log_emission(
            np.array([rel]),
            np.array([float(moved)]),
            np.array([spread]),
            np.array([hrv]),
            np.array([resp]),
        )[0]
        if self._alpha is None:
            alpha = model.log_prior() + ll
        else:
            alpha = _logsumexp(self._alpha[:, None] + self._log_a, axis=0) + ll
        self._alpha = alpha - _logsumexp(alpha, axis=0)
        self._online = SleepStage(int(np.argmax(self._alpha)))
        self._rels.append(rel)
        del self._rels[: -cfg.alarm_trend_epochs - 1]
        self._update_sure(moved)

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
        too_long = idx - self._period_first > cfg.max_period_epochs
        if self._awake_run >= cfg.end_wake_epochs or walking or too_long:
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
            and self._acts[first - 1] < cfg.quiet_activity
        ):
            first -= 1
        self._in_period = True
        self._period_first = first
        self._awake_run = 0
        # catch the online filter up over the epochs already in the period
        self._alpha = None
        self._still_hr = []
        self._still_hrv = []
        self._still_resp = []
        self._last_confident = None
        self._sure_run = 0
        self._rels = []
        for j in range(first, len(self._epochs)):
            self._online_update(self._epochs[j], j)

    def _close(self, last_idx: int, end_idx: int, tz: int, cut: bool = False) -> SleepOutput | None:
        cfg = self.config
        first = self._period_first
        self._in_period = False
        self._alpha = None
        epochs = self._epochs[first : last_idx + 1]
        ck_sleep = np.array(self._ck[first : last_idx + 1]) < 1.0
        # the history before the next period starts after this one
        self._epochs = self._epochs[end_idx:]
        self._acts = self._acts[end_idx:]
        self._ck = self._ck[end_idx:]
        if ck_sleep.sum() < (cfg.min_cut_sleep_epochs if cut else cfg.min_sleep_epochs):
            return None
        if any(e.hr > 0 for e in epochs):
            stages = self._stage(epochs)
        else:
            # no heart rate all night (a recording without PPG): sleep/wake by actigraphy
            # alone, asleep epochs recorded as LIGHT (the stages need the pulse)
            stages = np.where(ck_sleep, int(SleepStage.LIGHT), int(SleepStage.WAKE))
        asleep = stages != SleepStage.WAKE
        if not asleep.any():
            return None
        onset = int(np.argmax(asleep))
        final = len(stages) - int(np.argmax(asleep[::-1]))  # one past the last sleep epoch
        out = final  # out of bed: the first epoch with steps after the final wake
        while out < len(epochs) and epochs[out].steps == 0:
            out += 1
        kept = stages[:out]
        records = [SleepEpoch(epochs[i].start, tz, SleepStage(int(s))) for i, s in enumerate(kept)]
        in_sleep = kept[onset:final]
        awakenings = int(
            np.sum((in_sleep[1:] == SleepStage.WAKE) & (in_sleep[:-1] != SleepStage.WAKE))
        )
        counts = np.bincount(kept, minlength=4)
        start = epochs[0].start
        summary = SleepSummary(
            bed_time=start,
            tz_offset_min=tz,
            sleep_onset=epochs[onset].start,
            final_wake=start + final * EPOCH_S,
            out_of_bed=start + out * EPOCH_S,
            efficiency_pct=round(100 * int(counts[1:].sum()) / max(1, len(kept))),
            awakenings=awakenings,
            light_min=int(counts[SleepStage.LIGHT]) // 2,
            deep_min=int(counts[SleepStage.DEEP]) // 2,
            rem_min=int(counts[SleepStage.REM]) // 2,
            wake_min=int(counts[SleepStage.WAKE]) // 2,
        )
        return SleepOutput(records, summary)

    def _trim(self) -> None:
        if self._in_period:
            return
        extra = len(self._ck) - self.config.history_epochs
        if extra > 0:
            del self._epochs[:extra]
            del self._acts[:extra]
            del self._ck[:extra]

    def _stage(self, epochs: list[EpochFeatures]) -> np.ndarray:
        rel, moved = night_observations(epochs, self.config)
        hr = np.array([e.hr for e in epochs])
        sd = np.array([e.hr_sd for e in epochs])
        spread = np.where(hr > 0, np.log(sd + 0.2), np.nan)
        hrv = night_hrv(epochs, moved)
        resp = night_resp(epochs, moved)
        ll = self.config.model.log_emission(rel, moved, spread, hrv, resp)
        return _viterbi(ll, self._log_a, self.config.model.log_prior())


def _logsumexp(a: F64, axis: int) -> F64:
    m = np.max(a, axis=axis, keepdims=True)
    return np.asarray(np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis)))


def _viterbi(ll: F64, log_a: F64, log_prior: F64) -> np.ndarray:
    n, k = ll.shape
    back = np.zeros((n, k), dtype=np.int64)
    score = log_prior + ll[0]
    cols = np.arange(k)
    for i in range(1, n):  # one step per 30-second epoch of a night
        cand = score[:, None] + log_a
        back[i] = np.argmax(cand, axis=0)
        score = cand[back[i], cols] + ll[i]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path
