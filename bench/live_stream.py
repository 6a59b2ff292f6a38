"""Live Heart Rate Measurement streaming at real time, as an app developer sees it.

A hub serves one simulated band at ``--speed 1`` (real time, as ``kmeband sim --speed 1``);
an unchanged bleak program reaches it through the hub, pairs through the pairing agent
(``KMEBAND_PAIRING_AGENT=auto``) and subscribes to Heart Rate Measurement at a moment
that is not aligned to anything (a seeded delay). It then listens for ``--seconds``.

* first_notify_ms: wall time from the subscription to the first notification (≤ 2000);
* notify_interval_s: median wall time between notifications (≈ 1);
* rr_present_pct: share of notifications, while the band is worn, that carry RR intervals
  (≥ 95);
* distinct_values_per_min: distinct notification payloads per minute (≥ 20).

Last line: {"bench": "live_stream", "first_notify_ms": x, "notify_interval_s": x,
"rr_present_pct": x, "distinct_values_per_min": x, "notifications": n}.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bleak import BleakClient, BleakScanner

from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from device_sim.bleak_backend.agent import AGENT_ENV
from device_sim.bleak_backend.port import HUB_ENV
from device_sim.hub_runner import BandHub, HubOptions
from protocol.ble.sig_codecs import SensorContact, decode_heart_rate_measurement
from protocol.kme.profile import HEART_RATE_MEASUREMENT

# 2026-01-05 10:00 UTC: the default wearer is up and wearing the band.
START_UTC = 1_767_607_200.0


async def run(seconds: float, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        options = HubOptions(
            bands=1,
            seed=seed,
            speed=1.0,
            fidelity="signal",
            address=f"unix:{Path(tmp) / 'hub.sock'}",
            start=START_UTC,
        )
        hub = BandHub(options)
        address = await hub.start()
        os.environ[HUB_ENV] = str(address)
        os.environ[AGENT_ENV] = "auto"
        arrivals: list[tuple[float, bytes]] = []
        try:
            device = await BleakScanner.find_device_by_address(
                hub.endpoints[0].address, timeout=5.0, backend=SimBleakScanner
            )
            assert device is not None, "the band did not advertise"
            async with BleakClient(device, backend=SimBleakClient, pair=True) as client:
                await asyncio.sleep(random.Random(seed).uniform(0.0, 1.0))
                subscribed = time.perf_counter()
                await client.start_notify(
                    str(HEART_RATE_MEASUREMENT),
                    lambda _c, data: arrivals.append((time.perf_counter(), bytes(data))),
                )
                await asyncio.sleep(seconds)
        finally:
            await hub.close()
    if not arrivals:
        raise SystemExit("no Heart Rate Measurement arrived")
    times = [t for t, _ in arrivals]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    parsed = [decode_heart_rate_measurement(v) for _, v in arrivals]
    worn = [m for m in parsed if m.sensor_contact is SensorContact.DETECTED]
    return {
        "bench": "live_stream",
        "first_notify_ms": round((times[0] - subscribed) * 1000, 1),
        "notify_interval_s": round(statistics.median(gaps), 3) if gaps else None,
        "rr_present_pct": round(100 * sum(1 for m in worn if m.rr_intervals) / len(worn), 1)
        if worn
        else 0.0,
        "distinct_values_per_min": round(len({v for _, v in arrivals}) * 60 / seconds, 1),
        "notifications": len(arrivals),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to listen")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds, args.seed))))


if __name__ == "__main__":
    main()
