"""``kmeband report``: one PNG per band, from an ingest store or from a trace.

From a store (``--db``): the bands of one account (``--account-token``) or of every account.
From a trace (``--trace``): the trace is replayed through the firmware first and its
records drawn as one band. Exit codes: 0 written, 1 nothing to draw, 2 usage or matplotlib
missing, 3 the database, account or trace does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from protocol.errors import KmebandError, UsageError
from protocol.kme.records import StoredRecord

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3


class ReportInputNotFoundError(KmebandError):
    """The database, the account or the trace named on the command line does not exist."""

    exit_code = EXIT_NOT_FOUND


class MatplotlibMissingError(UsageError):
    """The report needs the optional matplotlib extra."""


def store_records(db: Path, token: str | None) -> list[tuple[bytes, StoredRecord]]:
    """The records of one account (by its bearer token) or of every account in ``db``."""
    from cloud_ingest.store import IngestStore
    from kmeband.report import records_from_store

    if not db.is_file():
        raise ReportInputNotFoundError(f"no ingest database at {db}; check --db")
    store = IngestStore(db)
    try:
        if token is not None:
            account = store.account_for_token(token)
            if account is None:
                raise ReportInputNotFoundError("no account with that token in the database")
            accounts = [account]
        else:
            accounts = store.account_ids()
        return [pair for a in accounts for pair in records_from_store(store, a)]
    finally:
        store.close()


def trace_records(trace: Path) -> list[tuple[bytes, StoredRecord]]:
    """A trace replayed through the firmware, as the records of one band named after it."""
    from device_sim.trace.cli import replay_blocks
    from device_sim.trace.format import TraceReader

    if not trace.is_file():
        raise ReportInputNotFoundError(f"no trace at {trace}; record one with 'kmeband record'")
    label = trace.name.encode()
    return [(label, r) for r in replay_blocks(TraceReader(trace).sensor_blocks())]


def draw(records: Iterable[tuple[bytes, StoredRecord]], out_dir: Path) -> list[Path]:
    from kmeband.report import ReportUnavailable, draw_reports

    try:
        return draw_reports(records, out_dir)
    except ReportUnavailable as exc:
        raise MatplotlibMissingError(str(exc)) from None


#: The account token may come from the environment instead of the command line, where
#: every other user of the machine can read it (``ps``).
TOKEN_ENV = "KMEBAND_ACCOUNT_TOKEN"


def run(args: argparse.Namespace) -> int:
    if args.account_token is None and args.db is not None:
        args.account_token = os.environ.get(TOKEN_ENV) or None
    if (args.db is None) == (args.trace is None):
        raise UsageError("give either --db (an ingest database) or --trace (a trace file)")
    if args.trace is not None and args.account_token is not None:
        raise UsageError("--account-token goes with --db, not with --trace")
    records = (
        trace_records(args.trace)
        if args.trace is not None
        else store_records(args.db, args.account_token)
    )
    paths = draw(records, args.out_dir) if records else []
    data: dict[str, Any] = {"reports": [str(p) for p in paths], "records": len(records)}
    if args.json:
        print(json.dumps(data))
    elif paths:
        print("\n".join(f"report: {p}" for p in paths))
    else:
        print("no records to draw")
    return EXIT_OK if paths else EXIT_NOTHING


def register(subparsers: Any) -> None:
    """Add ``report`` to the project's CLI."""
    p = subparsers.add_parser(
        "report",
        help="draw a PNG per band (hypnogram, heart rate, steps per hour, alarm events)",
        description=(
            "Draw one PNG per band from an ingest database (--db; one account with "
            "--account-token, else every account) or from a trace (--trace; replayed "
            "through the firmware first). Needs matplotlib: pip install 'kmeband[report]'. "
            "File names are digests, never identifiers."
        ),
    )
    p.add_argument("--db", type=Path, default=None, help="the ingest's SQLite database")
    p.add_argument(
        "--account-token",
        default=None,
        help=f"only this account's bands (or set {TOKEN_ENV}, which other users cannot see)",
    )
    p.add_argument("--trace", type=Path, default=None, help="a trace file to replay and draw")
    p.add_argument("--out-dir", type=Path, default=Path("kmeband-reports"), help="where PNGs go")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)
