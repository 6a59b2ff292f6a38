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
from device_sim.validate import cli as validate_cli
from protocol.errors import UsageError


def register(subparsers: Any) -> None:
    _register_sim(subparsers)
    validate_cli.register(subparsers)


def _register_sim(subparsers: Any) -> None:
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
    parser.add_argument(
        "--auth-timeout",
        type=float,
        default=30.0,
        help="real seconds a central may hold a band without pairing or encrypting "
        "(default 30; 0: no bound)",
    )
    parser.add_argument(
        "--clone",
        type=Path,
        help="also serve this device.json (from 'kmeband clone'); --bands may then be 0",
    )
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        help="replay jitter, ms (each note moves up to this)",
    )
    parser.add_argument(
        "--transport",
        help=(
            "also serve the first band (or the clone) as a real BLE peripheral through bumble "
            "on this bumble transport, e.g. usb:0, serial:/dev/ttyACM0, android-netsim "
            "(needs kmeband[bumble]; see docs/real-radio.md)"
        ),
    )
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
        auth_timeout_s=args.auth_timeout,
        clone=args.clone,
        jitter_s=args.jitter_ms / 1000.0,
    )
    return asyncio.run(_serve(options, args.duration, args.json, args.transport))


def _emit(as_json: bool, text: str, **fields: Any) -> None:
    print(json.dumps(fields) if as_json else text, flush=True)


async def _serve(
    options: HubOptions, duration: float | None, as_json: bool, transport: str | None = None
) -> int:
    def on_display(address: str, text: str) -> None:
        _emit(
            as_json,
            f"band {address} shows passkey {text}",
            event="passkey",
            address=address,
            passkey=text,
        )

    hub = BandHub(options, on_display=on_display)
    radio_bridge: Any = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        address = await hub.start()
        bands = [e.address for e in hub.endpoints]
        if transport is not None:
            radio_bridge = await _bridge(hub, transport)
            _emit(
                as_json,
                f"serving {radio_bridge.bridge.peripheral.address} as a BLE peripheral on "
                f"{transport}",
                event="bridge",
                transport=transport,
                address=radio_bridge.bridge.peripheral.address,
            )
        if hub.clone is not None:
            _emit(
                as_json,
                f"clone of {options.clone} at {hub.clone.address}",
                event="clone",
                address=hub.clone.address,
            )
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
        if radio_bridge is not None:
            await radio_bridge.close()
        await hub.close()
        where = (
            f"band state kept in {options.state_dir}"
            if options.state_dir
            else ("band state was in memory only (use --state-dir to keep it)")
        )
        _emit(as_json, f"hub stopped; {where}", event="stopped")
    return 0


async def _bridge(hub: BandHub, transport: str) -> Any:
    """Serve the first band (or the clone) through bumble on ``transport``."""
    try:
        from device_sim.bumble_bridge import BandPasskeyDisplay
        from device_sim.bumble_bridge.transport import open_bridge
    except ImportError:
        raise UsageError(
            "--transport needs bumble: pip install 'kmeband[bumble]' (docs/real-radio.md)"
        ) from None
    if hub.endpoints:
        endpoint = hub.endpoints[0]
        return await open_bridge(
            transport, endpoint, endpoint.db, passkey_display=BandPasskeyDisplay(endpoint)
        )
    assert hub.clone is not None
    return await open_bridge(transport, hub.clone, hub.clone.db)
