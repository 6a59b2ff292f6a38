"""Import a recording a real device or study wrote, for ``kmeband import`` and ``replay``.

:func:`open_recording` is the one entry point both commands use, so they accept exactly the
same inputs: a kmeband trace, a CSV/TSV file, an Empatica E4 folder or zip, an ActiGraph
CSV export or .gt3x file, or an EDF/EDF+ file (format detected, or named with
``--format``). A reader for each format returns the raw channels (:class:`RawRecording`);
this module then checks the timing, splits the samples at gaps, resamples each run onto
the whole-second grid the firmware reads (:mod:`device_sim.trace.resample`), converts
acceleration to g with gravity, and reports every decision in an :class:`ImportReport`.

Python API (docs/traces.md)::

    from device_sim.trace.importer import ImportOptions, import_recording, open_recording

    metadata, report = import_recording("S1_E4.zip", "s1.kmetrace", ImportOptions())
    recording = open_recording("watch.csv", ImportOptions(acc_unit="m/s2"))
    for block in recording.blocks(): ...

Every refusal is a :class:`~device_sim.trace.format.TraceError` whose message names the
command-line option that fixes it; :class:`ImportOptions` fields carry the same names.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from device_sim.signals import SensorBlock
from device_sim.trace import resample
from device_sim.trace.format import (
    MAGIC,
    TraceError,
    TraceFormatError,
    TraceMetadata,
    TraceRateError,
    TraceReader,
    TraceTimestampError,
    TraceValueError,
    TraceWriter,
)

F64 = npt.NDArray[np.float64]

STANDARD_GRAVITY = 9.80665
ABSENT_SKIN_TEMP_C = 33.0
ABSENT_BATTERY_V = 3.9
#: Accelerometer units, as the factor that turns a value into g.
ACC_UNITS: dict[str, float] = {"g": 1.0, "mg": 1e-3, "m/s2": 1.0 / STANDARD_GRAVITY}
FORMATS = ("auto", "trace", "csv", "e4", "actigraph", "gt3x", "edf")
TIME_UNITS = ("auto", "s", "ms", "us", "ns")
GRAVITY = ("auto", "included", "removed")
#: A gravity-including accelerometer at rest reads 1 g; per-second means whose median
#: magnitude lies in this band (in some unit) are taken as gravity in that unit.
_GRAVITY_BAND_G = (0.6, 1.6)
#: Below this median per-second magnitude (g) the file holds linear acceleration only.
_NO_GRAVITY_BELOW_G = 0.35
_RATE_AGREEMENT = 0.01  # a stated rate and the timestamps must agree this well


class RecordingNotFoundError(TraceError):
    """The recording to import does not exist."""

    exit_code = 3


class TraceExtraMissingError(TraceError):
    """Reading this format needs an optional package that is not installed."""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ImportOptions:
    """How to read a recording; each field is the command-line option of the same name
    (``rate_hz`` is ``--rate``, ``start`` is ``--start``, ...). ``None``/``"auto"``: detect
    it or take it from the file."""

    format: str = "auto"  # --format
    rate_hz: float | None = None  # --rate: the sample rate of a file without times
    start: float | str | None = None  # --start: UTC seconds or ISO 8601
    tz_offset_min: int | None = None  # --tz-offset-min
    time_unit: str = "auto"  # --time-unit
    columns: tuple[str, ...] | None = None  # --columns
    acc_unit: str = "auto"  # --acc-unit
    gravity: str = "auto"  # --gravity
    resample_hz: int | None = None  # --resample-hz
    gap_s: float = 1.0  # --gap-s
    ppg_invert: bool = False  # --ppg-invert
    block_s: int = 60  # --block-s

    def __post_init__(self) -> None:
        choices = (
            ("--format", self.format, FORMATS),
            ("--time-unit", self.time_unit, TIME_UNITS),
            ("--acc-unit", self.acc_unit, ("auto", *ACC_UNITS)),
            ("--gravity", self.gravity, GRAVITY),
        )
        for option, value, allowed in choices:
            if value not in allowed:
                raise TraceError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
        if self.rate_hz is not None and not (
            isinstance(self.rate_hz, int | float)
            and resample.MIN_INPUT_HZ <= self.rate_hz <= resample.MAX_INPUT_HZ
        ):
            raise TraceRateError(
                f"--rate must be a number of Hz from {resample.MIN_INPUT_HZ:g} to "
                f"{resample.MAX_INPUT_HZ:g}, got {self.rate_hz!r}"
            )
        if self.resample_hz is not None and not (
            isinstance(self.resample_hz, int)
            and resample.MIN_INPUT_HZ <= self.resample_hz <= resample.MAX_INPUT_HZ
        ):
            raise TraceRateError(
                f"--resample-hz must be a whole number of Hz from {resample.MIN_INPUT_HZ:g} "
                f"to {resample.MAX_INPUT_HZ:g}, got {self.resample_hz!r}"
            )
        if not (isinstance(self.gap_s, int | float) and 0 < self.gap_s <= 3600):
            raise TraceError(f"--gap-s must be seconds above 0, at most 3600, got {self.gap_s!r}")
        if not (isinstance(self.block_s, int) and 1 <= self.block_s <= 3600):
            raise TraceError(
                f"--block-s must be whole seconds from 1 to 3600, got {self.block_s!r}"
            )
        if self.tz_offset_min is not None and not (
            isinstance(self.tz_offset_min, int) and -1080 <= self.tz_offset_min <= 1080
        ):
            raise TraceError("--tz-offset-min must be whole minutes between -1080 and 1080")


# --------------------------------------------------------------------------- raw recordings


@dataclass
class Series:
    """One channel as a reader found it: ``values`` (n, k) in the file's unit, timed either
    by ``times`` (UTC seconds per sample) or by ``start`` and ``rate_hz``.

    ``lines`` maps a sample to its line in the file, for messages; ``unit`` is the unit the
    file declares (None: unknown), ``unit_from`` where that came from."""

    values: F64
    times: F64 | None = None
    start: float | None = None
    rate_hz: float | None = None
    unit: str | None = None
    unit_from: str | None = None
    scale: float | None = None  # a format's own unit (E4: 1/64 g)
    lines: npt.NDArray[np.int64] | None = None
    index: npt.NDArray[np.int64] | None = None  # sample positions, when rows were left out
    dropped: int = 0  # samples the reader left out (empty or non-finite values)


@dataclass
class RawRecording:
    """What a format reader returns: its channels (any may be None) and notes for the report."""

    source: str
    acc: Series | None = None
    ppg: Series | None = None
    skin_temp: Series | None = None
    tz_offset_min: int | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class ChannelReport:
    """What was done to one channel: its rates, timing, and (accelerometer) unit and gravity."""

    name: str
    native_hz: float
    stored_hz: int
    resampled: bool
    timing: str
    max_timing_error_ms: float
    samples_dropped: int = 0
    unit: str | None = None
    unit_from: str | None = None
    gravity: str | None = None
    gravity_from: str | None = None


@dataclass(frozen=True)
class ImportReport:
    """Everything an import decided, for the user (``lines()``) and the trace (``to_dict()``)."""

    source: str
    start_utc: float
    end_utc: float
    seconds: int
    runs: int
    gaps_s: float
    trimmed_s: float
    absent_channels: tuple[str, ...]
    channels: tuple[ChannelReport, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["absent_channels"] = list(self.absent_channels)
        data["channels"] = [asdict(c) for c in self.channels]
        data["notes"] = list(self.notes)
        return data

    def lines(self) -> list[str]:
        when = dt.datetime.fromtimestamp(self.start_utc, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = [
            f"{self.source}: {self.seconds} s from {when} in {self.runs} run(s)"
            + (f", {self.gaps_s:g} s of gaps kept as gaps" if self.runs > 1 else "")
            + (f", {self.trimmed_s:.3g} s of partial seconds left out" if self.trimmed_s else "")
        ]
        for c in self.channels:
            how = "resampled" if c.resampled else "kept"
            text = f"{c.name}: {c.native_hz:.6g} Hz {how} at {c.stored_hz} Hz, timing {c.timing}"
            if c.timing in ("retimed", "interpolated"):
                text += f" (timestamps off a steady clock by up to {c.max_timing_error_ms:g} ms)"
            if c.samples_dropped:
                text += f", {c.samples_dropped} empty or non-finite samples left out"
            if c.unit is not None:
                text += f"; unit {c.unit} ({c.unit_from}), gravity {c.gravity} ({c.gravity_from})"
            out.append(text)
        if self.absent_channels:
            out.append("absent (placeholders): " + ", ".join(self.absent_channels))
        out.extend(self.notes)
        return out


# --------------------------------------------------------------------------- the recording


@dataclass(frozen=True)
class Recording:
    """An opened input: its trace metadata, the import report (None for a kmeband trace),
    and its sensor blocks, each on whole UTC seconds at whole-Hz rates."""

    metadata: TraceMetadata
    report: ImportReport | None
    _blocks: Callable[[], Iterator[SensorBlock]]

    def blocks(self) -> Iterator[SensorBlock]:
        return self._blocks()


def open_recording(path: str | os.PathLike[str], options: ImportOptions | None = None) -> Recording:
    """Open any supported input (the same for ``import`` and ``replay``)."""
    options = options or ImportOptions()
    source = Path(path)
    if not source.exists():
        raise RecordingNotFoundError(f"{source} does not exist; check the path")
    fmt = options.format if options.format != "auto" else detect_format(source)
    if fmt == "trace":
        reader = TraceReader(source)
        return Recording(reader.metadata, None, reader.sensor_blocks)
    raw = _read(fmt, source, options)
    return build(raw, options)


def import_recording(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    options: ImportOptions | None = None,
) -> tuple[TraceMetadata, ImportReport | None]:
    """Write ``path`` as a kmeband trace at ``out_path``; its metadata and the import report.

    Nothing is left at ``out_path`` if the import fails part way."""
    recording = open_recording(path, options)
    writer = TraceWriter(out_path, recording.metadata)
    try:
        for block in recording.blocks():
            writer.write(block)
    except BaseException:
        writer.__exit__(TraceError, None, None)
        Path(out_path).unlink(missing_ok=True)
        raise
    writer.close()
    return recording.metadata, recording.report


def detect_format(path: Path) -> str:
    """The format of ``path`` from its content (and, for folders and zips, their members)."""
    if path.is_dir():
        if any((path / name).exists() for name in ("ACC.csv", "BVP.csv")):
            return "e4"
        raise TraceFormatError(
            f"{path} is a folder without ACC.csv or BVP.csv; kmeband reads an Empatica E4 "
            "folder, or one file (CSV/TSV, ActiGraph CSV or .gt3x, EDF); see --format"
        )
    with open(path, "rb") as f:
        head = f.read(256)
    if head.startswith(MAGIC):
        return "trace"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = {Path(n).name for n in z.namelist()}
        if names & {"ACC.csv", "BVP.csv"}:
            return "e4"
        if {"info.txt", "log.bin"} <= names or {"info.txt", "activity.bin"} <= names:
            return "gt3x"
        raise TraceFormatError(
            f"{path} is a zip that is neither an Empatica E4 export (ACC.csv, BVP.csv) nor "
            "an ActiGraph .gt3x (info.txt, log.bin); unzip it and import the recording "
            "inside, or name its format with --format"
        )
    edf_version = head.startswith((b"0       ", b"\xffBIOSEMI"))  # EDF, BDF
    if edf_version and path.suffix.lower() in (".edf", ".bdf", ".rec"):
        return "edf"
    if b"Data File Created By ActiGraph" in head:
        return "actigraph"
    return "csv"


def _read(fmt: str, path: Path, options: ImportOptions) -> RawRecording:
    # the readers import lazily: an EDF reader is only needed for EDF files
    if fmt == "csv":
        from device_sim.trace.csv_import import read_csv

        return read_csv(path, options)
    if fmt == "e4":
        from device_sim.trace.empatica import read_e4

        return read_e4(path, options)
    if fmt == "actigraph":
        from device_sim.trace.actigraph import read_actigraph_csv

        return read_actigraph_csv(path, options)
    if fmt == "gt3x":
        from device_sim.trace.gt3x import read_gt3x

        return read_gt3x(path, options)
    from device_sim.trace.edf import read_edf

    return read_edf(path, options)


# --------------------------------------------------------------------------- shared parsing


def parse_utc(value: float | str, what: str, tz_offset_min: int | None) -> float:
    """UTC seconds from seconds or ISO 8601; a time without a zone is local time at
    ``--tz-offset-min`` (UTC when it is not given)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(text)
            except ValueError:
                raise TraceTimestampError(
                    f"{what} {text!r} is neither UTC seconds nor ISO 8601 "
                    "(2026-01-01T08:00:00Z); fix it with --start"
                ) from None
            if when.tzinfo is None:
                offset = dt.timedelta(minutes=tz_offset_min or 0)
                when = when.replace(tzinfo=dt.timezone(offset))
            seconds = when.timestamp()
    if not (math.isfinite(seconds) and seconds >= 0):
        raise TraceTimestampError(f"{what} must be UTC seconds >= 0; fix it with --start")
    return seconds


