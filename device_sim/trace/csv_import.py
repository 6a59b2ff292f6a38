"""Read delimited text recordings (CSV, TSV, semicolon or space separated) into raw channels.

What a logger app, a study or a spreadsheet writes is accepted as it is (docs/traces.md):
the delimiter is sniffed; a header row is optional (without one, the layout is inferred
or named with ``--columns``); column names are matched loosely (``PPG``, ``bvp``,
``acc_x``, ``Accelerometer X [m/s^2]``, ``timestamp_ms``...) and a unit in brackets is
used; a time column may be seconds, milliseconds, microseconds or nanoseconds (since the
Unix epoch, or since ``--start``) or ISO 8601 datetimes; other columns, of any type, are
ignored; an empty or non-finite value is a missing sample of its channel. ``#`` comment
lines before the header may give ``sample_rate_hz``, ``start_utc``, ``tz_offset_min`` and
``acc_unit``. Timing, resampling, units and gravity are then handled by
:mod:`device_sim.trace.importer`, the same for every format.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from device_sim.trace.format import TraceFormatError, TraceRateError, TraceTimestampError
from device_sim.trace.importer import (
    ImportOptions,
    RawRecording,
    Series,
    normalise_unit,
    parse_utc,
)
from device_sim.trace.resample import MAX_INPUT_HZ, MIN_INPUT_HZ

F64 = npt.NDArray[np.float64]

ROLES = ("time", "ppg", "ax", "ay", "az", "skin_temp_c")
_ALIASES: dict[str, tuple[str, ...]] = {
    "time": (
        "time", "timestamp", "t", "ts", "datetime", "date_time", "unix_time", "unixtime",
        "epoch", "utc", "time_utc", "timestamp_utc", "seconds", "seconds_elapsed", "elapsed",
        "elapsed_time", "time_s", "time_ms", "time_us", "time_ns", "timestamp_s",
        "timestamp_ms", "timestamp_us", "timestamp_ns", "unix_timestamp", "loggingtime",
    ),
    "ppg": ("ppg", "bvp", "pleth", "ppg_green", "green", "ppg_raw", "raw_ppg", "ppg0", "ppg_1"),
    "skin_temp_c": ("skin_temp_c", "skin_temp", "temp", "temperature", "skin_temperature"),
}  # fmt: skip
_ACC_NAME = re.compile(
    r"^(?:acc|accel|accelerometer|acceleration|raw_acc|acc_raw|a)?_?([xyz])(?:_?axis)?(?:_g)?$"
)
_UNIT_IN_NAME = re.compile(r"\s*[\[(]([^\])]*)[\])]\s*$")
_TIME_FACTORS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_TIME_SUFFIX = re.compile(r"_(s|ms|us|ns)$")
_COMMENT_KEYS = {
    "sample_rate_hz": "rate",
    "rate_hz": "rate",
    "rate": "rate",
    "start_utc": "start",
    "start": "start",
    "tz_offset_min": "tz",
    "acc_unit": "acc_unit",
}
_EPOCH_AFTER_S = 1e8  # 1973: smaller times count from the start of the recording
_SNIFF_ROWS = 50
_LAYOUT_ROWS = 2000
_CHUNK_ROWS = 65536  # rows parsed at a time: a long file is never held as text


def read_csv(path: Path, options: ImportOptions) -> RawRecording:
    """The channels of a delimited text recording (see the module docstring)."""
    source = f"CSV {path.name}"
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return _read(f, source, options)
    except UnicodeDecodeError:
        raise TraceFormatError(
            f"{source} is not UTF-8 text; if it is a device's binary file, name its format "
            "with --format (e4, actigraph, edf)"
        ) from None


def _data_lines(f: IO[str], comments: dict[str, str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each data line; ``#`` lines before the first one fill
    ``comments``, blank and ``#`` lines later are skipped."""
    preamble = True
    for number, line in enumerate(f, 1):
        text = line.strip()
        if not text:
            continue
        if text[0] == "#":
            key, sep, value = text.lstrip("#").partition("=")
            if preamble and sep and key.strip().lower() in _COMMENT_KEYS:
                comments[_COMMENT_KEYS[key.strip().lower()]] = value.strip()
            continue
        preamble = False
        yield number, line.rstrip("\r\n")


