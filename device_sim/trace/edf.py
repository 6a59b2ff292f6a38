"""Read an EDF or EDF+ file (European Data Format), through pyedflib.

EDF is what polysomnography systems, many research wearables and PhysioNet datasets write.
Each signal has a label, a physical dimension and its own rate (fractional rates included);
signals are matched by label (``PPG``, ``Pleth``, ``BVP``; ``Acc X``/``Accelerometer X``
or ``X``...; ``Temp``), or named in order with ``--columns``. The accelerometer unit comes
from the physical dimension (g, mg, m/s^2). EDF start times are the recorder's local time:
``--tz-offset-min`` gives its offset from UTC (UTC when not given). Needs the optional
``formats`` extra: ``pip install 'kmeband[formats]'``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.trace.csv_import import ROLES, roles_from_header
from device_sim.trace.format import TraceFormatError
from device_sim.trace.importer import (
    ImportOptions,
    RawRecording,
    Series,
    TraceExtraMissingError,
    normalise_unit,
)


def _pyedflib() -> Any:
    try:
        import pyedflib
    except ImportError:
        raise TraceExtraMissingError(
            "reading EDF files needs pyedflib: pip install 'kmeband[formats]'"
        ) from None
    return pyedflib


def read_edf(path: Path, options: ImportOptions) -> RawRecording:
    """The PPG, accelerometer and skin temperature signals of an EDF/EDF+ file."""
    pyedflib = _pyedflib()
    source = f"EDF {path.name}"
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise TraceFormatError(f"{source} is not a readable EDF/EDF+ file ({exc})") from None
    try:
        labels = list(reader.getSignalLabels())
        if options.columns is not None:
            names = [c.strip().lower() for c in options.columns]
            roles = {n: i for i, n in enumerate(names) if n in ROLES and i < len(labels)}
        else:
            roles, _ = roles_from_header(labels, source)
        roles.pop("time", None)
        if not roles.keys() & {"ppg", "ax"} or ("ax" in roles and not {"ay", "az"} <= roles.keys()):
            raise TraceFormatError(
                f"{source}: no PPG or accelerometer signals among {len(labels)} signal(s) "
                f"labelled {', '.join(labels)}; name them in order with --columns, e.g. "
                "--columns ppg,ax,ay,az (other names skip a signal)"
            )
        tz = options.tz_offset_min
        local = reader.getStartdatetime()
        start = (local - dt.timedelta(minutes=tz or 0)).replace(tzinfo=dt.UTC).timestamp()
        recording = RawRecording(source=source, tz_offset_min=tz)
        if tz is None:
            recording.notes.append("start read as UTC (EDF writes local time: --tz-offset-min)")

        def signal(role: str) -> tuple[np.ndarray, float, str]:
            i = roles[role]
            return (
                np.asarray(reader.readSignal(i), dtype=np.float64),
                float(reader.getSampleFrequency(i)),
                str(reader.getPhysicalDimension(i)),
            )

        if "ax" in roles:
            axes = [signal(a) for a in ("ax", "ay", "az")]
            rates = {rate for _, rate, _ in axes}
            if len(rates) != 1:
                raise TraceFormatError(
                    f"{source}: the accelerometer axes have different rates; kmeband needs "
                    "one rate for x, y and z"
                )
            n = min(len(v) for v, _, _ in axes)
            unit = normalise_unit(axes[0][2])
            recording.acc = Series(
                values=np.column_stack([v[:n] for v, _, _ in axes]),
                start=start,
                rate_hz=rates.pop(),
                unit=unit,
                unit_from="EDF dimension" if unit else None,
            )
        if "ppg" in roles:
            values, rate, _ = signal("ppg")
            recording.ppg = Series(values=values[:, None], start=start, rate_hz=rate)
        if "skin_temp_c" in roles:
            values, rate, _ = signal("skin_temp_c")
            recording.skin_temp = Series(values=values[:, None], start=start, rate_hz=rate)
        return recording
    finally:
        reader.close()
