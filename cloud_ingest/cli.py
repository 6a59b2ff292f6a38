"""``kmeband ingest ...``: run the reference ingest and manage its accounts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from cloud_ingest.server import IngestConfig, IngestServer

log = logging.getLogger("cloud_ingest")

DEFAULT_DB = Path("kmeband-data/ingest.sqlite3")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ingest`` command and its subcommands to the console script."""
    ingest = subparsers.add_parser(
        "ingest", help="run the reference cloud ingest", description=__doc__
    )
    commands = ingest.add_subparsers(dest="ingest_command", metavar="SUBCOMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the ingest API over HTTP (SQLite file, HPKE keys beside it)",
        description=(
            "Serve the ingest API. The HPKE key pairs are created on first start in --key-dir "
            "(default: beside the database) with mode 0600; GET /v1/keys publishes them."
        ),
    )
    serve.add_argument("--db", type=Path, default=DEFAULT_DB, help="SQLite database file")
    serve.add_argument("--key-dir", type=Path, default=None, help="directory of the key files")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (0: any free port)")
    serve.add_argument(
        "--min-policy-version",
        type=int,
        default=IngestConfig.min_policy_version,
        help="refuse batches whose consent was given to an older privacy policy",
    )
    serve.add_argument(
        "--rate-per-band",
        type=float,
        default=IngestConfig.rate_per_band,
        help="batches per second each band may send (sustained)",
    )
    serve.set_defaults(handler=serve_command)
    ingest.set_defaults(handler=lambda args: _help(ingest))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def serve_command(args: Any) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    db: Path = args.db
    db.parent.mkdir(parents=True, exist_ok=True)
    key_dir = args.key_dir or db.parent / "ingest-keys"
    config = IngestConfig(
        min_policy_version=args.min_policy_version, rate_per_band=args.rate_per_band
    )
    asyncio.run(_serve(db, key_dir, args.host, args.port, config))
    return 0


async def _serve(db: Path, key_dir: Path, host: str, port: int, config: IngestConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Explicit handlers: a job started in the background by a script inherits SIGINT
    # ignored (so Python installs no KeyboardInterrupt handler), and SIGTERM would kill
    # the process without closing the store. Both now end the loop below cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with IngestServer(db, key_dir, host=host, port=port, config=config) as server:
            print(f"kmeband ingest serving on {server.url} (Ctrl-C to stop)", flush=True)
            await stop.wait()
            log.info("stopping: signal received")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("kmeband ingest stopped", flush=True)