def _read(f: IO[str], source: str, options: ImportOptions) -> RawRecording:
    comments: dict[str, str] = {}
    data = _data_lines(f, comments)
    head = list(itertools.islice(data, _LAYOUT_ROWS + 1))
    if not head:
        raise TraceFormatError(f"{source} holds no rows")
    delimiter = _sniff([text for _, text in head[:_SNIFF_ROWS]])
    rows = _split([text for _, text in head], delimiter)
    width = max(len(r) for r in rows[:_SNIFF_ROWS])
    header = rows[0] if _is_header(rows[0]) else None
    if header is not None:
        head, rows = head[1:], rows[1:]
    if not rows:
        raise TraceFormatError(f"{source} has a header row but no data rows")
    notes: list[str] = []
    units: dict[str, str] = {}
    if options.columns is not None:
        names = [c.strip().lower() for c in options.columns]
        roles = {name: i for i, name in enumerate(names) if name in ROLES}
        if not roles.keys() & {"ppg", "ax"}:
            raise TraceFormatError(
                f"--columns names no sensor column; use the names {', '.join(ROLES)} (any "
                "other name skips that column), e.g. --columns time,ppg,ax,ay,az"
            )
    elif header is not None:
        roles, units = roles_from_header(header, source)
    else:
        roles = _infer_layout(rows[:_LAYOUT_ROWS], width, source)
        layout = ",".join(sorted(roles, key=roles.__getitem__))
        notes.append(f"no header row: columns read as {layout} (name them with --columns)")
    if ("ax" in roles) != ("ay" in roles) or ("ax" in roles) != ("az" in roles):
        found = ", ".join(r for r in ("ax", "ay", "az") if r in roles)
        raise TraceFormatError(
            f"{source}: acceleration needs three axes, found only {found}; name the columns "
            "with --columns (e.g. --columns time,ppg,ax,ay,az)"
        )
    if not roles.keys() & {"ppg", "ax"}:
        names_found = ", ".join(header) if header is not None else f"{width} unnamed"
        raise TraceFormatError(
            f"{source}: no sensor columns (ppg and/or ax, ay, az) among {names_found}; name "
            "them with --columns, e.g. --columns time,ppg,ax,ay,az (other names are skipped)"
        )

    tz = options.tz_offset_min
    if tz is None and "tz" in comments:
        try:
            tz = int(comments["tz"])
            if not -1080 <= tz <= 1080:
                raise ValueError
        except ValueError:
            raise TraceTimestampError(
                f"{source}: the tz_offset_min comment {comments['tz']!r} is not whole "
                "minutes from -1080 to 1080; fix it or give --tz-offset-min"
            ) from None
    decimal_comma = delimiter == ";"
    iso = "time" in roles and _is_iso(
        rows[0][roles["time"]] if roles["time"] < len(rows[0]) else ""
    )
    zone = dt.timezone(dt.timedelta(minutes=tz or 0))
    parts: dict[str, list[F64]] = {role: [] for role in roles}
    line_parts: list[npt.NDArray[np.int64]] = []
    while head:
        lines = np.fromiter((n for n, _ in head), dtype=np.int64, count=len(head))
        for role, index in roles.items():
            if role == "time" and iso:
                parts[role].append(_iso_times(rows, index, lines, source, zone))
            else:
                parts[role].append(_numbers(rows, index, role, lines, source, decimal_comma))
        line_parts.append(lines)
        head = list(itertools.islice(data, _CHUNK_ROWS))
        rows = _split([text for _, text in head], delimiter)
    line_numbers = np.concatenate(line_parts)
    columns = {role: np.concatenate(p) for role, p in parts.items()}
    start_text = options.start if options.start is not None else comments.get("start")
    start = None if start_text is None else parse_utc(start_text, "--start", tz)
    rate = None
    if options.rate_hz is None and "rate" in comments:
        try:
            rate = float(comments["rate"])
        except ValueError:
            raise TraceRateError(
                f"{source}: the sample_rate_hz comment {comments['rate']!r} is not a number; "
                "fix it or give --rate"
            ) from None
        if not MIN_INPUT_HZ <= rate <= MAX_INPUT_HZ:
            raise TraceRateError(
                f"{source}: the sample_rate_hz comment says {rate:g} Hz; kmeband imports "
                f"{MIN_INPUT_HZ:g} to {MAX_INPUT_HZ:g} Hz. Fix it or give --rate"
            )
    times = None
    if "time" in roles:
        name = header[roles["time"]] if header is not None else "time"
        raw_times = columns.pop("time")
        times = raw_times if iso else _times(raw_times, name, options, start, source)
        if options.start is not None and times[0] >= _EPOCH_AFTER_S and start is not None:
            notes.append("--start ignored: the time column holds absolute times")
    elif start is None:
        raise TraceTimestampError(
            f"{source} has no time column and no start time; give the start with --start "
            "(UTC seconds or ISO 8601, e.g. 2026-01-01T08:00:00Z), or name the time column "
            "with --columns"
        )
    acc_unit = units.get("ax") or (
        normalise_unit(comments["acc_unit"]) if "acc_unit" in comments else None
    )
    recording = RawRecording(source=source, tz_offset_min=tz, notes=notes)
    if "ax" in columns:
        values = np.column_stack([columns["ax"], columns["ay"], columns["az"]])
        recording.acc = _series(values, times, start, rate, line_numbers)
        recording.acc.unit = acc_unit
        recording.acc.unit_from = "header" if "ax" in units else "comment"
    if "ppg" in columns:
        recording.ppg = _series(columns["ppg"][:, None], times, start, rate, line_numbers)
    if "skin_temp_c" in columns:
        recording.skin_temp = _series(
            columns["skin_temp_c"][:, None], times, start, rate, line_numbers
        )
    for name in ("acc", "ppg"):
        series = getattr(recording, name)
        if series is not None and len(series.values) == 0:
            notes.append(f"the {name} column(s) hold no values: {name} treated as absent")
            setattr(recording, name, None)
    return recording


