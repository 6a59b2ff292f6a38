"""``kmeband fleet run``: registers the subcommand, prints progress and the summary table."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from kmeband.demo_cli import ProgressBars
from kmeband.fleet.engine import DEFAULT_MIX, ENGINES, FleetResult, FleetSpec, cpu_count, run_fleet
from kmeband.fleet.schedule import ArrivalPattern, parse_mix
from kmeband.fleet.worker import Faults
from protocol.errors import UsageError

#: Fault kinds ``--faults`` accepts (name=rate).
FAULT_KINDS = ("link-drop",)


def parse_faults(text: str) -> Faults:
    """``link-drop=0.05`` -> :class:`Faults` (rates within 0..1)."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in FAULT_KINDS:
            raise UsageError(
                f"unknown fault {name!r} in --faults; the fleet injects: {', '.join(FAULT_KINDS)}"
            )
        try:
            rate = float(value)
        except ValueError:
            raise UsageError(f"--faults {name} needs a rate, e.g. {name}=0.05") from None
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"the rate of {name} in --faults must be within 0..1")
        rates[name] = rate
    return Faults(link_drop=rates.get("link-drop", 0.0))


def register(subparsers: Any) -> None:
    fleet = subparsers.add_parser(
        "fleet",
        help="many simulated bands, each with its own phone, syncing into an ingest",
        description="Load-test an ingest with a fleet of simulated bands; see docs/fleet.md.",
    )
    commands = fleet.add_subparsers(dest="fleet_command", metavar="FLEET_COMMAND")
    run_p = commands.add_parser(
        "run",
        help="run a fleet and check the ingest holds every record exactly once",
        description=(
            "Simulate N bands for D days, each with its own seeded person, firmware, phone, "
            "pairing, activation, consent history and sync schedule; sync every band through "
            "the real protocol path (GATT record sync on the simulated radio, the sync "
            "client's outbox, HPKE sealing, HTTP upload) and check, per band and stream, that "
            "the ingest holds seqs 1..n exactly once (less what consent withheld)."
        ),
    )
    run_p.add_argument("--bands", type=int, required=True, help="how many bands")
    run_p.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    run_p.add_argument(
        "--scenario-mix",
        default=",".join(f"{n}={w:g}" for n, w in DEFAULT_MIX),
        help="person presets with weights, e.g. office_worker_week=3,athlete_week=1",
    )
    run_p.add_argument(
        "--faults", default="", help=f"fault rates per sync attempt: {', '.join(FAULT_KINDS)}=R"
    )
    run_p.add_argument(
        "--ingest",
        default="embedded",
        help="the ingest's URL, or 'embedded' (default: the reference ingest in this process)",
    )
    run_p.add_argument("--data-dir", type=Path, help="keep the embedded ingest's files here")
    run_p.add_argument(
        "--workers", type=int, default=cpu_count(), help="worker processes (default: cores)"
    )
    run_p.add_argument("--wave-size", type=int, default=8, help="bands a worker holds at once")
    run_p.add_argument("--engine", choices=ENGINES, default="local")
    run_p.add_argument("--seed", type=int, default=1)
    run_p.add_argument("--opens-per-day", type=float, default=4.0, help="app opens per day")
    run_p.add_argument(
        "--overnight", type=float, default=0.8, help="chance of an overnight sync on charge"
    )
    run_p.add_argument(
        "--withdraw", type=float, default=0.1, help="share of wearers who withdraw location"
    )
    run_p.add_argument("--json", action="store_true", help="print the summary as JSON")
    run_p.set_defaults(handler=run)
    fleet.set_defaults(handler=lambda _args: fleet.print_help())


def spec_from_args(args: argparse.Namespace) -> FleetSpec:
    return FleetSpec(
        bands=args.bands,
        days=args.days,
        seed=args.seed,
        workers=args.workers,
        wave_size=args.wave_size,
        mix=parse_mix(args.scenario_mix),
        pattern=ArrivalPattern(
            opens_per_day=args.opens_per_day,
            overnight_p=args.overnight,
            withdraw_p=args.withdraw,
        ),
        faults=parse_faults(args.faults),
        ingest_url=None if args.ingest == "embedded" else args.ingest,
        data_dir=args.data_dir,
        engine=args.engine,
    )


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    bars = None if args.json else ProgressBars(sys.stderr)

    def progress(done: int, total: int) -> None:
        if bars is not None:
            bars(f"fleet: {done}/{total} bands synced and checked", done / total)

    result = asyncio.run(run_fleet(spec, progress))
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print_table(result, sys.stdout)
    return 0 if result.ok else 1


def print_table(result: FleetResult, out: TextIO) -> None:
    s = result.summary()
    errors = ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "none"
    rows = [
        ("bands", f"{s['bands']} over {s['days']:g} day(s), {s['workers']} worker(s)"),
        ("records in the ingest", f"{s['records']} (withheld for consent: {s['withheld']})"),
        ("batches", str(s["batches"])),
        ("syncs completed", str(s["syncs"])),
        ("bytes on the air", str(s["air_bytes"])),
        ("bytes on the wire", str(s["wire_bytes"])),
        (
            "sync latency p50/p95/p99",
            f"{s['sync_latency_ms_p50']} / {s['sync_latency_ms_p95']} / "
            f"{s['sync_latency_ms_p99']} ms",
        ),
        ("errors (retried)", errors),
        ("lost", str(s["lost"])),
        ("duplicated", str(s["duplicated"])),
        ("unexpected", str(s["unexpected"])),
        ("throughput", f"{s['fleet_records_per_s']} records/s in {s['seconds']} s"),
        ("worker peak RSS", f"{s['worker_peak_rss_mb']} MB"),
    ]
    for name, value in rows:
        out.write(f"{name:<26} {value}\n")
    if result.ok:
        out.write("OK: every band's every stream is in the ingest exactly once\n")
    else:
        for index, stream in result.totals.problems[:20]:
            out.write(f"PROBLEM: band {index}, stream {stream}\n")
