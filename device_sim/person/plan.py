"""The plan of a person's days: what they do when, as labelled segments.

A *plan day* ``d`` runs from the wake-up of day ``d`` to the wake-up of day ``d + 1`` and
ends with that night's sleep, so everything that shapes a day (heart-rate lag, skin
temperature, the hypnogram) starts and ends inside it. Day ``d`` is drawn from
``rng_for(seed, "plan", d)`` and its wake time from ``rng_for(seed, "wake", d)`` alone, so
any day can be built on its own, in any order. Times inside a day are local seconds from
the local midnight of day ``d``, rounded to whole minutes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from device_sim.person.rng import rng_for

DAY_S = 86_400
MIN_S = 60


class SegmentKind(enum.StrEnum):
    """What the person is doing during a segment of the plan."""

    SLEEP = "sleep"  # in bed (asleep, or awake in bed: see the sleep stage)
    DESK = "desk"  # seated work: typing, gestures, no gait
    HOME = "home"  # light activity on and off the feet, short bursts of steps
    WALK = "walk"
    RUN = "run"
    RIDE = "ride"  # seated in a bus or train: vehicle vibration, no steps
    CHARGING = "charging"  # band off the wrist, on its charger


@dataclass(frozen=True)
class SleepParams:
    """How a sleep period unfolds (see device_sim.person.sleep)."""

    latency_min: float = 15.0  # in bed until sleep onset
    awakenings_per_h: float = 1.2  # brief awakenings (0.5-3 min) besides cycle ends
    long_wake_per_h: float = 0.0  # long awakenings (5-40 min), insomnia
    deep_scale: float = 1.0  # how much deep sleep relative to a healthy adult
    early_wake_min: float = 5.0  # awake in bed before getting up


@dataclass(frozen=True)
class Segment:
    """One stretch of the plan, in UTC seconds ``[start, end)``.

    ``cadence_spm`` is the base step rate for WALK and RUN (0 otherwise); ``intensity`` is
    the exertion as a fraction of heart-rate reserve the segment settles at (WALK, RUN);
    ``label`` says why it is there (``"commute"``, ``"lunch walk"``, ``"night"``...).
    """

    start: int
    end: int
    kind: SegmentKind
    label: str = ""
    outdoors: bool = False
    cadence_spm: float = 0.0
    intensity: float = 0.0
    sleep: SleepParams | None = None

    @property
    def duration_s(self) -> int:
        return self.end - self.start


@dataclass
class _Item:
    start: int
    end: int
    kind: SegmentKind
    label: str = ""
    outdoors: bool = False
    cadence_spm: float = 0.0
    intensity: float = 0.0
    sleep: SleepParams | None = None


@dataclass
class DayBuilder:
    """Builds one plan day from a cursor: each call appends at the cursor and moves it.

    Gaps left by :meth:`at` are filled with HOME. Times are local seconds of day ``d``.
    """

    rng: np.random.Generator
    start: int
    walk_cadence: float
    run_cadence: float
    items: list[_Item] = field(default_factory=list)
    cursor: int = 0

    def __post_init__(self) -> None:
        self.cursor = _minute(self.start)

    def at(self, t: float) -> DayBuilder:
        """Move the cursor to ``t`` (at home in between); never backwards."""
        t_min = _minute(t)
        if t_min > self.cursor:
            self.add(SegmentKind.HOME, t_min - self.cursor, label="home")
        return self

    def add(self, kind: SegmentKind, duration_s: float, **params: object) -> DayBuilder:
        d = max(MIN_S, _minute(duration_s))
        self.items.append(_Item(self.cursor, self.cursor + d, kind, **params))  # type: ignore[arg-type]
        self.cursor += d
        return self

    def minutes(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi)) * MIN_S

    def walk(self, lo_min: float, hi_min: float, label: str, outdoors: bool = True) -> DayBuilder:
        cadence = self.walk_cadence + float(self.rng.normal(0.0, 3.0))
        # Brisker walks take a higher share of heart-rate reserve (Tudor-Locke 2019:
        # ~100 steps/min marks moderate intensity).
        intensity = float(np.clip(0.30 + 0.006 * (cadence - 100.0), 0.2, 0.5))
        return self.add(
            SegmentKind.WALK,
            self.minutes(lo_min, hi_min),
            label=label,
            outdoors=outdoors,
            cadence_spm=cadence,
            intensity=intensity,
        )

    def run(self, lo_min: float, hi_min: float, intensity: float, label: str = "run") -> DayBuilder:
        cadence = self.run_cadence + float(self.rng.normal(0.0, 3.0)) + 20.0 * (intensity - 0.75)
        return self.add(
            SegmentKind.RUN,
            self.minutes(lo_min, hi_min),
            label=label,
            outdoors=True,
            cadence_spm=cadence,
            intensity=float(np.clip(intensity + self.rng.normal(0.0, 0.03), 0.5, 0.95)),
        )

    def desk_until(self, t_end: float, label: str = "work") -> DayBuilder:
        """Seated work with a short indoor walk every 30-75 minutes."""
        end = _minute(t_end)
        while self.cursor < end - 5 * MIN_S:
            sit = min(self.minutes(30, 75), end - self.cursor)
            self.add(SegmentKind.DESK, sit, label=label)
            if self.cursor < end - 5 * MIN_S:
                self.walk(1, 4, label="indoor walk", outdoors=False)
        if self.cursor < end:
            self.add(SegmentKind.DESK, end - self.cursor, label=label)
        return self

    def commute(self) -> DayBuilder:
        self.walk(6, 12, label="commute")
        self.add(SegmentKind.RIDE, self.minutes(12, 30), label="commute")
        return self.walk(3, 8, label="commute")

    def charge(self, lo_min: float = 35, hi_min: float = 70) -> DayBuilder:
        return self.add(SegmentKind.CHARGING, self.minutes(lo_min, hi_min), label="charging")

    def nap(self, lo_min: float, hi_min: float) -> DayBuilder:
        params = SleepParams(latency_min=8.0, awakenings_per_h=1.0, early_wake_min=2.0)
        return self.add(SegmentKind.SLEEP, self.minutes(lo_min, hi_min), label="nap", sleep=params)


def _minute(t: float) -> int:
    return round(t / MIN_S) * MIN_S


def hm(hours: float, minutes: float = 0.0) -> float:
    """Local seconds for a clock time."""
    return hours * 3600.0 + minutes * 60.0


@dataclass(frozen=True)
class Preset:
    """A named way of living: when the person wakes, what each day holds, how they sleep.

    ``wake`` gives the wake-up time of day ``d`` (local seconds); ``build`` fills the day
    from the wake-up cursor and returns the bed time (local seconds of day ``d``, may be
    past midnight); ``sleep`` the night's sleep parameters.
    """

    name: str
    wake: Callable[[int, int, np.random.Generator], float]
    build: Callable[[DayBuilder, int, int], float]
    sleep: Callable[[int, np.random.Generator], SleepParams]
    resting_hr: tuple[float, float] = (58.0, 72.0)


def _workday_wake(d: int, weekday: int, rng: np.random.Generator) -> float:
    if weekday >= 5:
        return hm(8, 15) + float(rng.normal(0, 30 * MIN_S))
    return hm(6, 50) + float(rng.normal(0, 12 * MIN_S))


def _office_day(b: DayBuilder, weekday: int, runs: bool) -> float:
    rng = b.rng
    if weekday >= 5:
        b.at(b.cursor + b.minutes(60, 150))
        if runs and weekday == 5:
            b.walk(3, 5, label="warm-up")
            b.run(30, 55, intensity=0.72)
            b.walk(4, 8, label="cool-down")
        b.at(hm(11) + b.minutes(0, 120)).walk(45, 100, label="long walk")
        b.at(hm(17) + b.minutes(0, 60)).charge()
        return hm(23, 15) + float(rng.normal(0, 25 * MIN_S))
    b.at(b.cursor + b.minutes(50, 75)).commute()
    b.desk_until(hm(12, 15) + b.minutes(-10, 15))
    if rng.random() < 0.65:
        b.walk(15, 25, label="lunch walk")
    else:
        b.add(SegmentKind.HOME, b.minutes(20, 35), label="lunch")
    b.desk_until(hm(17, 10) + b.minutes(-20, 30))
    b.commute()
    if runs and weekday in (1, 3):
        b.at(b.cursor + b.minutes(20, 45))
        b.walk(2, 4, label="warm-up")
        b.run(28, 45, intensity=0.75)
        b.walk(3, 6, label="cool-down")
    elif rng.random() < 0.55:
        b.at(hm(19, 15) + b.minutes(0, 40)).walk(20, 40, label="evening walk")
    if weekday in (0, 3) or rng.random() < 0.15:
        b.at(max(b.cursor, _minute(hm(20, 30) + b.minutes(0, 40)))).charge()
    return hm(23) + float(rng.normal(0, 18 * MIN_S))


def _default_day(b: DayBuilder, d: int, weekday: int) -> float:
    # The same workday every day (weekday 2), with its seeded variations.
    rng = b.rng
    b.at(b.cursor + b.minutes(50, 75)).commute()
    b.desk_until(hm(12, 15) + b.minutes(-10, 15))
    b.walk(15, 25, label="lunch walk")
    b.desk_until(hm(17, 10) + b.minutes(-20, 30))
    b.commute()
    b.at(hm(18, 40) + b.minutes(0, 30))
    b.walk(2, 4, label="warm-up").run(25, 35, intensity=0.75).walk(3, 5, label="cool-down")
    b.at(hm(20, 30) + b.minutes(0, 30)).charge()
    return hm(23) + float(rng.normal(0, 15 * MIN_S))


def _athlete_day(b: DayBuilder, d: int, weekday: int) -> float:
    rng = b.rng
    b.at(b.cursor + b.minutes(15, 30))
    b.walk(3, 5, label="warm-up")
    if weekday == 6:
        b.run(90, 120, intensity=0.68, label="long run")
    elif weekday == 2:
        b.run(10, 15, intensity=0.65, label="intervals")
        for _ in range(6):
            b.run(3, 3, intensity=0.9, label="intervals")
            b.run(2, 2, intensity=0.62, label="intervals")
    elif weekday == 0:
        b.walk(40, 60, label="recovery walk")
    else:
        b.run(45, 70, intensity=0.75)
    b.walk(5, 8, label="cool-down")
    b.at(hm(9, 30) + b.minutes(0, 20))
    b.desk_until(hm(12, 30))
    b.walk(20, 30, label="lunch walk")
    b.desk_until(hm(16, 30) + b.minutes(-20, 20))
    b.walk(20, 40, label="afternoon walk")
    if weekday in (1, 4):
        b.at(hm(18)).run(30, 40, intensity=0.7, label="easy run")
    b.at(hm(20) + b.minutes(0, 40)).charge()
    return hm(22, 15) + float(rng.normal(0, 15 * MIN_S))


# Shift worker: night shifts start on Sunday..Thursday evenings; Friday and Saturday
# nights are off. After a night shift the person sleeps in the morning.
def _is_shift_day(weekday: int) -> bool:
    return weekday in (6, 0, 1, 2, 3)


def _shift_wake(d: int, weekday: int, rng: np.random.Generator) -> float:
    after_shift = _is_shift_day((weekday - 1) % 7)
    base = (hm(14, 15) if _is_shift_day(weekday) else hm(12, 30)) if after_shift else hm(8, 45)
    return base + float(rng.normal(0, 15 * MIN_S))


def _shift_day(b: DayBuilder, d: int, weekday: int) -> float:
    rng = b.rng
    if not _is_shift_day(weekday):
        b.at(hm(16) + b.minutes(0, 60)).walk(30, 60, label="walk")
        b.at(hm(20)).charge()
        return hm(24, 30) + float(rng.normal(0, 20 * MIN_S))
    if b.cursor < hm(11):  # a day off before the first shift: nap in the afternoon
        b.at(hm(11)).walk(30, 50, label="walk")
        b.at(hm(14, 30)).nap(90, 150)
    else:
        b.at(hm(16, 30) + b.minutes(0, 40)).walk(20, 40, label="walk")
        b.at(hm(18, 30)).charge(30, 45)
    b.at(hm(21) + b.minutes(-10, 10)).commute()
    # Ward work: on the feet, walking between rooms, seated charting in between.
    end = hm(24 + 6, 15)
    while b.cursor < end - 10 * MIN_S:
        b.add(SegmentKind.HOME, min(b.minutes(10, 30), end - b.cursor), label="shift work")
        if b.cursor < end - 5 * MIN_S:
            b.walk(1, 5, label="indoor walk", outdoors=False)
        if b.cursor < end - 20 * MIN_S and rng.random() < 0.3:
            b.add(SegmentKind.DESK, b.minutes(10, 20), label="charting")
    b.at(end).commute()
    return float(b.cursor) + b.minutes(15, 40)


def _healthy_sleep(d: int, rng: np.random.Generator) -> SleepParams:
    return SleepParams(
        latency_min=float(np.clip(rng.normal(14, 6), 3, 35)),
        awakenings_per_h=float(rng.uniform(0.8, 1.8)),
        deep_scale=float(rng.uniform(0.85, 1.15)),
        early_wake_min=float(rng.uniform(2, 12)),
    )


def _athlete_sleep(d: int, rng: np.random.Generator) -> SleepParams:
    base = _healthy_sleep(d, rng)
    return SleepParams(
        latency_min=base.latency_min,
        awakenings_per_h=base.awakenings_per_h,
        deep_scale=base.deep_scale * 1.15,
        early_wake_min=base.early_wake_min,
    )


def _shift_sleep(d: int, rng: np.random.Generator) -> SleepParams:
    # Day sleep after a night shift is shorter and more fragmented (Akerstedt 2003).
    return SleepParams(
        latency_min=float(np.clip(rng.normal(12, 5), 3, 30)),
        awakenings_per_h=float(rng.uniform(1.5, 3.0)),
        long_wake_per_h=0.15,
        deep_scale=0.9,
        early_wake_min=float(rng.uniform(2, 10)),
    )


def _insomnia_sleep(d: int, rng: np.random.Generator) -> SleepParams:
    # Insomnia disorder: sleep-onset latency and wake after sleep onset above 30 min,
    # efficiency below 85 % (ICSD-3 research criteria; Buysse 2006).
    return SleepParams(
        latency_min=float(np.clip(rng.normal(45, 15), 20, 90)),
        awakenings_per_h=float(rng.uniform(2.0, 3.5)),
        long_wake_per_h=float(rng.uniform(0.25, 0.45)),
        deep_scale=0.75,
        early_wake_min=float(rng.uniform(20, 50)),
    )


PRESETS: dict[str, Preset] = {
    "default_day": Preset(
        "default_day",
        wake=lambda d, wd, rng: hm(6, 50) + float(rng.normal(0, 10 * MIN_S)),
        build=_default_day,
        sleep=_healthy_sleep,
    ),
    "office_worker_week": Preset(
        "office_worker_week",
        wake=_workday_wake,
        build=lambda b, d, wd: _office_day(b, wd, runs=True),
        sleep=_healthy_sleep,
    ),
    "athlete_week": Preset(
        "athlete_week",
        wake=lambda d, wd, rng: hm(6) + float(rng.normal(0, 10 * MIN_S)),
        build=_athlete_day,
        sleep=_athlete_sleep,
        resting_hr=(44.0, 54.0),
    ),
    "shift_worker": Preset(
        "shift_worker",
        wake=_shift_wake,
        build=_shift_day,
        sleep=lambda d, rng: _shift_sleep(d, rng),
    ),
    "insomnia": Preset(
        "insomnia",
        wake=_workday_wake,
        build=lambda b, d, wd: _office_day(b, wd, runs=False),
        sleep=_insomnia_sleep,
        resting_hr=(62.0, 76.0),
    ),
}


def build_day(
    preset: Preset,
    seed: int,
    d: int,
    weekday0: int,
    walk_cadence: float,
    run_cadence: float,
) -> list[_Item]:
    """The items of plan day ``d`` in local seconds of day ``d``, contiguous, ending with
    the night's sleep up to the next wake-up. ``weekday0`` is the weekday of day 0."""
    weekday = (weekday0 + d) % 7
    wake = _minute(preset.wake(d, weekday, rng_for(seed, "wake", d)))
    next_wake = DAY_S + _minute(preset.wake(d + 1, (weekday + 1) % 7, rng_for(seed, "wake", d + 1)))
    rng = rng_for(seed, "plan", d)
    b = DayBuilder(rng=rng, start=wake, walk_cadence=walk_cadence, run_cadence=run_cadence)
    bed = _minute(preset.build(b, d, weekday))
    # A day never runs into the next wake-up: keep at least three hours in bed.
    bed = min(bed, next_wake - 3 * 3600)
    items = [it for it in b.items if it.start < bed]
    if items and items[-1].end > bed:
        items[-1].end = bed
    b.items = items
    b.cursor = items[-1].end if items else wake
    b.at(bed)
    night = preset.sleep(d, rng_for(seed, "night-params", d))
    b.items.append(_Item(b.cursor, next_wake, SegmentKind.SLEEP, label="night", sleep=night))
    return b.items


def to_segments(items: list[_Item], midnight_utc: int) -> list[Segment]:
    """Items of one day as UTC segments."""
    return [
        Segment(
            start=midnight_utc + it.start,
            end=midnight_utc + it.end,
            kind=it.kind,
            label=it.label,
            outdoors=it.outdoors,
            cadence_spm=it.cadence_spm,
            intensity=it.intensity,
            sleep=it.sleep,
        )
        for it in items
        if it.end > it.start
    ]
