"""The pytest plugin's fixtures, used the way an app developer would use them."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakGATTProtocolError
from bleak_helpers import parse_heart_rate

from device_sim.band.live import LiveHeartRate
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from protocol.kme.profile import BATTERY_LEVEL, HEART_RATE_MEASUREMENT, SERIAL_NUMBER


async def test_connected_client_reads_open_values_and_pairs_for_protected_ones(
    kme_bleak_client: BleakClient,
) -> None:
    client = kme_bleak_client
    assert client.is_connected and client.mtu_size == 247
    level = await client.read_gatt_char(str(BATTERY_LEVEL))
    assert 0 <= level[0] <= 100
    with pytest.raises(BleakGATTProtocolError):
        await client.read_gatt_char(str(SERIAL_NUMBER))
    await client.pair()
    assert (await client.read_gatt_char(str(SERIAL_NUMBER))).decode().isprintable()


async def test_heart_rate_notifications_follow_the_wearer_with_rr_intervals(
    kme_band_factory, kme_clock
) -> None:  # type: ignore[no-untyped-def]
    endpoint = kme_band_factory(seed=5, fidelity="signal", simulate_s=600)
    device = await BleakScanner.find_device_by_filter(
        lambda d, adv: "0000180d-0000-1000-8000-00805f9b34fb" in adv.service_uuids,
        timeout=1.0,
        backend=SimBleakScanner,
    )
    assert device is not None and device.address == endpoint.address
    received: list[tuple[int, list[int]]] = []
    expected = []
    reference = LiveHeartRate(endpoint.band.person, endpoint.band.config.seed)
    async with BleakClient(
        device, backend=SimBleakClient, passkey_callback=lambda: endpoint.display, pair=True
    ) as client:
        await client.start_notify(
            str(HEART_RATE_MEASUREMENT), lambda _c, d: received.append(parse_heart_rate(d))
        )
        for _ in range(3):
            await kme_clock.advance(1.0)
            expected.append(reference.measurement(kme_clock.now()))
            endpoint.push_live_values()
        await asyncio.sleep(0)
    assert [bpm for bpm, _rr in received] == [m.bpm for m in expected]
    assert [rr for _bpm, rr in received] == [list(m.rr_intervals) for m in expected]
    assert all(rr for _bpm, rr in received), "a worn band sends beat-to-beat intervals"
    # the live channel and the firmware's minute estimate read the same wearer
    firmware_bpm, _confidence = endpoint.band.firmware.current_hr
    assert all(abs(bpm - firmware_bpm) <= 15 for bpm, _rr in received)


def test_band_factory_puts_distinct_bands_on_the_radio(kme_band_factory, kme_radio) -> None:  # type: ignore[no-untyped-def]
    a = kme_band_factory(seed=1)
    b = kme_band_factory(seed=2)
    assert a.address != b.address
    assert set(kme_radio.addresses) == {a.address, b.address}
