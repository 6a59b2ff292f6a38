"""The import resampler: which rate a channel is stored at, how timing is judged, and that
rate changes are anti-aliased."""

from __future__ import annotations

import numpy as np
import pytest

from device_sim.trace.resample import (
    Segment,
    choose_rate,
    fit_segment,
    grid_span,
    nominal_rate,
    to_grid,
)

T0 = 1_767_254_400.0


@pytest.mark.parametrize(
    ("native", "stored"),
    [
        (8, 25), (12.5, 25), (25, 25), (30, 30), (32, 32), (51.2, 51), (64, 64), (100, 100),
        (128, 128), (130, 65), (200, 100), (250, 125), (256, 128), (500, 125), (1000, 125),
    ],
)  # fmt: skip
def test_choose_rate_keeps_whole_rates_the_firmware_covers(native: float, stored: int) -> None:
    assert choose_rate(native) == stored


def test_nominal_rate_snaps_only_close_simple_rates() -> None:
    assert nominal_rate(49.9987) == 50
    assert nominal_rate(51.2001) == 51.2
    assert nominal_rate(33.3334) == pytest.approx(100 / 3)
    assert nominal_rate(99.7) == 99.7  # 0.3 % off 100: a real clock error, kept


def test_fit_segment_tells_jitter_and_ticks_from_irregular_sampling() -> None:
    rng = np.random.default_rng(0)
    steady = T0 + np.arange(500) / 50
    assert fit_segment(steady, 0, None).timing == "regular"
    ticked = np.floor((steady - T0) / 0.016) * 0.016 + T0
    fit = fit_segment(ticked, 0, None)
    assert fit.timing == "retimed" and fit.rate_hz == pytest.approx(50, rel=1e-3)
    wandering = T0 + np.cumsum(rng.uniform(0.005, 0.035, 500))
    assert fit_segment(wandering, 0, None).timing == "interpolated"
    # a stated rate with rows left out: the holes are interpolated, never closed up
    holes = np.delete(steady, [100, 101, 102])
    assert fit_segment(holes, 0, 50.0, exact=True).timing == "interpolated"


def test_decimation_filters_what_the_new_rate_cannot_hold() -> None:
    # 250 Hz: a 2 Hz pulse (kept) plus a 90 Hz tone (above the 62.5 Hz Nyquist of 125 Hz)
    n = 250 * 20
    t = np.arange(n) / 250
    x = np.sin(2 * np.pi * 2 * t) + np.sin(2 * np.pi * 90 * t)
    seg = Segment(0, n, T0, 250.0, "stated", 0.0)
    start, end = grid_span(seg)
    y, changed = to_grid(x[:, None], seg, 125, start, end)
    assert changed and y.shape == (125 * 20, 1)
    inner = y[125:-125, 0]  # away from the edges
    want = np.sin(2 * np.pi * 2 * (np.arange(len(y)) / 125))[125:-125]
    assert np.max(np.abs(inner - want)) < 0.01  # the tone is gone, not folded to 35 Hz


def test_a_whole_rate_on_whole_seconds_is_copied_unchanged() -> None:
    x = np.random.default_rng(1).normal(size=(64 * 3, 3))
    seg = Segment(0, len(x), T0, 64.0, "stated", 0.0)
    y, changed = to_grid(x, seg, 64, *grid_span(seg))
    assert not changed
    np.testing.assert_array_equal(y, x)


def test_a_start_between_seconds_moves_to_the_next_whole_second() -> None:
    rate = 25.0
    t = T0 + 0.37 + np.arange(250) / rate
    x = np.sin(2 * np.pi * 1.2 * t)
    seg = fit_segment(t, 0, None)
    start, end = grid_span(seg)
    assert (start, end) == (T0 + 1, T0 + 10)
    y, _ = to_grid(x[:, None], seg, 25, start, end)
    grid = start + np.arange(len(y)) / 25
    assert np.max(np.abs(y[5:-5, 0] - np.sin(2 * np.pi * 1.2 * grid[5:-5]))) < 0.01
