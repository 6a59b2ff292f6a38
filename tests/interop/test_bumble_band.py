"""Interop: bumble's own central (its ATT/GATT client and SMP) against a simulated band.

The band is served by the bumble bridge over bumble's in-process virtual link, so every
byte the central parses comes from an independent Bluetooth stack's point of view: service
discovery, LE Secure Connections passkey pairing with the band's displayed passkey, reads
of protected characteristics, Heart Rate Measurement notifications and a whole record sync
as docs/records.md describes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("bumble", reason="the interop suite needs the kmeband[bumble] extra")

from bumble import hci
from bumble.att import ATT_Error
from bumble.core import UUID, ProtocolError
from bumble.device import Connection, Device, DeviceConfiguration, Peer
from bumble.pairing import PairingConfig, PairingDelegate
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.live import LiveHeartRate
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bumble_bridge import BandPasskeyDisplay, BumbleBridge, bumble_address
from device_sim.bumble_bridge.transport import VirtualAir
from device_sim.clock import ManualClock
from protocol.ble.att import AttErrorCode
from protocol.ble.sig_codecs import decode_age, decode_heart_rate_measurement, decode_utf8s
from protocol.ble.uuids import uuid_to_att
from protocol.kme.control.activation import ActivationResult, BandPublicKey
from protocol.kme.control.schema import decode_as, encode_control
from protocol.kme.ownership import activation_request, verify_activation
from protocol.kme.profile import (
    AGE,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    KME_ACTIVATION_CONTROL_POINT,
    KME_BAND_IDENTITY,
    KME_RECORD_SYNC_CONTROL_POINT,
    KME_RECORD_SYNC_DATA,
    KME_RECORD_SYNC_SERVICE,
    MANUFACTURER_NAME,
    MAX_RECORD_CHUNK,
    SERIAL_NUMBER,
)
from protocol.kme.record_sync import (
    ClientSyncReceiver,
    RecordsReceived,
    TransferComplete,
)
from protocol.kme.records import StreamId


def _uuid(value: Any) -> UUID:
    return UUID.from_bytes(uuid_to_att(value))


class _Keyboard(PairingDelegate):
    """The phone's side: the user types what the band shows (or what ``typed`` returns)."""

    def __init__(self, typed: Callable[[], int | None]) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self._typed = typed

    async def get_number(self) -> int | None:
        # The user looks at the band until it shows the passkey, then types.
        for _ in range(200):
            typed = self._typed()
            if typed is not None:
                return typed
            await asyncio.sleep(0.005)
        return None


@dataclass
class Setup:
    endpoint: BandGattEndpoint
    bridge: BumbleBridge
    central: Device
    connection: Connection
    peer: Peer

    def characteristic(self, char_uuid: Any) -> Any:
        [found] = self.peer.get_characteristics_by_uuid(_uuid(char_uuid))
        return found


async def _connect(
    typed: Callable[[BandGattEndpoint], int | None],
    *,
    fidelity: str = "summary",
    simulated_s: float = 0.0,
    direct_att: bool = False,
    mtu: int = 247,
) -> AsyncIterator[Setup]:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=11, fidelity=fidelity), clock)
    band.simulate_until(clock.now() + simulated_s)
    endpoint = BandGattEndpoint(band)
    air = VirtualAir()
    bridge = BumbleBridge(
        endpoint,
        endpoint.db,
        air.host("band"),
        passkey_display=BandPasskeyDisplay(endpoint),
        direct_att=direct_att,
    )
    await bridge.start()
    central = Device(
        config=DeviceConfiguration(name="phone", address=hci.Address("F0:F1:F2:F3:F4:F5")),
        host=air.host("phone"),
    )
    central.pairing_config_factory = lambda _conn: PairingConfig(
        sc=True, mitm=True, bonding=True, delegate=_Keyboard(lambda: typed(endpoint))
    )
    await central.power_on()
    connection = await central.connect(bumble_address(endpoint.address))
    peer = Peer(connection)
    if mtu != 23:  # 23 is ATT's default: no exchange at all
        await peer.request_mtu(mtu)
    await peer.discover_all()
    try:
        yield Setup(endpoint, bridge, central, connection, peer)
    finally:
        await bridge.close()
        await central.power_off()