def _series(
    values: F64,
    times: F64 | None,
    start: float | None,
    rate: float | None,
    lines: npt.NDArray[np.int64],
) -> Series:
    """One channel's samples, leaving out rows where it is empty or not finite."""
    keep = np.isfinite(values).all(axis=1)
    if times is not None:
        keep &= np.isfinite(times)
    index = np.flatnonzero(keep)
    dropped = len(values) - len(index)
    return Series(
        values=values[keep],
        times=None if times is None else times[keep],
        start=start,
        rate_hz=rate,
        lines=lines[keep],
        index=index if dropped else None,
        dropped=dropped,
    )


def _sniff(lines: list[str]) -> str | None:
    """The delimiter that splits every sampled line into the same number (> 1) of fields;
    None for whitespace, and "," for a single column."""
    best: tuple[int, str | None] = (1, ",")
    for candidate in ("\t", ",", ";", "|", None):
        counts = {len(row) for row in _split(lines, candidate)}
        if len(counts) == 1 and (n := counts.pop()) > best[0]:
            best = (n, candidate)
    return best[1]


def _split(lines: list[str], delimiter: str | None) -> list[list[str]]:
    if delimiter is None:
        return [line.split() for line in lines]
    return [[f.strip() for f in row] for row in csv.reader(lines, delimiter=delimiter)]


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_header(row: list[str]) -> bool:
    return any(f and not _is_number(f) and not _is_datetime(f) for f in row)


def roles_from_header(header: list[str], source: str) -> tuple[dict[str, int], dict[str, str]]:
    roles: dict[str, int] = {}
    units: dict[str, str] = {}
    for i, raw_name in enumerate(header):
        name = raw_name.strip().lower()
        unit = None
        if m := _UNIT_IN_NAME.search(name):
            unit, name = m.group(1), name[: m.start()]
        key = re.sub(r"[^a-z0-9]+", "_", name).strip("_")
        role = next((r for r, names in _ALIASES.items() if key in names), None)
        if role is None and (m := _ACC_NAME.match(key)):
            role = "a" + m.group(1)
        if role is None or role in roles:
            continue  # the first column with a role wins; the rest are ignored
        roles[role] = i
        if role.startswith("a") and unit is not None and (acc := normalise_unit(unit)):
            units[role] = acc
        if role == "time":
            time_unit = unit if unit in _TIME_FACTORS else None
            if time_unit is None and (m := _TIME_SUFFIX.search(key)):
                time_unit = m.group(1)
            if time_unit is not None:
                units["time"] = time_unit
    return roles, units


