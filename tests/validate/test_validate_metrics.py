"""The agreement metrics against hand-computed values, and the properties they must keep."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.validate import metrics

finite = st.floats(min_value=30, max_value=220, allow_nan=False)
series = st.lists(finite, min_size=2, max_size=40)


def test_agreement_matches_hand_computed_figures() -> None:
    # differences 2, -1, 0, 3: mean 1, sample SD sqrt(((1)²+(-2)²+(-1)²+(2)²)/3) = sqrt(10/3)
    a = metrics.agreement([62, 79, 90, 103], [60, 80, 90, 100], tolerance=2)
    sd = math.sqrt(10 / 3)
    assert a.n == 4
    assert a.mae == pytest.approx(1.5)
    assert a.bias == pytest.approx(1.0)
    assert a.sd_diff == pytest.approx(sd)
    assert a.loa_low == pytest.approx(1 - 1.96 * sd)
    assert a.loa_high == pytest.approx(1 + 1.96 * sd)
    assert a.rmse == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 4))
    assert a.mape_pct == pytest.approx((2 / 60 + 1 / 80 + 0 + 3 / 100) / 4 * 100)
    assert a.within_pct == pytest.approx(75.0)  # 2, 1 and 0 are within 2; 3 is not


def test_agreement_of_nothing_is_undefined_not_zero() -> None:
    a = metrics.agreement([], [])
    assert a.n == 0 and math.isnan(a.mae)
    assert a.as_dict()["mae"] is None  # JSON null, not a made-up figure
    one = metrics.agreement([70], [72])
    assert one.mae == 2 and one.as_dict()["loa_low"] is None  # one pair has no spread


def test_mape_leaves_out_zero_references() -> None:
    a = metrics.agreement([5, 110], [0, 100])
    assert a.mape_pct == pytest.approx(10.0)
    assert a.mae == pytest.approx(7.5)


def test_agreement_refuses_unpaired_series() -> None:
    with pytest.raises(ValueError, match="equal length"):
        metrics.agreement([1, 2], [1])


def test_harmonic_lock_counts_2x_and_3x_only() -> None:
    ref = [60, 60, 60, 60, 60]
    est = [120, 181, 60, 90, 150]  # 2x, 3x (within 10 %), right, 1.5x, 2.5x
    assert metrics.harmonic_lock_pct(est, ref) == pytest.approx(40.0)
    assert math.isnan(metrics.harmonic_lock_pct([], []))


def test_epoch_agreement_matches_a_hand_computed_confusion_matrix() -> None:
    # reference: 6 sleep (1), 4 wake (0); estimate finds 5 sleep epochs, and 1 wake as sleep
    ref = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    est = [1, 1, 1, 1, 1, 0, 1, 0, 0, 0]
    e = metrics.epoch_agreement(est, ref, (0, 1), positive=1)
    assert e.n == 10
    assert e.accuracy == pytest.approx(0.8)
    assert e.sensitivity == pytest.approx(5 / 6)
    assert e.specificity == pytest.approx(3 / 4)
    # p_o 0.8; p_e = (6*6 + 4*4) / 100 = 0.52 (reference and estimate both 6 sleep, 4 wake)
    assert e.kappa == pytest.approx((0.8 - 0.52) / (1 - 0.52))


def test_four_stage_kappa_against_a_hand_computed_value() -> None:
    m = np.array([[10, 2, 0, 1], [3, 30, 4, 2], [0, 5, 12, 0], [1, 3, 0, 8]])
    total = m.sum()
    p_o = np.trace(m) / total
    p_e = (m.sum(axis=0) * m.sum(axis=1)).sum() / total**2
    assert metrics.cohen_kappa(m) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert math.isnan(metrics.cohen_kappa(np.zeros((2, 2), dtype=np.int64)))


def test_confusion_ignores_labels_outside_the_set() -> None:
    m = metrics.confusion([0, 1, 9], [0, 1, 1], (0, 1))
    assert m.tolist() == [[1, 0], [0, 1]]


@given(series)
def test_identical_series_agree_perfectly(x: list[float]) -> None:
    a = metrics.agreement(x, x)
    assert a.mae == 0 and a.bias == 0 and a.within_pct == 100 and a.rmse == 0
    assert metrics.harmonic_lock_pct(x, x) == 0


@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=40))
def test_mae_is_symmetric_and_bias_antisymmetric(pairs: list[tuple[float, float]]) -> None:
    x = [p[0] for p in pairs]
    y = [p[1] for p in pairs]
    a, b = metrics.agreement(x, y), metrics.agreement(y, x)
    assert a.mae == pytest.approx(b.mae)
    assert a.bias == pytest.approx(-b.bias, abs=1e-9)
    assert a.loa_low == pytest.approx(-b.loa_high, abs=1e-9)
    assert a.loa_low <= a.bias <= a.loa_high
    assert a.mae <= a.rmse + 1e-9  # the mean of |d| never exceeds the root mean square


@given(series, st.floats(min_value=-20, max_value=20))
def test_a_constant_offset_is_all_bias(x: list[float], offset: float) -> None:
    a = metrics.agreement([v + offset for v in x], x)
    assert a.bias == pytest.approx(offset, abs=1e-9)
    assert a.mae == pytest.approx(abs(offset), abs=1e-9)
    assert a.sd_diff == pytest.approx(0, abs=1e-6)


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=60))
def test_kappa_of_identical_labels_is_one(labels: list[int]) -> None:
    e = metrics.epoch_agreement(labels, labels, (0, 1, 2, 3), positive=0)
    assert e.kappa == pytest.approx(1.0)
    assert e.accuracy == 1.0


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60),
)
def test_kappa_is_symmetric_and_at_most_one(pairs: list[tuple[int, int]]) -> None:
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    k1 = metrics.epoch_agreement(a, b, (0, 1, 2, 3), positive=0).kappa
    k2 = metrics.epoch_agreement(b, a, (0, 1, 2, 3), positive=0).kappa
    if math.isnan(k1):
        assert math.isnan(k2)
    else:
        assert k1 == pytest.approx(k2) and k1 <= 1 + 1e-12


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60))
def test_sensitivity_and_specificity_swap_with_the_positive_class(
    pairs: list[tuple[int, int]],
) -> None:
    est = [p[0] for p in pairs]
    ref = [p[1] for p in pairs]
    sleep = metrics.epoch_agreement(est, ref, (0, 1), positive=1)
    wake = metrics.epoch_agreement(est, ref, (0, 1), positive=0)
    for x, y in ((sleep.sensitivity, wake.specificity), (sleep.specificity, wake.sensitivity)):
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y)