def _types_the_passkey(endpoint: BandGattEndpoint) -> int | None:
    return None if endpoint.display is None else int(endpoint.display)


#: Both ways the band can stand behind bumble: bumble's GATT server mirroring the band's
#: table, or the band's own ATT server answering bumble's client byte for byte.
MODES = pytest.mark.parametrize("direct_att", [False, True], ids=["mirror", "direct-att"])


@pytest.fixture(params=[False, True], ids=["mirror", "direct-att"])
async def paired_ready(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    """A connected, not yet paired central that will type the band's passkey."""
    async for setup in _connect(_types_the_passkey, direct_att=request.param):
        yield setup


async def test_discovery_sees_the_bands_table_at_the_bands_handles(paired_ready: Setup) -> None:
    s = paired_ready
    db = s.endpoint.db
    seen = [(str(svc.uuid), svc.handle, svc.end_group_handle) for svc in s.peer.services]
    wanted = [(str(_uuid(e.uuid)), e.handle, e.end_handle) for e in db.services]
    assert seen == wanted
    for entry in (c for svc in db.services for c in svc.characteristics):
        proxy = s.characteristic(entry.uuid)
        assert proxy.handle == entry.value_handle
        assert int(proxy.properties) == int(entry.definition.properties)
        descriptors = [(d.handle, d.type) for d in proxy.descriptors]
        assert descriptors == [
            (h, _uuid(db.attribute(h).type))
            for h in range(entry.value_handle + 1, entry.end_handle + 1)
        ]
    name = await s.peer.read_value(s.characteristic(MANUFACTURER_NAME))
    assert decode_utf8s(name) == "KME Smart"


async def test_protected_reads_need_the_passkey_pairing(paired_ready: Setup) -> None:
    s = paired_ready
    serial = s.characteristic(SERIAL_NUMBER)
    with pytest.raises(ATT_Error) as refused:
        await s.peer.read_value(serial)
    assert refused.value.error_code == AttErrorCode.INSUFFICIENT_ENCRYPTION
    await s.connection.pair()
    assert s.endpoint.display is None  # the screen clears once paired
    assert s.connection.is_encrypted
    value = await s.peer.read_value(serial)
    assert decode_utf8s(value) == s.endpoint.band.identity.serial
    age = await s.peer.read_value(s.characteristic(AGE))
    assert decode_age(age) == s.endpoint.band.profile.profile.age


@MODES
async def test_heart_rate_notifications_reach_bumbles_subscriber(direct_att: bool) -> None:
    # A signal-fidelity band: its firmware estimates a live heart rate from the PPG.
    async for s in _connect(
        _types_the_passkey, fidelity="signal", simulated_s=600, direct_att=direct_att
    ):
        await _heart_rate_reaches_the_subscriber(s)


async def _heart_rate_reaches_the_subscriber(s: Setup) -> None:
    await s.connection.pair()
    frames: list[bytes] = []
    await s.peer.subscribe(s.characteristic(HEART_RATE_MEASUREMENT), frames.append)
    band = s.endpoint.band
    for _ in range(3):
        s.endpoint.push_live_values()
        await asyncio.sleep(0.01)
    assert len(frames) == 3
    expected = LiveHeartRate(band.person, band.config.seed).measurement(band.clock.now())
    assert expected.bpm > 0 and expected.rr_intervals
    decoded = decode_heart_rate_measurement(frames[-1])
    assert (decoded.bpm, decoded.rr_intervals) == (expected.bpm, expected.rr_intervals)
    # bumble's own Heart Rate Service parser reads the same fields from the same bytes
    from bumble.profiles.heart_rate_service import HeartRateService

    for frame in frames:
        theirs = HeartRateService.HeartRateMeasurement.from_bytes(frame)
        ours = decode_heart_rate_measurement(frame)
        assert theirs.heart_rate == ours.bpm
        assert theirs.sensor_contact_detected is True
        assert theirs.energy_expended == ours.energy_expended_kj
        assert list(theirs.rr_intervals or []) == [r / 1024 for r in ours.rr_intervals or ()]


@MODES
async def test_a_full_record_sync_through_bumbles_client(direct_att: bool) -> None:
    # An hour of the wearer's life: sixty activity-minute records on the band's flash.
    async for s in _connect(_types_the_passkey, simulated_s=3600, direct_att=direct_att):
        await _record_sync(s)


async def _record_sync(s: Setup) -> None:
    band = s.endpoint.band
    await s.connection.pair()
    indications: asyncio.Queue[bytes] = asyncio.Queue()
    notes: list[bytes] = []
    activation = s.characteristic(KME_ACTIVATION_CONTROL_POINT)
    sync_cp = s.characteristic(KME_RECORD_SYNC_CONTROL_POINT)
    await s.peer.subscribe(activation, indications.put_nowait, prefer_notify=False)
    await s.peer.subscribe(sync_cp, indications.put_nowait, prefer_notify=False)
    await s.peer.subscribe(s.characteristic(KME_RECORD_SYNC_DATA), notes.append)

    owner = Ed25519PrivateKey.generate()
    request = activation_request(owner, b"\x01" * 16, b"\x02" * 16)
    await s.peer.write_value(activation, encode_control(request), with_response=True)
    result = decode_as(await asyncio.wait_for(indications.get(), 5), ActivationResult)
    assert verify_activation(request, result) == band.identity.public_key_bytes

    stream = StreamId.ACTIVITY_MINUTES
    on_band = band.flash.count(stream)
    assert on_band == 60
    receiver = ClientSyncReceiver(stream, 1, min(s.connection.att_mtu - 3, MAX_RECORD_CHUNK))
    got: list[Any] = []
    done = asyncio.Event()

    def feed(events: list[Any]) -> None:
        for event in events:
            if isinstance(event, RecordsReceived):
                got.extend(event.records)
            elif isinstance(event, TransferComplete):
                done.set()

    await s.peer.write_value(sync_cp, receiver.start_request(), with_response=True)
    seen = 0
    for _ in range(500):
        while seen < len(notes):
            feed(receiver.receive_data(notes[seen]))
            seen += 1
        while not indications.empty():
            feed(receiver.receive_control(indications.get_nowait()))
        if done.is_set():
            break
        await asyncio.sleep(0.01)
    assert done.is_set()
    assert [r.seq for r in got] == list(range(1, on_band + 1))
    assert [r.record for r in got] == [r.record for r in band.flash.read(stream, 1, 10_000)]
    await s.peer.write_value(sync_cp, receiver.stored_up_to(on_band), with_response=True)
    for _ in range(100):
        if band.flash.count(stream) == 0:
            break
        await asyncio.sleep(0.01)
    assert band.flash.count(stream) == 0


@MODES
async def test_a_wrong_passkey_fails_and_leaves_the_link_unencrypted(direct_att: bool) -> None:
    def wrong(endpoint: BandGattEndpoint) -> int | None:
        # the band shows a passkey; the user mistypes it
        return None if endpoint.display is None else (int(endpoint.display) + 1) % 1_000_000

    async for s in _connect(wrong, direct_att=direct_att):
        with pytest.raises(ProtocolError):
            await s.connection.pair()
        assert not s.connection.is_encrypted
        assert s.endpoint.limiter.consecutive_failures == 1
        with pytest.raises(ATT_Error) as refused:
            await s.peer.read_value(s.characteristic(SERIAL_NUMBER))
        assert refused.value.error_code == AttErrorCode.INSUFFICIENT_ENCRYPTION


async def test_bumbles_sig_profile_parsers_read_the_bands_sig_values(paired_ready: Setup) -> None:
    from bumble.profiles.battery_service import BatteryServiceProxy
    from bumble.profiles.device_information_service import DeviceInformationServiceProxy
    from bumble.profiles.heart_rate_service import HeartRateService, HeartRateServiceProxy

    s = paired_ready
    band = s.endpoint.band
    await s.connection.pair()
    dis = s.peer.create_service_proxy(DeviceInformationServiceProxy)
    assert dis is not None and dis.manufacturer_name is not None
    assert await dis.manufacturer_name.read_value() == "KME Smart"
    assert dis.model_number is not None and dis.serial_number is not None
    assert await dis.model_number.read_value() == band.identity.model
    assert await dis.serial_number.read_value() == band.identity.serial
    battery = s.peer.create_service_proxy(BatteryServiceProxy)
    assert battery is not None
    assert await battery.battery_level.read_value() == band.battery.percent
    hr = s.peer.create_service_proxy(HeartRateServiceProxy)
    assert hr is not None and hr.body_sensor_location is not None
    location = await hr.body_sensor_location.read_value()
    assert location == HeartRateService.BodySensorLocation.WRIST
    await hr.reset_energy_expended()  # the Heart Rate Control Point takes Reset (0x01)


async def test_bumble_scans_the_bands_advertisement_and_parses_its_scan_response() -> None:
    from bumble.core import AdvertisingData

    from device_sim.bumble_bridge.bridge import advertising_payloads

    clock = ManualClock()
    endpoint = BandGattEndpoint(SimulatedBand(BandConfig(seed=12, fidelity="summary"), clock))
    air = VirtualAir()
    bridge = BumbleBridge(endpoint, endpoint.db, air.host("band"))
    await bridge.start()
    central = Device(
        config=DeviceConfiguration(name="phone", address=hci.Address("F0:F1:F2:F3:F4:F7")),
        host=air.host("phone"),
    )
    await central.power_on()
    seen: asyncio.Queue[Any] = asyncio.Queue()
    central.on(central.EVENT_ADVERTISEMENT, seen.put_nowait)
    try:
        await central.start_scanning(active=True)
        advertisement = await asyncio.wait_for(seen.get(), 5)
    finally:
        await central.stop_scanning()
        await bridge.close()
        await central.power_off()
    assert advertisement.address == bumble_address(endpoint.address)
    assert advertisement.is_connectable
    data = advertisement.data
    assert _uuid(HEART_RATE_SERVICE) in data.get(
        AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS
    )
    assert _uuid(KME_RECORD_SYNC_SERVICE) in data.get(
        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS
    )
    assert data.get(AdvertisingData.TX_POWER_LEVEL) == 0
    # bumble's virtual controller answers a scan request with the advertising data again
    # (it has no SCAN_REQ/SCAN_RSP exchange), so the scan response is parsed directly.
    ad = endpoint.advertising_data()
    assert ad is not None
    response = AdvertisingData.from_bytes(advertising_payloads(ad)[1])
    assert response.get(AdvertisingData.COMPLETE_LOCAL_NAME) == "KME Smart"
    band_id = bytes.fromhex(endpoint.address.replace(":", ""))[-3:]
    assert response.get(AdvertisingData.MANUFACTURER_SPECIFIC_DATA) == (0xFFFF, b"\x01" + band_id)


def test_advertising_payloads_fit_31_octets_and_shorten_a_long_name() -> None:
    from bumble.core import AdvertisingData

    from device_sim.bumble_bridge.bridge import advertising_payloads
    from device_sim.radio.medium import AdvertisingData as Ours

    long_name = "A band whose name is far too long to fit"
    adv, scan = advertising_payloads(
        Ours(
            local_name=long_name,
            service_uuids=(str(HEART_RATE_SERVICE), str(KME_RECORD_SYNC_SERVICE)),
            manufacturer_data={0xFFFF: b"\x01abc"},
        )
    )
    assert len(adv) <= 31 and len(scan) <= 31
    parsed = AdvertisingData.from_bytes(scan)
    short = parsed.get(AdvertisingData.SHORTENED_LOCAL_NAME)
    assert short and long_name.startswith(short)
    assert parsed.get(AdvertisingData.COMPLETE_LOCAL_NAME) is None


@MODES
async def test_long_reads_and_writes_at_the_default_mtu(direct_att: bool) -> None:
    # ATT_MTU 23: a 35-octet value is read with Read Blob, and a longer one is written with
    # Prepare Write and Execute Write (through the relay too, in mirror mode).
    async for s in _connect(_types_the_passkey, direct_att=direct_att, mtu=23):
        band = s.endpoint.band
        assert s.connection.att_mtu == 23
        await s.connection.pair()
        identity = decode_as(
            await s.peer.read_value(s.characteristic(KME_BAND_IDENTITY)), BandPublicKey
        )
        assert identity.public_key == band.identity.public_key_bytes
        request = activation_request(Ed25519PrivateKey.generate(), b"\x03" * 16, b"\x04" * 16)
        encoded = encode_control(request)
        assert len(encoded) > 20
        activation = s.characteristic(KME_ACTIVATION_CONTROL_POINT)
        await s.peer.subscribe(activation, lambda _v: None, prefer_notify=False)
        await s.peer.write_value(activation, encoded, with_response=True)
        assert s.endpoint.activated
