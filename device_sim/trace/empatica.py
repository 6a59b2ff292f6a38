"""Read an Empatica E4 export: the folder (or its zip) of ACC.csv, BVP.csv and TEMP.csv.

This is the layout of E4 Connect downloads and of the PPG-DaLiA and WESAD datasets. Each
file's first row is the session start (Unix UTC seconds, repeated per column), its second
row the sample rate in Hz, then one sample per row: ACC x, y, z in 1/64 g at 32 Hz, BVP
(the PPG) at 64 Hz, TEMP in °C at 4 Hz. Other files (EDA, HR, IBI, tags) are not read.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from device_sim.trace.format import TraceFormatError
from device_sim.trace.importer import ImportOptions, RawRecording, Series

#: E4 accelerometer counts per g (its ±2 g range in 8 bits).
E4_COUNTS_PER_G = 64.0
_FILES = ("ACC.csv", "BVP.csv", "TEMP.csv")


def read_e4(path: Path, options: ImportOptions) -> RawRecording:
    """The ACC, BVP and TEMP channels of an E4 folder or zip (at least ACC or BVP)."""
    source = f"Empatica E4 {path.name}"
    texts = _zip_texts(path) if path.is_file() else _folder_texts(path)
    if not texts.keys() & {"ACC.csv", "BVP.csv"}:
        raise TraceFormatError(
            f"{source} has neither ACC.csv nor BVP.csv; point kmeband at the E4 folder or zip"
        )
    recording = RawRecording(source=source, tz_offset_min=options.tz_offset_min)
    for name, text in texts.items():
        series = _series(text, f"{source}/{name}", 3 if name == "ACC.csv" else 1)
        if name == "ACC.csv":
            series.unit, series.unit_from, series.scale = "1/64 g", "format", 1 / E4_COUNTS_PER_G
            recording.acc = series
        elif name == "BVP.csv":
            recording.ppg = series
        else:
            recording.skin_temp = series
    recording.notes.append("E4 times are UTC; the wearer's offset comes from --tz-offset-min")
    return recording


def _folder_texts(path: Path) -> dict[str, str]:
    return {n: (path / n).read_text(encoding="utf-8") for n in _FILES if (path / n).exists()}


def _zip_texts(path: Path) -> dict[str, str]:
    texts = {}
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            name = Path(member).name
            if name in _FILES and name not in texts:
                texts[name] = z.read(member).decode("utf-8")
    return texts


def _series(text: str, where: str, width: int) -> Series:
    try:
        data = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise TraceFormatError(
            f"{where} is not an E4 file (start row, rate row, then numbers): {exc}"
        ) from None
    if data.shape[0] < 3 or data.shape[1] != width:
        raise TraceFormatError(
            f"{where} is not an E4 file: expected {width} column(s) and at least a start row, "
            "a rate row and one sample"
        )
    start, rate = float(data[0, 0]), float(data[1, 0])
    values = data[2:]
    keep = np.isfinite(values).all(axis=1)
    index = np.flatnonzero(keep)
    return Series(
        values=values[keep],
        start=start,
        rate_hz=rate,
        lines=index + 3,
        index=None if keep.all() else index,
        dropped=int((~keep).sum()),
    )
