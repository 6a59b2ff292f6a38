"""Digital twins: clone a device through bleak, serve the clone, clone the clone, compare.

The phone side (``sync_client.clone``) sees devices only through bleak (here the simulated
backend on an in-process radio); the clone (``device_sim.clone``) is served on the same
radio, so the second recording goes through exactly the path the first one did.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from bleak import BleakClient

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner, use_radio
from device_sim.bleak_backend.profile_peripheral import ProfilePeripheral
from device_sim.clock import ManualClock
from device_sim.clone import ClonePeripheral, clone_address, load_snapshot
from device_sim.radio import Radio
from protocol.ble.att import AttErrorCode
from protocol.ble.device_snapshot import SnapshotFormatError, from_json
from protocol.ble.sig_codecs import (
    HeartRateMeasurement,
    SensorContact,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
)
from protocol.kme.profile import (
    DEVICE_INFORMATION_SERVICE,
    GENERIC_ACCESS_SERVICE,
    HEART_RATE_MEASUREMENT,
    MANUFACTURER_NAME,
    SERIAL_NUMBER,
    SIG_ONLY_PROFILE,
)
from sync_client.ble import Backend
from sync_client.clone import att_error_code, clone_device

SIM = Backend(scanner=SimBleakScanner, client=SimBleakClient)
STRAP_ADDRESS = "C4:00:00:00:00:01"


def _heart_rate(bpm: int) -> bytes:
    return encode_heart_rate_measurement(
        HeartRateMeasurement(bpm=bpm, sensor_contact=SensorContact.DETECTED)
    )


@pytest.fixture
def radio() -> Radio:
    radio = Radio(ManualClock(), seed=0)
    with use_radio(radio):
        yield radio


async def test_a_cloned_band_clones_to_the_same_table_and_values(radio: Radio) -> None:
    band = SimulatedBand(BandConfig(seed=3, fidelity="summary"), radio.clock)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    first = await clone_device(endpoint.address, record_s=0.0, scan_s=0.0, backend=SIM)
    assert first.name == "KME Smart"
    assert first.table()[0][0] == str(GENERIC_ACCESS_SERVICE)
    by_uuid = {str(c.uuid): c for s in first.services for c in s.characteristics}
    assert by_uuid[str(MANUFACTURER_NAME)].value == b"KME Smart"
    serial = by_uuid[str(SERIAL_NUMBER)]
    assert serial.value is None  # protected: not readable without pairing
    assert serial.read_error == AttErrorCode.INSUFFICIENT_ENCRYPTION

    # through the JSON file and back, as 'kmeband clone' and 'kmeband sim --clone' do
    again = from_json(json.loads(json.dumps(first.to_json())))
    assert again == first
    clone = ClonePeripheral(again, radio.clock, address=clone_address())
    assert clone.handles_match
    radio.attach(clone)
    second = await clone_device(clone.address, record_s=0.0, scan_s=0.0, backend=SIM)
    assert second.table() == first.table()
    assert [c.value for s in second.services for c in s.characteristics] == [
        c.value for s in first.services for c in s.characteristics
    ]
    assert [c.read_error for s in second.services for c in s.characteristics] == [
        c.read_error for s in first.services for c in s.characteristics
    ]
    assert second.name == first.name
    assert second.advertised_uuids == first.advertised_uuids


async def test_a_cloned_strap_replays_its_notifications_to_a_subscriber(
    radio: Radio, tmp_path: Path
) -> None:
    strap = ProfilePeripheral(STRAP_ADDRESS, SIG_ONLY_PROFILE, name="HR Strap")
    radio.attach(strap)

    async def beat() -> None:
        for bpm in (61, 62, 63):
            await asyncio.sleep(0.02)
            strap.notify(HEART_RATE_MEASUREMENT, _heart_rate(bpm))

    pusher = asyncio.create_task(beat())
    snapshot = await clone_device(STRAP_ADDRESS, record_s=0.2, scan_s=0.0, backend=SIM)
    await pusher
    recorded = [decode_heart_rate_measurement(n.value).bpm for n in snapshot.notifications]
    assert recorded == [61, 62, 63]
    path = tmp_path / "strap.json"
    path.write_text(json.dumps(snapshot.to_json()))

    clone = ClonePeripheral(load_snapshot(path), radio.clock, address=clone_address(1))
    radio.attach(clone)
    assert (await clone_device(clone.address, record_s=0.0, scan_s=0.0, backend=SIM)).table() == (
        snapshot.table()
    )
    heard: list[int] = []
    async with BleakClient(clone.address, backend=SimBleakClient) as client:
        await client.start_notify(
            str(HEART_RATE_MEASUREMENT),
            lambda _c, data: heard.append(decode_heart_rate_measurement(data).bpm),
        )
        clone.start()
        await asyncio.sleep(0)  # the replay task starts and waits for its first note
        # two loops of the recording on the clone's clock
        await radio.clock.advance(2 * snapshot.recorded_s + 0.01)
        for _ in range(20):
            await asyncio.sleep(0)
        await clone.stop()
    assert heard[:6] == [61, 62, 63, 61, 62, 63]


async def test_replay_jitter_is_seeded() -> None:
    clock = ManualClock()
    strap = ProfilePeripheral(STRAP_ADDRESS, SIG_ONLY_PROFILE)
    radio = Radio(clock, seed=0)
    radio.attach(strap)
    with use_radio(radio):
        pusher = asyncio.create_task(_push_twice(strap))
        snapshot = await clone_device(STRAP_ADDRESS, record_s=0.1, scan_s=0.0, backend=SIM)
        await pusher
    times = []
    for _ in range(2):
        clone = ClonePeripheral(snapshot, clock, jitter_s=0.01, seed=5)
        pushed: list[float] = []
        clone.push = lambda _u, _v, pushed=pushed: pushed.append(clock.now()) or 0  # type: ignore[method-assign]
        start = clock.now()
        clone.start()
        await asyncio.sleep(0)
        await clock.advance(snapshot.recorded_s * 3)
        await clone.stop()
        times.append([round(t - start, 9) for t in pushed])
    assert times[0] == times[1] and len(times[0]) >= 4


async def _push_twice(strap: ProfilePeripheral) -> None:
    for bpm in (70, 71):
        await asyncio.sleep(0.02)
        strap.notify(HEART_RATE_MEASUREMENT, _heart_rate(bpm))


@pytest.mark.parametrize(
    ("mutate", "names"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=9), "version"),
        (lambda d: d["services"][0].update(uuid="not-a-uuid"), "services[0].uuid"),
        (lambda d: d["services"][0]["characteristics"][0].update(value="zz"), ".value"),
        (lambda d: d["services"][0]["characteristics"][0].update(properties=["fly"]), "fly"),
        (lambda d: d["services"][0].update(handle=0), "services[0].handle"),
        (lambda d: d.update(services=[]), "services"),
        (
            lambda d: d["notifications"].append(
                {"t": 1.0, "characteristic": str(MANUFACTURER_NAME), "value": "00"}
            ),
            "notifications[0].characteristic",
        ),
    ],
)
def test_a_bad_device_json_names_what_to_fix(mutate, names: str) -> None:  # type: ignore[no-untyped-def]
    doc = {
        "format": "kmeband-device-clone",
        "version": 1,
        "name": "x",
        "services": [
            {
                "uuid": str(DEVICE_INFORMATION_SERVICE),
                "handle": 1,
                "characteristics": [
                    {
                        "uuid": str(MANUFACTURER_NAME),
                        "handle": 2,
                        "properties": ["read"],
                        "value": "41",
                    }
                ],
            }
        ],
        "notifications": [],
    }
    from_json(doc)  # the base document is valid
    mutate(doc)
    with pytest.raises(SnapshotFormatError) as info:
        from_json(doc)
    assert names in str(info.value)


def test_a_file_that_is_not_json_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    path.write_text("{not json")
    with pytest.raises(SnapshotFormatError, match="not JSON"):
        load_snapshot(path)


def test_att_errors_are_read_from_any_backends_words() -> None:
    assert att_error_code(Exception("Insufficient Authentication")) == 0x05
    assert att_error_code(Exception("org.bluez.Error.Failed: ATT error: 0x0f")) == 0x0F
    assert att_error_code(Exception("something else")) == AttErrorCode.UNLIKELY_ERROR


async def test_cloning_after_pairing_records_protected_values(radio: Radio) -> None:
    band = SimulatedBand(BandConfig(seed=4, fidelity="summary"), radio.clock)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    snapshot = await clone_device(
        endpoint.address,
        record_s=0.0,
        scan_s=0.0,
        backend=SIM,
        passkey_callback=lambda: endpoint.display or "",
    )
    by_uuid = {str(c.uuid): c for s in snapshot.services for c in s.characteristics}
    assert by_uuid[str(SERIAL_NUMBER)].value == band.identity.serial.encode()
    assert by_uuid[str(SERIAL_NUMBER)].read_error is None
