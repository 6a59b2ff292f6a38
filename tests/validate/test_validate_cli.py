"""``kmeband validate`` end to end: traces with truth, CSV recordings with labels, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmeband.cli import main


def record(path: Path, start: str, minutes: str) -> None:
    assert main(["record", str(path), "--seed", "42", "--start", start, "--minutes", minutes]) == 0


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("validate") / "night.kmetrace"
    record(path, "2026-01-01T03:00:00Z", "20")  # asleep on the default day of seed 42
    return path


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("validate") / "walk.kmetrace"
    record(path, "2026-01-01T12:30:00Z", "5")  # the lunch walk
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(["validate", *args, "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_a_simulated_night_is_scored_against_its_truth(
    night: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, str(night))
    assert report["references"] == ["truth"] and report["duration_s"] == 1200
    hr = report["heart_rate"]
    assert isinstance(hr, dict)
    assert hr["pairs"] > 200 and hr["mae_bpm"] < 5 and hr["harmonic_lock_pct"] == 0
    lo, hi = hr["loa_bpm"]
    assert lo <= hr["bias_bpm"] <= hi
    sleep = report["sleep"]
    assert isinstance(sleep, dict) and sleep["epochs"] == 40
    assert sleep["reference_sleep_min"] == 20
    assert 0 <= sleep["sleep_wake_accuracy"] <= 1 and "stage_kappa" in sleep


def test_a_walk_scores_steps_and_the_summary_is_readable(
    walk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, str(walk))
    steps = report["steps"]
    assert isinstance(steps, dict) and steps["intervals"] == 5
    assert steps["reference_steps"] > 300  # five minutes of walking
    assert abs(steps["total_error_pct"]) < 20
    assert report["sleep"] is None  # nobody in bed, nobody asleep: nothing to score
    assert main(["validate", str(walk)]) == 0
    text = capsys.readouterr().out
    assert "heart rate:" in text and "steps:" in text and "within 5 bpm" in text


def test_a_csv_recording_with_labels_and_a_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    data = Path(__file__).parents[1] / "data" / "systole_finger_ppg_75hz"
    png = tmp_path / "out" / "systole.png"
    report = run_json(
        capsys,
        str(data / "recording.csv"),
        "--reference",
        str(data / "reference_rr.csv"),
        "--png",
        str(png),
    )
    assert report["references"] == ["rr:reference_rr.csv"] and report["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hr = report["heart_rate"]
    assert isinstance(hr, dict) and hr["pairs"] > 50


def test_a_recording_without_truth_needs_a_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(__file__).parents[1] / "data" / "systole_finger_ppg_75hz" / "recording.csv"
    assert main(["validate", str(data)]) == 2
    assert "--reference FILE" in capsys.readouterr().err


def test_refusals_name_what_to_fix(
    walk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "missing.kmetrace")]) == 3
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    assert main(["validate", str(walk), "--reference", str(bad)]) == 2
    assert "docs/validate.md" in capsys.readouterr().err
    assert main(["validate", str(walk), "--hr-window-s", "0"]) == 2
    assert "--hr-window-s" in capsys.readouterr().err