def normalise_unit(text: str) -> str | None:
    """An accelerometer unit as written in a header or an EDF signal ("m/s^2", "mG", "g")."""
    t = text.strip().replace(" ", "").replace("²", "2").replace("^", "").lower()
    if t in ("g", "gravity", "gs"):
        return "g"
    if t in ("mg", "millig", "milli-g"):
        return "mg"
    if t in ("m/s2", "ms-2", "m/s/s", "ms2", "m*s-2", "m/s²"):
        return "m/s2"
    return None


# --------------------------------------------------------------------------- building blocks


@dataclass
class _Grid:
    """One channel on the whole-second grid: runs ``(start, end, samples)``, samples (n, k)."""

    rate: int
    runs: list[tuple[int, int, F64]]
    report: dict[str, Any]
    covered_s: float  # the source's own span, partial seconds included


def build(raw: RawRecording, options: ImportOptions) -> Recording:
    """Turn a reader's raw channels into trace metadata, a report and whole-second blocks."""
    if raw.acc is None and raw.ppg is None:
        raise TraceFormatError(
            f"{raw.source}: no accelerometer or PPG channel found; name the columns with "
            "--columns (e.g. --columns time,ppg,ax,ay,az)"
        )
    notes = list(raw.notes)
    tz = options.tz_offset_min if options.tz_offset_min is not None else raw.tz_offset_min or 0
    if options.start is not None:
        # a stated start replaces the one a format's header gives (timed samples keep theirs)
        start = parse_utc(options.start, "--start", tz)
        for series in (raw.acc, raw.ppg, raw.skin_temp):
            if series is not None and series.times is None:
                series.start = start
    grids: dict[str, _Grid] = {}
    acc_details: dict[str, Any] = {}
    for name in ("acc", "ppg"):
        series = getattr(raw, name)
        if series is not None and series.times is not None:
            _check_increasing(series.times, series, raw.source, name)
    if raw.acc is not None:
        acc_values, acc_details = _acc_in_g(raw.acc, options, raw.source)
        raw.acc.values = acc_values
        grids["acc"] = _to_grid("acc", raw.acc, options, raw.source)
    if raw.ppg is not None:
        if options.ppg_invert:
            raw.ppg.values = -raw.ppg.values
            notes.append("PPG inverted (--ppg-invert)")
        grids["ppg"] = _to_grid("ppg", raw.ppg, options, raw.source)
    spans = _intersect([[(s, e) for s, e, _ in g.runs] for g in grids.values()])
    if not spans:
        raise TraceValueError(
            f"{raw.source}: the recording holds no whole second with every channel present "
            "(too short, or its channels do not overlap in time); check --start and --rate"
        )
    channel_seconds = {name: sum(e - s for s, e, _ in g.runs) for name, g in grids.items()}
    kept = sum(e - s for s, e in spans)
    for name, secs in channel_seconds.items():
        if secs > kept:
            notes.append(f"{name}: {secs - kept} s outside the other channel's span left out")
    absent = [name for name in ("acc", "ppg") if name not in grids]
    if raw.skin_temp is None:
        absent.append("skin_temp")
    absent += ["battery", "gnss"]
    acc_hz = grids["acc"].rate if "acc" in grids else grids["ppg"].rate
    ppg_hz = grids["ppg"].rate if "ppg" in grids else acc_hz
    channels = tuple(
        ChannelReport(name=name, **grid.report, **(acc_details if name == "acc" else {}))
        for name, grid in grids.items()
    )
    gaps = float(sum(b[0] - a[1] for a, b in itertools.pairwise(spans)))
    trimmed = max(g.covered_s - channel_seconds[name] for name, g in grids.items())
    report = ImportReport(
        source=raw.source,
        start_utc=float(spans[0][0]),
        end_utc=float(spans[-1][1]),
        seconds=kept,
        runs=len(spans),
        gaps_s=gaps,
        trimmed_s=round(max(0.0, trimmed), 3),
        absent_channels=tuple(sorted(absent)),
        channels=channels,
        notes=tuple(notes),
    )
    metadata = TraceMetadata(
        acc_hz=acc_hz,
        ppg_hz=ppg_hz,
        start_utc=float(spans[0][0]),
        tz_offset_min=tz,
        source=raw.source,
        absent_channels=tuple(absent),
        provenance=report.to_dict(),
    )
    temp = _temp_per_second(raw.skin_temp, options) if raw.skin_temp is not None else None

    def blocks() -> Iterator[SensorBlock]:
        for start, end in spans:
            for t in range(start, end, options.block_s):
                stop = min(end, t + options.block_s)
                yield _block(t, stop, grids, acc_hz, ppg_hz, tz, temp)

    return Recording(metadata, report, blocks)


