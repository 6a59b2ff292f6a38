"""Read an ActiGraph .gt3x file (GT3X+, wGT3X-BT, GT9X, CentrePoint), through pygt3x.

pygt3x is ActiGraph's own reader. A .gt3x file is a zip of ``info.txt`` (rate, start,
time zone, acceleration scale) and ``log.bin`` (one record a second of raw acceleration);
pygt3x decodes the records and applies the device's calibration, giving acceleration in g
with gravity. Timestamps are the device's local time; the file's ``TimeZone`` gives the
offset from UTC unless ``--tz-offset-min`` says otherwise. Seconds in idle sleep mode hold
the last sample repeated, as ActiLife shows them. Needs the optional ``formats`` extra:
``pip install 'kmeband[formats]'``. The serial number is never read into the trace.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.trace.format import TraceFormatError
from device_sim.trace.importer import (
    ImportOptions,
    RawRecording,
    Series,
    TraceExtraMissingError,
)

_ZONE = re.compile(r"^(-)?(\d{1,2}):(\d{2})(?::\d{2})?$")


def _pygt3x_reader() -> Any:
    try:
        from pygt3x.reader import FileReader
    except ImportError:
        raise TraceExtraMissingError(
            "reading ActiGraph .gt3x files needs pygt3x: pip install 'kmeband[formats]'"
        ) from None
    # pygt3x logs every odd record at WARNING; the import report says what matters
    logging.getLogger("pygt3x").setLevel(logging.ERROR)
    return FileReader


def read_gt3x(path: Path, options: ImportOptions) -> RawRecording:
    """The calibrated accelerometer channel of a .gt3x file."""
    file_reader = _pygt3x_reader()
    source = f"ActiGraph GT3X {path.name}"
    try:
        with file_reader(str(path)) as reader:
            samples = np.asarray(reader.acceleration, dtype=np.float64)
            if not len(samples):
                raise TraceFormatError(f"{source} holds no acceleration samples")
            acc = np.asarray(reader.calibrate_acceleration(samples[:, 1:4]), dtype=np.float64)
            rate = float(reader.info.sample_rate)
            zone = reader.info.timezone
            idle = int(np.count_nonzero(samples[:, 4]))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise TraceFormatError(
            f"{source} is not a readable .gt3x file ({exc.__class__.__name__}); if it is "
            "another format, name it with --format"
        ) from None
    tz = options.tz_offset_min
    if tz is None:
        tz = _zone_minutes(zone)
    recording = RawRecording(source=source, tz_offset_min=tz)
    if tz is None:
        recording.notes.append("no time zone in the file: local times read as UTC")
    if idle:
        recording.notes.append(f"{idle} samples in idle sleep mode (the last sample repeated)")
    # the local timestamps, sample by sample, made UTC
    times = samples[:, 0] - 60.0 * (tz or 0)
    recording.acc = Series(
        values=acc,
        times=times,
        rate_hz=rate,
        unit="g",
        unit_from="format",
        lines=np.arange(len(acc), dtype=np.int64) + 1,
    )
    return recording


def _zone_minutes(text: str | None) -> int | None:
    match = _ZONE.match((text or "").strip())
    if match is None:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    return -minutes if match.group(1) else minutes
