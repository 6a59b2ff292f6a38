"""The seeded person model: ground truth for the sensors and for QA.

A :class:`Person` lives a plan of days (a :mod:`preset <device_sim.person.plan>`):
sleep in ~90-minute cycles, desk work, walks, runs, commutes, the band off the wrist
while it charges. Per second it yields a :class:`~device_sim.signals.TruthBlock`
(activity class, steps and cadence, heart rate, sleep stage, worn, outdoors); it also
gives what the sensor models need at finer resolution: the ideal beat times (so HRV is
real), the step times, the respiratory phase, the skin temperature and the GNSS track.

Determinism: every random draw is keyed by ``(seed, stream, day)`` (see
:mod:`device_sim.person.rng`), and a whole plan day is computed at once and then
sliced, so truth for ``[0, 120)`` equals truth for ``[0, 60)`` + ``[60, 120)``, and the
same seed gives bit-identical truth. A few days are cached: memory stays flat however long
the simulation runs.

Heart rate model: a target per second (resting level, fraction of heart-rate reserve for
exertion, a night-time dip by sleep stage), followed with a first-order lag (about 30 s
rising, 80 s falling), plus slow (LF) wander; the beat times add respiratory sinus
arrhythmia and beat-to-beat jitter whose size falls with exertion and age.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from device_sim.person.day import (
    DayTruth,
    Physique,
    compute_beats,
    compute_day,
    compute_track,
)
from device_sim.person.plan import (
    DAY_S,
    PRESETS,
    Segment,
    SegmentKind,
    build_day,
    to_segments,
)
from device_sim.person.rng import rng_for
from device_sim.signals import TruthBlock
from protocol.errors import UsageError

__all__ = [
    "KIND_INDEX",
    "PRESETS",
    "Gender",
    "Person",
    "PersonProfile",
    "PersonState",
    "PhysiologyError",
    "ProfileError",
    "Segment",
    "SegmentKind",
    "SpanError",
    "UnknownPresetError",
]

F64 = npt.NDArray[np.float64]

_MAX_DAYS_CACHED = 3


class PhysiologyError(UsageError):
    """The person model was asked for something it cannot give."""


class ProfileError(PhysiologyError):
    """A profile value is impossible (out of the human range or inconsistent)."""


class UnknownPresetError(PhysiologyError):
    """No preset has the given name."""


class SpanError(PhysiologyError):
    """A time span is invalid (non-integer start, non-positive or non-integer length)."""


class Gender(enum.StrEnum):
    """Gender as the profile records it (the SIG User Data service has the same three)."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


@dataclass(frozen=True)
class PersonProfile:
    """Who wears the band. ``max_hr`` defaults to Tanaka's 208 - 0.7 x age.

    Raises :class:`ProfileError` for values outside the human range. Messages never echo
    the value (it is health data).
    """

    age: int
    height_cm: float
    weight_kg: float
    gender: Gender | str
    resting_hr: float
    max_hr: float | None = None

    def __post_init__(self) -> None:
        _check_range("age", self.age, 10, 110, "years")
        _check_range("height_cm", self.height_cm, 100, 250, "cm")
        _check_range("weight_kg", self.weight_kg, 25, 350, "kg")
        _check_range("resting_hr", self.resting_hr, 30, 120, "bpm")
        try:
            object.__setattr__(self, "gender", Gender(self.gender))
        except ValueError:
            raise ProfileError(
                "gender must be one of: " + ", ".join(g.value for g in Gender)
            ) from None
        if self.max_hr is not None:
            _check_range("max_hr", self.max_hr, 100, 230, "bpm")
            if self.max_hr < self.resting_hr + 40:
                raise ProfileError(
                    "max_hr must be at least 40 bpm above resting_hr; check both values"
                )

    @property
    def hr_max(self) -> float:
        """The maximum heart rate used for exertion (given, or age-predicted)."""
        if self.max_hr is not None:
            return float(self.max_hr)
        return max(self.resting_hr + 40.0, 208.0 - 0.7 * self.age)

    @property
    def rmssd_rest_ms(self) -> float:
        """Resting RMSSD: about 40 ms at 25 falling with age (Nunan 2010; Umetani 1998),
        higher with a low resting heart rate (more vagal tone)."""
        base = max(15.0, 55.0 - 0.6 * self.age)
        return base * math.sqrt(62.0 / self.resting_hr)


