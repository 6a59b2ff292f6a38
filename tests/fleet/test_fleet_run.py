"""A small fleet end to end: worker processes, link drops, consent withdrawals, accounting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kmeband.fleet.cli import parse_faults
from kmeband.fleet.engine import EngineUnavailableError, FleetSpec, run_fleet
from kmeband.fleet.schedule import ArrivalPattern
from kmeband.fleet.worker import Faults
from protocol.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


async def test_a_fleet_with_link_drops_lands_every_record_exactly_once() -> None:
    spec = FleetSpec(
        bands=6,
        days=0.5,
        seed=4,
        workers=2,
        wave_size=3,
        pattern=ArrivalPattern(opens_per_day=2, withdraw_p=0.5),
        faults=Faults(link_drop=0.3),
    )
    seen: list[int] = []
    result = await run_fleet(spec, lambda done, total: seen.append(done))
    s = result.summary()
    assert seen[-1] == 6 and s["bands"] == 6
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0, s
    assert result.totals.problems == []
    # the link drops really happened, and were retried to completion
    assert sum(s["errors"].values()) > 0
    assert s["records"] == s["made"] - s["withheld"] > 0
    assert s["syncs"] > 6 and s["batches"] > 0 and s["wire_bytes"] > 0
    assert 0 < s["sync_latency_ms_p50"] <= s["sync_latency_ms_p99"]


def test_fleet_command_prints_json(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kmeband.cli",
            "fleet",
            "run",
            "--bands",
            "2",
            "--days",
            "0.25",
            "--workers",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["bands"] == 2 and summary["lost"] == 0 and summary["duplicated"] == 0


def test_the_ray_engine_is_a_clear_typed_error() -> None:
    with pytest.raises(EngineUnavailableError, match="not available yet"):
        FleetSpec(bands=1, engine="ray")


def test_faults_are_parsed_and_unknown_ones_refused() -> None:
    assert parse_faults("link-drop=0.25") == Faults(link_drop=0.25)
    assert parse_faults("") == Faults()
    with pytest.raises(UsageError, match="unknown fault"):
        parse_faults("meteor=0.1")
    with pytest.raises(UsageError, match=r"within 0\.\.1"):
        parse_faults("link-drop=2")


async def test_a_fleet_against_an_ingest_url_is_checked_through_the_export(
    tmp_path: Path,
) -> None:
    from cloud_ingest.server import IngestServer

    async with IngestServer(tmp_path / "ingest.db", tmp_path / "keys") as ingest:
        spec = FleetSpec(bands=2, days=0.25, workers=1, ingest_url=ingest.url)
        result = await run_fleet(spec)
        assert ingest.store is not None
        stored = sum(
            len(segment.body.seqs)
            for account in ingest.store.account_ids()
            for segment in ingest.store.segments_of(account)
        )
    s = result.summary()
    assert s["records"] == stored > 0
    assert result.ok and s["lost"] == 0 and s["duplicated"] == 0
