"""Replaying the golden trace through the firmware gives the golden records, byte for byte.

When this fails after an intended change to the sensors or estimators, regenerate the
golden files as tests/golden/README.md says; otherwise the change is a regression.
"""

from __future__ import annotations

from pathlib import Path

from device_sim.trace.cli import (
    RecordOptions,
    compare_records,
    load_records_json,
    record_trace,
    records_json,
    replay_blocks,
)
from device_sim.trace.format import TraceReader

GOLDEN = Path(__file__).parent / "golden"
TRACE = GOLDEN / "walk-seed42.kmetrace"
RECORDS = GOLDEN / "walk-seed42.records.json"
# 2026-01-01T12:25:00Z, the options the README gives for regenerating the trace
OPTIONS = RecordOptions(seed=42, start_utc=1_767_270_300.0, duration_s=600)


def test_the_golden_trace_is_small() -> None:
    assert TRACE.stat().st_size < 300_000


def test_replaying_the_golden_trace_gives_the_golden_records() -> None:
    output = records_json(replay_blocks(TraceReader(TRACE).sensor_blocks()))
    if output != RECORDS.read_bytes():
        import json

        differences = compare_records(json.loads(output), load_records_json(RECORDS))
        raise AssertionError(
            "firmware records differ from tests/golden (regenerate only for an intended "
            "change, see tests/golden/README.md):\n  " + "\n  ".join(differences)
        )


def test_recording_again_gives_the_golden_trace(tmp_path: Path) -> None:
    path = tmp_path / "again.kmetrace"
    record_trace(path, OPTIONS)
    assert path.read_bytes() == TRACE.read_bytes()


def test_the_golden_records_cover_the_walk() -> None:
    records = load_records_json(RECORDS)
    minutes = [r["fields"] for r in records if r["stream"] == "activity_minutes"]
    assert len(minutes) == 10
    assert {m["activity_class"] for m in minutes} >= {"sedentary", "walk"}
    assert any(r["stream"] == "gnss_fixes" for r in records)
