"""Pair the firmware's records with a reference and score them.

The firmware's own records are what is scored, as a phone would receive them: heart-rate
samples (one every ``hr_sample_interval_s``, each from an 8-second window centred on its
second), activity minutes (steps) and sleep epochs (a covered epoch without one is wake).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from device_sim.band.firmware.core import Firmware, FirmwareConfig
from device_sim.signals import SensorBlock, TruthBlock
from device_sim.validate import metrics
from device_sim.validate.reference import (
    OUT_OF_BED,
    UNSTAGED_SLEEP,
    Reference,
)
from protocol.kme.records import (
    ActivityMinute,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    StreamId,
)

F64 = npt.NDArray[np.float64]
HR_WINDOW_S = 8.0  # the firmware's heart-rate window
HR_TOLERANCE_BPM = 5.0
STEPS_TOLERANCE = 10.0  # steps per reference interval


class _Records:
    """A firmware record sink that keeps every record."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def append(self, stream: StreamId, record: Record) -> int:
        self.records.append(record)
        return len(self.records)


@dataclass
class FirmwareRun:
    """What one pass of the firmware over a recording gave, and what the recording held."""

    records: list[Record]
    spans: list[tuple[float, float]]  # (start, end) UTC of each sensor block
    truth: list[TruthBlock] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.spans[0][0] if self.spans else 0.0

    @property
    def end(self) -> float:
        return self.spans[-1][1] if self.spans else 0.0


def run_firmware(
    blocks: Iterable[SensorBlock | tuple[SensorBlock, TruthBlock | None]],
    config: FirmwareConfig | None = None,
) -> FirmwareRun:
    """Feed the blocks (or (block, truth) pairs) through a fresh firmware."""
    sink = _Records()
    fw = Firmware(sink, config=config)
    spans: list[tuple[float, float]] = []
    truth: list[TruthBlock] = []
    for item in blocks:
        block, t = item if isinstance(item, tuple) else (item, None)
        fw.process(block)
        spans.append((block.t0, block.t0 + block.duration_s))
        if t is not None:
            truth.append(t)
    fw.flush()
    return FirmwareRun(sink.records, spans, truth)


def _covered(times: F64, spans: list[tuple[float, float]]) -> npt.NDArray[np.bool_]:
    ok = np.zeros(len(times), dtype=bool)
    for a, b in spans:
        ok |= (times >= a) & (times < b)
    return ok


def _overlap(spans: list[tuple[float, float]], a: float, b: float) -> float:
    """Seconds of ``[a, b)`` that the recording covers."""
    return sum(max(0.0, min(b, hi) - max(a, lo)) for lo, hi in spans)


@dataclass
class HeartRateComparison:
    """Paired firmware and reference heart rates, and what they score."""

    times: F64
    estimate: F64
    reference: F64
    expected: int  # sample times with a reference
    agreement: metrics.Agreement
    harmonic_lock_pct: float

    def as_dict(self) -> dict[str, Any]:
        a = self.agreement
        return {
            "pairs": a.n,
            "coverage_pct": _pct(a.n, self.expected),
            "mae_bpm": a.as_dict()["mae"],
            "mape_pct": a.as_dict()["mape_pct"],
            "bias_bpm": a.as_dict()["bias"],
            "loa_bpm": [a.as_dict()["loa_low"], a.as_dict()["loa_high"]],
            "rmse_bpm": a.as_dict()["rmse"],
            "within5_pct": a.as_dict()["within_pct"],
            "harmonic_lock_pct": metrics.as_json_float(self.harmonic_lock_pct),
            "mean_estimate_bpm": metrics.as_json_float(_mean(self.estimate)),
            "mean_reference_bpm": metrics.as_json_float(_mean(self.reference)),
        }


def _mean(x: F64) -> float:
    return float(x.mean()) if len(x) else float("nan")


def _pct(n: int, of: int) -> float | None:
    return round(100.0 * n / of, 3) if of else None


def compare_heart_rate(
    run: FirmwareRun, ref: Reference, window_s: float = HR_WINDOW_S
) -> HeartRateComparison | None:
    if ref.hr is None:
        return None
    interval = FirmwareConfig().hr_sample_interval_s
    first = np.ceil(run.start / interval) * interval
    grid = np.arange(first, run.end, interval, dtype=np.float64)
    grid = grid[_covered(grid, run.spans)]
    ref_grid = ref.hr.at(grid, window_s)
    expected = int(np.isfinite(ref_grid).sum())
    samples = [r for r in run.records if isinstance(r, HeartRateSample) and r.bpm > 0]
    t = np.array([s.timestamp for s in samples], dtype=np.float64)
    est = np.array([s.bpm for s in samples], dtype=np.float64)
    ref_at = ref.hr.at(t, window_s)
    ok = np.isfinite(ref_at)
    return HeartRateComparison(
        t[ok],
        est[ok],
        ref_at[ok],
        expected,
        metrics.agreement(est[ok], ref_at[ok], HR_TOLERANCE_BPM),
        metrics.harmonic_lock_pct(est[ok], ref_at[ok]),
    )


