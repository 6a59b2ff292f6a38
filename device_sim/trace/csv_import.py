"""Import external sensor recordings from CSV into sensor blocks or a trace file.

Accepted layout (see docs/traces.md for the full description)::

    # sample_rate_hz=25
    # start_utc=2026-01-01T08:00:00Z
    # tz_offset_min=60
    ppg,ax,ay,az
    1021.5,0.01,-0.02,0.99
    ...

``#`` comment lines before the header row give ``sample_rate_hz``, ``start_utc`` (ISO
8601 or UTC seconds) and ``tz_offset_min``; keyword arguments override them. Instead of a
rate, a ``timestamp`` column (UTC seconds) or a ``time_s`` column (seconds from
``start_utc``) gives the time of every row; the rate is derived from it and must be
steady. Columns ``ppg`` and/or all of ``ax, ay, az`` are required (``skin_temp_c`` is
optional); other columns are ignored. Acceleration is in g unless ``acc_unit="m/s2"``.

A channel the file lacks is filled with a placeholder and listed in the metadata's
``absent_channels``: acceleration as a band lying still face up (0, 0, 1 g), PPG as a
flat zero signal (what an off-wrist sensor shows: no pulse), skin temperature 33 °C,
battery 3.9 V. The file is read a block at a time, never whole.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from device_sim.signals import SensorBlock
from device_sim.trace.format import (
    TraceError,
    TraceFormatError,
    TraceMetadata,
    TraceRateError,
    TraceTimestampError,
    TraceValueError,
    TraceWriter,
    check_rate,
)

STANDARD_GRAVITY = 9.80665
ABSENT_SKIN_TEMP_C = 33.0
ABSENT_BATTERY_V = 3.9
_ACC_UNITS = {"g": 1.0, "m/s2": 1.0 / STANDARD_GRAVITY, "m/s^2": 1.0 / STANDARD_GRAVITY}
_RATE_TOLERANCE = 0.01  # relative: comment rate vs timestamps, and sampling jitter
_KNOWN_KEYS = ("sample_rate_hz", "start_utc", "tz_offset_min")


@dataclass(frozen=True)
class CsvRecording:
    """An opened CSV recording: its metadata, and a way to stream its sensor blocks."""

    path: Path
    metadata: TraceMetadata
    columns: tuple[str, ...]
    acc_scale: float
    block_s: float
    data_start: int  # byte offset of the first data row
    data_line: int  # 1-based line number of the first data row
    time_origin: float  # added to the time column: 0 for timestamp, the start for time_s

    def blocks(self) -> Iterator[SensorBlock]:
        """The recording as sensor blocks of ``block_s`` seconds (the last may be shorter)."""
        rate = self.metadata.acc_hz
        rows_per_block = max(1, round(self.block_s * rate))
        col = {name: i for i, name in enumerate(self.columns)}
        time_col = col.get("timestamp", col.get("time_s"))
        line = self.data_line
        row = 0
        prev_time: float | None = None
        with open(self.path, encoding="utf-8", newline="") as f:
            f.seek(self.data_start)
            while True:
                lines = list(itertools.islice(f, rows_per_block))
                if not lines:
                    return
                data = _parse_rows(lines, len(self.columns), line, self.path)
                if not data.size:  # only blank or comment lines
                    line += len(lines)
                    continue
                _check_values(data, self.columns, line, self.path)
                n = len(data)
                if time_col is not None:
                    times = data[:, time_col] + self.time_origin
                    _check_times(times, prev_time, rate, line, self.path)
                    t0 = float(times[0])
                    prev_time = float(times[-1])
                else:
                    t0 = self.metadata.start_utc + row / rate
                yield self._block(data, col, t0, n)
                line += len(lines)
                row += n

    def _block(
        self, data: npt.NDArray[np.float64], col: dict[str, int], t0: float, n: int
    ) -> SensorBlock:
        rate = self.metadata.acc_hz
        if "ax" in col:
            acc = data[:, [col["ax"], col["ay"], col["az"]]] * self.acc_scale
        else:
            acc = np.zeros((n, 3))
            acc[:, 2] = 1.0
        ppg = data[:, col["ppg"]] if "ppg" in col else np.zeros(n)
        seconds = max(1, math.ceil(n / rate))
        if "skin_temp_c" in col:
            # one value per second: the mean of that second's rows
            per_row = data[:, col["skin_temp_c"]]
            idx = np.floor(np.arange(n) / rate + 1e-6).astype(np.int64)
            temp = np.bincount(idx, per_row, seconds) / np.maximum(
                np.bincount(idx, None, seconds), 1
            )
        else:
            temp = np.full(seconds, ABSENT_SKIN_TEMP_C)
        return SensorBlock(
            t0=t0,
            duration_s=n / rate,
            tz_offset_min=self.metadata.tz_offset_min,
            acc_hz=rate,
            acc=acc.astype(np.float32),
            ppg_hz=rate,
            ppg=ppg.astype(np.float32),
            skin_temp_c=temp.astype(np.float32),
            battery_v=ABSENT_BATTERY_V,
            gnss=None,
        )


def open_csv(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: float | None = None,
    start_utc: float | str | None = None,
    tz_offset_min: int | None = None,
    acc_unit: str = "g",
    block_s: float = 60.0,
) -> CsvRecording:
    """Read a CSV recording's header (and its first rows, for the rate); check everything.

    Raises TraceRateError for a missing or inconsistent rate, TraceTimestampError for a
    missing start or backward timestamps, TraceFormatError for a malformed header, and
    TraceValueError for unusable samples (these when the rows are read).
    """
    file_path = Path(path)
    if acc_unit not in _ACC_UNITS:
        raise TraceError(f"acc_unit must be one of {sorted(_ACC_UNITS)}, got {acc_unit!r}")
    if not (isinstance(block_s, int | float) and math.isfinite(block_s) and block_s > 0):
        raise TraceError("block_s must be a positive number of seconds")
    comments: dict[str, str] = {}
    with open(file_path, encoding="utf-8", newline="") as f:
        line_no = 0
        while True:
            raw = f.readline()
            line_no += 1
            if not raw:
                raise TraceFormatError(f"CSV {file_path} has no header row (it is empty)")
            text = raw.strip()
            if not text:
                continue
            if text.startswith("#"):
                key, sep, value = text[1:].partition("=")
                if sep and key.strip() in _KNOWN_KEYS:
                    comments[key.strip()] = value.strip()
                continue
            break
        columns = tuple(c.strip().lower() for c in text.split(","))
        data_start = f.tell()
        first_rows = list(itertools.islice(f, 256))
    _check_columns(columns, file_path)

    rate_text = comments.get("sample_rate_hz")
    comment_rate = None
    if sample_rate_hz is not None:
        comment_rate = check_rate("CSV", sample_rate_hz)
    elif rate_text is not None:
        try:
            comment_rate = check_rate("CSV", float(rate_text))
        except ValueError:
            raise TraceRateError(
                f"CSV {file_path}: sample_rate_hz comment {rate_text!r} is not a number"
            ) from None

    start = start_utc if start_utc is not None else comments.get("start_utc")
    start_s = None if start is None else _parse_start(start, file_path)
    tz_text = tz_offset_min if tz_offset_min is not None else comments.get("tz_offset_min", 0)
    try:
        tz = int(tz_text)
    except (TypeError, ValueError):
        raise TraceError(f"CSV {file_path}: tz_offset_min must be whole minutes") from None

    time_col = "timestamp" if "timestamp" in columns else "time_s" if "time_s" in columns else None
    if time_col == "time_s" and start_s is None:
        raise TraceTimestampError(
            f"CSV {file_path} has a time_s column (seconds from the start) but no start time; "
            "add a '# start_utc=...' comment or pass start_utc"
        )
    rate = comment_rate
    if time_col is not None:
        if not first_rows:
            raise TraceValueError(f"CSV {file_path} has a header but no data rows")
        sample = _parse_rows(first_rows, len(columns), line_no + 1, file_path)
        times = sample[:, columns.index(time_col)]
        _check_times(times, None, None, line_no + 1, file_path)
        if len(times) < 2:
            if rate is None:
                raise TraceRateError(
                    f"CSV {file_path}: one row cannot give a sample rate; add a "
                    "'# sample_rate_hz=...' comment"
                )
        else:
            # six significant digits: 1 / 0.04 s is 25 Hz, not 24.999999999999996
            derived = check_rate(
                "CSV timestamp", float(f"{1.0 / float(np.median(np.diff(times))):.6g}")
            )
            if rate is not None and abs(derived - rate) > _RATE_TOLERANCE * rate:
                raise TraceRateError(
                    f"CSV {file_path}: the stated sample rate {rate:g} Hz disagrees with the "
                    f"timestamps ({derived:.4g} Hz); fix or remove one of them"
                )
            rate = derived if rate is None else rate
        time_origin = 0.0 if time_col == "timestamp" else float(start_s)  # type: ignore[arg-type]
        start_s = time_origin + float(times[0])
    else:
        time_origin = 0.0
    if rate is None:
        raise TraceRateError(
            f"CSV {file_path} gives no sample rate: add a '# sample_rate_hz=25' comment before "
            "the header row, a timestamp column, or pass sample_rate_hz"
        )
    if start_s is None:
        raise TraceTimestampError(
            f"CSV {file_path} gives no start time: add a '# start_utc=2026-01-01T08:00:00Z' "
            "comment, a timestamp column, or pass start_utc"
        )
    absent = []
    if "ax" not in columns:
        absent.append("acc")
    if "ppg" not in columns:
        absent.append("ppg")
    if "skin_temp_c" not in columns:
        absent.append("skin_temp")
    absent += ["battery", "gnss"]
    metadata = TraceMetadata(
        acc_hz=rate,
        ppg_hz=rate,
        start_utc=start_s,
        tz_offset_min=tz,
        source="csv",
        absent_channels=tuple(absent),
    )
    return CsvRecording(
        path=file_path,
        metadata=metadata,
        columns=columns,
        acc_scale=_ACC_UNITS[acc_unit],
        block_s=float(block_s),
        data_start=data_start,
        data_line=line_no + 1,
        time_origin=time_origin,
    )


def import_csv(
    csv_path: str | os.PathLike[str],
    trace_path: str | os.PathLike[str],
    **options: Any,
) -> TraceMetadata:
    """Convert a CSV recording into a trace file (options as :func:`open_csv`).

    On a bad row the partial trace is removed, so no half-imported trace is left behind.
    """
    recording = open_csv(csv_path, **options)
    writer = TraceWriter(trace_path, recording.metadata)
    try:
        for block in recording.blocks():
            writer.write(block)
    except BaseException:
        writer.__exit__(TraceError, None, None)
        Path(trace_path).unlink(missing_ok=True)
        raise
    writer.close()
    return recording.metadata


# --------------------------------------------------------------------------- helpers


def _check_columns(columns: tuple[str, ...], path: Path) -> None:
    if len(set(columns)) != len(columns):
        raise TraceFormatError(f"CSV {path}: the header row repeats a column name")
    acc = [c for c in ("ax", "ay", "az") if c in columns]
    if acc and len(acc) != 3:
        raise TraceFormatError(
            f"CSV {path}: acceleration needs all of ax, ay, az (found only {', '.join(acc)})"
        )
    if not acc and "ppg" not in columns:
        raise TraceFormatError(
            f"CSV {path}: no sensor columns; the header row needs ppg and/or ax, ay, az "
            f"(found {', '.join(columns)})"
        )
    if "timestamp" in columns and "time_s" in columns:
        raise TraceFormatError(f"CSV {path}: give either a timestamp or a time_s column, not both")


def _parse_start(value: float | str, path: Path) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise TraceTimestampError(
                    f"CSV {path}: start_utc {text!r} is neither UTC seconds nor ISO 8601"
                ) from None
            if parsed.tzinfo is None:
                raise TraceTimestampError(
                    f"CSV {path}: start_utc {text!r} has no time zone; write it in UTC with a "
                    "trailing Z (the local offset goes in tz_offset_min)"
                ) from None
            seconds = parsed.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise TraceTimestampError(f"CSV {path}: start_utc must be finite UTC seconds >= 0")
    return seconds


def _parse_rows(
    lines: list[str], ncols: int, first_line: int, path: Path
) -> npt.NDArray[np.float64]:
    try:
        data = np.loadtxt(io.StringIO("".join(lines)), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise TraceValueError(
            f"CSV {path}: unreadable row between lines {first_line} and "
            f"{first_line + len(lines) - 1} ({exc}); every field must be a number"
        ) from None
    if data.size and data.shape[1] != ncols:
        raise TraceValueError(
            f"CSV {path}: rows from line {first_line} have {data.shape[1]} fields, the header "
            f"has {ncols}"
        )
    return data


def _check_values(
    data: npt.NDArray[np.float64], columns: tuple[str, ...], first_line: int, path: Path
) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        row, c = (int(i[0]) for i in np.nonzero(bad))
        raise TraceValueError(
            f"CSV {path}: NaN or infinite value in column {columns[c]} at line "
            f"{first_line + row}; fill or drop the gap before importing"
        )


def _check_times(
    times: npt.NDArray[np.float64],
    prev: float | None,
    rate: float | None,
    first_line: int,
    path: Path,
) -> None:
    if not np.isfinite(times).all():
        raise TraceValueError(f"CSV {path}: a timestamp is NaN or infinite near line {first_line}")
    steps = np.diff(times if prev is None else np.concatenate(([prev], times)))
    offset = first_line if prev is None else first_line - 1
    backwards = np.flatnonzero(steps <= 0)
    if backwards.size:
        raise TraceTimestampError(
            f"CSV {path}: timestamps do not increase at line {offset + int(backwards[0]) + 1}; "
            "sort the rows and remove duplicates"
        )
    if rate is not None and steps.size:
        period = 1.0 / rate
        off = np.flatnonzero(np.abs(steps - period) > 0.25 * period)
        if off.size:
            raise TraceTimestampError(
                f"CSV {path}: sampling is not steady at line {offset + int(off[0]) + 1} (a gap "
                f"or jitter beyond a quarter sample at {rate:g} Hz); split the file at gaps"
            )
