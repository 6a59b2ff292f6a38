"""References to validate the firmware against: labels files, or a simulated trace's truth.

A labels file is a CSV (``#`` comment lines allowed anywhere, one header row) whose
columns say what it holds (docs/validate.md):

| columns | reference |
|---|---|
| ``t_s, rr_ms`` | RR (beat-to-beat) intervals, each ending at ``t_s`` (ECG, chest strap) |
| ``t_s, hr_bpm`` | a heart-rate series |
| ``start_s, end_s, steps`` | steps counted in each interval |
| ``start_s, stage`` | sleep stages of 30-second epochs |

Times ending in ``_s`` are seconds from the recording's first sample; ``timestamp``,
``start_utc`` and ``end_utc`` in their place are UTC seconds. Stages are ``wake``,
``light``, ``deep``, ``rem`` or the AASM codes ``W``, ``N1``, ``N2``, ``N3`` (``N4``),
``R``; ``sleep`` marks sleep of no known stage (sleep/wake is then all that is scored);
``unknown``, ``movement`` and ``?`` epochs are left out.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from device_sim.signals import TruthBlock
from protocol.errors import UsageError
from protocol.kme.records import SleepStage

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
EPOCH_S = 30
MINUTE_S = 60
#: Sleep of no known stage: sleep/wake scoring only.
UNSTAGED_SLEEP = 4
#: Awake and out of bed (a simulated trace's truth): scored only where the band says asleep.
OUT_OF_BED = -1
STAGE_NAMES = {
    "wake": SleepStage.WAKE,
    "w": SleepStage.WAKE,
    "light": SleepStage.LIGHT,
    "n1": SleepStage.LIGHT,
    "n2": SleepStage.LIGHT,
    "deep": SleepStage.DEEP,
    "n3": SleepStage.DEEP,
    "n4": SleepStage.DEEP,
    "rem": SleepStage.REM,
    "r": SleepStage.REM,
    "sleep": UNSTAGED_SLEEP,
}
SKIPPED_STAGES = frozenset({"unknown", "movement", "m", "?", ""})


class ValidateError(UsageError):
    """A reference or an option that ``kmeband validate`` cannot use as given."""


@dataclass(frozen=True)
class HeartRateReference:
    """Reference heart rate: RR intervals ending at ``times`` (``kind`` "rr", values in
    ms) or a series of rates (``kind`` "hr", values in bpm). Times are UTC seconds."""

    kind: str
    times: F64
    values: F64

    def at(self, centres: F64, window_s: float) -> F64:
        """The reference rate over the windows ``[c - window_s/2, c + window_s/2)`` around
        ``centres`` (the firmware's estimate at a second is from such a window); NaN where
        the reference has too little there (RR intervals covering under half the window,
        or no rate)."""
        out = np.full(len(centres), np.nan)
        lo = np.searchsorted(self.times, centres - window_s / 2, side="left")
        hi = np.searchsorted(self.times, centres + window_s / 2, side="left")
        csum = np.concatenate(([0.0], np.cumsum(self.values)))
        count = hi - lo
        total = csum[hi] - csum[lo]
        if self.kind == "rr":
            # beats per minute over the window = 60000 / mean interval (ms)
            ok = (count >= 2) & (total >= 500.0 * window_s)
            out[ok] = 60_000.0 * count[ok] / total[ok]
        else:
            ok = count >= 1
            out[ok] = total[ok] / count[ok]
        return out


@dataclass(frozen=True)
class StepsReference:
    """Steps counted in ``[starts, ends)`` (UTC seconds)."""

    starts: F64
    ends: F64
    counts: F64


@dataclass(frozen=True)
class SleepReference:
    """Stages (SleepStage values, UNSTAGED_SLEEP or OUT_OF_BED) of 30-second epochs from
    ``starts`` (UTC seconds)."""

    starts: F64
    stages: I64

    @property
    def staged(self) -> bool:
        return not bool((self.stages == UNSTAGED_SLEEP).any())


@dataclass
class Reference:
    """Whatever references a recording has; each part is optional."""

    hr: HeartRateReference | None = None
    steps: StepsReference | None = None
    sleep: SleepReference | None = None
    sources: list[str] = field(default_factory=list)

    def merge(self, other: Reference) -> None:
        for name in ("hr", "steps", "sleep"):
            if getattr(other, name) is not None:
                if getattr(self, name) is not None:
                    raise ValidateError(
                        f"two references give {name}; pass one --reference file per kind"
                    )
                setattr(self, name, getattr(other, name))
        self.sources += other.sources


def _float(text: str, path: Path, line: int, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        # the value itself stays out of the message: it is health data
        raise ValidateError(
            f"reference {path}, line {line}: {column} is not a number; fix the file"
        ) from None
    if not math.isfinite(v):
        raise ValidateError(f"reference {path}, line {line}: {column} is NaN or infinite")
    return v


def read_labels(path: str | Path, origin_utc: float) -> Reference:
    """Read one labels file; ``origin_utc`` is the recording's first sample (for ``_s``
    times). Raises ValidateError with the file and line for anything it cannot use."""
    p = Path(path)
    if not p.is_file():
        raise ValidateError(f"reference file {p} does not exist; check --reference")
    try:
        with open(p, encoding="utf-8", newline="") as f:
            rows = [
                (i + 1, r)
                for i, r in enumerate(csv.reader(f))
                if r and not r[0].lstrip().startswith("#")
            ]
    except UnicodeDecodeError:
        raise ValidateError(f"reference {p} is not a UTF-8 CSV file") from None
    if not rows:
        raise ValidateError(f"reference {p} has no header row; see docs/validate.md")
    header = [c.strip().lower() for c in rows[0][1]]
    body = rows[1:]
    if not body:
        raise ValidateError(f"reference {p} has a header but no rows")

    def col(*names: str) -> tuple[int, float] | None:
        """Index of the first of ``names`` present, and the offset its times need."""
        for name in names:
            if name in header:
                return header.index(name), (origin_utc if name.endswith("_s") else 0.0)
        return None

    def values(index: int, name: str, offset: float = 0.0) -> F64:
        out = []
        for line, r in body:
            if index >= len(r):
                raise ValidateError(f"reference {p}, line {line}: the row has no {name} value")
            out.append(_float(r[index], p, line, name) + offset)
        return np.asarray(out, dtype=np.float64)

    t = col("t_s", "timestamp")
    start = col("start_s", "start_utc")
    if "rr_ms" in header or "hr_bpm" in header:
        if t is None:
            raise ValidateError(f"reference {p}: a heart-rate reference needs a t_s column")
        kind, name = ("rr", "rr_ms") if "rr_ms" in header else ("hr", "hr_bpm")
        times = values(t[0], header[t[0]], t[1])
        vals = values(header.index(name), name)
        order = np.argsort(times, kind="stable")
        if kind == "rr" and ((vals[order] < 200) | (vals[order] > 3000)).any():
            raise ValidateError(
                f"reference {p}: rr_ms values must be milliseconds between 200 and 3000"
            )
        hr = HeartRateReference(kind, times[order], vals[order])
        return Reference(hr=hr, sources=[f"{kind}:{p.name}"])
    if "steps" in header:
        end = col("end_s", "end_utc")
        if start is None or end is None:
            raise ValidateError(f"reference {p}: step counts need start_s and end_s columns")
        starts = values(start[0], header[start[0]], start[1])
        ends = values(end[0], header[end[0]], end[1])
        counts = values(header.index("steps"), "steps")
        if (ends <= starts).any() or (counts < 0).any():
            raise ValidateError(
                f"reference {p}: every interval must end after it starts, with steps >= 0"
            )
        steps = StepsReference(starts, ends, counts)
        return Reference(steps=steps, sources=[f"steps:{p.name}"])
    if "stage" in header:
        if start is None:
            raise ValidateError(f"reference {p}: sleep stages need a start_s column")
        si = header.index("stage")
        starts_l: list[float] = []
        stages: list[int] = []
        for line, r in body:
            if max(start[0], si) >= len(r):
                raise ValidateError(f"reference {p}, line {line}: the row is incomplete")
            name = r[si].strip().lower()
            if name in SKIPPED_STAGES:
                continue
            if name not in STAGE_NAMES:
                raise ValidateError(
                    f"reference {p}, line {line}: the stage is not one of wake, light, deep, "
                    "rem, sleep or W, N1, N2, N3, R"
                )
            starts_l.append(_float(r[start[0]], p, line, header[start[0]]) + start[1])
            stages.append(int(STAGE_NAMES[name]))
        sleep = SleepReference(np.asarray(starts_l), np.asarray(stages, dtype=np.int64))
        return Reference(sleep=sleep, sources=[f"sleep:{p.name}"])
    raise ValidateError(
        f"reference {p}: no known columns in its header ({', '.join(header)}); a labels "
        "file has t_s,rr_ms or t_s,hr_bpm or start_s,end_s,steps or start_s,stage "
        "(docs/validate.md)"
    )


def from_truth(blocks: list[TruthBlock]) -> Reference:
    """The ground truth a simulated trace carries, as a reference: heart rate each worn
    second, steps per whole UTC minute, and the stage of every 30-second epoch (OUT_OF_BED
    when the person is up: those epochs count only where the band says asleep)."""
    if not blocks:
        return Reference()
    t = np.concatenate([b.t0 + np.arange(len(b.hr_bpm), dtype=np.float64) for b in blocks])
    hr = np.concatenate([b.hr_bpm for b in blocks]).astype(np.float64)
    worn = np.concatenate([b.worn for b in blocks]).astype(bool)
    steps = np.concatenate([b.steps for b in blocks]).astype(np.float64)
    stage = np.concatenate([b.sleep_stage for b in blocks]).astype(np.int64)
    sel = worn & (hr > 0)
    ref = Reference(
        hr=HeartRateReference("hr", t[sel], hr[sel]), sources=["truth"] if len(t) else []
    )
    # whole minutes and epochs the truth covers completely
    second = t.astype(np.int64)
    minute_starts, minute_steps = _whole_spans(second, steps, MINUTE_S, np.sum)
    ref.steps = StepsReference(minute_starts, minute_starts + MINUTE_S, minute_steps)
    epoch_starts, epoch_stage = _whole_spans(
        second, stage, EPOCH_S, lambda a, axis: a[:, EPOCH_S // 2]
    )
    ref.sleep = SleepReference(epoch_starts, epoch_stage.astype(np.int64))
    return ref


def _whole_spans(
    second: I64, value: npt.NDArray[np.generic], span: int, reduce: object
) -> tuple[F64, F64]:
    """Per aligned span of ``span`` seconds wholly covered: its start and reduced value."""
    key = second // span
    starts, counts = np.unique(key, return_counts=True)
    full = starts[counts == span]
    if not len(full):
        return np.zeros(0), np.zeros(0)
    sel = np.isin(key, full)
    order = np.argsort(second[sel], kind="stable")
    grid = np.asarray(value[sel][order], dtype=np.float64).reshape(len(full), span)
    reduced = reduce(grid, axis=1)  # type: ignore[operator]
    return (full * span).astype(np.float64), np.asarray(reduced, dtype=np.float64)
