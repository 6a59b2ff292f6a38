"""The person model: determinism, block independence, realistic structure, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.person.physiology import (
    PRESETS,
    Person,
    PersonProfile,
    ProfileError,
    SegmentKind,
    SpanError,
    UnknownPresetError,
)
from protocol.errors import KmebandError, UsageError
from protocol.kme.records import ActivityClass, SleepStage

T0 = 1_700_006_400  # Wednesday 2023-11-15 00:00 UTC
DAY = 86_400


@pytest.fixture(scope="module")
def office() -> Person:
    return Person.from_preset("office_worker_week", seed=11, start_utc=T0, tz_offset_min=60)


@pytest.fixture(scope="module")
def office_day(office: Person):  # type: ignore[no-untyped-def]
    return office.truth(T0, DAY)


def _fields(tb):  # type: ignore[no-untyped-def]
    return (tb.activity, tb.steps, tb.cadence_spm, tb.hr_bpm, tb.sleep_stage, tb.worn, tb.outdoors)


def test_same_seed_gives_byte_identical_truth() -> None:
    a = Person.from_preset("default_day", seed=5, start_utc=T0).truth(T0 + 3600, 7200)
    b = Person.from_preset("default_day", seed=5, start_utc=T0).truth(T0 + 3600, 7200)
    for x, y in zip(_fields(a), _fields(b), strict=True):
        assert x.tobytes() == y.tobytes()


def test_different_seeds_differ() -> None:
    a = Person.from_preset("default_day", seed=5, start_utc=T0).truth(T0, DAY)
    b = Person.from_preset("default_day", seed=6, start_utc=T0).truth(T0, DAY)
    assert a.hr_bpm.tobytes() != b.hr_bpm.tobytes()


@settings(max_examples=15, deadline=None)
@given(
    start=st.integers(0, 3 * DAY),
    cut=st.integers(1, 5000),
    rest=st.integers(1, 5000),
)
def test_truth_does_not_depend_on_block_size(start: int, cut: int, rest: int) -> None:
    whole = Person.from_preset("shift_worker", seed=3, start_utc=T0)
    split = Person.from_preset("shift_worker", seed=3, start_utc=T0)
    a = whole.truth(T0 + start, cut + rest)
    b1 = split.truth(T0 + start, cut)
    b2 = split.truth(T0 + start + cut, rest)
    for x, y1, y2 in zip(_fields(a), _fields(b1), _fields(b2), strict=True):
        assert x.tobytes() == np.concatenate([y1, y2]).tobytes()


def test_order_of_requests_does_not_change_truth() -> None:
    fwd = Person.from_preset("athlete_week", seed=2, start_utc=T0)
    rev = Person.from_preset("athlete_week", seed=2, start_utc=T0)
    spans = [(T0 + k * 20_000, 20_000) for k in range(6)]
    got_fwd = [fwd.truth(*s).hr_bpm.tobytes() for s in spans]
    got_rev = [rev.truth(*s).hr_bpm.tobytes() for s in reversed(spans)][::-1]
    assert got_fwd == got_rev
    assert fwd.beat_times(T0, T0 + 600).tobytes() == rev.beat_times(T0, T0 + 600).tobytes()


def test_segments_tile_time_without_gaps(office: Person) -> None:
    segs = office.segments(T0, T0 + 7 * DAY)
    assert segs[0].start <= T0 and segs[-1].end >= T0 + 7 * DAY
    for a, b in itertools.pairwise(segs):
        assert a.end == b.start
        assert a.duration_s > 0
    assert {s.kind for s in segs} == set(SegmentKind)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_yields_a_plausible_week(name: str) -> None:
    person = Person.from_preset(name, seed=1, start_utc=T0, tz_offset_min=-300)
    segs = person.segments(T0, T0 + 7 * DAY)
    nights = [s for s in segs if s.kind is SegmentKind.SLEEP and s.label == "night"]
    assert 6 <= len(nights) <= 8
    for night in nights:
        assert 3 * 3600 <= night.duration_s <= 12 * 3600
    tb = person.truth(T0, 7 * DAY)
    assert np.all(tb.hr_bpm > 30) and np.all(tb.hr_bpm < person.profile.hr_max + 5)
    assert np.all(np.isfinite(tb.hr_bpm))
    assert 0 < tb.steps.sum() / 7 < 40_000


def test_heart_rate_ranges_per_activity(office: Person) -> None:
    tb = office.truth(T0, 7 * DAY)
    rest = office.profile.resting_hr
    hr, act = tb.hr_bpm, tb.activity
    deep = tb.sleep_stage == SleepStage.DEEP
    assert np.median(hr[deep]) < rest * 0.95  # night-time dip
    assert abs(np.median(hr[act == ActivityClass.SEDENTARY]) - rest) < 10
    walk_hr = np.median(hr[act == ActivityClass.WALK])
    run_hr = np.median(hr[act == ActivityClass.RUN])
    assert rest + 15 < walk_hr < rest + 60
    assert walk_hr + 25 < run_hr < office.profile.hr_max


def test_heart_rate_lags_behind_exertion(office: Person) -> None:
    run = next(s for s in office.segments(T0, T0 + 7 * DAY) if s.kind is SegmentKind.RUN)
    tb = office.truth(run.start - 60, 60 + 600)
    hr = tb.hr_bpm
    # It takes a minute or more to reach the running level, and it keeps climbing.
    assert hr[60 + 10] < hr[60 + 300] - 15
    assert hr[60 + 60] < hr[60 + 300]
    assert np.all(np.abs(np.diff(hr)) < 6)  # no jumps: a lagged response


def test_steps_follow_cadence_when_walking(office: Person, office_day) -> None:  # type: ignore[no-untyped-def]
    tb = office_day
    walking = (tb.activity == ActivityClass.WALK) & (tb.cadence_spm > 0)
    expected = tb.cadence_spm[walking].sum() / 60.0
    assert abs(tb.steps[walking].sum() - expected) < 0.01 * expected + 5
    assert np.all(tb.steps[tb.activity == ActivityClass.SLEEP] == 0)
    assert np.all(tb.steps[tb.activity == ActivityClass.SEDENTARY] == 0)
    steps = office.step_times(T0, T0 + DAY)
    assert steps.size == int(tb.steps.sum())
    assert np.all(np.diff(steps) > 0)


def test_sleep_has_ninety_minute_cycles_with_deep_early_and_rem_late(office: Person) -> None:
    nights = [
        s for s in office.segments(T0, T0 + 7 * DAY) if s.label == "night" and s.end <= T0 + 7 * DAY
    ]
    deep_first = deep_last = rem_first = rem_last = 0
    cycle_lengths = []
    for night in nights:
        stage = office.truth(night.start, night.duration_s).sleep_stage
        asleep = stage[stage >= 0]
        half = asleep.size // 2
        deep_first += int(np.sum(asleep[:half] == SleepStage.DEEP))
        deep_last += int(np.sum(asleep[half:] == SleepStage.DEEP))
        rem_first += int(np.sum(asleep[:half] == SleepStage.REM))
        rem_last += int(np.sum(asleep[half:] == SleepStage.REM))
        # A cycle ends with REM: measure from the end of one REM period to the next.
        rem = (stage == SleepStage.REM).astype(np.int8)
        ends = np.flatnonzero(np.diff(rem) == -1)
        long_gaps = np.diff(ends)
        cycle_lengths.extend(long_gaps[long_gaps > 40 * 60].tolist())
        frac = np.bincount(asleep, minlength=4) / asleep.size
        assert 0.40 < frac[SleepStage.LIGHT] < 0.70
        assert 0.08 < frac[SleepStage.DEEP] < 0.30
        assert 0.12 < frac[SleepStage.REM] < 0.35
        assert frac[SleepStage.WAKE] < 0.15
    assert deep_first > 2 * deep_last
    assert rem_last > 1.3 * rem_first
    assert 75 * 60 < np.median(cycle_lengths) < 110 * 60


def test_insomnia_sleeps_worse_than_a_healthy_sleeper() -> None:
    def efficiency(name: str) -> float:
        p = Person.from_preset(name, seed=4, start_utc=T0)
        stage = np.concatenate(
            [
                p.truth(s.start, s.duration_s).sleep_stage
                for s in p.segments(T0, T0 + 5 * DAY)
                if s.label == "night"
            ]
        )
        return float(np.mean(stage > SleepStage.WAKE))

    assert efficiency("default_day") > 0.85
    assert efficiency("insomnia") < 0.8


def test_off_wrist_while_charging(office: Person) -> None:
    tb = office.truth(T0, 7 * DAY)
    off = ~tb.worn
    assert off.any()
    assert np.all(tb.activity[off] == ActivityClass.OFF_WRIST)
    assert not np.any(tb.outdoors[off])


def test_beats_carry_real_variability(office: Person) -> None:
    desk = next(
        s
        for s in office.segments(T0, T0 + DAY)
        if s.kind is SegmentKind.DESK and s.duration_s > 1800
    )
    rr = office.rr_intervals_ms(desk.start + 600, desk.start + 900)
    rr = rr[np.isfinite(rr)]
    rmssd = math.sqrt(float(np.mean(np.diff(rr) ** 2)))
    assert 10 < rmssd < 90  # healthy adults at rest: roughly 20-60 ms
    hr_from_beats = 60000.0 / rr.mean()
    hr_truth = office.truth(desk.start + 600, 300).hr_bpm.mean()
    assert abs(hr_from_beats - hr_truth) < 2
    run = next(s for s in office.segments(T0, T0 + 7 * DAY) if s.kind is SegmentKind.RUN)
    rr_run = office.rr_intervals_ms(run.start + 900, run.start + 1200)
    rr_run = rr_run[np.isfinite(rr_run)]
    assert math.sqrt(float(np.mean(np.diff(rr_run) ** 2))) < rmssd / 2


def test_gnss_track_only_outdoors_and_near_home(office: Person, office_day) -> None:  # type: ignore[no-untyped-def]
    track = office.gnss_track(T0, DAY)
    outdoors = office_day.outdoors
    assert np.all(np.isnan(track[~outdoors]))
    assert np.all(np.isfinite(track[outdoors]))
    lat0, lon0, _ = office.home
    assert np.max(np.abs(track[outdoors, 0] - lat0)) < 0.1
    assert np.max(np.abs(track[outdoors, 1] - lon0)) < 0.15


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", 5),
        ("age", float("nan")),
        ("height_cm", 20),
        ("weight_kg", -1),
        ("resting_hr", 250),
        ("resting_hr", "60"),
        ("gender", "robot"),
        ("max_hr", 80),
    ],
)
def test_impossible_profiles_raise_typed_errors(field: str, value: object) -> None:
    values: dict[str, object] = {
        "age": 30,
        "height_cm": 170,
        "weight_kg": 70,
        "gender": "female",
        "resting_hr": 60,
    }
    values[field] = value
    with pytest.raises(ProfileError) as err:
        PersonProfile(**values)  # type: ignore[arg-type]
    assert isinstance(err.value, UsageError)
    assert str(value) not in str(err.value) or field == "gender"  # never echo health data


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(UnknownPresetError) as err:
        Person.from_preset("couch_potato", seed=1, start_utc=T0)
    for name in PRESETS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("t0", "dur"), [(T0 + 0.5, 60), (T0, 0), (T0, -5), (T0, 1.5), (float("nan"), 60)]
)
def test_bad_spans_raise_typed_errors(office: Person, t0: float, dur: float) -> None:
    with pytest.raises(SpanError):
        office.truth(t0, dur)
    assert issubclass(SpanError, KmebandError)


def test_bad_seed_and_offset_raise() -> None:
    with pytest.raises(UsageError):
        Person.from_preset("default_day", seed=-1, start_utc=T0)
    with pytest.raises(UsageError):
        Person.from_preset("default_day", seed=1, start_utc=T0, tz_offset_min=2000)


def test_breathing_is_regular_in_deep_sleep_and_irregular_in_rem(office: Person) -> None:
    """Breathing by sleep stage: slower and very regular in deep sleep, faster and
    irregular in REM (Douglas et al. 1982)."""
    stage = office.truth(T0, DAY).sleep_stage
    t = T0 + np.arange(0, DAY + 0.5, 0.5)
    rate = np.diff(office.respiration_phase(t)) / (2 * np.pi * 0.5)  # breaths per second
    by_second = rate.reshape(-1, 2).mean(axis=1)
    epochs = by_second[: len(stage) - len(stage) % 30].reshape(-1, 30)
    epoch_stage = stage[: epochs.size].reshape(-1, 30)[:, 15]
    variability = epochs.std(axis=1) / epochs.mean(axis=1)
    mean_rate = epochs.mean(axis=1)
    deep = epoch_stage == SleepStage.DEEP
    rem = epoch_stage == SleepStage.REM
    assert deep.sum() > 20 and rem.sum() > 20
    assert np.median(variability[rem]) > 3 * np.median(variability[deep])
    assert np.median(mean_rate[rem]) > np.median(mean_rate[deep])
