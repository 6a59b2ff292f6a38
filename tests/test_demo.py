"""``kmeband demo`` end to end (one simulated day, to stay quick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmeband.demo import DemoError, prepare_data_dir, run_demo
from protocol.kme.records import StreamId

ROOT = Path(__file__).resolve().parents[1]


async def test_demo_day_lands_every_queued_record_once_and_honours_the_withdrawal(
    tmp_path: Path,
) -> None:
    steps: list[str] = []
    result = await run_demo(
        tmp_path / "demo", days=1.0, progress=lambda step, f: steps.append(step), report=False
    )
    assert result.ok, result.problems
    assert {r.band for r in result.rows} == {
        "band 1 (office_worker_week)",
        "band 2 (athlete_week)",
        "band 3 (shift_worker)",
    }
    for row in result.rows:
        assert row.in_ingest == row.synced
    activity = [r for r in result.rows if r.stream == StreamId.ACTIVITY_MINUTES]
    assert all(r.synced == 1439 for r in activity)
    withdrawing = {r.stream: r for r in result.rows if r.band.startswith("band 2")}
    assert withdrawing[StreamId.GNSS_FIXES].in_ingest == 0
    assert any(s.startswith("sync band") for s in steps)


def test_demo_refuses_to_empty_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="was not made by 'kmeband demo'"):
        prepare_data_dir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_command_prints_json_and_exits_zero(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kmeband.cli",
            "demo",
            "--days",
            "0.5",
            "--json",
            "--no-report",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] and len(result["rows"]) == 21
