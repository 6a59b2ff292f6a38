"""The simulated bleak backend, driven only through bleak's public API where it can be."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bleak_helpers import GattPeripheral, parse_heart_rate
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.bleak_backend import (
    BondStore,
    PairingFailedError,
    PasskeyMissingError,
    SimBleakClient,
    SimBleakScanner,
    SimLinkLostError,
    use_radio,
)
from device_sim.bleak_backend.pairing import parse_passkey
from device_sim.clock import ManualClock
from device_sim.radio import LinkFault, Radio
from device_sim.radio.medium import PeripheralLink
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.sig_codecs import (
    HeartRateMeasurement,
    SensorContact,
    encode_heart_rate_measurement,
)
from protocol.kme.profile import (
    BAND_PROFILE,
    BODY_SENSOR_LOCATION,
    HEART_RATE_CONTROL_POINT,
    HEART_RATE_MEASUREMENT,
    SERIAL_NUMBER,
    SIG_ONLY_PROFILE,
    USER_CONTROL_POINT,
)

HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
STRAP = "AA:00:00:00:00:01"
BAND = "C1:00:00:00:00:02"


@pytest.fixture
def radio() -> object:
    radio = Radio(ManualClock(), seed=3)
    with use_radio(radio):
        yield radio


def _client(address: object, band: GattPeripheral, **kwargs: object) -> BleakClient:
    return BleakClient(
        address,  # type: ignore[arg-type]
        backend=SimBleakClient,
        bond_store=kwargs.pop("bond_store", BondStore()),
        passkey_callback=lambda: band.displayed_passkey,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_standard_heart_rate_client_receives_what_the_strap_sent(radio: Radio) -> None:
    strap = GattPeripheral(STRAP, SIG_ONLY_PROFILE, name="HR Strap", seed=1)
    band = GattPeripheral(BAND, BAND_PROFILE, advertised_uuids=("4b4d4500-0100-4b4d-8000-0",))
    radio.attach(strap)
    radio.attach(band)
    # Scan for the Heart Rate service only: the band advertises another service.
    seen = await BleakScanner.discover(
        timeout=0.01, service_uuids=[HR_SERVICE], backend=SimBleakScanner
    )
    assert [d.address for d in seen] == [STRAP]
    device = await BleakScanner.find_device_by_filter(
        lambda d, adv: HR_SERVICE in adv.service_uuids, timeout=1.0, backend=SimBleakScanner
    )
    assert device is not None
    sent = [
        HeartRateMeasurement(bpm=61, rr_intervals=(1000, 990)),
        HeartRateMeasurement(bpm=72, sensor_contact=SensorContact.DETECTED),
        HeartRateMeasurement(bpm=300, energy_expended_kj=12, rr_intervals=(200,)),
    ]
    received: list[tuple[int, list[int]]] = []
    async with BleakClient(device, backend=SimBleakClient) as client:
        assert client.name == "HR Strap"
        await client.start_notify(HR_MEASUREMENT, lambda _c, data: received.append(
            parse_heart_rate(data)))  # fmt: skip
        for value in sent:
            assert strap.notify(HEART_RATE_MEASUREMENT, encode_heart_rate_measurement(value))
        await client.stop_notify(HR_MEASUREMENT)
        assert strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x50") == 0
    assert received == [(v.bpm, list(v.rr_intervals)) for v in sent]


async def test_services_carry_the_servers_handles_and_bleak_property_names(radio: Radio) -> None:
    band = GattPeripheral(BAND, BAND_PROFILE)
    radio.attach(band)
    async with _client(BAND, band) as client:
        assert client.mtu_size == 247
        db = band.database
        for service in db.services:
            bleak_service = client.services.get_service(str(service.uuid))
            assert bleak_service is not None and bleak_service.handle == service.handle
            for entry in service.characteristics:
                char = bleak_service.get_characteristic(str(entry.uuid))
                assert char is not None
                assert char.handle == entry.declaration_handle
                assert char.max_write_without_response_size == 244
                assert ("notify" in char.properties) == bool(entry.definition.properties & 0x10)
                assert ("write" in char.properties) == bool(entry.definition.properties & 0x08)
                if entry.cccd_handle is not None:
                    assert char.get_descriptor("00002902-0000-1000-8000-00805f9b34fb").handle == (
                        entry.cccd_handle
                    )
        described = next(
            d for d in client.services.descriptors.values() if d.uuid.startswith("00002901")
        )
        assert (await client.read_gatt_descriptor(described.handle)).decode()
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.write_gatt_descriptor(described.handle, b"renamed")
        assert err.value.code == AttErrorCode.WRITE_NOT_PERMITTED
        assert client.services.get_characteristic(str(USER_CONTROL_POINT)).properties == [
            "write",
            "indicate",
        ]


async def test_a_forced_small_mtu_bounds_the_exchange(radio: Radio) -> None:
    band = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
    radio.attach(band)
    radio.inject_fault(STRAP, LinkFault(max_mtu=23))
    async with _client(STRAP, band) as client:
        assert client.mtu_size == 23
        char = client.services.get_characteristic(HR_MEASUREMENT)
        assert char.max_write_without_response_size == 20


async def test_reads_and_writes_with_and_without_response(radio: Radio) -> None:
    band = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
    radio.attach(band)
    control = band.value_handle(HEART_RATE_CONTROL_POINT)
    async with _client(STRAP, band) as client:
        assert await client.read_gatt_char(str(BODY_SENSOR_LOCATION)) == bytearray(b"\x01")
        await client.write_gatt_char(str(HEART_RATE_CONTROL_POINT), b"\x01", response=True)
        assert band.database.get_value(control) == b"\x01"
        await client.write_gatt_char(str(HEART_RATE_CONTROL_POINT), b"\x02", response=False)
        assert band.database.get_value(control) == b"\x02"
        hrm = client.services.get_characteristic(HR_MEASUREMENT)
        cccd = hrm.descriptors[0]
        assert await client.read_gatt_descriptor(cccd.handle) == bytearray(b"\x00\x00")
        await client.start_notify(hrm, lambda _c, _d: None)
        assert await client.read_gatt_descriptor(cccd.handle) == bytearray(b"\x01\x00")
        with pytest.raises(BleakError, match="at most"):
            await client.write_gatt_char(str(HEART_RATE_CONTROL_POINT), bytes(245), response=False)
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.write_gatt_char(str(BODY_SENSOR_LOCATION), b"\x02", response=True)
        assert err.value.code == AttErrorCode.WRITE_NOT_PERMITTED


async def test_protected_values_need_pairing_with_the_displayed_passkey(radio: Radio) -> None:
    band = GattPeripheral(BAND, BAND_PROFILE, seed=7)
    radio.attach(band)
    store = BondStore()
    async with _client(BAND, band, bond_store=store) as client:
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.read_gatt_char(str(SERIAL_NUMBER))
        assert err.value.code == AttErrorCode.INSUFFICIENT_ENCRYPTION
        with pytest.raises(BleakGATTProtocolError):
            await client.start_notify(HR_MEASUREMENT, lambda _c, _d: None)
        await client.pair()
        assert client._backend.security_level == SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
        assert await client.read_gatt_char(str(SERIAL_NUMBER)) == band.database.get_value(
            band.value_handle(SERIAL_NUMBER)
        )
    # The bond is remembered: the next connection is encrypted without pairing again.
    async with _client(BAND, band, bond_store=store) as client:
        assert client._backend.security_level == SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
        await client.read_gatt_char(str(SERIAL_NUMBER))
    assert band.pairings_completed == 1
    # The band forgets us: the stale bond is dropped and the value is protected again.
    band.forget_bonds()
    async with _client(BAND, band, bond_store=store) as client:
        assert client._backend.security_level == SecurityLevel.NO_SECURITY
        assert store.get("C0:FF:EE:00:00:01", BAND) is None
        with pytest.raises(BleakGATTProtocolError):
            await client.read_gatt_char(str(SERIAL_NUMBER))
        await client.unpair()
        assert not client.is_connected


async def test_pair_on_connect_and_indications_are_confirmed(radio: Radio) -> None:
    band = GattPeripheral(BAND, BAND_PROFILE)
    radio.attach(band)
    got: list[bytearray] = []

    async def on_value(_char: object, data: bytearray) -> None:
        got.append(data)

    async with _client(BAND, band, pair=True) as client:
        await client.start_notify(str(USER_CONTROL_POINT), on_value)
        assert band.indicate(USER_CONTROL_POINT, b"\x20\x01\x01") == 1
        await asyncio.sleep(0)  # bleak runs async callbacks as tasks
        assert got == [bytearray(b"\x20\x01\x01")]
        assert not band.indication_pending()  # the backend confirmed it


async def test_wrong_or_missing_passkey_fails_pairing(radio: Radio, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KMEBAND_PASSKEY", raising=False)
    band = GattPeripheral(BAND, BAND_PROFILE, seed=11)
    radio.attach(band)
    async with BleakClient(BAND, backend=SimBleakClient, bond_store=BondStore()) as client:
        with pytest.raises(PasskeyMissingError, match="KMEBAND_PASSKEY"):
            await client.pair()

        def wrong() -> str:
            shown = int(band.displayed_passkey or "0")
            return f"{(shown + 1) % 1_000_000:06d}"

        with pytest.raises(PairingFailedError, match="passkey was wrong") as err:
            await client.pair(passkey_callback=wrong)
        assert err.value.reason is not None and err.value.reason.name == "CONFIRM_VALUE_FAILED"
        assert client._backend.security_level == SecurityLevel.NO_SECURITY
        monkeypatch.setenv("KMEBAND_PASSKEY", "not digits")
        with pytest.raises(PasskeyMissingError):
            await client.pair()
    assert band.bonds == {}


async def test_a_dropped_link_calls_back_and_fails_requests(radio: Radio) -> None:
    band = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
    radio.attach(band)
    async with _client(STRAP, band) as client:
        frames_to_connect = radio.links_to(STRAP)[0].frames
    radio.inject_fault(STRAP, LinkFault(drop_after_pdus=frames_to_connect + 4))
    dropped = asyncio.Event()
    client = _client(STRAP, band, disconnected_callback=lambda _c: dropped.set())
    await client.connect()
    reads = 0
    with pytest.raises(SimLinkLostError, match="dropped"):
        for _ in range(5):
            await client.read_gatt_char(str(BODY_SENSOR_LOCATION))
            reads += 1
    assert reads == 2  # the fault drops the link once the second read's answer is out
    await asyncio.wait_for(dropped.wait(), 1.0)
    assert not client.is_connected
    with pytest.raises(SimLinkLostError):
        await client.read_gatt_char(str(BODY_SENSOR_LOCATION))
    await client.disconnect()  # harmless on a dead link


async def test_a_solicited_disconnect_does_not_call_back(radio: Radio) -> None:
    band = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
    radio.attach(band)
    calls: list[object] = []
    async with _client(STRAP, band, disconnected_callback=calls.append) as client:
        assert client.is_connected
    await asyncio.sleep(0)
    assert calls == [] and band.disconnects


class _SilentPeripheral(GattPeripheral):
    """Answers everything except reads of one handle (a hung server)."""

    silent_handle = 0

    def on_frame(self, link: PeripheralLink, cid: int, payload: bytes) -> None:
        if payload[:1] == b"\x0a" and payload[1] | payload[2] << 8 == self.silent_handle:
            return
        super().on_frame(link, cid, payload)


async def test_an_unanswered_request_times_out_and_closes_the_link(radio: Radio) -> None:
    band = _SilentPeripheral(STRAP, SIG_ONLY_PROFILE)
    band.silent_handle = band.value_handle(BODY_SENSOR_LOCATION)
    radio.attach(band)
    client = _client(STRAP, band, timeout=0.05)
    await client.connect()
    with pytest.raises(SimLinkLostError, match="ATT transaction timeout"):
        await client.read_gatt_char(str(BODY_SENSOR_LOCATION))
    await asyncio.sleep(0)
    assert not client.is_connected
    assert band.disconnects


async def test_unknown_addresses_and_missing_radios_raise_bleak_errors() -> None:
    radio = Radio(ManualClock())
    with use_radio(radio):
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient("AA:AA:AA:AA:AA:AA", backend=SimBleakClient).connect()
        band = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
        radio.attach(band, distance_m=10_000)
        with pytest.raises(BleakError, match="out of range"):
            await BleakClient(STRAP, backend=SimBleakClient).connect()


@given(st.integers(0, 999_999))
@settings(max_examples=50)
def test_passkeys_parse_from_ints_and_zero_padded_strings(passkey: int) -> None:
    assert parse_passkey(passkey) == passkey
    assert parse_passkey(f"{passkey:06d}") == passkey
    with pytest.raises(PasskeyMissingError):
        parse_passkey(passkey + 1_000_000)
