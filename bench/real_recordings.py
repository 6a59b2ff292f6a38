"""The firmware on real recordings: every one in tests/data through import, firmware, validate.

Heart rate is scored on the PPG recordings against their RR references (an ECG's, or
HeartPy's beats on the PPG itself; tests/data/README.md), pooled over every heart-rate
sample that has a reference: MAE, % within 5 bpm, % locked at 2x/3x the reference, bias
and Bland–Altman limits, and the share of reference time with a reading. Steps are scored
on the accelerometer recordings against their ground-truth counters.

``hr_rate_spread_bpm``: each PPG recording is resampled to 25, 50, 64, 100 and 128 Hz by
band-limited (FFT) resampling, each version imported and run through the firmware; a
recording's spread is its largest minus its smallest mean heart rate over the five
rates, and the figure is the worst recording's. A rate at which the firmware gives a
recording no heart rate at all leaves that spread, and so the figure, undefined (null);
the "rate spread" lines above the last show each recording's means.

Last line: one JSON object with the figures (key names from issue 13).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.validate import metrics
from device_sim.validate.compare import HR_TOLERANCE_BPM, ValidationReport
from device_sim.validate.recordings import (
    RecordingFolder,
    find_folders,
    validate_folder,
)

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SPREAD_RATES_HZ = (25, 50, 64, 100, 128)


def rate_spread(folder: RecordingFolder) -> dict[str, Any]:
    """Mean heart rate of the recording imported at each rate (``--resample-hz``)."""
    means: dict[str, float | None] = {}
    for hz in SPREAD_RATES_HZ:
        hr = validate_folder(folder, resample_hz=hz).heart_rate
        means[str(hz)] = (
            round(float(hr.estimate.mean()), 2) if hr is not None and len(hr.estimate) else None
        )
    got = [v for v in means.values() if v is not None]
    spread = max(got) - min(got) if len(got) == len(means) else None
    return {"recording": folder.name, "means_bpm": means, "spread_bpm": spread}


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, nd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of recordings")
    parser.add_argument("--no-spread", action="store_true", help="skip the resampling runs")
    args = parser.parse_args()
    started = time.perf_counter()
    folders = find_folders(args.data)
    reports: dict[str, ValidationReport] = {}
    failed: dict[str, str] = {}
    for folder in folders:
        try:
            reports[folder.name] = validate_folder(folder)
        except Exception as exc:  # a recording the pipeline cannot take is a finding, not a crash
            failed[folder.name] = f"{exc.__class__.__name__}: {exc}"
            print(f"{folder.name}: FAILED {failed[folder.name]}")
            continue
        print(f"{folder.name}: {json.dumps(reports[folder.name].as_dict(), sort_keys=True)}")

    est: list[np.ndarray] = []
    ref: list[np.ndarray] = []
    expected = 0
    counted = reference_steps = 0.0
    step_est: list[np.ndarray] = []
    step_ref: list[np.ndarray] = []
    for report in reports.values():
        if report.heart_rate is not None:
            est.append(report.heart_rate.estimate)
            ref.append(report.heart_rate.reference)
            expected += report.heart_rate.expected
        if report.steps is not None:
            counted += float(report.steps.estimate.sum())
            reference_steps += float(report.steps.reference.sum())
            step_est.append(report.steps.estimate)
            step_ref.append(report.steps.reference)
    e = np.concatenate(est) if est else np.zeros(0)
    r = np.concatenate(ref) if ref else np.zeros(0)
    hr = metrics.agreement(e, r, HR_TOLERANCE_BPM)
    steps = metrics.agreement(
        np.concatenate(step_est) if step_est else np.zeros(0),
        np.concatenate(step_ref) if step_ref else np.zeros(0),
    )

    spreads: dict[str, dict[str, Any]] = {}
    if not args.no_spread:
        for name, report in reports.items():
            if report.heart_rate is None:
                continue
            folder = next(f for f in folders if f.name == name)
            spreads[name] = rate_spread(folder)
            print(f"rate spread: {json.dumps(spreads[name], sort_keys=True)}")
    # the worst recording's spread; undefined if any rate gave one of them no heart rate
    each = [s["spread_bpm"] for s in spreads.values()]
    worst = max(each) if each and None not in each else None

    hr_recordings = [n for n, rep in reports.items() if rep.heart_rate is not None]
    step_recordings = [n for n, rep in reports.items() if rep.steps is not None]
    sleep_recordings = [n for n, rep in reports.items() if rep.sleep is not None]
    sleep = [reports[n].sleep for n in sleep_recordings]
    result = {
        "recordings": len(reports),
        "recordings_failed": len(failed),
        "hr_recordings": len(hr_recordings),
        "hr_samples": hr.n,
        "hr_coverage_pct": _round(100 * hr.n / expected if expected else None),
        "hr_mae_bpm": _round(hr.mae),
        "hr_mape_pct": _round(hr.mape_pct),
        "hr_bias_bpm": _round(hr.bias),
        "hr_loa_bpm": [_round(hr.loa_low), _round(hr.loa_high)],
        "hr_within5_pct": _round(hr.within_pct),
        "harmonic_lock_pct": _round(metrics.harmonic_lock_pct(e, r)),
        "hr_rate_spread_bpm": _round(worst),
        "hr_rate_spread_by_recording_bpm": {n: _round(s["spread_bpm"]) for n, s in spreads.items()},
        "hr_mae_by_recording_bpm": {
            n: _round(reports[n].heart_rate.agreement.mae)  # type: ignore[union-attr]
            for n in hr_recordings
        },
        "step_recordings": len(step_recordings),
        "steps_reference": round(reference_steps),
        "steps_counted": round(counted),
        "steps_error_pct": _round(
            100 * (counted - reference_steps) / reference_steps if reference_steps else None
        ),
        "steps_minute_mae": _round(steps.mae),
        "steps_minute_mape_pct": _round(steps.mape_pct),
        "sleep_recordings": len(sleep_recordings),
        "sleep_wake_accuracy": _round(
            float(np.mean([s.sleep_wake.accuracy for s in sleep if s])) if sleep else None, 3
        ),
        "sleep_wake_kappa": _round(
            float(np.mean([s.sleep_wake.kappa for s in sleep if s])) if sleep else None, 3
        ),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
