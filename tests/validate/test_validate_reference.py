"""Labels files and a trace's truth as references, and the comparison with firmware records."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from device_sim.signals import TruthBlock
from device_sim.validate.compare import (
    FirmwareRun,
    compare_heart_rate,
    compare_sleep,
    compare_steps,
)
from device_sim.validate.reference import (
    OUT_OF_BED,
    UNSTAGED_SLEEP,
    HeartRateReference,
    Reference,
    StepsReference,
    ValidateError,
    from_truth,
    read_labels,
)
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    HeartRateSample,
    SleepEpoch,
    SleepStage,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_rr_intervals_give_the_rate_over_the_window_around_each_second(tmp_path: Path) -> None:
    # beats every 0.75 s (80 bpm) for 20 s, then every 0.5 s (120 bpm) for 20 s
    beats = np.concatenate((np.arange(0, 20, 0.75), np.arange(20, 40.01, 0.5)))
    rows = "\n".join(f"{b:.3f},{(b - a) * 1000:.1f}" for a, b in itertools.pairwise(beats))
    path = write(tmp_path, "# reference: ECG\nt_s,rr_ms\n" + rows + "\n")
    ref = read_labels(path, T0)
    assert ref.hr is not None and ref.hr.kind == "rr" and ref.sources == ["rr:labels.csv"]
    at = ref.hr.at(T0 + np.array([10.0, 30.0, 60.0]), 8.0)
    assert at[0] == pytest.approx(80, abs=0.5)
    assert at[1] == pytest.approx(120, abs=0.5)
    assert np.isnan(at[2])  # no beats there: no reference, not a guess


def test_rr_windows_with_too_few_beats_have_no_reference() -> None:
    hr = HeartRateReference("rr", np.array([T0 + 1.0, T0 + 6.0]), np.array([800.0, 800.0]))
    assert np.isnan(hr.at(np.array([T0 + 3.0]), 8.0)).all()  # 1.6 s of an 8 s window


def test_hr_series_is_averaged_over_the_window_and_timestamps_are_absolute(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, f"timestamp,hr_bpm\n{T0 + 1},60\n{T0 + 2},62\n{T0 + 30},90\n")
    ref = read_labels(path, origin_utc=0.0)  # absolute times ignore the origin
    assert ref.hr is not None and ref.hr.kind == "hr"
    assert ref.hr.at(np.array([T0 + 2.0, T0 + 30.0]), 8.0).tolist() == [61.0, 90.0]


def test_step_and_sleep_labels_are_read_relative_to_the_recording(tmp_path: Path) -> None:
    steps = read_labels(write(tmp_path, "start_s,end_s,steps\n0,60,101\n60,90,40\n"), T0)
    assert steps.steps is not None
    assert steps.steps.starts.tolist() == [T0, T0 + 60]
    assert steps.steps.counts.tolist() == [101, 40]
    text = "start_s,stage\n0,W\n30,N1\n60,N2\n90,N3\n120,R\n150,?\n180,sleep\n"
    sleep = read_labels(write(tmp_path, text, "hyp.csv"), T0)
    assert sleep.sleep is not None
    assert sleep.sleep.stages.tolist() == [0, 1, 1, 2, 3, UNSTAGED_SLEEP]  # '?' left out
    assert not sleep.sleep.staged


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", "no known columns"),
        ("t_s,rr_ms\n", "no rows"),
        ("t_s,rr_ms\n1,abc\n", "line 2: rr_ms is not a number"),
        ("t_s,rr_ms\n1,80\n", "milliseconds between 200 and 3000"),
        ("rr_ms\n800\n", "needs a t_s column"),
        ("start_s,end_s,steps\n60,0,5\n", "end after it starts"),
        ("steps\n5\n", "start_s and end_s"),
        ("start_s,stage\n0,nap\n", "line 2: the stage is not one of wake"),
        ("# only a comment\n", "no header row"),
    ],
)
def test_bad_labels_are_refused_with_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValidateError, match=message) as info:
        read_labels(write(tmp_path, text), T0)
    assert "abc" not in str(info.value) and "nap" not in str(info.value)  # no values


def test_a_missing_labels_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValidateError, match="--reference"):
        read_labels(tmp_path / "nope.csv", T0)


def test_two_references_of_one_kind_are_refused(tmp_path: Path) -> None:
    ref = read_labels(write(tmp_path, "t_s,hr_bpm\n1,60\n"), T0)
    with pytest.raises(ValidateError, match="one --reference file per kind"):
        ref.merge(read_labels(write(tmp_path, "t_s,hr_bpm\n1,60\n", "b.csv"), T0))


def truth_block(t0: float, seconds: int, stage: int) -> TruthBlock:
    return TruthBlock(
        t0=t0,
        duration_s=float(seconds),
        activity=np.full(seconds, int(ActivityClass.SEDENTARY), dtype=np.int8),
        steps=np.full(seconds, 0.5, dtype=np.float32),
        cadence_spm=np.zeros(seconds, dtype=np.float32),
        hr_bpm=np.full(seconds, 70.0, dtype=np.float32),
        sleep_stage=np.full(seconds, stage, dtype=np.int8),
        worn=np.ones(seconds, dtype=np.bool_),
        outdoors=np.zeros(seconds, dtype=np.bool_),
    )


def test_truth_becomes_hr_steps_per_minute_and_epochs() -> None:
    ref = from_truth([truth_block(T0, 60, OUT_OF_BED), truth_block(T0 + 60, 60, 2)])
    assert ref.hr is not None and ref.hr.at(np.array([T0 + 30]), 8.0).tolist() == [70.0]
    assert ref.steps is not None and ref.steps.counts.tolist() == [30.0, 30.0]
    assert ref.sleep is not None
    assert ref.sleep.stages.tolist() == [OUT_OF_BED, OUT_OF_BED, 2, 2]


def test_comparison_pairs_records_with_the_reference() -> None:
    records = [
        HeartRateSample(int(T0) + s, 0, bpm, 3)
        for s, bpm in ((5, 70), (10, 140), (15, 0), (20, 75))
    ]
    records += [
        ActivityMinute(int(T0), 0, 28, ActivityClass.LIGHT, 1, 70, True),
        ActivityMinute(int(T0) + 60, 0, 33, ActivityClass.LIGHT, 1, 70, True),
        SleepEpoch(int(T0) + 60, 0, SleepStage.DEEP),
        SleepEpoch(int(T0) + 90, 0, SleepStage.LIGHT),
        SleepEpoch(int(T0), 0, SleepStage.LIGHT),  # asleep by the band while truly up
    ]
    run = FirmwareRun(records, [(T0, T0 + 120)])
    ref = from_truth([truth_block(T0, 60, OUT_OF_BED), truth_block(T0 + 60, 60, 2)])
    hr = compare_heart_rate(run, ref)
    assert hr is not None
    # three readings (the 0 is no reading), one at 2x: 24 grid seconds had a reference
    assert hr.agreement.n == 3 and hr.expected == 24
    assert hr.agreement.mae == pytest.approx((0 + 70 + 5) / 3)
    assert hr.harmonic_lock_pct == pytest.approx(100 / 3)
    steps = compare_steps(run, ref)
    assert steps is not None and steps.estimate.tolist() == [28, 33]
    assert steps.as_dict()["total_error_pct"] == pytest.approx(100 * (61 - 60) / 60, abs=1e-3)
    sleep = compare_sleep(run, ref)
    assert sleep is not None
    # epoch 0: up, band says light (counted); epoch 30: up, band silent (left out)
    assert sleep.reference.tolist() == [0, 2, 2]
    assert sleep.estimate.tolist() == [1, 2, 1]
    assert sleep.sleep_wake.accuracy == pytest.approx(2 / 3)
    assert sleep.stages is not None and sleep.stages.accuracy == pytest.approx(1 / 3)


def test_steps_of_a_cut_minute_are_shared_over_its_recorded_seconds() -> None:
    records = [ActivityMinute(int(T0) + 60, 0, 30, ActivityClass.WALK, 2, 0, True)]
    run = FirmwareRun(records, [(T0, T0 + 90)])  # the recording ends mid-minute
    ref = Reference(steps=StepsReference(np.array([T0 + 60]), np.array([T0 + 75]), np.ones(1)))
    steps = compare_steps(run, ref)
    assert steps is not None and steps.estimate.tolist() == [15.0]  # half of the 30 s recorded
