"""Step counter and the streaming FIR filter it stands on, on synthetic wrist signals."""

from __future__ import annotations

import numpy as np
import pytest
from firmware_synth import desk_acc, gait_acc
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.band.firmware.dsp import FirmwareInputError, StreamingFir, bandpass_fir
from device_sim.band.firmware.steps import StepCounter

FS = 25


def count(acc: np.ndarray, block: int) -> tuple[int, np.ndarray]:
    counter = StepCounter(FS)
    counter.reset(0.0)
    times = []
    for s in range(0, len(acc), block):
        times.append(counter.push(acc[s : s + block]).step_times)
    return counter.total_steps, np.concatenate(times)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_streaming_fir_equals_filtering_the_whole_signal(cuts: list[int]) -> None:
    x = np.random.default_rng(3).normal(size=sum(cuts) + 50)
    fir = StreamingFir(bandpass_fir(FS, 0.6, 4.0, 75))
    whole = StreamingFir(bandpass_fir(FS, 0.6, 4.0, 75)).apply(x)
    parts, pos = [], 0
    for c in [*cuts, len(x) - sum(cuts)]:
        parts.append(fir.apply(x[pos : pos + c]))
        pos += c
    assert np.allclose(np.concatenate(parts), whole)


def test_bandpass_passes_the_gait_band_and_stops_dc() -> None:
    taps = bandpass_fir(FS, 0.6, 4.0, 75)
    freqs = np.fft.rfftfreq(4096, 1 / FS)
    gain = np.abs(np.fft.rfft(taps, 4096))
    assert abs(gain[0]) < 0.05
    assert np.all(gain[(freqs > 1.2) & (freqs < 3.2)] > 0.85)
    assert np.all(gain[freqs > 6] < 0.05)


def test_bandpass_rejects_impossible_edges() -> None:
    try:
        bandpass_fir(FS, 3.0, 13.0, 51)
    except FirmwareInputError as e:
        assert "fs/2" in str(e)
    else:
        raise AssertionError("an edge above Nyquist must be refused")


def test_walking_and_running_are_counted_within_two_percent() -> None:
    rng = np.random.default_rng(7)
    seconds = 600
    n = seconds * FS
    t = np.arange(n) / FS
    moving = (t > 60) & (t < 540)
    cadence = np.where(t < 300, 1.8, 2.8)  # 108 then 168 steps/min
    acc = gait_acc(n, FS, cadence, moving, rng)
    truth = 240 * 1.8 + 240 * 2.8
    total, times = count(acc, 60 * FS)
    assert abs(total - truth) / truth < 0.02
    assert np.all((times > 59) & (times < 542))


def test_desk_gestures_give_almost_no_steps() -> None:
    acc = desk_acc(3600 * FS, FS, np.random.default_rng(11), gestures_per_min=8)
    total, _ = count(acc, 60 * FS)
    assert total <= 20


def test_a_few_steps_are_not_a_walk_but_a_run_of_steps_counts_from_its_start() -> None:
    rng = np.random.default_rng(5)
    n = 60 * FS
    t = np.arange(n) / FS
    short = (t > 10) & (t < 10 + 4 / 1.8)  # four steps: below the run length
    total, _ = count(gait_acc(n, FS, 1.8, short, rng), n)
    assert total == 0
    walk = (t > 10) & (t < 30)
    total, times = count(gait_acc(n, FS, 1.8, walk, rng), n)
    assert 34 <= total <= 38
    assert times.min() < 11.5


def test_block_size_does_not_change_the_count() -> None:
    rng = np.random.default_rng(9)
    n = 300 * FS
    t = np.arange(n) / FS
    acc = gait_acc(n, FS, 2.0, (t > 30) & (t < 250), rng)
    a_total, a_times = count(acc, 60 * FS)
    b_total, b_times = count(acc, 7 * FS + 3)
    assert a_total == b_total
    assert np.array_equal(a_times, b_times)


@pytest.mark.parametrize("fs", [25, 50, 100])
def test_a_wrist_at_a_run_with_two_peaks_per_step_is_counted(fs: int) -> None:
    """At a run the wrist shows the foot's impact and, a fifth of a second later, the
    swing's rebound: two peaks per step count one step, at any sample rate."""
    rng = np.random.default_rng(12)
    seconds = 120
    n = seconds * fs
    t = np.arange(n) / fs
    cadence = 2.8  # 168 steps/min
    steps = np.arange(1.0, seconds - 1.0, 1 / cadence)
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0
    for lag, height, width in ((0.0, 1.2, 0.03), (0.19, 0.9, 0.04)):
        d = t[:, None] - (steps[None, :] + lag)
        acc[:, 2] += height * np.exp(-0.5 * (d / width) ** 2).sum(axis=1)
    acc[:, 0] += 0.5 * np.sin(np.pi * cadence * t)  # arm swing at the stride rate
    acc += rng.normal(0, 0.02, acc.shape)
    counter = StepCounter(fs)
    counter.reset(0.0)
    for s in range(0, n, 60 * fs):
        counter.push(acc[s : s + 60 * fs])
    assert abs(counter.total_steps - len(steps)) <= 0.05 * len(steps)
