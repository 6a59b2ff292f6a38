"""Summary fidelity: the firmware's records drawn straight from truth, for fleets.

:class:`SummaryModel` turns a :class:`~device_sim.person.physiology.Person`'s truth into the
records the band's firmware would have written (activity minutes, heart-rate samples,
sleep epochs and night summaries, GNSS fixes), with estimation error at the level wrist
devices show against reference instruments, and no raw signals in between:

- steps: a per-band bias (sd 2.5 %) and per-minute scatter (sd 5 %) on walking and
  running minutes; runs of a few steps are often missed; false steps from arm movement
  while awake and not walking (about 20 per hour at a desk).
- heart rate: error sd 2.5 bpm at rest, 3.5 walking, 7 running, slowly varying (the
  estimate lags and wanders) plus sample noise; now and then a running minute locks onto
  the cadence; confidence 3 at rest, 2 walking, 1 running.
- sleep stages: a confusion matrix typical of wrist devices against polysomnography
  (deep sleep most often taken for light, wake in bed often missed), with errors in
  two-minute runs rather than independent per epoch; bed and rise times found a few
  minutes off.
- GNSS: fixes after a 15 s warm start, 3 m correlated + 1 m white error, only outdoors
  and only when ``location_allowed`` says so.

Every random draw is keyed by absolute time (minute, epoch, second, night), so the
records of ``[0, 2 h)`` equal those of ``[0, 1 h)`` followed by ``[1 h, 2 h)``, and the
same seed gives identical records. Consent beyond location is the caller's to apply
(``protocol.kme.records.STREAM_CONSENT``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import numpy.typing as npt

from device_sim.person.physiology import Person, Segment, SegmentKind
from device_sim.person.rng import ChunkedNormal, rng_for, smooth_noise
from device_sim.signals import TruthBlock
from protocol.errors import UsageError
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    GnssFix,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    SleepSummary,
    StreamId,
)

__all__ = ["SLEEP_CONFUSION", "SummaryConfigError", "SummaryModel", "SummaryRecords"]

F64 = npt.NDArray[np.float64]
LocationGate = bool | Callable[[int], bool]

#: P(estimated stage | true stage), rows and columns WAKE, LIGHT, DEEP, REM. Wrist devices
#: against PSG: wake sensitivity ~60-70 %, light ~75-80 %, deep ~55-65 %, REM ~70-75 %
#: (de Zambotti 2018; Chinoy 2021; Miller 2022).
SLEEP_CONFUSION = np.array(
    [
        [0.65, 0.25, 0.02, 0.08],
        [0.04, 0.81, 0.09, 0.06],
        [0.01, 0.35, 0.62, 0.02],
        [0.04, 0.21, 0.02, 0.73],
    ]
)
_CONFUSION_CDF = np.cumsum(SLEEP_CONFUSION, axis=1)

_HR_SD_BPM = np.array([2.5, 2.5, 2.5, 3.5, 7.0, 2.0])  # by ActivityClass (sleep: 2.0)
_HR_CONFIDENCE = np.array([0, 3, 3, 2, 1, 3])
_FALSE_STEPS_PER_MIN = np.array([0.0, 0.35, 0.9, 0.0, 0.0, 0.0])  # by ActivityClass
_INTENSITY = np.array([0, 0, 1, 2, 3, 0])
_TTFF_S = 15
_EPOCH_S = 30
_CLASS = sorted(ActivityClass)  # index = value
_STAGE = sorted(SleepStage)
_NIGHT_MIN_S = 3 * 3600


class SummaryConfigError(UsageError):
    """A summary model setting or span is invalid."""


@dataclass
class SummaryRecords:
    """The records of one span, per stream, each list in time order."""

    activity_minutes: list[ActivityMinute] = field(default_factory=list)
    hr_samples: list[HeartRateSample] = field(default_factory=list)
    sleep_epochs: list[SleepEpoch] = field(default_factory=list)
    sleep_summaries: list[SleepSummary] = field(default_factory=list)
    gnss_fixes: list[GnssFix] = field(default_factory=list)

    def streams(self) -> dict[StreamId, list[Record]]:
        """The lists keyed by stream."""
        return {
            StreamId.ACTIVITY_MINUTES: list(self.activity_minutes),
            StreamId.HR_SAMPLES: list(self.hr_samples),
            StreamId.SLEEP_EPOCHS: list(self.sleep_epochs),
            StreamId.SLEEP_SUMMARIES: list(self.sleep_summaries),
            StreamId.GNSS_FIXES: list(self.gnss_fixes),
        }

    def __iter__(self) -> Iterator[tuple[StreamId, Record]]:
        for stream, records in self.streams().items():
            for record in records:
                yield stream, record

    def __len__(self) -> int:
        return sum(len(r) for r in self.streams().values())


class SummaryModel:
    """The firmware's outputs with realistic error, straight from truth (see module doc).

    ``hr_sample_interval_s`` and ``gnss_interval_s`` match the firmware's settings
    (defaults 5 s and 1 s).
    """

    def __init__(
        self, seed: int, *, hr_sample_interval_s: int = 5, gnss_interval_s: int = 1
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SummaryConfigError("seed must be a non-negative integer")
        for name, value in (
            ("hr_sample_interval_s", hr_sample_interval_s),
            ("gnss_interval_s", gnss_interval_s),
        ):
            if not isinstance(value, int) or not 1 <= value <= 3600:
                raise SummaryConfigError(f"{name} must be whole seconds from 1 to 3600")
        self.seed = seed
        self.hr_sample_interval_s = hr_sample_interval_s
        self.gnss_interval_s = gnss_interval_s
        self._step_bias = float(rng_for(seed, "summary-band").normal(0.0, 0.025))
        self._minute_noise = ChunkedNormal(seed, "summary-minute", width=2, chunk=1 << 14)
        self._second_noise = ChunkedNormal(seed, "summary-second", width=1, chunk=1 << 17)
        self._minute_u = ChunkedNormal(seed, "summary-minute-u", chunk=1 << 14, uniform=True)
        self._epoch_u = ChunkedNormal(seed, "summary-epoch-u", width=2, chunk=1 << 14, uniform=True)

    def records(
        self,
        person: Person,
        t0: int,
        duration_s: int,
        *,
        location_allowed: LocationGate,
    ) -> SummaryRecords:
        """The records about ``[t0, t0 + duration_s)``; both whole minutes.

        Activity minutes, HR samples, sleep epochs and GNSS fixes are those whose time
        falls in the span; a night's summary comes with the span holding its rise time.
        ``location_allowed`` is a flag or a callable of the fix's UTC second: without
        location consent no GNSS fix is produced.
        """
        if not isinstance(t0, int | float) or not isinstance(duration_s, int | float):
            raise SummaryConfigError("t0 and duration_s must be numbers of seconds")
        if not (math.isfinite(t0) and math.isfinite(duration_s)):
            raise SummaryConfigError("t0 and duration_s must be finite")
        if t0 % 60 or duration_s % 60 or duration_s <= 0:
            raise SummaryConfigError(
                "summary spans are whole minutes: pass t0 and duration_s as multiples of 60"
            )
        if not (isinstance(location_allowed, bool) or callable(location_allowed)):
            raise SummaryConfigError("location_allowed must be a bool or a callable of time")
        t0, n = int(t0), int(duration_s)
        truth = person.truth(t0, n)
        out = SummaryRecords()
        asleep_est = np.zeros(n // _EPOCH_S, dtype=np.bool_)
        for night in _in_bed(person, t0, t0 + n):
            self._sleep(person, night, t0, t0 + n, out, asleep_est)
        self._minutes(person, truth, t0, n, asleep_est, out)
        if location_allowed is not False and np.any(truth.outdoors):
            self._gnss(person, truth, t0, n, location_allowed, out)
        return out

    # ---- activity minutes and heart rate -------------------------------------------------

    def _minutes(
        self,
        person: Person,
        truth: TruthBlock,
        t0: int,
        n: int,
        asleep_est: npt.NDArray[np.bool_],
        out: SummaryRecords,
    ) -> None:
        tb = truth
        m = n // 60
        m0 = t0 // 60
        act = tb.activity.reshape(m, 60)
        steps_true = tb.steps.reshape(m, 60).sum(axis=1)
        hr = tb.hr_bpm.reshape(m, 60).astype(np.float64)
        worn = tb.worn.reshape(m, 60).mean(axis=1) >= 0.5
        # The minute's main activity: the most common class.
        counts = np.stack([(act == c).sum(axis=1) for c in range(6)], axis=1)
        major = counts.argmax(axis=1)
        z = self._minute_noise.take(m0, m0 + m)
        rng_u = self._minute_u.take(m0, m0 + m)[:, 0]

        gait = steps_true >= 20
        factor = 1.0 + self._step_bias + 0.05 * z[:, 0] - 0.02 * (major == ActivityClass.RUN)
        est = np.where(gait, steps_true * factor, 0.0)
        # A counter needs a run of steps before it counts: short bursts are often missed.
        est = np.where(~gait & (rng_u < 0.5), steps_true, est)
        lam = _FALSE_STEPS_PER_MIN[major]
        false_steps = np.maximum(0.0, np.round(lam + np.sqrt(np.maximum(lam, 1e-9)) * z[:, 1]))
        est = np.where(gait, est, est + false_steps)
        steps = np.clip(np.round(est), 0, 255).astype(np.int64)

        cls = major.copy()
        cls = np.where(steps >= 135, np.where(major == ActivityClass.RUN, 4, 3), cls)
        cls = np.where((steps >= 50) & (steps < 135), 3, cls)
        cls = np.where((cls <= 2) & (steps >= 10) & (major != ActivityClass.SLEEP), 2, cls)
        asleep_min = asleep_est.reshape(m, 2).any(axis=1)
        cls = np.where(asleep_min & (steps < 10), int(ActivityClass.SLEEP), cls)
        cls = np.where(
            ~asleep_min & (cls == ActivityClass.SLEEP), int(ActivityClass.SEDENTARY), cls
        )
        cls = np.where(worn, cls, int(ActivityClass.OFF_WRIST))
        intensity = _INTENSITY[cls]

        # Heart-rate error: slowly wandering (the estimator's lag and drift) plus noise.
        t_sec = t0 + np.arange(n, dtype=np.float64)
        drift = smooth_noise(self.seed, "summary-hr", t_sec, 20.0)[:, 0].reshape(m, 60)
        white = self._second_noise.take(t0, t0 + n)[:, 0].reshape(m, 60)
        sd = _HR_SD_BPM[np.clip(act, 0, 5)]
        est_hr = hr + sd * (0.85 * drift + 0.5 * white)
        lock = (major == ActivityClass.RUN) & (rng_u > 0.95)
        cadence = tb.cadence_spm.reshape(m, 60).astype(np.float64)
        est_hr = np.where(lock[:, None] & (cadence > 0), cadence, est_hr)
        avg_hr = np.where(worn, np.round(est_hr.mean(axis=1)), 0).astype(np.int64)

        tz = person.tz_offset_min
        starts = (t0 + 60 * np.arange(m)).tolist()
        out.activity_minutes.extend(
            ActivityMinute(s, tz, st, _CLASS[c], it, hr_, w)
            for s, st, c, it, hr_, w in zip(
                starts,
                steps.tolist(),
                cls.tolist(),
                intensity.tolist(),
                avg_hr.tolist(),
                worn.tolist(),
                strict=True,
            )
        )

        step = self.hr_sample_interval_s
        idx = np.arange((-t0) % step, n, step)
        sec_worn = tb.worn[idx]
        idx = idx[sec_worn & worn[idx // 60]]
        bpm = np.round(est_hr.reshape(-1)[idx]).astype(np.int64)
        conf = _HR_CONFIDENCE[np.clip(tb.activity[idx], 0, 5)]
        conf = np.where(lock[idx // 60], 0, conf)
        times = (t0 + idx).tolist()
        out.hr_samples.extend(map(HeartRateSample, times, repeat(tz), bpm.tolist(), conf.tolist()))

    # ---- sleep ------------------------------------------------------------------------

    def _sleep(
        self,
        person: Person,
        night: Segment,
        t0: int,
        t1: int,
        out: SummaryRecords,
        asleep_est: npt.NDArray[np.bool_],
    ) -> None:
        rng = rng_for(self.seed, "summary-night", night.start)
        stage_true = person.truth(night.start, night.duration_s).sleep_stage[::_EPOCH_S]
        n_ep = stage_true.size
        e0 = night.start // _EPOCH_S
        # Errors come in two-minute runs: one draw per group of four epochs for most
        # epochs, an independent draw for about a quarter of them.
        draws = self._epoch_u.take(e0 // 4, (e0 + n_ep - 1) // 4 + 1)
        own = self._epoch_u.take(e0, e0 + n_ep)
        g = draws[(e0 + np.arange(n_ep)) // 4 - e0 // 4, 0]
        u = np.where(own[:, 1] < 0.25, own[:, 0], g)
        cdf = _CONFUSION_CDF[np.maximum(stage_true, 0)]
        est = (u[:, None] > cdf).sum(axis=1).clip(0, 3).astype(np.int8)
        # The firmware finds bed and rise times from movement, a few minutes off.
        lead = int(np.clip(round(rng.normal(4.0, 4.0) * 60 / _EPOCH_S), 0, 20))
        tail = int(np.clip(round(rng.normal(2.0, 3.0) * 60 / _EPOCH_S), 0, 10))
        first, last = lead, max(lead + 1, n_ep - tail)
        est[:first] = SleepStage.WAKE
        est[last:] = SleepStage.WAKE
        asleep = np.flatnonzero(est[first:last] > SleepStage.WAKE) + first
        tz = person.tz_offset_min
        starts = night.start + _EPOCH_S * np.arange(n_ep)

        inside = (
            (starts >= t0) & (starts < t1) & (np.arange(n_ep) >= first) & (np.arange(n_ep) < last)
        )
        out.sleep_epochs.extend(
            SleepEpoch(s, tz, _STAGE[st])
            for s, st in zip(starts[inside].tolist(), est[inside].tolist(), strict=True)
        )
        pos = (starts[inside] - t0) // _EPOCH_S
        asleep_est[pos] |= est[inside] > SleepStage.WAKE

        rise = int(night.start + last * _EPOCH_S)
        if not (t0 <= rise < t1) or night.duration_s < _NIGHT_MIN_S or asleep.size == 0:
            return
        # Sleep onset: the first of three minutes asleep in a row, as actigraphy scores it.
        asleep_mask = (est > SleepStage.WAKE).astype(np.int8)
        settled = np.flatnonzero(np.convolve(asleep_mask, np.ones(6, np.int8), "valid") == 6)
        onset_i = int(settled[0]) if settled.size else int(asleep[0])
        final_i = int(asleep[-1]) + 1
        core = est[onset_i:final_i]
        wake_runs = np.diff(np.concatenate([[0], (core == SleepStage.WAKE).astype(np.int8), [0]]))
        run_starts = np.flatnonzero(wake_runs == 1)
        run_ends = np.flatnonzero(wake_runs == -1)
        awakenings = int(np.sum(run_ends - run_starts >= 2))  # at least a minute awake
        per_min = _EPOCH_S / 60.0
        in_bed = last - first
        out.sleep_summaries.append(
            SleepSummary(
                bed_time=int(night.start + first * _EPOCH_S),
                tz_offset_min=tz,
                sleep_onset=int(night.start + onset_i * _EPOCH_S),
                final_wake=int(night.start + final_i * _EPOCH_S),
                out_of_bed=rise,
                efficiency_pct=round(100.0 * asleep.size / max(1, in_bed)),
                awakenings=awakenings,
                light_min=round(float(np.sum(core == SleepStage.LIGHT)) * per_min),
                deep_min=round(float(np.sum(core == SleepStage.DEEP)) * per_min),
                rem_min=round(float(np.sum(core == SleepStage.REM)) * per_min),
                wake_min=round(float(np.sum(core == SleepStage.WAKE)) * per_min),
            )
        )

    # ---- GNSS -------------------------------------------------------------------------

    def _gnss(
        self,
        person: Person,
        truth: TruthBlock,
        t0: int,
        n: int,
        location_allowed: LocationGate,
        out: SummaryRecords,
    ) -> None:
        outdoors = truth.outdoors
        lookback = person.truth(t0 - _TTFF_S, _TTFF_S).outdoors
        run = np.concatenate([lookback, outdoors]).astype(np.int64)
        csum = np.concatenate([[0], np.cumsum(run)])
        settled = (csum[_TTFF_S + 1 :] - csum[1 : n + 1]) == _TTFF_S
        secs = np.flatnonzero(outdoors & settled)
        secs = secs[(t0 + secs) % self.gnss_interval_s == 0]
        if callable(location_allowed):
            allowed = np.array([bool(location_allowed(int(t0 + s))) for s in secs], dtype=np.bool_)
            secs = secs[allowed] if secs.size else secs
        if secs.size == 0:
            return
        utc = (t0 + secs).astype(np.float64)
        track = person.gnss_track(t0, n)[secs]
        err = smooth_noise(self.seed, "summary-gnss", utc, 20.0, width=3)
        white = self._second_noise.take((1 << 40) + t0, (1 << 40) + t0 + n)[secs, 0]
        north = 3.0 * err[:, 0] + white
        east = 3.0 * err[:, 1] - white
        lat = track[:, 0] + np.degrees(north / 6_371_000.0)
        lon = track[:, 1] + np.degrees(east / (6_371_000.0 * np.cos(np.radians(track[:, 0]))))
        alt = np.round(track[:, 2] + 8.0 * err[:, 2]).astype(np.int64)
        acc = np.round(4.0 + 2.5 * np.abs(smooth_noise(self.seed, "summary-dop", utc, 60.0)[:, 0]))
        tz = person.tz_offset_min
        out.gnss_fixes.extend(
            GnssFix(t, tz, la, lo, al, ac)
            for t, la, lo, al, ac in zip(
                (t0 + secs).tolist(),
                np.round(lat * 1e7).astype(np.int64).tolist(),
                np.round(lon * 1e7).astype(np.int64).tolist(),
                alt.tolist(),
                acc.astype(np.int64).tolist(),
                strict=True,
            )
        )


def _in_bed(person: Person, t0: int, t1: int) -> list[Segment]:
    """In-bed periods whose epochs or rise time may fall in [t0, t1)."""
    return [s for s in person.segments(t0, t1) if s.kind is SegmentKind.SLEEP]
