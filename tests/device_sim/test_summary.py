"""Summary fidelity: records from truth with realistic error, deterministic, consent-gated."""

from __future__ import annotations

import numpy as np
import pytest

from device_sim.band.summary import SLEEP_CONFUSION, SummaryConfigError, SummaryModel
from device_sim.person.physiology import Person, SegmentKind
from protocol.errors import UsageError
from protocol.kme.records import ActivityClass, SleepStage, StreamId

T0 = 1_700_006_400
DAY = 86_400


@pytest.fixture(scope="module")
def person() -> Person:
    return Person.from_preset("office_worker_week", seed=21, start_utc=T0, tz_offset_min=120)


@pytest.fixture(scope="module")
def week(person: Person):  # type: ignore[no-untyped-def]
    model = SummaryModel(5)
    return [model.records(person, T0 + d * DAY, DAY, location_allowed=True) for d in range(4)]


def test_same_seed_gives_identical_records(person: Person) -> None:
    a = SummaryModel(5).records(person, T0, 6 * 3600, location_allowed=True)
    b = SummaryModel(5).records(
        Person.from_preset("office_worker_week", 21, T0, 120), T0, 6 * 3600, location_allowed=True
    )
    assert list(a) == list(b)
    c = SummaryModel(6).records(person, T0, 6 * 3600, location_allowed=True)
    assert list(c) != list(a)


def test_records_do_not_depend_on_span_size(person: Person) -> None:
    start = T0 + 5 * 3600
    whole = SummaryModel(5).records(person, start, 4 * 3600, location_allowed=True)
    model = SummaryModel(5)
    parts = [model.records(person, start + k * 3600, 3600, location_allowed=True) for k in range(4)]
    for stream, records in whole.streams().items():
        assert records == [r for p in parts for r in p.streams()[stream]], stream


def test_one_activity_minute_per_minute_and_hr_at_the_interval(person: Person) -> None:
    recs = SummaryModel(5, hr_sample_interval_s=10).records(
        person, T0 + 12 * 3600, 3600, location_allowed=False
    )
    starts = [m.start for m in recs.activity_minutes]
    assert starts == list(range(T0 + 12 * 3600, T0 + 13 * 3600, 60))
    assert all(s.timestamp % 10 == 0 for s in recs.hr_samples)
    assert all(m.tz_offset_min == 120 for m in recs.activity_minutes)


def test_daily_steps_within_a_few_percent(person: Person, week) -> None:  # type: ignore[no-untyped-def]
    for d, recs in enumerate(week):
        true = float(person.truth(T0 + d * DAY, DAY).steps.sum())
        est = sum(m.steps for m in recs.activity_minutes)
        assert abs(est - true) / true < 0.08


def test_heart_rate_error_by_activity(person: Person, week) -> None:  # type: ignore[no-untyped-def]
    errors: dict[int, list[float]] = {}
    for d, recs in enumerate(week):
        truth = person.truth(T0 + d * DAY, DAY)
        for s in recs.hr_samples:
            i = s.timestamp - (T0 + d * DAY)
            if s.bpm and s.confidence:
                errors.setdefault(int(truth.activity[i]), []).append(s.bpm - float(truth.hr_bpm[i]))
    rest = np.abs(errors[ActivityClass.SEDENTARY])
    run = np.abs(errors[ActivityClass.RUN])
    assert 1.0 < rest.mean() < 3.5
    assert run.mean() > rest.mean()
    assert run.mean() < 10


def test_sleep_stages_agree_like_a_wrist_device(person: Person, week) -> None:  # type: ignore[no-untyped-def]
    agree = agree4 = total = 0
    for recs in week:
        for e in recs.sleep_epochs:
            true = int(person.truth(e.start, 30).sleep_stage[0])
            true = max(true, 0)
            agree += (true > 0) == (e.stage > 0)
            agree4 += true == e.stage
            total += 1
    assert total > 2000
    assert 0.85 < agree / total < 0.98
    assert 0.6 < agree4 / total < 0.85
    assert np.allclose(SLEEP_CONFUSION.sum(axis=1), 1.0)


