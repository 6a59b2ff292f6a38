"""``kmeband ingest ...``: run the reference ingest and manage its accounts."""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import signal
from pathlib import Path
from typing import Any

from cloud_ingest.server import IngestConfig, IngestServer
from protocol.errors import UsageError

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
    serve.add_argument(
        "--attestation-root",
        type=Path,
        default=None,
        help="file with the factory root public key (Ed25519: 32 raw bytes, or hex or "
        "base64url text) that must certify every registered band's key (default: the "
        "simulated KME factory root, docs/ingest.md)",
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
        min_policy_version=args.min_policy_version,
        rate_per_band=args.rate_per_band,
        attestation_root=(
            IngestConfig.attestation_root
            if args.attestation_root is None
            else load_attestation_root(args.attestation_root)
        ),
    )
    asyncio.run(_serve(db, key_dir, args.host, args.port, config))
    return 0


class AttestationRootError(UsageError):
    """The --attestation-root file does not hold an Ed25519 public key."""


def load_attestation_root(path: Path) -> bytes:
    """An Ed25519 public key from a file: 32 raw bytes, or 64 hex digits, or base64url."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AttestationRootError(
            f"cannot read the attestation root {path} ({exc.strerror}); give a readable file"
        ) from None
    if len(data) == 32:
        return data
    text = data.decode("ascii", "replace").strip()
    for decode in (bytes.fromhex, lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))):
        try:
            key = decode(text)
        except ValueError:
            continue
        if len(key) == 32:
            return key
    raise AttestationRootError(
        f"{path} does not hold an Ed25519 public key (32 raw bytes, 64 hex digits or "
        "base64url of 32 bytes)"
    )


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