def _check_range(name: str, value: object, lo: float, hi: float, unit: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and math.isfinite(float(value)) and lo <= float(value) <= hi:  # type: ignore[arg-type]
        return
    raise ProfileError(f"{name} must be a number from {lo:g} to {hi:g} {unit}; pass a real value")


class PersonState(NamedTuple):
    """Truth at a set of instants (see :meth:`Person.state_at`)."""

    kind: npt.NDArray[np.int8]  # index into list(SegmentKind)
    stage: npt.NDArray[np.int8]
    activity: npt.NDArray[np.int8]
    worn: npt.NDArray[np.bool_]


#: Index of each SegmentKind in the arrays of :meth:`Person.kinds`.
KIND_INDEX: dict[SegmentKind, int] = {k: i for i, k in enumerate(SegmentKind)}


class Person:
    """A seeded simulated person living a preset plan. See the module docstring.

    ``start_utc`` anchors the plan: day 0 is the local day containing it
    (``tz_offset_min`` is the person's fixed offset from UTC). Any UTC time can be asked
    for, before or after ``start_utc``.
    """

    def __init__(
        self,
        profile: PersonProfile,
        preset: str,
        seed: int,
        start_utc: float,
        tz_offset_min: int = 0,
    ) -> None:
        if preset not in PRESETS:
            raise UnknownPresetError(f"unknown preset; choose one of: {', '.join(sorted(PRESETS))}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise PhysiologyError("seed must be a non-negative integer")
        if not isinstance(tz_offset_min, int) or not -14 * 60 <= tz_offset_min <= 14 * 60:
            raise PhysiologyError("tz_offset_min must be whole minutes within -840..840")
        if not isinstance(start_utc, int | float) or not math.isfinite(start_utc):
            raise SpanError("start_utc must be a finite number of UTC seconds")
        self.profile = profile
        self.preset_name = preset
        self._preset = PRESETS[preset]
        self.seed = seed
        self.start_utc = float(start_utc)
        self.tz_offset_min = tz_offset_min
        local0 = math.floor(start_utc) + tz_offset_min * 60
        self._origin = (local0 // DAY_S) * DAY_S - tz_offset_min * 60  # day 0 local midnight
        self._weekday0 = _dt.datetime.fromtimestamp(local0, _dt.UTC).weekday()
        rng = rng_for(seed, "person")
        self._walk_cadence = float(112.0 - 0.3 * (profile.height_cm - 170.0) + rng.normal(0, 4))
        run_base = 172.0 if preset == "athlete_week" else 162.0
        self._run_cadence = float(run_base - 0.25 * (profile.height_cm - 170.0) + rng.normal(0, 4))
        #: Home location (lat, lon degrees, altitude m), seeded within Europe.
        self.home = (
            float(rng.uniform(40.0, 58.0)),
            float(rng.uniform(-5.0, 25.0)),
            float(rng.uniform(5.0, 400.0)),
        )
        self._heading0 = float(rng.uniform(0, 2 * math.pi))
        self._physique = Physique(
            seed=seed,
            resting_hr=float(profile.resting_hr),
            hr_max=profile.hr_max,
            rmssd_rest_ms=profile.rmssd_rest_ms,
            height_m=float(profile.height_cm) / 100.0,
        )
        self._days: dict[int, DayTruth] = {}

    @classmethod
    def from_preset(
        cls,
        name: str,
        seed: int,
        start_utc: float,
        tz_offset_min: int = 0,
        profile: PersonProfile | None = None,
    ) -> Person:
        """A person living preset ``name``; without a profile one is drawn from the seed
        (adult, with a resting heart rate typical of the preset)."""
        if name not in PRESETS:
            raise UnknownPresetError(f"unknown preset; choose one of: {', '.join(sorted(PRESETS))}")
        if profile is None:
            profile = random_profile(seed, name)
        return cls(profile, name, seed, start_utc, tz_offset_min)

    # ---- plan -------------------------------------------------------------------------

    def segments(self, t0: float, t1: float) -> list[Segment]:
        """The plan segments overlapping ``[t0, t1)`` (UTC), in time order, unclipped."""
        if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            raise SpanError("segments(t0, t1) needs finite times with t0 <= t1")
        out: list[Segment] = []
        for d in self._day_indices(math.floor(t0), math.ceil(t1)):
            out.extend(s for s in self._day(d).segments if s.end > t0 and s.start < t1)
        return out

    # ---- truth ------------------------------------------------------------------------

    def truth(self, t0: float, duration_s: float) -> TruthBlock:
        """Ground truth per second over ``[t0, t0 + duration_s)``; both whole seconds."""
        a, b = _span(t0, duration_s)
        parts = list(self._slices(a, b))
        cat = np.concatenate

        def col(name: str) -> npt.NDArray[np.generic]:
            return cat([getattr(day, name)[i:j] for day, i, j in parts])

        return TruthBlock(
            t0=float(a),
            duration_s=float(b - a),
            activity=col("activity").astype(np.int8),
            steps=col("steps").astype(np.float32),
            cadence_spm=col("cadence").astype(np.float32),
            hr_bpm=col("hr").astype(np.float32),
            sleep_stage=col("stage").astype(np.int8),
            worn=col("worn").astype(np.bool_),
            outdoors=col("outdoors").astype(np.bool_),
        )

    def kinds(self, t0: float, duration_s: float) -> npt.NDArray[np.int8]:
        """The plan's segment kind per second, as indices into ``list(SegmentKind)``
        (:data:`KIND_INDEX` maps a kind to its index)."""
        a, b = _span(t0, duration_s)
        return np.concatenate([day.kind[i:j] for day, i, j in self._slices(a, b)])

    def state_at(self, times: npt.ArrayLike) -> PersonState:
        """The truth at arbitrary UTC instants (each taken at its whole second)."""
        t = np.floor(np.asarray(times, dtype=np.float64)).astype(np.int64)
        kind = np.zeros(t.shape, dtype=np.int8)
        stage = np.full(t.shape, -1, dtype=np.int8)
        activity = np.zeros(t.shape, dtype=np.int8)
        worn = np.zeros(t.shape, dtype=np.bool_)
        if t.size:
            for d in self._day_indices(int(t.min()), int(t.max()) + 1):
                day = self._day(d)
                sel = (t >= day.start) & (t < day.start + day.n)
                idx = t[sel] - day.start
                kind[sel] = day.kind[idx]
                stage[sel] = day.stage[idx]
                activity[sel] = day.activity[idx]
                worn[sel] = day.worn[idx]
        return PersonState(kind=kind, stage=stage, activity=activity, worn=worn)

    def skin_temperature(self, t0: float, duration_s: float) -> F64:
        """True skin temperature under the band (°C), one value per second; when off the
        wrist, the temperature of the band itself (drifting to room temperature)."""
        a, b = _span(t0, duration_s)
        return np.concatenate([day.skin_temp[i:j] for day, i, j in self._slices(a, b)])

    def hrv_scale(self, t0: float, duration_s: float) -> F64:
        """0..~1.3 per second: how much beat-to-beat variability remains (falls with
        exertion); sensor models use it to scale pulse-amplitude variation."""
        a, b = _span(t0, duration_s)
        return np.concatenate([day.hrv_scale[i:j] for day, i, j in self._slices(a, b)])

    def beat_times(self, t0: float, t1: float) -> F64:
        """UTC times of the ideal heart beats (R peaks) in ``[t0, t1)``, float64."""
        out = []
        for d in self._day_indices(math.floor(t0), math.ceil(t1)):
            beats = self._beats(self._day(d))
            out.append(beats[(beats >= t0) & (beats < t1)])
        return np.concatenate(out) if out else np.zeros(0)

    def rr_intervals_ms(self, t0: float, t1: float) -> F64:
        """The RR interval (ms) ending at each beat in ``[t0, t1)`` (NaN for the first
        beat of a plan day, which has no predecessor in the model)."""
        out = []
        for d in self._day_indices(math.floor(t0), math.ceil(t1)):
            beats = self._beats(self._day(d))
            rr = np.concatenate([[np.nan], np.diff(beats) * 1000.0])
            sel = (beats >= t0) & (beats < t1)
            out.append(rr[sel])
        return np.concatenate(out) if out else np.zeros(0)

    def step_times(self, t0: float, t1: float) -> F64:
        """UTC times of the foot strikes in ``[t0, t1)`` (the truth ``steps`` counts them)."""
        return self.numbered_step_times(t0, t1)[0]

    def numbered_step_times(self, t0: float, t1: float) -> tuple[F64, F64]:
        """Foot strikes in ``[t0, t1)`` with their step number within the plan day (so a
        model can tell left from right whatever span it asks for)."""
        out: list[F64] = []
        numbers: list[F64] = []
        for d in self._day_indices(math.floor(t0), math.ceil(t1)):
            day = self._day(d)
            i0 = max(0, math.floor(t0) - day.start)
            i1 = min(day.n, math.ceil(t1) - day.start)
            if i1 <= i0:
                continue
            cum = day.step_cum[i0 : i1 + 1]
            k = np.arange(math.floor(cum[0]) + 1, math.floor(cum[-1]) + 1, dtype=np.float64)
            if k.size == 0:
                continue
            j = np.searchsorted(cum, k, side="left")  # cum[j-1] < k <= cum[j]
            frac = (k - cum[j - 1]) / (cum[j] - cum[j - 1])
            times = day.start + i0 + (j - 1) + frac
            keep = (times >= t0) & (times < t1)
            out.append(times[keep])
            numbers.append(k[keep])
        if not out:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(out), np.concatenate(numbers)

    def respiration_phase(self, t: F64) -> F64:
        """Respiratory phase (radians, increasing) at UTC times ``t``."""
        t = np.asarray(t, dtype=np.float64)
        out = np.empty_like(t)
        if t.size == 0:
            return out
        for d in self._day_indices(math.floor(t.min()), math.ceil(t.max()) + 1):
            day = self._day(d)
            sel = (t >= day.start) & (t < day.start + day.n)
            if np.any(sel):
                grid = np.arange(day.n + 1, dtype=np.float64)
                out[sel] = np.interp(t[sel] - day.start, grid, day.resp_phase)
        return out

    def gnss_track(self, t0: float, duration_s: float) -> F64:
        """True position per second, shape (n, 3): lat, lon (degrees), altitude (m);
        NaN rows where the person is indoors."""
        a, b = _span(t0, duration_s)
        return np.concatenate([self._track(day)[i:j] for day, i, j in self._slices(a, b)])

    # ---- days -------------------------------------------------------------------------

    def _wake_utc(self, d: int) -> int:
        return self._day_bounds(d)[0]

    def _day_bounds(self, d: int) -> tuple[int, int]:
        day = self._days.get(d)
        if day is not None:
            return day.start, day.start + day.n
        items = self._items(d)
        midnight = self._origin + d * DAY_S
        return midnight + items[0].start, midnight + items[-1].end

    def _items(self, d: int) -> list:  # type: ignore[type-arg]
        return build_day(
            self._preset, self.seed, d, self._weekday0, self._walk_cadence, self._run_cadence
        )

    def _day_indices(self, a: int, b: int) -> list[int]:
        """Plan days overlapping [a, b)."""
        d = (a - self._origin) // DAY_S - 1
        while self._day_bounds(d)[1] <= a:
            d += 1
        while self._day_bounds(d)[0] > a:
            d -= 1
        out = [d]
        while self._day_bounds(out[-1])[1] < b:
            out.append(out[-1] + 1)
        return out

    def _slices(self, a: int, b: int):  # type: ignore[no-untyped-def]
        for d in self._day_indices(a, b):
            day = self._day(d)
            i = max(a, day.start) - day.start
            j = min(b, day.start + day.n) - day.start
            if j > i:
                yield day, i, j

    def _day(self, d: int) -> DayTruth:
        day = self._days.get(d)
        if day is None:
            day = self._compute_day(d)
            if len(self._days) >= _MAX_DAYS_CACHED:
                self._days.pop(next(iter(self._days)))
            self._days[d] = day
        return day

    def _compute_day(self, d: int) -> DayTruth:
        midnight = self._origin + d * DAY_S
        return compute_day(self._physique, d, to_segments(self._items(d), midnight))

    def _beats(self, day: DayTruth) -> F64:
        if day.beats is None:
            day.beats = compute_beats(self._physique, day)
        return day.beats

    def _track(self, day: DayTruth) -> F64:
        if day.track is None:
            day.track = compute_track(self._physique, day, self.home, self._heading0)
        return day.track


def random_profile(seed: int, preset: str) -> PersonProfile:
    """An adult profile drawn from ``seed``, typical of the preset."""
    rng = rng_for(seed, "profile")
    gender = Gender.FEMALE if rng.random() < 0.5 else Gender.MALE
    height = float(rng.normal(165 if gender is Gender.FEMALE else 178, 7))
    bmi = float(np.clip(rng.normal(23.5 if preset == "athlete_week" else 25.5, 3), 18, 38))
    lo, hi = PRESETS[preset].resting_hr
    return PersonProfile(
        age=int(rng.integers(22, 60)),
        height_cm=round(height, 1),
        weight_kg=round(bmi * (height / 100) ** 2, 1),
        gender=gender,
        resting_hr=round(float(rng.uniform(lo, hi)), 1),
    )


def _span(t0: float, duration_s: float) -> tuple[int, int]:
    ok = isinstance(t0, int | float) and isinstance(duration_s, int | float)
    if not ok or not (math.isfinite(t0) and math.isfinite(duration_s)):
        raise SpanError("t0 and duration_s must be finite numbers of seconds")
    if t0 != math.floor(t0) or duration_s != math.floor(duration_s) or duration_s <= 0:
        raise SpanError("truth is per second: pass a whole-second t0 and a positive whole duration")
    return int(t0), int(t0) + int(duration_s)