def _infer_layout(rows: list[list[str]], width: int, source: str) -> dict[str, int]:
    first = rows[0]
    time_first = _is_datetime(first[0]) and not _is_number(first[0])
    if not time_first and len(rows) >= 20 and width > 1:
        try:
            col = np.array([float(r[0]) for r in rows])
        except (ValueError, IndexError):
            col = np.zeros(1)
        time_first = bool(np.all(np.diff(col) >= 0) and col[-1] > col[0])
    rest = width - 1 if time_first else width
    layouts = {
        1: ("ppg",),
        3: ("ax", "ay", "az"),
        4: ("ppg", "ax", "ay", "az"),
        5: ("ppg", "ax", "ay", "az", "skin_temp_c"),
    }
    if rest not in layouts:
        raise TraceFormatError(
            f"{source} has no header row and {width} columns, a layout kmeband cannot guess; "
            "name them with --columns, e.g. --columns time,ppg,ax,ay,az (other names skip a "
            "column)"
        )
    offset = 1 if time_first else 0
    roles = {role: i + offset for i, role in enumerate(layouts[rest])}
    if time_first:
        roles["time"] = 0
    return roles


def _numbers(
    rows: list[list[str]],
    index: int,
    role: str,
    lines: npt.NDArray[np.int64],
    source: str,
    decimal_comma: bool,
) -> F64:
    fields = [r[index] if index < len(r) else "" for r in rows]
    if decimal_comma:
        fields = [f.replace(",", ".") for f in fields]
    cleaned = [f if f else "nan" for f in fields]
    try:
        return np.asarray(cleaned, dtype=np.str_).astype(np.float64)
    except ValueError:
        for i, f in enumerate(cleaned):
            try:
                float(f)
            except ValueError:
                raise TraceFormatError(
                    f"{source}: line {lines[i]}, column {role}: {f[:20]!r} is not a number; "
                    "fix the row, or name the columns with --columns if this is not "
                    f"the {role} column"
                ) from None
        raise


def _is_iso(text: str) -> bool:
    return not _is_number(text) and _is_datetime(text)


def _iso_times(
    rows: list[list[str]],
    index: int,
    lines: npt.NDArray[np.int64],
    source: str,
    zone: dt.timezone,
) -> F64:
    """ISO 8601 times as UTC seconds; a time without a zone is local time in ``zone``."""
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        text = row[index] if index < len(row) else ""
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise TraceTimestampError(
                f"{source}: line {lines[i]}: time {text[:40]!r} is not ISO 8601 like the rows "
                "before it; fix the row"
            ) from None
        out[i] = (when if when.tzinfo else when.replace(tzinfo=zone)).timestamp()
    return out


def _times(
    values: F64,
    name: str,
    options: ImportOptions,
    start: float | None,
    source: str,
) -> F64:
    """A numeric time column as UTC seconds (its unit given or detected)."""
    unit = options.time_unit
    if unit == "auto":
        unit = _time_unit_from_name(name) or _time_unit_from_steps(values, source)
    seconds = values * _TIME_FACTORS[unit]
    finite = seconds[np.isfinite(seconds)]
    if finite.size and float(np.median(finite)) >= _EPOCH_AFTER_S:
        return seconds
    if start is None:
        raise TraceTimestampError(
            f"{source}: the time column counts from the start of the recording (it is not "
            "Unix time); give the start with --start (UTC seconds or ISO 8601, e.g. "
            "2026-01-01T08:00:00Z)"
        )
    return seconds + start


def _time_unit_from_name(name: str) -> str | None:
    _roles, units = roles_from_header([name], "")
    return units.get("time")


def _time_unit_from_steps(values: F64, source: str) -> str:
    sample = values[: _LAYOUT_ROWS * 5]
    sample = sample[np.isfinite(sample)]
    step = (sample[-1] - sample[0]) / (len(sample) - 1) if len(sample) > 1 else 0.0
    for unit, factor in _TIME_FACTORS.items():
        if step > 0 and MIN_INPUT_HZ / 1.5 <= 1.0 / (step * factor) <= MAX_INPUT_HZ * 1.5:
            return unit
    raise TraceTimestampError(
        f"{source}: the time column steps by {step:.4g} on average, which is no sample rate "
        f"from {MIN_INPUT_HZ:g} Hz to {MAX_INPUT_HZ:g} Hz in s, ms, us or ns; give its unit "
        "with --time-unit, or skip it with --columns and give --rate"
    )
