"""Shards a fleet over local worker processes and adds up what they did.

The bands are cut into waves (``wave_size`` bands each); a pool of ``workers`` processes
(the ``spawn`` start method: nothing is inherited but the arguments) runs the waves, each
wave from creation to release, so a worker holds one wave at a time. With no ingest URL the
reference ingest runs embedded, in this process, on SQLite in a temporary (or given)
directory; the workers reach it over loopback HTTP like any phone would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmeband.fleet.accounting import (
    BandLedger,
    HeldByIngest,
    check_band,
    held_by_export,
    held_in_store,
)
from kmeband.fleet.schedule import ArrivalPattern
from kmeband.fleet.worker import Faults, WaveResult, WaveSpec, run_wave, warm_up
from protocol.errors import UsageError
from sync_client.activation import fetch_ingest_key

#: Engines ``kmeband fleet run --engine`` knows; only ``local`` is built.
ENGINES = ("local", "ray")
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("office_worker_week", 4.0),
    ("athlete_week", 1.0),
    ("shift_worker", 1.0),
    ("default_day", 2.0),
    ("insomnia", 1.0),
)


#: How long each worker's start-up task lingers, so that every worker gets one.
WARM_UP_S = 0.2


class EngineUnavailableError(UsageError):
    """The engine asked for is not built yet."""


@dataclass(frozen=True)
class FleetSpec:
    """What fleet to run, and where."""

    bands: int
    days: float = 1.0
    seed: int = 1
    workers: int = 1
    wave_size: int = 8
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    pattern: ArrivalPattern = field(default_factory=ArrivalPattern)
    faults: Faults = field(default_factory=Faults)
    #: None: the embedded ingest
    ingest_url: str | None = None
    data_dir: Path | None = None
    engine: str = "local"

    def __post_init__(self) -> None:
        if self.bands < 1:
            raise UsageError("a fleet needs at least one band (--bands 1 or more)")
        if self.days <= 0:
            raise UsageError("--days must be positive")
        if self.workers < 1 or self.wave_size < 1:
            raise UsageError("--workers and --wave-size must be 1 or more")
        if not 0.0 <= self.faults.link_drop <= 1.0:
            raise UsageError("a fault rate must be within 0..1")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}")
        if self.engine == "ray":
            raise EngineUnavailableError(
                "the Ray engine is not available yet: run the fleet with --engine local "
                "(worker processes on this machine)"
            )


@dataclass
class FleetResult:
    """The whole fleet's counts and the wall time of the run."""

    spec: FleetSpec
    totals: WaveResult
    #: wall seconds of the run: from the first wave handed out (to workers already
    #: started) to the last one done
    seconds: float
    #: wall seconds of the check after the run (not part of the throughput)
    check_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.totals.checked.ok

    def summary(self) -> dict[str, Any]:
        """The figures as one flat JSON-ready dict (no identifiers)."""
        t = self.totals
        p50, p95, p99 = percentiles(t.latencies_ms, (50, 95, 99))
        return {
            "bands": t.bands,
            "days": self.spec.days,
            "workers": self.spec.workers,
            "records": t.records,
            "batches": t.batches,
            "syncs": t.syncs,
            "air_bytes": t.air_bytes,
            "wire_bytes": t.wire_bytes,
            "sync_latency_ms_p50": round(p50, 1),
            "sync_latency_ms_p95": round(p95, 1),
            "sync_latency_ms_p99": round(p99, 1),
            "errors": dict(sorted(t.errors.items())),
            "made": t.checked.made,
            "withheld": t.checked.withheld,
            "lost": t.checked.lost,
            "duplicated": t.checked.duplicated,
            "unexpected": t.checked.unexpected,
            "seconds": round(self.seconds, 3),
            "check_seconds": round(self.check_seconds, 3),
            "fleet_records_per_s": round(t.records / self.seconds, 1) if self.seconds else 0.0,
            "worker_peak_rss_mb": round(t.peak_rss_kb / 1024, 1),
            "ok": self.ok,
        }


def percentiles(values: list[float], qs: tuple[float, ...]) -> tuple[float, ...]:
    """Nearest-rank percentiles of ``values`` (zeros when there are none)."""
    if not values:
        return tuple(0.0 for _ in qs)
    ordered = sorted(values)
    n = len(ordered)
    return tuple(ordered[min(n - 1, max(0, -(-int(q * n) // 100) - 1))] for q in qs)


Progress = Callable[[int, int], None]


def waves(spec: FleetSpec) -> list[tuple[int, ...]]:
    """The band indices of each wave: at most ``wave_size`` bands, and small enough that
    every worker gets a wave."""
    size = max(1, min(spec.wave_size, -(-spec.bands // spec.workers)))
    return [
        tuple(range(start, min(spec.bands, start + size))) for start in range(0, spec.bands, size)
    ]


async def run_fleet(spec: FleetSpec, progress: Progress | None = None) -> FleetResult:
    """Run the fleet (see the module docstring); ``progress(bands_done, bands)``."""
    if spec.ingest_url is not None:
        result = await _run(spec, spec.ingest_url, progress)
        started = time.perf_counter()
        for ledger in result.totals.ledgers:
            _account(result.totals, ledger, await held_by_export(ledger))
        result.check_seconds = time.perf_counter() - started
        return result
    from cloud_ingest.server import IngestServer

    directory = spec.data_dir or Path(tempfile.mkdtemp(prefix="kmeband-fleet-ingest-"))
    try:
        async with IngestServer(directory / "ingest.db", directory / "ingest-keys") as ingest:
            result = await _run(spec, ingest.url, progress)
            started = time.perf_counter()
            for ledger in result.totals.ledgers:
                _account(result.totals, ledger, held_in_store(ingest.store, ledger))
            result.check_seconds = time.perf_counter() - started
            return result
    finally:
        if spec.data_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def _account(totals: WaveResult, ledger: BandLedger, held: HeldByIngest) -> None:
    totals.batches += held.batches
    for stream, account in check_band(ledger, held):
        totals.add_account(ledger.index, stream, account)
        totals.records += account.held


async def _run(spec: FleetSpec, url: str, progress: Progress | None) -> FleetResult:
    key = await fetch_ingest_key(url)
    specs = [
        WaveSpec(url, key, indices, spec.days, spec.seed, spec.mix, spec.pattern, spec.faults)
        for indices in waves(spec)
    ]
    totals = WaveResult()
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(spec.workers, mp_context=context) as pool:
        # start every worker (a fresh interpreter importing kmeband) before the clock runs:
        # the figures are the fleet's work, not interpreter start-up
        await asyncio.gather(
            *(loop.run_in_executor(pool, warm_up, WARM_UP_S) for _ in range(spec.workers))
        )
        started = time.perf_counter()
        pending = {loop.run_in_executor(pool, run_wave, s) for s in specs}
        try:
            for done in asyncio.as_completed(pending):
                totals.merge(await done)
                if progress is not None:
                    progress(totals.bands, spec.bands)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return FleetResult(spec, totals, time.perf_counter() - started)


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
