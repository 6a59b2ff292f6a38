"""Breaths from the PPG's baseline: rate and regularity, at any sample rate."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from firmware_synth import notched_ppg

from device_sim.band.firmware.breathing import BreathDetector

F64 = npt.NDArray[np.float64]


def breathing_ppg(fs: int, seconds: int, irregular: float, seed: int) -> F64:
    """A PPG at 58 bpm on a DC of 50 whose baseline breathes at 14/min, the rate varying
    breath to breath by ``irregular`` (sd, on 4 s knots)."""
    rng = np.random.default_rng(seed)
    n = seconds * fs
    t = np.arange(n) / fs
    knots = rng.normal(0, 1, seconds // 4 + 2)
    wobble = np.interp(t, np.arange(len(knots)) * 4.0, knots)
    rate = 14 / 60 * (1 + irregular * wobble)
    phase = 2 * np.pi * np.cumsum(rate) / fs
    pulse = notched_ppg(np.full(n, 58.0), fs, rng, noise=0.04) - 0.5 * np.sin(np.pi * t / 2)
    return 50.0 + 0.5 * pulse + 0.25 * np.sin(phase)


def intervals(fs: int, ppg: F64, block_s: int = 60) -> tuple[F64, F64]:
    """([breaths, geometric-mean interval s], [sd of the log intervals]) over the recording."""
    det = BreathDetector(fs)
    det.reset(0)
    n, total, sq = 0.0, 0.0, 0.0
    for s in range(0, len(ppg), block_s * fs):
        out = det.push(ppg[s : s + block_s * fs])
        n += out.count.sum()
        total += out.log_sum.sum()
        sq += out.log_sq.sum()
    mean = total / n
    return np.array([n, np.exp(mean)]), np.array([np.sqrt(sq / n - mean * mean)])


@pytest.mark.parametrize("fs", [25, 64, 100])
def test_breathing_rate_and_regularity_are_read_at_any_rate(fs: int) -> None:
    seconds = 600
    regular, spread_regular = intervals(fs, breathing_ppg(fs, seconds, 0.03, 1))
    assert regular[0] > 0.9 * seconds * 14 / 60  # nearly every breath found
    assert abs(regular[1] - 60 / 14) < 0.2  # the breath interval, s
    _, spread_irregular = intervals(fs, breathing_ppg(fs, seconds, 0.2, 1))
    # REM-like breathing reads clearly more irregular than NREM-like breathing
    assert spread_irregular[0] > 2 * spread_regular[0]


def test_block_size_does_not_change_the_breaths() -> None:
    ppg = breathing_ppg(25, 300, 0.1, 2)
    a = intervals(25, ppg, 60)
    for size in (1, 7):
        b = intervals(25, ppg, size)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-9)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-9)