def test_one_summary_per_night_consistent_with_its_epochs(person: Person, week) -> None:  # type: ignore[no-untyped-def]
    summaries = [s for r in week for s in r.sleep_summaries]
    assert len(summaries) == 4
    epochs = {e.start: e.stage for r in week for e in r.sleep_epochs}
    for s in summaries:
        assert s.bed_time <= s.sleep_onset < s.final_wake <= s.out_of_bed
        assert 75 <= s.efficiency_pct <= 100
        if s.bed_time < T0:
            continue  # its evening lies before the first span
        in_bed = [epochs[t] for t in range(s.bed_time, s.out_of_bed, 30) if t in epochs]
        assert len(in_bed) == (s.out_of_bed - s.bed_time) // 30
        asleep_min = s.light_min + s.deep_min + s.rem_min
        core = [epochs[t] for t in range(s.sleep_onset, s.final_wake, 30)]
        assert abs(asleep_min - sum(st != SleepStage.WAKE for st in core) / 2) <= 2
        assert abs(s.wake_min - sum(st == SleepStage.WAKE for st in core) / 2) <= 1
        assert s.deep_min > 20 and s.rem_min > 30


def test_insomnia_nights_look_worse(person: Person) -> None:
    bad = Person.from_preset("insomnia", seed=21, start_utc=T0)
    model = SummaryModel(5)
    good_eff = [
        s.efficiency_pct
        for d in range(3)
        for s in model.records(person, T0 + d * DAY, DAY, location_allowed=False).sleep_summaries
    ]
    bad_eff = [
        s.efficiency_pct
        for d in range(3)
        for s in model.records(bad, T0 + d * DAY, DAY, location_allowed=False).sleep_summaries
    ]
    assert np.mean(bad_eff) < np.mean(good_eff) - 10


def test_no_gnss_without_location_consent(person: Person) -> None:
    walk = next(
        s for s in person.segments(T0, T0 + DAY) if s.kind is SegmentKind.WALK and s.outdoors
    )
    start = walk.start - walk.start % 60
    model = SummaryModel(5)
    allowed = model.records(person, start, 600, location_allowed=True)
    assert allowed.gnss_fixes
    assert not model.records(person, start, 600, location_allowed=False).gnss_fixes
    cutoff = allowed.gnss_fixes[len(allowed.gnss_fixes) // 2].timestamp
    gated = model.records(person, start, 600, location_allowed=lambda t: t < cutoff)
    assert gated.gnss_fixes and all(f.timestamp < cutoff for f in gated.gnss_fixes)
    truth = person.truth(start, 600)
    for f in allowed.gnss_fixes:
        assert truth.outdoors[f.timestamp - start]


def test_off_wrist_minutes(person: Person) -> None:
    charge = next(s for s in person.segments(T0, T0 + 7 * DAY) if s.kind is SegmentKind.CHARGING)
    start = charge.start - charge.start % 60 + 120
    recs = SummaryModel(5).records(person, start, 600, location_allowed=True)
    assert all(
        m.activity_class is ActivityClass.OFF_WRIST and not m.worn for m in recs.activity_minutes
    )
    assert recs.hr_samples == []


def test_streams_cover_the_record_types(week) -> None:  # type: ignore[no-untyped-def]
    streams = week[1].streams()
    assert set(streams) == {
        StreamId.ACTIVITY_MINUTES,
        StreamId.HR_SAMPLES,
        StreamId.SLEEP_EPOCHS,
        StreamId.SLEEP_SUMMARIES,
        StreamId.GNSS_FIXES,
    }
    assert len(week[1]) == sum(len(v) for v in streams.values())


@pytest.mark.parametrize(("t0", "dur"), [(T0 + 30, 600), (T0, 90), (T0, 0), (float("nan"), 60)])
def test_bad_spans_raise_typed_errors(person: Person, t0: float, dur: int) -> None:
    with pytest.raises(SummaryConfigError):
        SummaryModel(1).records(person, t0, dur, location_allowed=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"hr_sample_interval_s": 0}, {"gnss_interval_s": 1.5}]
)
def test_bad_settings_raise_typed_errors(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"seed": 1}
    args.update(kwargs)
    seed = args.pop("seed")
    with pytest.raises(UsageError):
        SummaryModel(seed, **args)  # type: ignore[arg-type]


def test_location_gate_must_be_a_flag_or_callable(person: Person) -> None:
    with pytest.raises(SummaryConfigError):
        SummaryModel(1).records(person, T0, 600, location_allowed="yes")  # type: ignore[arg-type]
