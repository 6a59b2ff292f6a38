"""Beat detection and RMSSD from PPG with known beat times."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from device_sim.band.firmware.beats import BeatDetector

FS = 25
F64 = npt.NDArray[np.float64]


def beats_ppg(
    rr_ms: F64, rng: np.random.Generator, noise: float = 0.04, fs: int = FS
) -> tuple[F64, F64]:
    """A PPG with one pulse per beat at the given intervals (systolic wave, dicrotic
    notch, diastolic wave), breathing wander and noise; returns (samples, beat times in
    seconds)."""
    beats = np.cumsum(rr_ms) / 1000.0 + 0.5
    n = int((beats[-1] + 1.0) * fs)
    t = np.arange(n) / fs
    j = np.clip(np.searchsorted(beats, t, side="right") - 1, 0, len(beats) - 2)
    phi = (t - beats[j]) / (beats[j + 1] - beats[j])
    wave = (
        np.exp(-0.5 * ((phi - 0.15) / 0.045) ** 2)
        + 0.6 * np.exp(-0.5 * ((phi - 0.52) / 0.09) ** 2)
        + 0.1 * np.exp(-0.5 * ((phi - 0.335) / 0.1) ** 2)
    )
    wave = np.where((phi >= 0) & (phi < 1) & (t >= beats[0]), wave, 0.0)
    ppg = wave + 0.25 * np.sin(2 * np.pi * 0.23 * t) + rng.normal(0, noise, n)
    return ppg, beats


def rmssd_of(det: BeatDetector, ppg: F64, block_s: int) -> tuple[F64, F64]:
    """Per-second sums and counts over the whole signal, pushed in ``block_s`` blocks."""
    FS = det.rate
    total = len(ppg) // FS
    sums, counts = np.zeros(total + 1), np.zeros(total + 1)
    det.reset(0)
    for s in range(0, total * FS, block_s * FS):
        out = det.push(ppg[s : min(s + block_s * FS, total * FS)])
        sums[out.start : out.start + len(out.ssd_sum)] += out.ssd_sum
        counts[out.start : out.start + len(out.ssd_count)] += out.ssd_count
    return sums, counts


@pytest.mark.parametrize("fs", [25, 64, 100])
@pytest.mark.parametrize(("mean_rr", "rmssd"), [(1000.0, 30.0), (1500.0, 45.0), (700.0, 20.0)])
def test_rmssd_is_measured_within_ten_percent(mean_rr: float, rmssd: float, fs: int) -> None:
    rng = np.random.default_rng(7)
    # successive differences with a known RMS: a random walk around the mean interval
    steps = rng.normal(0, rmssd / np.sqrt(2), 600)
    rr = mean_rr + steps - np.concatenate(([0.0], steps[:-1]))
    ppg, beats = beats_ppg(rr, rng, fs=fs)
    # the pulse wave stretches with its interval: its steepest rise comes a tenth of the
    # interval after the beat, so the PPG's intervals are a blend of neighbouring ones
    # (pulse-rate variability reads a little under ECG HRV; the band measures the former)
    upstrokes = beats[:-1] + 0.1 * np.diff(beats)
    true = float(np.sqrt(np.mean(np.diff(np.diff(upstrokes) * 1000.0) ** 2)))
    sums, counts = rmssd_of(BeatDetector(fs), ppg, 60)
    assert counts.sum() > 0.9 * len(rr)  # nearly every interval pair is kept
    assert abs(np.sqrt(sums.sum() / counts.sum()) - true) < 0.1 * true


def test_block_size_does_not_change_the_result() -> None:
    rng = np.random.default_rng(8)
    rr = 900.0 + rng.normal(0, 25, 400)
    ppg, _ = beats_ppg(rr, rng)
    det = BeatDetector(FS)
    a = rmssd_of(det, ppg, 60)
    for size in (1, 7, 30):
        b = rmssd_of(det, ppg, size)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(a[1], b[1])


def test_missed_and_extra_beats_are_left_out_not_counted() -> None:
    rng = np.random.default_rng(9)
    rr = np.full(300, 1000.0) + rng.normal(0, 10, 300)
    ppg, beats = beats_ppg(rr, rng)
    # a lost pulse every 20 beats (contact slips) would double an interval
    for b in beats[10::20]:
        lo = int(b * FS)
        ppg[lo : lo + FS // 2] = rng.normal(0, 0.04, FS // 2)
    sums, counts = rmssd_of(BeatDetector(FS), ppg, 60)
    assert np.sqrt(sums.sum() / counts.sum()) < 25.0  # the doubled intervals (~1000 ms) are out


def test_a_motion_spike_does_not_blind_the_detector_for_long() -> None:
    rng = np.random.default_rng(11)
    rr = np.full(240, 1000.0) + rng.normal(0, 15, 240)
    ppg, beats = beats_ppg(rr, rng)
    spike = int((beats[60] + 0.55) * FS)  # between two beats
    ppg[spike : spike + 3] += 40.0  # a knock on the sensor: 40x the pulse
    _, counts = rmssd_of(BeatDetector(FS), ppg, 60)
    after = int(beats[60]) + 10  # ten seconds later intervals are counted again
    assert counts[after : after + 60].sum() > 50