@dataclass
class StepsComparison:
    """Firmware and reference steps per reference interval."""

    starts: F64
    estimate: F64
    reference: F64
    agreement: metrics.Agreement

    def as_dict(self) -> dict[str, Any]:
        a = self.agreement.as_dict()
        total_ref = float(self.reference.sum())
        total_est = float(self.estimate.sum())
        return {
            "intervals": self.agreement.n,
            "reference_steps": round(total_ref),
            "counted_steps": round(total_est),
            "total_error_pct": (
                round(100.0 * (total_est - total_ref) / total_ref, 3) if total_ref else None
            ),
            "mae_steps": a["mae"],
            "mape_pct": a["mape_pct"],
            "bias_steps": a["bias"],
            "loa_steps": [a["loa_low"], a["loa_high"]],
            "within10_pct": a["within_pct"],
        }


def compare_steps(run: FirmwareRun, ref: Reference) -> StepsComparison | None:
    if ref.steps is None:
        return None
    minutes = [r for r in run.records if isinstance(r, ActivityMinute)]
    # minutes are the firmware's resolution: an interval that cuts a minute gets its share
    counted: dict[int, float] = {}
    for m in minutes:
        counted[m.start] = counted.get(m.start, 0.0) + m.steps
    s = ref.steps
    keep = _covered(s.starts, run.spans) & _covered(s.ends - 1e-6, run.spans)
    est = np.zeros(int(keep.sum()))
    for i, (a, b) in enumerate(zip(s.starts[keep], s.ends[keep], strict=True)):
        for start in range(int(a // 60) * 60, int(np.ceil(b)), 60):
            # the minute's steps spread over the seconds of it that had data
            recorded = _overlap(run.spans, start, start + 60)
            if recorded > 0:
                share = _overlap(run.spans, max(a, start), min(b, start + 60)) / recorded
                est[i] += counted.get(start, 0.0) * share
    return StepsComparison(
        s.starts[keep],
        est,
        s.counts[keep],
        metrics.agreement(est, s.counts[keep], STEPS_TOLERANCE),
    )


@dataclass
class SleepComparison:
    """Firmware and reference stages per 30-second epoch."""

    starts: F64
    estimate: npt.NDArray[np.int64]
    reference: npt.NDArray[np.int64]
    sleep_wake: metrics.EpochAgreement
    stages: metrics.EpochAgreement | None

    def as_dict(self) -> dict[str, Any]:
        sw = self.sleep_wake.as_dict()
        out: dict[str, Any] = {
            "epochs": sw["n"],
            "sleep_wake_accuracy": sw["accuracy"],
            "sleep_sensitivity": sw["sensitivity"],
            "wake_specificity": sw["specificity"],
            "sleep_wake_kappa": sw["kappa"],
            "reference_sleep_min": float((self.reference != SleepStage.WAKE).sum()) / 2,
            "estimated_sleep_min": float((self.estimate != SleepStage.WAKE).sum()) / 2,
        }
        if self.stages is not None:
            st = self.stages.as_dict()
            out["stage_accuracy"] = st["accuracy"]
            out["stage_kappa"] = st["kappa"]
        return out


def compare_sleep(run: FirmwareRun, ref: Reference) -> SleepComparison | None:
    if ref.sleep is None:
        return None
    band = {r.start: int(r.stage) for r in run.records if isinstance(r, SleepEpoch)}
    s = ref.sleep
    covered = _covered(s.starts, run.spans)
    est = np.array([band.get(int(t), -1) for t in s.starts], dtype=np.int64)
    # out-of-bed truth counts only where the band scored sleep (it says wake otherwise)
    sel = covered & ((s.stages != OUT_OF_BED) | (est >= 0))
    if not sel.any():
        return None  # nobody in bed by the reference, nor asleep by the band: nothing to score
    est = np.where(est[sel] >= 0, est[sel], int(SleepStage.WAKE))
    refs = np.where(s.stages[sel] == OUT_OF_BED, int(SleepStage.WAKE), s.stages[sel])
    asleep_ref = (refs != SleepStage.WAKE).astype(np.int64)
    asleep_est = (est != SleepStage.WAKE).astype(np.int64)
    sleep_wake = metrics.epoch_agreement(asleep_est, asleep_ref, (0, 1), positive=1)
    stages = None
    if not (refs == UNSTAGED_SLEEP).any():
        labels = tuple(int(x) for x in SleepStage)
        stages = metrics.epoch_agreement(est, refs, labels, positive=int(SleepStage.WAKE))
    return SleepComparison(s.starts[sel], est, refs, sleep_wake, stages)


@dataclass
class ValidationReport:
    """Everything ``kmeband validate`` found for one recording."""

    start_utc: float
    end_utc: float
    references: list[str]
    heart_rate: HeartRateComparison | None
    steps: StepsComparison | None
    sleep: SleepComparison | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_utc": self.start_utc,
            "duration_s": self.end_utc - self.start_utc,
            "references": self.references,
            "heart_rate": self.heart_rate.as_dict() if self.heart_rate else None,
            "steps": self.steps.as_dict() if self.steps else None,
            "sleep": self.sleep.as_dict() if self.sleep else None,
        }


def validate(
    run: FirmwareRun, ref: Reference, hr_window_s: float = HR_WINDOW_S
) -> ValidationReport:
    """Score a firmware run against a reference (any of HR, steps, sleep)."""
    return ValidationReport(
        run.start,
        run.end,
        list(ref.sources),
        compare_heart_rate(run, ref, hr_window_s),
        compare_steps(run, ref),
        compare_sleep(run, ref),
    )
