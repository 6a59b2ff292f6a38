"""``kmeband sim``: simulated bands on a hub that any bleak program can reach."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from device_sim.band.flash import DEFAULT_CAPACITY_BYTES
from device_sim.hub_runner import BandHub, HubOptions, default_hub_address
from device_sim.person.physiology import PRESETS
from device_sim.radio import LinkModel


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run simulated bands on a hub (until Ctrl-C)",
        description=(
            "Start a hub with simulated KME Smart bands. Bleak programs reach them with "
            "KMEBAND_HUB set to the printed address (see docs/bleak-backend.md). Passkeys "
            "are printed when a band shows one. Ctrl-C stops the hub and persists every "
            "band's flash (with --state-dir)."
        ),
    )
    parser.add_argument("--bands", type=int, default=1, help="how many bands (default 1)")
    parser.add_argument(
        "--scenario", default="default_day", choices=sorted(PRESETS), help="person-model preset"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first band")
    parser.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)"
    )
    parser.add_argument("--fidelity", choices=("signal", "summary"), default="signal")
    parser.add_argument(
        "--hub", default=None, help="unix:/path or tcp:127.0.0.1:PORT (default: a per-user socket)"
    )
    parser.add_argument("--state-dir", type=Path, help="keep the bands' state here")
    parser.add_argument("--capture", type=Path, help="write every ATT/SMP PDU to this btsnoop file")
    parser.add_argument(
        "--backlog-days", type=float, default=0.0, help="simulate this many days before now"
    )
    parser.add_argument(
        "--flash-capacity",
        type=int,
        default=DEFAULT_CAPACITY_BYTES,
        help=f"bytes of record flash per band (default {DEFAULT_CAPACITY_BYTES})",
    )
    parser.add_argument("--link-model", action="store_true", help="model LE link timing")
    parser.add_argument("--duration", type=float, help="stop after this many real seconds")
    parser.add_argument("--json", action="store_true", help="print machine-readable lines")
    parser.set_defaults(handler=run_sim)


def run_sim(args: argparse.Namespace) -> int:
    options = HubOptions(
        bands=args.bands,
        scenario=args.scenario,
        seed=args.seed,
        speed=args.speed,
        fidelity=args.fidelity,
        address=args.hub or default_hub_address(),
        state_dir=args.state_dir,
        capture=args.capture,
        link_model=LinkModel() if args.link_model else None,
        backlog_days=args.backlog_days,
        flash_capacity=args.flash_capacity,
    )
    return asyncio.run(_serve(options, args.duration, args.json))


def _emit(as_json: bool, text: str, **fields: Any) -> None:
    print(json.dumps(fields) if as_json else text, flush=True)


async def _serve(options: HubOptions, duration: float | None, as_json: bool) -> int:
    def on_display(address: str, text: str) -> None:
        _emit(
            as_json,
            f"band {address} shows passkey {text}",
            event="passkey",
            address=address,
            passkey=text,
        )

    hub = BandHub(options, on_display=on_display)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        address = await hub.start()
        bands = [e.address for e in hub.endpoints]
        if as_json:
            _emit(True, "", event="ready", hub=str(address), bands=bands, speed=options.speed)
        else:
            print(f"kmeband hub listening on {address} ({len(bands)} band(s), {options.speed:g}x)")
            for endpoint in hub.endpoints:
                print(f"  {endpoint.address}  {endpoint.band.config.scenario}")
            print(f"use it from bleak programs with: export KMEBAND_HUB={address}")
            print(
                "pair without typing the passkey with: export KMEBAND_PAIRING_AGENT=auto "
                "(see docs/bleak-backend.md)"
            )
            print("Ctrl-C stops the hub", flush=True)
        await hub.serve_until(stop, duration)
    finally:
        await hub.close()
        where = (
            f"band state kept in {options.state_dir}"
            if options.state_dir
            else ("band state was in memory only (use --state-dir to keep it)")
        )
        _emit(as_json, f"hub stopped; {where}", event="stopped")
    return 0
