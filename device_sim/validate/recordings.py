"""Real recordings kept with their references (tests/data/<name>/, see its README.md).

Each folder has ``recording.csv`` (the importer's CSV), one or more reference files and a
``manifest.json``::

    {"kind": "ppg" | "acc" | "ppg+acc", "activity": "rest" | "walk" | ...,
     "import_options": {...open_csv keywords...},
     "reference": {"rr" | "hr" | "steps" | "sleep": "<file name>"},
     "reference_method": "ecg" | "heartpy" | ...}

:func:`validate_folder` takes one folder through the CSV import, the firmware and the
comparison, as ``bench/real_recordings.py`` and the tests do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from device_sim.trace.csv_import import open_csv
from device_sim.validate.compare import ValidationReport, run_firmware, validate
from device_sim.validate.reference import Reference, ValidateError, read_labels


@dataclass(frozen=True)
class RecordingFolder:
    """One real recording with its references, as its manifest describes it."""

    path: Path
    name: str
    kind: str
    activity: str
    import_options: dict[str, Any]
    references: dict[str, str]
    reference_method: str

    @property
    def csv(self) -> Path:
        return self.path / "recording.csv"


def load_folder(path: str | Path) -> RecordingFolder:
    """Read a recording folder's manifest (ValidateError if it is unusable)."""
    p = Path(path)
    try:
        m = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        return RecordingFolder(
            path=p,
            name=p.name,
            kind=str(m["kind"]),
            activity=str(m.get("activity", "")),
            import_options=dict(m.get("import_options", {})),
            references={str(k): str(v) for k, v in m["reference"].items()},
            reference_method=str(m.get("reference_method", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValidateError(
            f"{p}/manifest.json is missing or unusable ({exc.__class__.__name__}); "
            "see tests/data/README.md for its fields"
        ) from None


def find_folders(root: str | Path) -> list[RecordingFolder]:
    """Every recording folder under ``root`` (those with a manifest), by name."""
    return [load_folder(m.parent) for m in sorted(Path(root).glob("*/manifest.json"))]


def validate_folder(
    folder: RecordingFolder, csv_path: Path | None = None, **import_options: Any
) -> ValidationReport:
    """Import the folder's recording (or ``csv_path``, the same recording in another
    form), run the firmware over it and score it against the folder's references."""
    options = {**folder.import_options, **import_options}
    recording = open_csv(csv_path or folder.csv, **options)
    run = run_firmware(recording.blocks())
    ref = Reference()
    for file_name in folder.references.values():
        ref.merge(read_labels(folder.path / file_name, recording.metadata.start_utc))
    return validate(run, ref)


def resample_fft(x: npt.NDArray[np.float64], n_out: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling of a whole signal to ``n_out`` samples (its spectrum cut or
    zero-padded). The straight line from the first to the last sample is taken out first
    and put back after, so that the two ends do not wrap into each other."""
    n_in = len(x)
    spectrum = np.fft.rfft(x - np.linspace(x[0], x[-1], n_in))
    out = np.zeros(n_out // 2 + 1, dtype=complex)
    k = min(len(spectrum), len(out))
    out[:k] = spectrum[:k]
    y = np.fft.irfft(out, n_out) * (n_out / n_in)
    return np.asarray(y + np.linspace(x[0], x[-1], n_out), dtype=np.float64)


def write_resampled(folder: RecordingFolder, hz: int, path: Path) -> Path:
    """The folder's recording resampled to ``hz`` (whole seconds kept), as a CSV at
    ``path``: the same signal at another rate, to test what the rate changes."""
    lines = folder.csv.read_text(encoding="utf-8").splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    rate = next(float(c.split("=", 1)[1]) for c in comments if "sample_rate_hz" in c)
    data = np.array([[float(v) for v in ln.split(",")] for ln in body[1:]], dtype=np.float64)
    n_out = math.floor(len(data) / rate) * hz
    cols = np.stack([resample_fft(data[:, i], n_out) for i in range(data.shape[1])], axis=1)
    head = [c for c in comments if "sample_rate_hz" not in c] + [f"# sample_rate_hz={hz}"]
    rows = "\n".join(",".join(f"{v:.6g}" for v in row) for row in cols)
    path.write_text("\n".join([*head, body[0], rows]) + "\n", encoding="utf-8")
    return path
