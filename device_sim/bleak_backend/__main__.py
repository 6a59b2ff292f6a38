"""Run an unmodified bleak program against simulated bands.

    python -m device_sim.bleak_backend [--hub unix:/path | tcp:127.0.0.1:PORT] program.py [args]
    python -m device_sim.bleak_backend [--hub ...] -m package.module [args]

Installs the simulated backends into bleak, points them at the hub (``--hub`` or the
``KMEBAND_HUB`` environment variable, as ``kmeband sim`` prints it) and runs the program
as ``__main__`` with the remaining arguments.
"""

from __future__ import annotations

import os
import runpy
import sys

from device_sim.bleak_backend import install
from device_sim.bleak_backend.port import HUB_ENV
from device_sim.radio.hub_wire import HubAddress
from protocol.errors import UsageError

USAGE = (
    "usage: python -m device_sim.bleak_backend [--hub ADDRESS] program.py [args...]\n"
    "       python -m device_sim.bleak_backend [--hub ADDRESS] -m module [args...]\n"
    f"ADDRESS is what 'kmeband sim' prints (default: ${HUB_ENV})"
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--hub"]:
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        os.environ[HUB_ENV] = args[1]
        args = args[2:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if args else 2
    hub = os.environ.get(HUB_ENV)
    if not hub:
        print(
            f"no hub: start one with 'kmeband sim' and pass --hub ADDRESS or set {HUB_ENV}",
            file=sys.stderr,
        )
        return 2
    try:
        HubAddress.parse(hub)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    install()
    if args[0] == "-m":
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
