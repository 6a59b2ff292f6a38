"""Read an ActiGraph raw CSV export (ActiLife "Export raw data" of a GT3X/GT9X/wGT3X file).

The file opens with ActiLife's ten-line header::

    ------------ Data File Created By ActiGraph GT3X+ ActiLife v6.13.4 Firmware v3.2.1
      date format M/d/yyyy at 30 Hz  Filter Normal -----------   (one line)
    Serial Number: ...
    Start Time 10:00:00
    Start Date 5/23/2017
    Epoch Period (hh:mm:ss) 00:00:00
    ...
    --------------------------------------------------

then a column row (``Accelerometer X,Accelerometer Y,Accelerometer Z``, optionally with a
``Timestamp`` first) and samples in g at the rate in the first line. The start is the
device's local time: ``--tz-offset-min`` gives its offset from UTC (UTC when not given).
Epoch-count exports (a non-zero Epoch Period) hold no raw signal and are refused. The serial
number is never read into the trace.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import numpy as np

from device_sim.trace.format import TraceFormatError, TraceRateError
from device_sim.trace.importer import ImportOptions, RawRecording, Series

HEADER_LINES = 10
_RATE = re.compile(r"at\s+([0-9]+(?:\.[0-9]+)?)\s*Hz", re.IGNORECASE)
_DATE_FORMAT = re.compile(r"date format\s+(\S+)", re.IGNORECASE)
_FIELD = re.compile(r"^(Start Time|Start Date|Epoch Period \(hh:mm:ss\))\s+(\S+)")


def read_actigraph_csv(path: Path, options: ImportOptions) -> RawRecording:
    """The accelerometer channel of an ActiGraph raw CSV export."""
    source = f"ActiGraph CSV {path.name}"
    with open(path, encoding="utf-8-sig") as f:
        head = [f.readline() for _ in range(HEADER_LINES + 1)]
        body = f.read()
    fields = {m.group(1): m.group(2) for line in head if (m := _FIELD.match(line.strip()))}
    if fields.get("Epoch Period (hh:mm:ss)", "00:00:00") != "00:00:00":
        raise TraceFormatError(
            f"{source} holds epoch counts, not raw acceleration; export the raw data from "
            "ActiLife (File > Export > raw CSV, no epochs) and import that"
        )
    rate_match = _RATE.search(head[0])
    rate = options.rate_hz
    if rate is None:
        if rate_match is None:
            raise TraceRateError(f"{source}: the header gives no rate ('at N Hz'); give --rate")
        rate = float(rate_match.group(1))
    tz = options.tz_offset_min
    start = None  # --start, when given, replaces the header's (see importer.build)
    if options.start is None:
        if "Start Time" not in fields or "Start Date" not in fields:
            raise TraceFormatError(
                f"{source}: the ActiLife header has no Start Time/Start Date line; give the "
                "start with --start"
            )
        fmt_match = _DATE_FORMAT.search(head[0])
        start_local = _parse_date(
            fields["Start Date"], fmt_match.group(1) if fmt_match else "M/d/yyyy", source
        ) + _parse_clock(fields["Start Time"], source)
        start = (start_local - dt.timedelta(minutes=tz or 0)).replace(tzinfo=dt.UTC).timestamp()
    columns = [c.strip().lower() for c in head[HEADER_LINES].split(",")]
    try:
        axes = [columns.index(f"accelerometer {a}") for a in "xyz"]
    except ValueError:
        raise TraceFormatError(
            f"{source}: no Accelerometer X/Y/Z columns after the header; import it as a plain "
            "CSV with --format csv and --columns"
        ) from None
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", usecols=axes, ndmin=2)
    except ValueError as exc:
        raise TraceFormatError(f"{source}: unreadable sample row ({exc})") from None
    recording = RawRecording(source=source, tz_offset_min=tz)
    recording.acc = Series(
        values=data,
        start=start,
        rate_hz=rate,
        unit="g",
        unit_from="format",
        lines=np.arange(len(data), dtype=np.int64) + HEADER_LINES + 2,
    )
    if tz is None and options.start is None:
        recording.notes.append("start read as UTC (ActiLife writes local time: --tz-offset-min)")
    return recording


def _parse_date(text: str, fmt: str, source: str) -> dt.datetime:
    """A date in ActiLife's .NET-style format (M/d/yyyy, dd.MM.yyyy, yyyy-MM-dd...)."""
    order = [c for c in re.sub(r"[^dMy]+", " ", fmt).split()]
    parts = re.split(r"[^0-9]+", text.strip())
    try:
        values = {token[0]: int(value) for token, value in zip(order, parts, strict=True)}
        return dt.datetime(values["y"], values["M"], values["d"])
    except (KeyError, ValueError):
        raise TraceFormatError(
            f"{source}: Start Date {text!r} does not match the header's date format {fmt}; "
            "give the start with --start"
        ) from None


def _parse_clock(text: str, source: str) -> dt.timedelta:
    try:
        h, m, s = (float(p) for p in text.split(":"))
    except ValueError:
        raise TraceFormatError(f"{source}: Start Time {text!r} is not hh:mm:ss") from None
    return dt.timedelta(hours=h, minutes=m, seconds=s)