def _to_grid(name: str, series: Series, options: ImportOptions, source: str) -> _Grid:
    values = series.values
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    if n < 2:
        raise TraceValueError(f"{source}: the {name} channel has fewer than two samples")
    stated = options.rate_hz if options.rate_hz is not None else series.rate_hz
    exact = series.times is None
    if series.times is None:
        if stated is None:
            raise TraceRateError(
                f"{source}: no sample rate for the {name} channel and no time column; give "
                "the rate with --rate (Hz), or name the time column with --columns"
            )
        if series.start is None:
            raise TraceTimestampError(
                f"{source}: no start time; give it with --start (UTC seconds or ISO 8601, "
                "e.g. 2026-01-01T08:00:00Z)"
            )
        index = series.index if series.index is not None else np.arange(n)
        times = series.start + index / stated
    else:
        times = series.times
    segments = _segments(times, stated, exact, options.gap_s, series, source, name)
    native = resample.nominal_rate(
        sum(s.count for s in segments) / sum(s.count / s.rate_hz for s in segments)
    )
    if not resample.MIN_INPUT_HZ * 0.99 <= native <= resample.MAX_INPUT_HZ * 1.01:
        raise TraceRateError(
            f"{source}: the {name} channel is sampled at {native:.4g} Hz; kmeband imports "
            f"{resample.MIN_INPUT_HZ:g} Hz to {resample.MAX_INPUT_HZ:g} Hz. If the times are "
            "in another unit, say which with --time-unit (s, ms, us, ns)"
        )
    target = (
        options.resample_hz if options.resample_hz is not None else resample.choose_rate(native)
    )
    runs = []
    changed = False
    covered = 0.0
    for seg in segments:
        covered += seg.count / seg.rate_hz
        start, end = resample.grid_span(seg)
        if end <= start:
            continue
        samples, was_changed = resample.to_grid(
            values[seg.first : seg.first + seg.count], seg, target, start, end
        )
        changed |= was_changed
        runs.append((start, end, samples))
    if not runs:
        raise TraceValueError(
            f"{source}: the {name} channel has no run of one whole second or more between "
            "gaps; if its gaps are only jitter, widen --gap-s"
        )
    order = ("stated", "regular", "retimed", "interpolated")
    timing = max((s.timing for s in segments), key=order.index)
    if timing == "regular" and exact:
        timing = "stated"
    report = {
        "native_hz": round(native, 6),
        "stored_hz": target,
        "resampled": changed,
        "timing": timing,
        "max_timing_error_ms": round(max(s.max_error_s for s in segments) * 1000, 3),
        "samples_dropped": series.dropped,
    }
    return _Grid(target, runs, report, covered)


