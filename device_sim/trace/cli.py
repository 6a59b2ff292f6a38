"""``kmeband record`` and ``kmeband replay``: sensor traces for QA.

``record`` runs a seeded person model and the band's sensor models for a span and writes a
trace file (with truth). ``replay`` feeds a trace (or a CSV recording) through the
firmware, deterministically, and writes the records it emits as JSON: one object per
record, ``{"stream", "seq", "type", "fields"}``, one per line, keys sorted. The same trace
always gives byte-identical output, so the output can be a golden file; ``--compare``
checks a replay against one and prints a readable summary of the differences.

Exit codes: 0 done (and equal to the golden file), 1 the records differ from the golden
file, 2 usage or a bad trace, 3 the trace or golden file does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import enum
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_sim.band.battery import Battery, BatteryLoad
from device_sim.band.firmware.core import Firmware
from device_sim.clock import AcceleratedClock
from device_sim.person.physiology import PRESETS, Person
from device_sim.person.sensors import SensorModel
from device_sim.signals import SensorBlock
from device_sim.trace.format import TraceMetadata, TraceWriter
from device_sim.trace.importer import (
    ACC_UNITS,
    FORMATS,
    GRAVITY,
    TIME_UNITS,
    ImportOptions,
    ImportReport,
    import_recording,
    open_recording,
)
from protocol.errors import KmebandError, UsageError
from protocol.kme.records import Record, StoredRecord, StreamId

#: 2026-01-01T00:00:00Z: a fixed default start, so a recording never depends on the wall clock.
DEFAULT_START_UTC = 1_767_225_600.0
#: Differences listed by ``--compare`` before it only counts the rest.
MAX_LISTED_DIFFERENCES = 10

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3


class TraceFileNotFoundError(KmebandError):
    """A trace, CSV or golden file named on the command line does not exist."""

    exit_code = EXIT_NOT_FOUND


# ----------------------------------------------------------------------------- record


@dataclass(frozen=True)
class RecordOptions:
    """What ``record`` simulates: whose life, from when, for how long, at which rates."""

    scenario: str = "default_day"
    seed: int = 0
    start_utc: float = DEFAULT_START_UTC
    duration_s: int = 3600
    tz_offset_min: int = 0
    acc_hz: float = 25.0
    ppg_hz: float = 25.0
    block_s: int = 60
    location: bool = True  # location consent: GNSS fixes outdoors
    truth: bool = True

    def __post_init__(self) -> None:
        if self.scenario not in PRESETS:
            raise UsageError(f"unknown scenario; choose one of: {', '.join(sorted(PRESETS))}")
        if self.duration_s <= 0:
            raise UsageError("the span to record must be positive (--hours or --minutes)")
        if self.block_s <= 0:
            raise UsageError("--block-s must be a positive number of seconds")


def record_trace(path: Path, options: RecordOptions) -> TraceMetadata:
    """Simulate ``options`` and write the sensor blocks (and truth) to a trace at ``path``."""
    start = int(options.start_utc)
    person = Person.from_preset(
        options.scenario, seed=options.seed, start_utc=start, tz_offset_min=options.tz_offset_min
    )
    sensors = SensorModel(options.seed, acc_hz=options.acc_hz, ppg_hz=options.ppg_hz)
    battery = Battery()
    metadata = TraceMetadata(
        acc_hz=sensors.acc_hz,
        ppg_hz=sensors.ppg_hz,
        start_utc=float(start),
        tz_offset_min=options.tz_offset_min,
        has_truth=options.truth,
        seed=options.seed,
        scenario=options.scenario,
        source="simulated",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with TraceWriter(path, metadata) as writer:
        t, end = start, start + options.duration_s
        while t < end:
            span = min(options.block_s, end - t)
            truth = person.truth(t, span)
            block = sensors.render(
                truth, person, gnss_allowed=options.location, battery_v=battery.voltage
            )
            writer.write(block, truth if options.truth else None)
            gnss_on = block.gnss is not None and len(block.gnss) > 0
            battery.advance(span, BatteryLoad(acc_hz=options.acc_hz, gnss_on=gnss_on))
            t += span
    return metadata


# ----------------------------------------------------------------------------- replay


class RecordCollector:
    """A firmware record sink that keeps every record with its per-stream sequence number."""

    def __init__(self) -> None:
        self.records: list[StoredRecord] = []
        self._next: Counter[StreamId] = Counter()

    def append(self, stream: StreamId, record: Record) -> int:
        self._next[stream] += 1
        seq = self._next[stream]  # numbered from 1, as the band's flash numbers them
        self.records.append(StoredRecord(stream, seq, record))
        return seq


def replay_blocks(blocks: Iterable[SensorBlock]) -> list[StoredRecord]:
    """Run the firmware over ``blocks`` as fast as possible; the records it emits, in order."""
    collector = RecordCollector()
    firmware = Firmware(collector)
    for block in blocks:
        firmware.process(block)
    firmware.flush()
    return collector.records


async def replay_paced(blocks: Iterable[SensorBlock], speed: float) -> list[StoredRecord]:
    """Like :func:`replay_blocks`, handing each block over when it has been "recorded":
    at its end, on an :class:`AcceleratedClock` running ``speed`` times real time."""
    collector = RecordCollector()
    firmware = Firmware(collector)
    clock: AcceleratedClock | None = None
    for block in blocks:
        if clock is None:
            clock = AcceleratedClock(speed, start=block.t0)
        await clock.sleep_until(block.t0 + block.duration_s)
        firmware.process(block)
    firmware.flush()
    return collector.records


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name.lower()
    return value


def record_to_json(stored: StoredRecord) -> dict[str, Any]:
    """One record as a JSON object: stream, sequence number, record type and fields."""
    fields = {
        f.name: _plain(getattr(stored.record, f.name)) for f in dataclasses.fields(stored.record)
    }
    return {
        "stream": stored.stream.name.lower(),
        "seq": stored.seq,
        "type": type(stored.record).__name__,
        "fields": fields,
    }


def records_json(records: Iterable[StoredRecord]) -> bytes:
    """The records file: a JSON array with one object per line (diff-friendly, canonical)."""
    lines = [json.dumps(record_to_json(r), sort_keys=True, separators=(",", ":")) for r in records]
    body = ",\n".join(lines)
    return (f"[\n{body}\n]\n" if lines else "[]\n").encode()


def load_records_json(path: Path) -> list[dict[str, Any]]:
    """Read a records file written by :func:`records_json` (e.g. a golden file)."""
    if not path.exists():
        raise TraceFileNotFoundError(f"the golden file {path} does not exist; check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a records JSON file ({exc.__class__.__name__})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UsageError(f"{path} is not a records JSON file (expected an array of objects)")
    return data


def compare_records(got: list[dict[str, Any]], golden: list[dict[str, Any]]) -> list[str]:
    """A readable summary of how ``got`` differs from ``golden``; empty when they are equal."""
    if got == golden:
        return []
    lines: list[str] = []
    count_got = Counter(r.get("stream") for r in got)
    count_golden = Counter(r.get("stream") for r in golden)
    for stream in sorted(set(count_got) | set(count_golden), key=str):
        if count_got[stream] != count_golden[stream]:
            lines.append(f"{stream}: {count_golden[stream]} golden, {count_got[stream]} replayed")
    by_key_got = {(r.get("stream"), r.get("seq")): r for r in got}
    by_key_golden = {(r.get("stream"), r.get("seq")): r for r in golden}
    differing = []
    for key in sorted(set(by_key_got) | set(by_key_golden), key=str):
        a, b = by_key_golden.get(key), by_key_got.get(key)
        if a != b:
            differing.append((key, a, b))
    for (stream, seq), a, b in differing[:MAX_LISTED_DIFFERENCES]:
        if a is None:
            lines.append(f"{stream} #{seq}: only in the replay")
        elif b is None:
            lines.append(f"{stream} #{seq}: only in the golden file")
        else:
            fa, fb = a.get("fields", {}), b.get("fields", {})
            changed = [
                f"{name} {fa.get(name)!r} -> {fb.get(name)!r}"
                for name in sorted(set(fa) | set(fb))
                if fa.get(name) != fb.get(name)
            ]
            lines.append(f"{stream} #{seq}: " + (", ".join(changed) or "type differs"))
    if len(differing) > MAX_LISTED_DIFFERENCES:
        lines.append(f"... and {len(differing) - MAX_LISTED_DIFFERENCES} more differing records")
    if not lines:
        lines.append("the same records in a different order")
    return lines


# ----------------------------------------------------------------------------- command line


def _parse_start(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--start {text!r} is neither UTC seconds nor ISO 8601 (2026-01-01T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise UsageError("--start needs a time zone (end it with Z or +01:00)")
    return when.timestamp()


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


def run_record(args: argparse.Namespace) -> int:
    if args.hours is not None and args.minutes is not None:
        raise UsageError("give --hours or --minutes, not both")
    if args.minutes is not None:
        span_s = round(args.minutes * 60)
    else:
        span_s = round((1.0 if args.hours is None else args.hours) * 3600)
    options = RecordOptions(
        scenario=args.scenario,
        seed=args.seed,
        start_utc=_parse_start(args.start),
        duration_s=span_s,
        tz_offset_min=args.tz_offset_min,
        acc_hz=args.acc_hz,
        ppg_hz=args.ppg_hz,
        block_s=args.block_s,
        location=not args.no_location,
        truth=not args.no_truth,
    )
    metadata = record_trace(args.out, options)
    size = args.out.stat().st_size
    data = {
        "trace": str(args.out),
        "bytes": size,
        "seconds": span_s,
        "acc_hz": metadata.acc_hz,
        "ppg_hz": metadata.ppg_hz,
        "start_utc": metadata.start_utc,
        "scenario": metadata.scenario,
        "seed": metadata.seed,
        "truth": metadata.has_truth,
    }
    _emit(
        args,
        data,
        f"recorded {span_s} s of {options.scenario} (seed {options.seed}) "
        f"to {args.out} ({size} bytes)",
    )
    return EXIT_OK


def import_options(args: argparse.Namespace) -> ImportOptions:
    """The import options given on the command line (the same for ``import`` and ``replay``)."""
    return ImportOptions(
        format=args.format,
        rate_hz=args.rate,
        start=args.start,
        tz_offset_min=args.tz_offset_min,
        time_unit=args.time_unit,
        columns=None if args.columns is None else tuple(args.columns.split(",")),
        acc_unit=args.acc_unit,
        gravity=args.gravity,
        resample_hz=args.resample_hz,
        gap_s=args.gap_s,
        ppg_invert=args.ppg_invert,
        block_s=args.block_s,
    )


def _require(path: Path) -> None:
    if not path.exists():
        raise TraceFileNotFoundError(
            f"{path} does not exist; record a trace with 'kmeband record', or give the path of "
            "a recording (CSV/TSV, Empatica E4 folder or zip, ActiGraph CSV or .gt3x, EDF)"
        )


def _report_lines(report: ImportReport | None) -> None:
    # what the import decided goes to stderr, so records on stdout stay clean
    for line in report.lines() if report is not None else ():
        print(f"kmeband: {line}", file=sys.stderr)


def run_import(args: argparse.Namespace) -> int:
    if args.out.resolve() == args.input.resolve():
        raise UsageError("the trace to write must not be the input; give another OUT path")
    _require(args.input)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metadata, report = import_recording(args.input, args.out, import_options(args))
    size = args.out.stat().st_size
    data: dict[str, Any] = {
        "trace": str(args.out),
        "bytes": size,
        "acc_hz": metadata.acc_hz,
        "ppg_hz": metadata.ppg_hz,
        "start_utc": metadata.start_utc,
        "absent_channels": list(metadata.absent_channels),
        "import": None if report is None else report.to_dict(),
    }
    if args.json:
        _emit(args, data, "")
    else:
        _report_lines(report)
        print(f"wrote {args.out} ({size} bytes)")
    return EXIT_OK


def run_replay(args: argparse.Namespace) -> int:
    if args.speed is not None and not args.speed > 0:
        raise UsageError("--speed must be a positive factor (e.g. 3600)")
    _require(args.trace)
    recording = open_recording(args.trace, import_options(args))
    if not args.json:
        _report_lines(recording.report)
    blocks = recording.blocks()
    golden = load_records_json(args.compare) if args.compare is not None else None
    records = (
        replay_blocks(blocks)
        if args.speed is None
        else asyncio.run(replay_paced(blocks, args.speed))
    )
    output = records_json(records)
    if args.out is not None:
        if str(args.out) == "-":
            sys.stdout.write(output.decode())
            return _compare_quietly(output, golden)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(output)
    streams = Counter(r.stream.name.lower() for r in records)
    data: dict[str, Any] = {"records": len(records), "streams": dict(sorted(streams.items()))}
    if recording.report is not None:
        data["import"] = recording.report.to_dict()
    if args.out is not None:
        data["out"] = str(args.out)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(streams.items())) or "no records"
    if golden is None:
        _emit(args, data, f"{len(records)} records: {summary}")
        return EXIT_OK
    differences = compare_records(json.loads(output), golden)
    data["equal"] = not differences
    data["differences"] = differences
    if differences:
        _emit(args, data, "records differ from the golden file:\n  " + "\n  ".join(differences))
        return EXIT_DIFFERENT
    _emit(args, data, f"{len(records)} records, identical to {args.compare}")
    return EXIT_OK


def _compare_quietly(output: bytes, golden: list[dict[str, Any]] | None) -> int:
    # the records went to stdout: the differences go to stderr
    if golden is None:
        return EXIT_OK
    differences = compare_records(json.loads(output), golden)
    for line in differences:
        print(f"kmeband replay: {line}", file=sys.stderr)
    return EXIT_DIFFERENT if differences else EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``record``, ``replay`` and ``import`` to the project's CLI."""
    p = subparsers.add_parser(
        "record",
        help="simulate a band's sensors for a span and write a trace file (with truth)",
        description=(
            "Run a seeded person model and the band's sensor models and write the raw sensor "
            "blocks, with ground truth, to a trace file (format: docs/traces.md). The same "
            "options always give a byte-identical file."
        ),
    )
    p.add_argument("out", type=Path, help="the trace file to write (e.g. day.kmetrace)")
    p.add_argument("--scenario", default="default_day", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0, help="person and sensor seed (default 0)")
    p.add_argument(
        "--start",
        default=str(int(DEFAULT_START_UTC)),
        help="UTC start: seconds or ISO 8601 with a zone (default 2026-01-01T00:00:00Z)",
    )
    p.add_argument("--hours", type=float, default=None, help="span in hours (default 1)")
    p.add_argument("--minutes", type=float, default=None, help="span in minutes")
    p.add_argument("--tz-offset-min", type=int, default=0, help="the wearer's UTC offset")
    p.add_argument("--acc-hz", type=float, default=25.0, help="accelerometer rate (12.5..100)")
    p.add_argument("--ppg-hz", type=float, default=25.0, help="PPG rate (10..100)")
    p.add_argument("--block-s", type=int, default=60, help="seconds per block (default 60)")
    p.add_argument("--no-location", action="store_true", help="record without location consent")
    p.add_argument("--no-truth", action="store_true", help="leave the ground truth out")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_record)

    p = subparsers.add_parser(
        "replay",
        help="replay a trace through the firmware; write or compare its records",
        description=(
            "Feed a trace (or a CSV recording with --csv) through the firmware and write the "
            "records it emits as JSON (--out). The same trace gives byte-identical output. "
            "--compare exits 1 with a summary when the records differ from a golden file."
        ),
    )
    p.add_argument(
        "trace", type=Path, help="a trace, or a recording to import on the fly (as 'import')"
    )
    p.add_argument("--out", type=Path, help="write the records here as JSON ('-': stdout)")
    p.add_argument("--compare", type=Path, help="a golden records file to compare with")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="pace blocks at this many times real time (default: as fast as possible)",
    )
    add_import_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_replay)

    p = subparsers.add_parser(
        "import",
        help="import a real device's or study's recording as a trace",
        description=(
            "Read a recording (CSV/TSV with or without a header, an Empatica E4 folder or zip, "
            "an ActiGraph raw CSV export or .gt3x, EDF/EDF+), resample it onto whole-Hz rates "
            "on whole UTC seconds, convert acceleration to g with gravity, keep gaps as gaps, "
            "and write a trace (docs/traces.md). Prints what was detected and done. 'replay' "
            "accepts the same inputs and options."
        ),
    )
    p.add_argument("input", type=Path, help="the recording (file, E4 folder or zip, or a trace)")
    p.add_argument("out", type=Path, help="the trace file to write (e.g. walk.kmetrace)")
    add_import_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object with the report")
    p.set_defaults(handler=run_import)


