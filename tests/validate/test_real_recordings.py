"""Real recordings (tests/data) through the CSV import, the firmware and validate.

The thresholds below are what today's firmware holds on these recordings, loosely; the
targets of issue 13 are beside each. They all live here: when the estimators that hold
on real signals land, tighten them to the targets (and ``bench/real_recordings.py``
reports the same figures pooled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_sim.trace.importer import ImportOptions, open_recording
from device_sim.validate import metrics
from device_sim.validate.compare import ValidationReport
from device_sim.validate.recordings import (
    RecordingFolder,
    find_folders,
    validate_folder,
)

DATA = Path(__file__).resolve().parents[1] / "data"

# ---- thresholds: today's firmware (loose) ---------------------------- issue 13 target
REAL_HR_MAE_MAX_BPM = 20.0  # pooled over every PPG recording ---------------- <= 3
REAL_HR_WITHIN5_MIN_PCT = 70.0  # pooled ---------------------------------- >= 90
REAL_HARMONIC_LOCK_MAX_PCT = 20.0  # pooled, estimates at 2x/3x the reference -- <= 2
REAL_HR_COVERAGE_MIN_PCT = 90.0  # share of reference samples with a reading
ECG_REFERENCED_HR_MAE_MAX_BPM = 3.0  # the recording with an ECG reference (met) <= 3
REAL_RATE_SPREAD_MAX_BPM = 2.0  # its mean HR over 25..128 Hz (met) ----------- <= 2
REAL_STEPS_ERROR_MAX_PCT = 10.0  # total counted vs the ground-truth counters
# the two walks with the phone in a freely swinging hand (a wrist's motion): today the
# firmware counts 17 % too few steps on them together (-13 % and -21 %)
SWINGING_ARM_STEPS_ERROR_MAX_PCT = 20.0
# ---------------------------------------------------------------------------------------

FOLDERS = find_folders(DATA)


@pytest.fixture(scope="module")
def reports() -> dict[str, ValidationReport]:
    return {f.name: validate_folder(f) for f in FOLDERS}


def test_every_recording_has_a_licence_a_source_and_a_reference() -> None:
    assert len(FOLDERS) >= 6
    for folder in FOLDERS:
        assert (folder.path / "LICENSE").is_file(), folder.name
        assert "Licence" in (folder.path / "SOURCE.md").read_text(encoding="utf-8")
        assert folder.references and all(
            (folder.path / f).is_file() for f in folder.references.values()
        )
    kinds = {f.kind for f in FOLDERS}
    assert {"ppg", "acc"} <= kinds


def test_every_recording_imports_runs_and_is_scored(
    reports: dict[str, ValidationReport],
) -> None:
    for folder in FOLDERS:
        report = reports[folder.name]
        assert report.end_utc - report.start_utc >= 120, folder.name
        if "rr" in folder.references or "hr" in folder.references:
            hr = report.heart_rate
            assert hr is not None and hr.agreement.n > 10, folder.name
            assert 100 * hr.agreement.n / hr.expected >= REAL_HR_COVERAGE_MIN_PCT, folder.name
        if "steps" in folder.references:
            assert report.steps is not None and report.steps.reference.sum() > 100


def test_heart_rate_on_real_ppg_holds_today_s_floors(
    reports: dict[str, ValidationReport],
) -> None:
    pairs = [r.heart_rate for r in reports.values() if r.heart_rate is not None]
    est = np.concatenate([p.estimate for p in pairs])
    ref = np.concatenate([p.reference for p in pairs])
    pooled = metrics.agreement(est, ref)
    assert pooled.mae <= REAL_HR_MAE_MAX_BPM
    assert pooled.within_pct >= REAL_HR_WITHIN5_MIN_PCT
    assert metrics.harmonic_lock_pct(est, ref) <= REAL_HARMONIC_LOCK_MAX_PCT


def ecg_folder() -> RecordingFolder:
    return next(f for f in FOLDERS if f.reference_method == "ecg")


def test_heart_rate_against_an_ecg_holds_and_does_not_depend_on_the_rate(
    reports: dict[str, ValidationReport],
) -> None:
    folder = ecg_folder()
    hr = reports[folder.name].heart_rate
    assert hr is not None and hr.agreement.mae <= ECG_REFERENCED_HR_MAE_MAX_BPM
    means = []
    for hz in (25, 50, 64, 100, 128):
        report = validate_folder(folder, resample_hz=hz)
        assert report.heart_rate is not None and len(report.heart_rate.estimate), hz
        means.append(float(report.heart_rate.estimate.mean()))
    assert max(means) - min(means) <= REAL_RATE_SPREAD_MAX_BPM


def test_steps_on_real_walks_hold_today_s_floor(reports: dict[str, ValidationReport]) -> None:
    steps = [r.steps for r in reports.values() if r.steps is not None]
    counted = sum(float(s.estimate.sum()) for s in steps)
    truth = sum(float(s.reference.sum()) for s in steps)
    assert abs(100 * (counted - truth) / truth) <= REAL_STEPS_ERROR_MAX_PCT


def test_the_rate_sweep_really_changes_the_rate() -> None:
    folder = ecg_folder()
    for hz in (25, 128):
        recording = open_recording(folder.csv, ImportOptions(resample_hz=hz))
        assert recording.metadata.ppg_hz == hz


def test_steps_on_real_arm_swing_walks_hold_today_s_floor(
    reports: dict[str, ValidationReport],
) -> None:
    swinging = [f.name for f in FOLDERS if "swinging_arm" in f.name]
    assert len(swinging) >= 2
    steps = [reports[n].steps for n in swinging]
    assert all(s is not None for s in steps)
    counted = sum(float(s.estimate.sum()) for s in steps if s is not None)
    truth = sum(float(s.reference.sum()) for s in steps if s is not None)
    assert abs(100 * (counted - truth) / truth) <= SWINGING_ARM_STEPS_ERROR_MAX_PCT