def _segments(
    times: F64,
    stated: float | None,
    exact: bool,
    gap_s: float,
    series: Series,
    source: str,
    name: str,
) -> list[resample.Segment]:
    bounds = [0, *resample.gap_starts(times, gap_s).tolist(), len(times)]
    segments = []
    for a, b in itertools.pairwise(bounds):
        if b - a < 2 or times[b - 1] <= times[a]:
            continue  # one instant between gaps: no rate, no whole second
        run = times[a:b]
        if stated is not None and not exact:
            derived = resample.estimate_rate(run)
            if abs(derived - stated) > _RATE_AGREEMENT * stated:
                raise TraceRateError(
                    f"{source}: the stated {name} rate {stated:g} Hz disagrees with the "
                    f"timestamps ({derived:.4g} Hz from line {_line(series, a)}); drop --rate "
                    "(or the file's rate comment) to use the timestamps, or fix --time-unit"
                )
        segments.append(resample.fit_segment(run, a, stated if stated else None, exact))
    if not segments:
        raise TraceValueError(
            f"{source}: the {name} channel has no two samples closer than --gap-s "
            f"({gap_s:g} s); widen --gap-s, or check --time-unit"
        )
    return segments


def _line(series: Series, index: int) -> int:
    if series.lines is not None and index < len(series.lines):
        return int(series.lines[index])
    return index + 1


