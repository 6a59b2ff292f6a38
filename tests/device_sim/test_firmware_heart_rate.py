"""Heart-rate estimator on synthetic PPG with motion artefacts and off-wrist noise."""

from __future__ import annotations

import numpy as np
import pytest
from firmware_synth import gait_acc, notched_ppg, ppg_signal

from device_sim.band.firmware.heart_rate import HeartRateEstimator

FS = 25


def estimate(ppg: np.ndarray, acc: np.ndarray, block_s: int = 60, fs: int = FS) -> tuple[int, dict]:
    est = HeartRateEstimator(fs, fs)
    est.reset(0.0)
    outs = [
        est.push(ppg[s : s + block_s * fs], acc[s : s + block_s * fs])
        for s in range(0, len(ppg), block_s * fs)
    ]
    start = outs[0].start
    joined = {
        k: np.concatenate([getattr(o, k) for o in outs]) for k in ("bpm", "confidence", "pulse")
    }
    return start, joined


@pytest.mark.parametrize(
    ("level", "swing", "period_s"),
    [
        (62, 6, 300),  # an ordinary resting rate
        # a fit wearer asleep, 36-40 bpm: a band starting at 40 bpm reads a harmonic (~115)
        (38, 2, 400),
    ],
)
def test_resting_rate_is_tracked_within_two_bpm(level: float, swing: float, period_s: int) -> None:
    rng = np.random.default_rng(1)
    n = 600 * FS
    truth = level + swing * np.sin(2 * np.pi * np.arange(n) / FS / period_s)
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.005, (n, 3))
    start, out = estimate(ppg_signal(truth, FS, rng), acc)
    per_second = truth[::FS][start : start + len(out["bpm"])]
    assert np.all(out["bpm"] > 0)
    assert np.mean(np.abs(out["bpm"] - per_second)) < 2.0
    assert np.all(out["confidence"] == 3)


def test_arm_swing_artefact_is_suppressed_while_walking() -> None:
    rng = np.random.default_rng(2)
    n = 600 * FS
    t = np.arange(n) / FS
    walking = np.ones(n, dtype=bool)
    acc = gait_acc(n, FS, 1.8, walking, rng)
    truth = np.full(n, 125.0)  # clear of the cadence (108/min): there it cannot be told apart
    # the artefact sits at the arm-swing frequency (0.9 Hz = 54 bpm) and is stronger
    # than the pulse: without the accelerometer the estimator would lock onto it
    artefact = 1.5 * (acc[:, 0] - acc[:, 0].mean()) / 0.3
    _, out = estimate(ppg_signal(truth, FS, rng) + artefact, acc)
    settled = out["bpm"][20:]
    assert np.mean(np.abs(settled - 125.0)) < 3.0
    assert np.all(out["confidence"][20:] < 3)  # motion lowers the confidence
    assert t[-1] > 0


def test_off_wrist_gives_no_reading() -> None:
    rng = np.random.default_rng(3)
    n = 300 * FS
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.003, (n, 3))
    _, out = estimate(rng.normal(0, 0.05, n), acc)
    assert np.mean(out["pulse"]) < 0.05
    assert np.mean(out["bpm"] > 0) < 0.05


def test_rate_change_is_followed() -> None:
    rng = np.random.default_rng(4)
    n = 600 * FS
    t = np.arange(n) / FS
    truth = 70 + 60 / (1 + np.exp(-(t - 300) / 30))  # 70 -> 130 over a couple of minutes
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.005, (n, 3))
    start, out = estimate(ppg_signal(truth, FS, rng), acc)
    per_second = truth[::FS][start : start + len(out["bpm"])]
    assert np.mean(np.abs(out["bpm"] - per_second)) < 3.0
    assert abs(out["bpm"][-1] - per_second[-1]) < 3.0


