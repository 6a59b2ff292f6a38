"""Radio throughput through bleak's API: notifications, reads, connect + discovery, goodput.

Everything runs in one process on an in-process Radio with a profile peripheral
(device_sim.bleak_backend.profile_peripheral) and the simulated bleak client backend:

* notify_MBps: 244-octet Heart Rate Measurement notifications pushed by the band and
  delivered to a ``start_notify`` callback, fast mode (no link model).
* reads_per_s: sequential ``read_gatt_char`` of a 200-octet value, fast mode.
* connect_discover_ms: ``BleakClient.connect()`` (link, MTU exchange, discovery of the
  whole band profile, Device Name read) averaged over repeated connections.
* link_goodput_ratio: with the link model on (2M PHY, 15 ms interval, 251-octet data
  length, 6 packets per event), notification payload octets per second of the band's
  clock divided by the model's capacity (``LinkModel.capacity_bytes_per_s``). The clock
  is a ManualClock stepped by the bench, so this figure is deterministic.

Last line: {"bench": "radio", "notify_MBps": x, "reads_per_s": x,
"connect_discover_ms": x, "link_goodput_ratio": x}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from bleak import BleakClient

from device_sim.bleak_backend import BondStore, SimBleakClient, use_radio
from device_sim.bleak_backend.profile_peripheral import ProfilePeripheral
from device_sim.clock import ManualClock
from device_sim.radio import ATT_CID, LinkModel, Radio
from protocol.ble.gatt_model import (
    OPEN_READ,
    CharacteristicDefinition,
    Properties,
    ServiceDefinition,
)
from protocol.kme.profile import BAND_PROFILE, HEART_RATE_MEASUREMENT, SIG_ONLY_PROFILE

PAYLOAD = 244
READ_SIZE = 200
BENCH_SERVICE = uuid.UUID("4b4d4500-ff00-4b4d-8000-000000000000")
BENCH_VALUE = uuid.UUID("4b4d4500-ff01-4b4d-8000-000000000000")
BAND = "C1:00:00:00:00:01"

_BENCH_PROFILE = (
    *SIG_ONLY_PROFILE,
    ServiceDefinition(
        BENCH_SERVICE,
        "Bench",
        (
            CharacteristicDefinition(
                BENCH_VALUE,
                "Bench Value",
                Properties.READ,
                OPEN_READ,
                "opaque",
                initial_value=bytes(range(READ_SIZE)),
                max_length=READ_SIZE,
            ),
        ),
    ),
)


def _client(address: str) -> BleakClient:
    return BleakClient(address, backend=SimBleakClient, bond_store=BondStore())


async def bench_notifications(count: int) -> float:
    radio = Radio(ManualClock())
    band = ProfilePeripheral(BAND, _BENCH_PROFILE)
    radio.attach(band)
    received = 0

    def on_value(_char: object, data: bytearray) -> None:
        nonlocal received
        received += len(data)

    with use_radio(radio):
        async with _client(BAND) as client:
            await client.start_notify(str(HEART_RATE_MEASUREMENT), on_value)
            (state,) = band.links.values()
            handle = band.value_handle(HEART_RATE_MEASUREMENT)
            notify, send, value = state.server.notify, state.link.send, bytes(PAYLOAD)
            start = time.perf_counter()
            for _ in range(count):
                send(ATT_CID, notify(handle, value))  # type: ignore[arg-type]
            elapsed = time.perf_counter() - start
    assert received == count * PAYLOAD, "notifications were lost"
    return received / elapsed / 1e6


async def bench_reads(count: int) -> float:
    radio = Radio(ManualClock())
    radio.attach(ProfilePeripheral(BAND, _BENCH_PROFILE))
    with use_radio(radio):
        async with _client(BAND) as client:
            char = client.services.get_characteristic(str(BENCH_VALUE))
            assert char is not None
            assert len(await client.read_gatt_char(char)) == READ_SIZE
            read = client.read_gatt_char
            start = time.perf_counter()
            for _ in range(count):
                await read(char)
            elapsed = time.perf_counter() - start
    return count / elapsed


async def bench_connect(repeats: int) -> float:
    radio = Radio(ManualClock())
    radio.attach(ProfilePeripheral(BAND, BAND_PROFILE))
    times = []
    with use_radio(radio):
        for _ in range(repeats):
            client = _client(BAND)
            start = time.perf_counter()
            await client.connect()
            times.append(time.perf_counter() - start)
            await client.disconnect()
    times.sort()
    return times[len(times) // 2] * 1000  # the median: robust to a busy shared machine


async def bench_link_goodput(count: int) -> float:
    clock = ManualClock()
    model = LinkModel()
    radio = Radio(clock, link_model=model)
    band = ProfilePeripheral(BAND, _BENCH_PROFILE)
    radio.attach(band)
    received = 0
    last = 0.0

    def on_value(_char: object, data: bytearray) -> None:
        nonlocal received, last
        received += len(data)
        last = clock.now()

    step = model.conn_interval_ms / 1000 / 4
    with use_radio(radio):
        client = _client(BAND)
        connecting = asyncio.ensure_future(client.connect())
        while not connecting.done():
            await clock.advance(step)
        await connecting
        subscribing = asyncio.ensure_future(
            client.start_notify(str(HEART_RATE_MEASUREMENT), on_value)
        )
        while not subscribing.done():
            await clock.advance(step)
        await subscribing
        (state,) = band.links.values()
        handle = band.value_handle(HEART_RATE_MEASUREMENT)
        start = clock.now()
        for _ in range(count):
            pdu = state.server.notify(handle, bytes(PAYLOAD))
            assert pdu is not None, "the client is subscribed"
            state.link.send(ATT_CID, pdu)
        while received < count * PAYLOAD:
            await clock.advance(step)
        await client.disconnect()
    return received / (last - start) / model.capacity_bytes_per_s


async def run(scale: float) -> dict[str, object]:
    notify = await bench_notifications(int(200_000 * scale))
    reads = await bench_reads(int(50_000 * scale))
    connect = await bench_connect(max(5, int(50 * scale)))
    goodput = await bench_link_goodput(max(60, int(600 * scale)))
    print(f"notifications: {notify:.1f} MB/s of {PAYLOAD}-octet payloads")
    print(f"reads: {reads:,.0f} /s of {READ_SIZE}-octet values")
    print(f"connect + MTU exchange + discovery: {connect:.2f} ms (band profile)")
    print(f"link model goodput: {goodput:.3f} of capacity")
    return {
        "bench": "radio",
        "notify_MBps": round(notify, 1),
        "reads_per_s": round(reads),
        "connect_discover_ms": round(connect, 3),
        "link_goodput_ratio": round(goodput, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the work done")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.scale))))


if __name__ == "__main__":
    main()
