"""Agreement metrics of the wearable-validation literature, in plain numpy.

- Continuous estimates (heart rate, steps per interval) against a reference:
  :func:`agreement` gives MAE, MAPE, bias, the Bland–Altman 95 % limits of agreement
  (bias ± 1.96 SD of the differences; Bland & Altman 1986), RMSE and the share within a
  tolerance (± 5 bpm is the usual heart-rate criterion).
- Heart rate only: :func:`harmonic_lock_pct`, the share of estimates at about 2x or 3x
  the reference (a spectral tracker locked onto a harmonic of the pulse).
- Epochs (sleep/wake, stages): :func:`epoch_agreement` gives epoch-by-epoch accuracy,
  sensitivity and specificity for one class, and Cohen's kappa (Cohen 1960) over all.

Every function takes equal-length arrays of paired values (pairs the reference lacks are
left out by the caller) and returns plain floats, NaN where a figure is undefined (no
pairs, no reference epochs of a class), so that a JSON report says "null" rather than a
made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
LOA_Z = 1.96  # two-sided 95 % of a normal distribution


@dataclass(frozen=True)
class Agreement:
    """How a paired series of estimates agrees with its reference (units of the inputs)."""

    n: int
    mae: float
    mape_pct: float  # pairs with a zero reference are left out of this one
    bias: float  # mean of estimate - reference
    sd_diff: float
    loa_low: float
    loa_high: float
    rmse: float
    within_pct: float  # share of pairs with |estimate - reference| <= tolerance
    tolerance: float

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: as_json_float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EpochAgreement:
    """Epoch-by-epoch agreement of estimated labels with reference labels."""

    n: int
    accuracy: float
    sensitivity: float  # of the positive class: its reference epochs the estimate found
    specificity: float  # of the other classes: reference epochs the estimate left out
    kappa: float
    positive: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: as_json_float(v) for k, v in asdict(self).items()}


def as_json_float(v: float | int) -> float | int | None:
    """``v``, or None (JSON null) where it is NaN or infinite: an undefined figure."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _pairs(estimate: Sequence[float] | F64, reference: Sequence[float] | F64) -> tuple[F64, F64]:
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.shape != ref.shape or est.ndim != 1:
        raise ValueError("estimate and reference must be 1-D arrays of equal length")
    return est, ref


def agreement(
    estimate: Sequence[float] | F64, reference: Sequence[float] | F64, tolerance: float = 5.0
) -> Agreement:
    """MAE, MAPE, bias, limits of agreement, RMSE and % within ``tolerance``."""
    est, ref = _pairs(estimate, reference)
    n = len(est)
    if n == 0:
        nan = math.nan
        return Agreement(0, nan, nan, nan, nan, nan, nan, nan, nan, tolerance)
    diff = est - ref
    bias = float(diff.mean())
    # sample SD (n - 1) as Bland and Altman use; one pair has no spread
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    nonzero = ref != 0
    mape = (
        float(np.mean(np.abs(diff[nonzero]) / np.abs(ref[nonzero])) * 100)
        if nonzero.any()
        else math.nan
    )
    return Agreement(
        n=n,
        mae=float(np.abs(diff).mean()),
        mape_pct=mape,
        bias=bias,
        sd_diff=sd,
        loa_low=bias - LOA_Z * sd,
        loa_high=bias + LOA_Z * sd,
        rmse=float(np.sqrt(np.mean(diff**2))),
        within_pct=float(np.mean(np.abs(diff) <= tolerance) * 100),
        tolerance=tolerance,
    )


def harmonic_lock_pct(
    estimate: Sequence[float] | F64,
    reference: Sequence[float] | F64,
    harmonics: tuple[int, ...] = (2, 3),
    rel_tol: float = 0.1,
) -> float:
    """% of pairs whose estimate is within ``rel_tol`` of a harmonic (2x, 3x) of the
    reference: the tracker followed the pulse wave's harmonics, not its rate."""
    est, ref = _pairs(estimate, reference)
    ok = ref > 0
    if not ok.any():
        return math.nan
    ratio = est[ok] / ref[ok]
    locked = np.zeros(len(ratio), dtype=bool)
    for k in harmonics:
        locked |= np.abs(ratio - k) <= rel_tol * k
    return float(locked.mean() * 100)


def confusion(
    estimate: Sequence[int] | I64, reference: Sequence[int] | I64, labels: Sequence[int]
) -> I64:
    """Counts ``[reference class, estimated class]`` over ``labels`` (others ignored)."""
    est = np.asarray(estimate, dtype=np.int64)
    ref = np.asarray(reference, dtype=np.int64)
    if est.shape != ref.shape or est.ndim != 1:
        raise ValueError("estimate and reference must be 1-D arrays of equal length")
    index = {label: i for i, label in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for r, e in zip(ref.tolist(), est.tolist(), strict=True):
        if r in index and e in index:
            m[index[r], index[e]] += 1
    return m


def cohen_kappa(matrix: I64) -> float:
    """Cohen's kappa of a confusion matrix: (p_o - p_e) / (1 - p_e). 1 when both sides
    agree on every epoch; NaN when chance agreement is already total (one class only)."""
    total = float(matrix.sum())
    if total == 0:
        return math.nan
    p_o = float(np.trace(matrix)) / total
    p_e = float((matrix.sum(axis=0) * matrix.sum(axis=1)).sum()) / total**2
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else math.nan
    return (p_o - p_e) / (1.0 - p_e)


def epoch_agreement(
    estimate: Sequence[int] | I64,
    reference: Sequence[int] | I64,
    labels: Sequence[int],
    positive: int,
) -> EpochAgreement:
    """Accuracy, sensitivity/specificity of ``positive`` (e.g. sleep) and Cohen's kappa."""
    m = confusion(estimate, reference, labels)
    n = int(m.sum())
    p = list(labels).index(positive)
    tp = float(m[p, p])
    pos = float(m[p].sum())  # reference positives
    neg_true = float(np.delete(np.delete(m, p, axis=0), p, axis=1).sum())
    neg = float(n - pos)
    return EpochAgreement(
        n=n,
        accuracy=float(np.trace(m)) / n if n else math.nan,
        sensitivity=tp / pos if pos else math.nan,
        specificity=neg_true / neg if neg else math.nan,
        kappa=cohen_kappa(m),
        positive=positive,
    )
