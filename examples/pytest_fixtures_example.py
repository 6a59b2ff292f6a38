"""The kmeband pytest plugin's fixtures in an app developer's own tests.

Installing kmeband registers the plugin (entry point ``pytest11``), so these fixtures are
simply there; run this file with:

    python -m pytest examples/pytest_fixtures_example.py

``kme_clock`` is a manual clock, ``kme_radio`` an in-process radio that bleak's simulated
backend uses, ``kme_band_factory`` puts seeded bands on it, and ``kme_bleak_client`` is
a connected ``BleakClient`` to a fresh band. Your code under test uses plain bleak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner

from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from device_sim.clock import ManualClock
from protocol.kme.records import StreamId

BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
SERIAL_NUMBER = "00002a25-0000-1000-8000-00805f9b34fb"
HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"


async def test_a_connected_client_reads_the_battery(kme_bleak_client: BleakClient) -> None:
    level = await kme_bleak_client.read_gatt_char(BATTERY_LEVEL)
    assert 0 <= level[0] <= 100


async def test_personal_data_needs_pairing(kme_bleak_client: BleakClient) -> None:
    await kme_bleak_client.pair()  # the fixture's passkey callback reads the band's display
    serial = await kme_bleak_client.read_gatt_char(SERIAL_NUMBER)
    assert serial.decode().isprintable()


async def test_the_scanner_finds_every_band_on_the_radio(
    kme_band_factory: Callable[..., Any],
) -> None:
    bands = {kme_band_factory(seed=s).address for s in (1, 2, 3)}
    found = await BleakScanner.discover(
        timeout=1.0, service_uuids=[HEART_RATE_SERVICE], backend=SimBleakScanner
    )
    assert bands <= {d.address for d in found}


async def test_a_band_with_a_simulated_backlog(
    kme_band_factory: Callable[..., Any], kme_clock: ManualClock
) -> None:
    # six hours of the wearer's life, recorded on the band before the app connects
    endpoint = kme_band_factory(seed=4, simulate_s=6 * 3600)
    assert endpoint.band.flash.count(StreamId.ACTIVITY_MINUTES) == 6 * 60
    start = kme_clock.now()
    async with BleakClient(endpoint.address, backend=SimBleakClient) as client:
        assert client.is_connected
    assert kme_clock.now() == start  # time moves only when the test says so


@pytest.mark.parametrize("seed", [7, 8])
async def test_bands_differ_by_seed(kme_band_factory: Callable[..., Any], seed: int) -> None:
    assert kme_band_factory(seed=seed).address != kme_band_factory(seed=seed + 100).address