def _check_increasing(times: F64, series: Series, source: str, name: str) -> None:
    if not np.isfinite(times).all():
        bad = int(np.flatnonzero(~np.isfinite(times))[0])
        raise TraceTimestampError(
            f"{source}: the time at line {_line(series, bad)} is empty or not a number; fix "
            "the row, or name the time column with --columns"
        )
    steps = np.diff(times)
    forward = steps[steps > 0]
    # jittered host timestamps may step back a little: up to one typical step is jitter
    # (the run is retimed or interpolated); more is rows out of order
    slack = float(np.median(forward)) if forward.size else 0.0
    back = np.flatnonzero(steps < -slack)
    if back.size:
        raise TraceTimestampError(
            f"{source}: time goes back at line {_line(series, int(back[0]) + 1)} ({name}); "
            "sort the rows by time. If that column is not time, name the columns with --columns"
        )
    if not forward.size:
        raise TraceTimestampError(
            f"{source}: the time column never advances ({name}); if it is not the time, name "
            "the columns with --columns and give --rate and --start"
        )


def _intersect(span_lists: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    result = span_lists[0]
    for other in span_lists[1:]:
        merged = []
        for a0, a1 in result:
            for b0, b1 in other:
                lo, hi = max(a0, b0), min(a1, b1)
                if hi > lo:
                    merged.append((lo, hi))
        result = merged
    return sorted(result)


def _slice(grid: _Grid, start: int, stop: int) -> F64:
    for s, e, samples in grid.runs:
        if s <= start and stop <= e:
            return samples[(start - s) * grid.rate : (stop - s) * grid.rate]
    raise AssertionError("a block outside its channel's runs")


def _block(
    start: int,
    stop: int,
    grids: dict[str, _Grid],
    acc_hz: int,
    ppg_hz: int,
    tz: int,
    temp: tuple[npt.NDArray[np.int64], F64] | None,
) -> SensorBlock:
    seconds = stop - start
    if "acc" in grids:
        acc = _slice(grids["acc"], start, stop)
    else:
        acc = np.zeros((seconds * acc_hz, 3))
        acc[:, 2] = 1.0  # a band lying still, face up
    ppg = _slice(grids["ppg"], start, stop)[:, 0] if "ppg" in grids else np.zeros(seconds * ppg_hz)
    if temp is None:
        skin = np.full(seconds, ABSENT_SKIN_TEMP_C)
    else:
        known_s, known_c = temp
        idx = np.searchsorted(known_s, np.arange(start, stop), side="right") - 1
        skin = known_c[np.maximum(idx, 0)]
    return SensorBlock(
        t0=float(start),
        duration_s=float(seconds),
        tz_offset_min=tz,
        acc_hz=float(acc_hz),
        acc=acc.astype(np.float32),
        ppg_hz=float(ppg_hz),
        ppg=ppg.astype(np.float32),
        skin_temp_c=skin.astype(np.float32),
        battery_v=ABSENT_BATTERY_V,
        gnss=None,
    )


def _temp_per_second(series: Series, options: ImportOptions) -> tuple[npt.NDArray[np.int64], F64]:
    """Skin temperature as (second, mean of that second's samples), for seconds that have
    any; a second without one takes the last known value."""
    values = series.values.reshape(-1)
    if series.times is not None:
        times = series.times
    else:
        rate = series.rate_hz or options.rate_hz
        if rate is None or series.start is None:
            raise TraceRateError(
                "the skin temperature has no times and no rate; give the rate with --rate"
            )
        index = series.index if series.index is not None else np.arange(len(values))
        times = series.start + index / rate
    seconds = np.floor(times + 1e-6).astype(np.int64)
    unique, inverse = np.unique(seconds, return_inverse=True)
    means = np.bincount(inverse, values) / np.bincount(inverse)
    return unique, means


def _acc_in_g(series: Series, options: ImportOptions, source: str) -> tuple[F64, dict[str, Any]]:
    """Acceleration in g with gravity, and how its unit and gravity were decided."""
    values = series.values
    rate = series.rate_hz or options.rate_hz
    if rate is None and series.times is not None and len(series.times) > 1:
        rate = resample.estimate_rate(series.times)
    window = max(1, round(rate or 25))
    usable = len(values) // window * window
    if usable:
        means = values[:usable].reshape(-1, window, 3).mean(axis=1)
    else:
        means = values.mean(axis=0, keepdims=True)
    level = float(np.median(np.linalg.norm(means, axis=1)))
    if options.acc_unit != "auto":
        unit, unit_from, scale = options.acc_unit, "--acc-unit", ACC_UNITS[options.acc_unit]
    elif series.scale is not None:
        unit, unit_from, scale = series.unit or "", "format", series.scale
    elif series.unit is not None:
        unit, unit_from, scale = series.unit, series.unit_from or "header", ACC_UNITS[series.unit]
    else:
        found = [u for u, s in ACC_UNITS.items() if _in_gravity_band(level * s)]
        if len(found) != 1:
            raise TraceValueError(
                f"{source}: the accelerometer unit cannot be told from the data (its "
                f"per-second mean is {level:.3g} in the file's unit, not gravity in g, mg or "
                "m/s²); give it with --acc-unit g|mg|m/s2 (and --gravity removed if the file "
                "holds acceleration without gravity)"
            )
        unit, unit_from, scale = found[0], "detected", ACC_UNITS[found[0]]
    level_g = level * scale
    if options.gravity != "auto":
        gravity, gravity_from = options.gravity, "--gravity"
    elif level_g < _NO_GRAVITY_BELOW_G:
        gravity, gravity_from = "removed", "detected"
    elif _in_gravity_band(level_g):
        gravity, gravity_from = "included", "detected"
    else:
        raise TraceValueError(
            f"{source}: the accelerometer reads {level_g:.3g} g at rest in unit {unit}, "
            "neither gravity (1 g) nor gravity removed (0 g); check --acc-unit, or say which "
            "with --gravity included|removed"
        )
    in_g = values * scale
    if gravity == "removed":
        in_g = in_g + np.array([0.0, 0.0, 1.0])
        gravity = "removed (1 g added on z: no orientation in the source)"
    return in_g, {
        "unit": unit,
        "unit_from": unit_from,
        "gravity": gravity,
        "gravity_from": gravity_from,
    }


def _in_gravity_band(level_g: float) -> bool:
    return _GRAVITY_BAND_G[0] <= level_g <= _GRAVITY_BAND_G[1]
