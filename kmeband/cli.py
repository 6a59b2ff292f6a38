"""The ``kmeband`` console script.

Each layer owns its own subcommands: a package that has any exposes a module
``<package>.cli`` with a function ``register(subparsers)`` that adds them. This module
only assembles the parser, so adding a subcommand never means editing it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from kmeband import __version__
from protocol.errors import KmebandError

#: Packages asked for subcommands, in the order their commands appear in ``--help``.
SUBCOMMAND_PROVIDERS: tuple[str, ...] = (
    "kmeband.demo_cli",
    "device_sim.cli",
    "device_sim.trace.cli",
    "sync_client.cli",
    "cloud_ingest.cli",
    "kmeband.report_cli",
    "kmeband.fleet.cli",
)

#: Exit codes shared by every subcommand, so scripts can branch on them.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmeband",
        description=(
            "Simulated KME Smart fitness bands, the phone-side sync client, and a reference "
            "cloud ingest. Run 'kmeband demo' for a tour."
        ),
    )
    parser.add_argument("--version", action="version", version=f"kmeband {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_PROVIDERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that layer has no subcommands (yet)
            raise
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        register = module.register
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Subcommands set ``handler`` with ``set_defaults(handler=...)``; it returns an exit code
    # (or None for success) and raises a KmebandError for failures the user can act on.
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_OK
    try:
        result: int | None = handler(args)
    except KmebandError as exc:
        print(f"kmeband: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kmeband: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. '| head'): stop quietly, as command-line tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    return EXIT_OK if result is None else result


if __name__ == "__main__":
    sys.exit(main())
