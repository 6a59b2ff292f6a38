"""A minimal Heart Rate client written only against bleak's public API.

Run directly, it starts a simulated band in this process (an accelerated clock, so beats
arrive quickly) and prints the first heart-rate values it notifies:

    python examples/heart_rate_client.py --count 5

With ``KMEBAND_HUB`` set (``kmeband sim`` prints the address) it talks to the hub's bands
instead; the passkey then comes from ``KMEBAND_PASSKEY`` or is asked for on the terminal.
Pointed at a real strap (no simulated backend installed) the same ``read_heart_rate``
runs unchanged on the operating system's Bluetooth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from bleak import BleakClient, BleakScanner

HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"


def parse_bpm(data: bytearray) -> int:
    """The heart rate from a Heart Rate Measurement (flags bit 0: uint16 format)."""
    return data[1] | data[2] << 8 if data[0] & 0x01 else data[1]


async def read_heart_rate(count: int, passkey_callback: Callable[[], object]) -> list[int]:
    """Find a heart-rate sensor, pair, and collect ``count`` heart-rate values."""
    device = await BleakScanner.find_device_by_filter(
        lambda _d, adv: HR_SERVICE in adv.service_uuids, timeout=10.0
    )
    if device is None:
        raise SystemExit("no heart-rate sensor found")
    values: list[int] = []
    done = asyncio.Event()

    def on_measurement(_char: object, data: bytearray) -> None:
        values.append(parse_bpm(data))
        if len(values) >= count:
            done.set()

    async with BleakClient(device, pair=True, passkey_callback=passkey_callback) as client:
        await client.start_notify(HR_MEASUREMENT, on_measurement)
        await asyncio.wait_for(done.wait(), timeout=30.0)
        await client.stop_notify(HR_MEASUREMENT)
    return values[:count]


async def _ask_passkey() -> str:
    passkey = os.environ.get("KMEBAND_PASSKEY")
    if passkey:
        return passkey
    return await asyncio.to_thread(input, "passkey shown on the band: ")


async def _with_in_process_band(count: int, seed: int) -> list[int]:
    from device_sim.band.gatt_endpoint import BandGattEndpoint
    from device_sim.band.simulated_band import BandConfig, SimulatedBand
    from device_sim.bleak_backend import use_radio
    from device_sim.clock import AcceleratedClock
    from device_sim.radio import Radio

    # a fixed start (mid-morning, band on the wrist): the run does not depend on the
    # time of day it is started at, when the simulated wearer may be charging the band
    clock = AcceleratedClock(60.0, start=1_767_258_000.0)  # 2026-01-01T09:00:00Z
    band = SimulatedBand(BandConfig(seed=seed, fidelity="signal"), clock)
    band.simulate_until(clock.now() + 600)  # ten minutes of wear: the pulse is locked on
    # the band drops a link not paired within 30 s of its clock: 0.5 s at 60x, so give
    # the person typing the passkey 30 real seconds, as `kmeband sim` does
    endpoint = BandGattEndpoint(band, auth_timeout_s=30.0 * clock.factor)
    radio = Radio(clock, seed=seed)
    radio.attach(endpoint)
    endpoint.start()
    try:
        with use_radio(radio):
            return await read_heart_rate(count, lambda: endpoint.display)
    finally:
        await endpoint.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5, help="heart-rate values to print")
    parser.add_argument("--seed", type=int, default=1, help="the in-process band's seed")
    args = parser.parse_args(argv)

    from device_sim.bleak_backend import install

    install()  # bleak now picks the simulated backend; read_heart_rate is unchanged
    if os.environ.get("KMEBAND_HUB"):
        values = asyncio.run(read_heart_rate(args.count, _ask_passkey))
    else:
        values = asyncio.run(_with_in_process_band(args.count, args.seed))
    for bpm in values:
        print(f"heart rate: {bpm} bpm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
