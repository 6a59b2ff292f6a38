"""Real recordings kept with their references (tests/data/<name>/, see its README.md).

Each folder has ``recording.csv`` (the importer's CSV), one or more reference files and a
``manifest.json``::

    {"kind": "ppg" | "acc" | "ppg+acc", "activity": "rest" | "walk" | ...,
     "import_options": {...ImportOptions fields, e.g. "rate_hz": 100...},
     "reference": {"rr" | "hr" | "steps" | "sleep": "<file name>"},
     "reference_method": "ecg" | "heartpy" | ...}

:func:`validate_folder` takes one folder through the CSV import, the firmware and the
comparison, as ``bench/real_recordings.py`` and the tests do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim.trace.importer import ImportOptions, open_recording
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
    options = ImportOptions(**{**folder.import_options, **import_options})
    recording = open_recording(csv_path or folder.csv, options)
    run = run_firmware(recording.blocks())
    ref = Reference()
    for file_name in folder.references.values():
        ref.merge(read_labels(folder.path / file_name, recording.metadata.start_utc))
    return validate(run, ref)
