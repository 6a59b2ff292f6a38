"""Firmware accuracy against the person model's truth on short seeded spans.

The long version with five presets is ``bench/accuracy.py``; these spans are chosen by
what they contain (a run, desk work, a whole night, an insomnia night), and their seeds
are not the ones the sleep model was fitted on.
"""

from __future__ import annotations

import numpy as np
import pytest

from device_sim.band.firmware import scoring
from device_sim.person.physiology import KIND_INDEX, Person, SegmentKind
from protocol.kme.records import ActivityClass

T0 = 1_767_225_600
DAY = 86_400


def span_around(preset: str, seed: int, kind: SegmentKind, before: int, after: int) -> int:
    """Start (whole minute) of a span from ``before`` s before the first ``kind`` second."""
    kinds = Person.from_preset(preset, seed=seed, start_utc=T0).kinds(T0, DAY)
    first = int(np.flatnonzero(kinds == KIND_INDEX[kind])[0])
    start = T0 + max(0, first - before)
    assert after > 0
    return start - start % 60


@pytest.fixture(scope="module")
def active_run() -> scoring.Run:
    start = span_around("default_day", 1, SegmentKind.RUN, 1800, 2400)
    return scoring.simulate("default_day", 1, start, 4200)


@pytest.fixture(scope="module")
def desk_run() -> scoring.Run:
    start = span_around("office_worker_week", 2, SegmentKind.DESK, 0, 7200)
    return scoring.simulate("office_worker_week", 2, start, 7200)


def night(preset: str, seed: int, without_ppg: bool = False) -> scoring.Run:
    """The first night of a preset (12 h from local midnight) with four smart alarms set at
    different sleep phases before the true final wake."""
    seconds = 12 * 3600
    leads = (5, 25, 45, 65)
    set_times = [
        t for lead in leads for t in scoring.smart_alarm_times(preset, seed, T0, seconds, lead * 60)
    ]
    alarms = [(i, t, 30) for i, t in enumerate(set_times)]
    return scoring.simulate(preset, seed, T0, seconds, alarms, without_ppg=without_ppg)


@pytest.fixture(scope="module")
def night_run() -> scoring.Run:
    return night("default_day", 1)


@pytest.fixture(scope="module")
def insomnia_night() -> scoring.Run:
    return night("insomnia", 5)


def test_steps_within_5_percent_with_walking_and_running(active_run: scoring.Run) -> None:
    assert np.any(active_run.activity == ActivityClass.RUN)
    assert np.any(active_run.activity == ActivityClass.WALK)
    counted, true = scoring.step_totals(active_run)
    assert true > 1000
    assert abs(counted - true) / true <= 0.05


def test_at_most_50_false_steps_per_hour_at_a_desk(desk_run: scoring.Run) -> None:
    false_steps, hours = scoring.desk_false_steps(desk_run)
    assert hours > 0.5
    assert false_steps / hours <= 50


def test_heart_rate_error_at_rest_and_walking(
    active_run: scoring.Run, desk_run: scoring.Run
) -> None:
    errors = np.concatenate(
        [scoring.hr_errors(active_run)["rest_walk"], scoring.hr_errors(desk_run)["rest_walk"]]
    )
    assert len(errors) > 1000
    assert errors.mean() <= 3.0


def test_heart_rate_error_running(active_run: scoring.Run) -> None:
    errors = scoring.hr_errors(active_run)["run"]
    assert len(errors) > 300  # HR samples every 5 s over a half-hour run
    assert errors.mean() <= 8.0
    assert scoring.hr_errors(active_run)["coverage"][0] > 0.95  # not by dropping readings


@pytest.mark.parametrize("which", ["night_run", "insomnia_night"])
def test_sleep_epoch_agreement_over_a_night(which: str, request: pytest.FixtureRequest) -> None:
    run: scoring.Run = request.getfixturevalue(which)
    truth, est = scoring.sleep_epochs(run)
    assert len(truth) > 600
    assert np.mean((truth > 0) == (est > 0)) >= 0.90
    assert np.mean(truth == est) >= 0.65


def test_insomnia_night_has_long_awakenings_the_band_scores(insomnia_night: scoring.Run) -> None:
    truth, est = scoring.sleep_epochs(insomnia_night)
    in_bed_awake = truth == 0
    assert in_bed_awake.sum() > 120  # over an hour awake in bed: the hard case for actigraphy
    assert np.mean(est[in_bed_awake] == 0) > 0.7


@pytest.mark.parametrize("which", ["night_run", "insomnia_night"])
def test_smart_alarm_rings_in_light_sleep_never_before_its_window(
    which: str, request: pytest.FixtureRequest
) -> None:
    run: scoring.Run = request.getfixturevalue(which)
    outcomes = scoring.alarm_outcomes(run, 30)
    assert len(outcomes) == 4
    assert all(o.fired_at is not None and o.fired_at >= o.window_open for o in outcomes)
    assert all(o.ok for o in outcomes)


def test_an_accelerometer_only_night_is_scored_by_actigraphy() -> None:
    """Without PPG no epoch is off the wrist for that alone: the night is found, and
    sleep/wake comes from the accelerometer (Cole-Kripke)."""
    run = night("default_day", 1, without_ppg=True)
    truth, est = scoring.sleep_epochs(run)
    assert (est > 0).sum() > 0.8 * (truth > 0).sum()
    assert np.mean((truth > 0) == (est > 0)) >= 0.8
    # no heart rate: sleep/wake only, asleep epochs recorded as light sleep
    assert set(np.unique(est)) <= {0, 1}
    asleep = run.stage[: len(run.stage) - len(run.stage) % 60].reshape(-1, 60).max(axis=1) > 0
    minutes = {(m.start - run.t0) // 60: m for m in run.records.minutes()}
    in_bed = [minutes[i] for i in np.flatnonzero(asleep) if i in minutes]
    assert sum(m.worn for m in in_bed) >= 0.95 * len(in_bed)


def test_steps_are_counted_without_ppg() -> None:
    start = span_around("default_day", 1, SegmentKind.WALK, 600, 1800)
    run = scoring.simulate("default_day", 1, start, 2400, without_ppg=True)
    counted, true = scoring.step_totals(run)
    assert true > 500
    assert abs(counted - true) / true <= 0.05
    walking = run.steps.reshape(-1, 60).sum(axis=1) > 0
    minutes = {(m.start - run.t0) // 60: m for m in run.records.minutes()}
    assert all(minutes[i].worn for i in np.flatnonzero(walking))
