"""``kmeband record`` and ``kmeband replay``: deterministic traces, records and golden checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device_sim.trace.format import TraceReader
from kmeband.cli import main

# 12:25 UTC on the default day of seed 42: desk work, then the lunch walk starts
START = "2026-01-01T12:25:00Z"


def record(path: Path, *extra: str, minutes: str = "3") -> int:
    return main(
        ["record", str(path), "--seed", "42", "--start", START, "--minutes", minutes, *extra]
    )


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "walk.kmetrace"
    assert record(path, minutes="10") == 0
    return path


def test_record_writes_a_trace_with_truth_and_the_asked_span(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = TraceReader(trace)
    assert reader.metadata.has_truth and reader.metadata.seed == 42
    assert reader.metadata.acc_hz == 25.0 and reader.metadata.scenario == "default_day"
    blocks = list(reader)
    assert sum(b.sensor.duration_s for b in blocks) == 600
    assert all(b.truth is not None for b in blocks)
    steps = sum(float(np.sum(b.truth.steps)) for b in blocks if b.truth is not None)
    assert steps > 100  # the walk has begun inside the span


def test_record_is_byte_identical_for_the_same_options(tmp_path: Path) -> None:
    assert record(tmp_path / "a.kmetrace", minutes="2") == 0
    assert record(tmp_path / "b.kmetrace", minutes="2") == 0
    assert record(tmp_path / "c.kmetrace", "--seed", "43", minutes="2") == 0
    a, b, c = (tmp_path / f"{n}.kmetrace" for n in "abc")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_record_json_and_no_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "n.kmetrace"
    assert record(path, "--no-truth", "--json", minutes="1") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["truth"] is False and out["seconds"] == 60 and out["bytes"] == path.stat().st_size
    assert not TraceReader(path).metadata.has_truth


def test_record_rejects_bad_spans_and_scenarios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["record", str(tmp_path / "x"), "--minutes", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["record", str(tmp_path / "x"), "--minutes", "1", "--hours", "1"]) == 2
    assert main(["record", str(tmp_path / "x"), "--start", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["record", str(tmp_path / "x"), "--scenario", "nope"])
    assert exc.value.code == 2


def test_replay_is_byte_identical_and_lists_every_record(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(trace), "--out", str(tmp_path / "1.json")]) == 0
    assert main(["replay", str(trace), "--out", str(tmp_path / "2.json"), "--json"]) == 0
    one, two = (tmp_path / "1.json").read_bytes(), (tmp_path / "2.json").read_bytes()
    assert one == two
    records = json.loads(one)
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["records"] == len(records)
    assert {r["stream"] for r in records} >= {"activity_minutes", "hr_samples"}
    minutes = [r["fields"] for r in records if r["stream"] == "activity_minutes"]
    assert len(minutes) == 10
    assert any(m["activity_class"] == "walk" and m["steps"] > 50 for m in minutes)
    for stream in {r["stream"] for r in records}:
        seqs = [r["seq"] for r in records if r["stream"] == stream]
        assert seqs == list(range(1, len(seqs) + 1))


def test_replay_paced_on_an_accelerated_clock_gives_the_same_records(
    trace: Path, tmp_path: Path
) -> None:
    assert main(["replay", str(trace), "--out", str(tmp_path / "fast.json")]) == 0
    assert main(["replay", str(trace), "--speed", "1e6", "--out", str(tmp_path / "p.json")]) == 0
    assert (tmp_path / "fast.json").read_bytes() == (tmp_path / "p.json").read_bytes()


def test_compare_passes_on_equal_and_summarises_differences(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = tmp_path / "golden.json"
    assert main(["replay", str(trace), "--out", str(golden)]) == 0
    assert main(["replay", str(trace), "--compare", str(golden)]) == 0
    assert "identical" in capsys.readouterr().out

    records = json.loads(golden.read_text())
    minute = next(r for r in records if r["stream"] == "activity_minutes" and r["seq"] == 3)
    minute["fields"]["steps"] += 7
    altered = [r for r in records if not (r["stream"] == "hr_samples" and r["seq"] == 2)]
    golden.write_text(json.dumps(altered))
    assert main(["replay", str(trace), "--compare", str(golden), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["equal"] is False
    text = "\n".join(report["differences"])
    assert "hr_samples #2: only in the replay" in text
    assert f"activity_minutes #3: steps {minute['fields']['steps']} -> " in text
    n_hr = sum(r["stream"] == "hr_samples" for r in records)
    assert f"hr_samples: {n_hr - 1} golden, {n_hr} replayed" in text


def test_replay_to_stdout(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(trace), "--out", "-"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["stream"] == "telemetry" and records[0]["fields"]["kind"] == "boot"


def test_replay_errors_have_exit_codes(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "missing.kmetrace")]) == 3
    assert "does not exist" in capsys.readouterr().err
    assert main(["replay", str(trace), "--compare", str(tmp_path / "missing.json")]) == 3
    assert main(["replay", str(trace), "--speed", "0"]) == 2
    cut = tmp_path / "cut.kmetrace"
    cut.write_bytes(trace.read_bytes()[:5000])
    assert main(["replay", str(cut)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_replay_imports_a_csv_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # two minutes of a still wrist with a 72 bpm pulse, at 25 Hz
    rate, n = 25, 25 * 120
    t = np.arange(n) / rate
    ppg = 50 + np.sin(2 * np.pi * 1.2 * t)
    rows = [f"{p:.4f},0.0,0.0,1.0" for p in ppg]
    csv = tmp_path / "rec.csv"
    csv.write_text("# start_utc=2026-01-01T08:00:00Z\nppg,ax,ay,az\n" + "\n".join(rows) + "\n")
    args = ["replay", str(csv), "--csv", "--rate", "25", "--out", str(tmp_path / "r.json")]
    assert main(args) == 0
    records = json.loads((tmp_path / "r.json").read_text())
    minutes = [r["fields"] for r in records if r["stream"] == "activity_minutes"]
    assert [m["start"] for m in minutes] == [1767254400, 1767254460]
    assert all(m["steps"] == 0 for m in minutes)
    assert main(["replay", str(csv), "--csv"]) == 2  # no rate
    assert "rate" in capsys.readouterr().err