def test_block_size_does_not_change_the_estimates() -> None:
    rng = np.random.default_rng(5)
    n = 180 * FS
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.005, (n, 3))
    ppg = ppg_signal(np.full(n, 75.0), FS, rng)
    a = estimate(ppg, acc, 60)
    b = estimate(ppg, acc, 9)
    assert a[0] == b[0]
    assert np.array_equal(a[1]["bpm"], b[1]["bpm"])


@pytest.mark.parametrize("level", [48, 62, 75, 95])
def test_no_lock_at_twice_or_three_times_the_rate_when_harmonics_outweigh_the_pulse(
    level: float,
) -> None:
    """Real wrist PPG carries more power at its 2nd and 3rd harmonics than at its
    fundamental (dicrotic notch): the estimator must still read the fundamental."""
    rng = np.random.default_rng(6)
    n = 300 * FS
    truth = level + 3 * np.sin(2 * np.pi * np.arange(n) / FS / 120)
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.005, (n, 3))
    start, out = estimate(notched_ppg(truth, FS, rng), acc)
    per_second = truth[::FS][start : start + len(out["bpm"])]
    assert np.all(out["pulse"] > 0)
    err = out["bpm"] - per_second
    assert np.mean(np.abs(err)) < 2.0
    locked = [np.abs(out["bpm"] - k * per_second) < 8 for k in (0.5, 2, 3)]
    assert not np.any(locked)


def _clean_recording(fs: int, seconds: int = 240) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One recording (the same analogue signal) sampled at ``fs``."""
    n = seconds * fs
    t = np.arange(n) / fs
    truth = 66 + 4 * np.sin(2 * np.pi * t / 90)
    rng = np.random.default_rng(7)
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.005, (n, 3))
    return notched_ppg(truth, fs, rng, noise=0.05), acc, truth


@pytest.mark.parametrize("fs", [25, 50, 64, 100, 128])
def test_pulse_and_rate_do_not_depend_on_the_sample_rate(fs: int) -> None:
    ppg, acc, truth = _clean_recording(fs)
    start, out = estimate(ppg, acc, fs=fs)
    per_second = truth[::fs][start : start + len(out["bpm"])]
    assert np.mean(out["pulse"]) == 1.0  # a clean pulse is a pulse at every rate
    assert np.mean(np.abs(out["bpm"] - per_second)) < 1.5
    # off the wrist: noise alone is no pulse at any rate either
    rng = np.random.default_rng(8)
    _, off = estimate(rng.normal(0, 0.05, len(ppg)), acc, fs=fs)
    assert np.mean(off["pulse"]) < 0.05


def test_same_recording_reads_the_same_mean_rate_at_every_rate() -> None:
    means = []
    for fs in (25, 50, 64, 100, 128):
        ppg, acc, _ = _clean_recording(fs)
        _, out = estimate(ppg, acc, fs=fs)
        means.append(float(np.mean(out["bpm"])))
    assert max(means) - min(means) <= 1.0


def test_motion_is_cancelled_when_the_accelerometer_runs_at_another_rate() -> None:
    """PPG at 50 Hz, accelerometer at 25 Hz: the accelerometer's windows are resampled
    onto the PPG's samples for the regression, and its spectrum read on the PPG's grid."""
    rng = np.random.default_rng(9)
    seconds = 300
    acc = gait_acc(seconds * 25, 25, 1.8, np.ones(seconds * 25, dtype=bool), rng)
    t50 = np.arange(seconds * 50) / 50
    swing = np.interp(t50, np.arange(seconds * 25) / 25, acc[:, 0])
    ppg = notched_ppg(np.full(seconds * 50, 125.0), 50, rng) + 1.5 * (swing - swing.mean()) / 0.3
    est = HeartRateEstimator(50, 25)
    est.reset(0.0)
    bpm = np.concatenate(
        [
            est.push(ppg[s * 50 : (s + 60) * 50], acc[s * 25 : (s + 60) * 25]).bpm
            for s in range(0, seconds, 60)
        ]
    )
    assert np.mean(np.abs(bpm[20:] - 125.0)) < 3.0