def add_import_options(p: argparse.ArgumentParser) -> None:
    """The options that say how to read a recording: the same for ``import`` and ``replay``."""
    g = p.add_argument_group("reading a recording (docs/traces.md)")
    g.add_argument("--format", choices=FORMATS, default="auto", help="input format (detected)")
    g.add_argument("--rate", type=float, default=None, help="sample rate in Hz of untimed rows")
    g.add_argument(
        "--start",
        "--csv-start",
        default=None,
        help="start: UTC seconds or ISO 8601 (zone-less: local at --tz-offset-min)",
    )
    g.add_argument(
        "--tz-offset-min",
        "--csv-tz-offset-min",
        type=int,
        default=None,
        help="the wearer's UTC offset in minutes; zone-less times are local at this offset",
    )
    g.add_argument("--time-unit", choices=TIME_UNITS, default="auto", help="time column unit")
    g.add_argument(
        "--columns",
        default=None,
        help="name the columns (CSV) or signals (EDF) in order: time,ppg,ax,ay,az,"
        "skin_temp_c; any other name skips one",
    )
    g.add_argument(
        "--acc-unit", choices=("auto", *ACC_UNITS), default="auto", help="acceleration unit"
    )
    g.add_argument(
        "--gravity", choices=GRAVITY, default="auto", help="whether acceleration includes gravity"
    )
    g.add_argument("--resample-hz", type=int, default=None, help="store both channels at this rate")
    g.add_argument(
        "--gap-s", type=float, default=1.0, help="a pause longer than this is a gap (default 1)"
    )
    g.add_argument("--ppg-invert", action="store_true", help="the PPG rises with light (invert)")
    g.add_argument("--block-s", type=int, default=60, help="seconds per block (default 60)")
    # --csv was needed before the format was detected; it is accepted and changes nothing
    g.add_argument("--csv", action="store_true", help=argparse.SUPPRESS)
