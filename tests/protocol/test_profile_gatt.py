"""The band profile through the real GATT machines, in memory, with no asyncio.

A GattClient talks to a GattServer built from BAND_PROFILE: it discovers the whole
profile, reads and decodes Device Information, subscribes to Heart Rate Measurement and
decodes a notification, writes and reads back User Data on an authenticated link, and gets
Insufficient Encryption / Authentication where the link is not good enough.
"""

from __future__ import annotations

import uuid

import pytest

from protocol.ble import sig_codecs as sc
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt import (
    AttributeDatabase,
    ClientEvent,
    GattClient,
    GattProcedureError,
    GattProfile,
    GattServer,
    Notification,
    ProcedureCompleted,
    ProcedureFailed,
    ProcedureStart,
    SubscriptionChanged,
)
from protocol.ble.gatt_model import CHARACTERISTIC_USER_DESCRIPTION, Properties, SecurityLevel
from protocol.kme import profile as p
from protocol.kme.control.consent import ConsentLogEntry, ConsentLogPage, ConsentSource
from protocol.kme.control.schema import decode_as, encode_control
from protocol.kme.records import ConsentCategory

OPEN = SecurityLevel.NO_SECURITY
UNAUTHENTICATED = SecurityLevel.UNAUTHENTICATED_ENCRYPTION
PAIRED = SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS

DEVICE_INFO = {
    p.MANUFACTURER_NAME: "KME",
    p.MODEL_NUMBER: "KME Smart 1",
    p.SERIAL_NUMBER: "TEST-0000",
    p.HARDWARE_REVISION: "B2",
    p.FIRMWARE_REVISION: "0.1.0",
    p.SOFTWARE_REVISION: "0.1.0",
}
PNP = sc.PnpId(sc.VendorIdSource.BLUETOOTH_SIG, 0xFFFF, 0x0001, 0x0100)


class Link:
    """A client and a server joined in memory; ``security`` is the link's level."""

    def __init__(self, services: tuple[p.ServiceDefinition, ...], security: SecurityLevel) -> None:
        self.database = AttributeDatabase.from_services(services)
        self.server = GattServer(self.database)
        self.client = GattClient()
        self.security = security
        self.server_events: list[object] = []
        self.unsolicited: list[ClientEvent] = []

    def run(self, start: ProcedureStart) -> object:
        """Carry PDUs both ways until the procedure ends; its result, or raise its error."""
        outgoing = [start.pdu] if start.pdu is not None else []
        ended: ClientEvent | None = None
        while outgoing:
            response, events = self.server.receive(outgoing.pop(0), self.security)
            self.server_events.extend(events)
            if response is None:
                continue
            to_send, client_events = self.client.receive(response)
            outgoing.extend(to_send)
            for event in client_events:
                is_end = isinstance(event, ProcedureCompleted | ProcedureFailed)
                if is_end and event.procedure_id == start.procedure_id:
                    ended = event
                else:
                    self.unsolicited.append(event)
        if isinstance(ended, ProcedureFailed):
            raise ended.error
        assert isinstance(ended, ProcedureCompleted), "the procedure never finished"
        return ended.result

    def push(self, pdu: bytes | None) -> list[ClientEvent]:
        """Deliver a server-initiated PDU (notification) to the client."""
        assert pdu is not None, "the server built no PDU: is the client subscribed?"
        to_send, events = self.client.receive(pdu)
        assert to_send == ()
        return list(events)


def _band_services() -> tuple[p.ServiceDefinition, ...]:
    values = {u: sc.encode_utf8s(text) for u, text in DEVICE_INFO.items()}
    values[p.PNP_ID] = sc.encode_pnp_id(PNP)
    return p.with_values(p.BAND_PROFILE, values)


@pytest.fixture
def paired() -> tuple[Link, GattProfile]:
    link = Link(_band_services(), PAIRED)
    mtu = link.run(link.client.exchange_mtu())
    assert mtu == link.server.mtu
    discovered = link.run(link.client.discover_profile())
    assert isinstance(discovered, GattProfile)
    return link, discovered


def _value_handle(profile: GattProfile, char_uuid: uuid.UUID) -> int:
    return profile.characteristic(char_uuid).value_handle


def test_discovers_the_whole_band_profile(paired: tuple[Link, GattProfile]) -> None:
    _link, discovered = paired
    assert [s.uuid for s in discovered] == [s.uuid for s in p.BAND_PROFILE]
    for found, defined in zip(discovered, p.BAND_PROFILE, strict=True):
        assert [c.uuid for c in found.characteristics] == [
            c.uuid for c in defined.characteristics
        ], defined.name
        for char, definition in zip(found.characteristics, defined.characteristics, strict=True):
            assert char.properties == definition.properties, definition.name
            pushes = bool(definition.properties & (Properties.NOTIFY | Properties.INDICATE))
            assert (char.cccd_handle is not None) == pushes, definition.name
            has_cud = any(d.uuid == CHARACTERISTIC_USER_DESCRIPTION for d in char.descriptors)
            assert has_cud == bool(definition.description), definition.name


def test_reads_and_decodes_device_information(paired: tuple[Link, GattProfile]) -> None:
    link, discovered = paired
    for char_uuid, text in DEVICE_INFO.items():
        raw = link.run(link.client.read(_value_handle(discovered, char_uuid)))
        assert isinstance(raw, bytes)
        assert sc.decode_utf8s(raw) == text
    raw = link.run(link.client.read(_value_handle(discovered, p.PNP_ID)))
    assert isinstance(raw, bytes)
    assert sc.decode_pnp_id(raw) == PNP
    appearance = link.run(link.client.read(_value_handle(discovered, p.APPEARANCE)))
    assert isinstance(appearance, bytes)
    assert sc.decode_appearance(appearance) == p.BAND_APPEARANCE


def test_heart_rate_notification_decodes(paired: tuple[Link, GattProfile]) -> None:
    link, discovered = paired
    hrm = discovered.characteristic(p.HEART_RATE_MEASUREMENT)
    assert hrm.cccd_handle is not None
    link.run(link.client.subscribe(hrm.cccd_handle))
    assert SubscriptionChanged(hrm.value_handle, True, False) in link.server_events
    sent = sc.HeartRateMeasurement(
        bpm=128, sensor_contact=sc.SensorContact.DETECTED, energy_expended_kj=42,
        rr_intervals=(480, 475),
    )  # fmt: skip
    events = link.push(link.server.notify(hrm.value_handle, sc.encode_heart_rate_measurement(sent)))
    assert len(events) == 1 and isinstance(events[0], Notification)
    assert events[0].handle == hrm.value_handle
    assert sc.decode_heart_rate_measurement(events[0].value) == sent


def test_user_data_write_reads_back(paired: tuple[Link, GattProfile]) -> None:
    link, discovered = paired
    weight = _value_handle(discovered, p.WEIGHT)
    birth = _value_handle(discovered, p.DATE_OF_BIRTH)
    link.run(link.client.write(weight, sc.encode_weight(sc.weight_units(72.35))))
    link.run(link.client.write(birth, sc.encode_date_of_birth(sc.DateOfBirth(1988, 2, 29))))
    raw_weight = link.run(link.client.read(weight))
    raw_birth = link.run(link.client.read(birth))
    assert isinstance(raw_weight, bytes) and isinstance(raw_birth, bytes)
    assert sc.decode_weight(raw_weight) * sc.WEIGHT_UNIT_KG == pytest.approx(72.35)
    assert sc.decode_date_of_birth(raw_birth) == sc.DateOfBirth(1988, 2, 29)


def test_long_kme_value_is_read_whole_with_read_blob() -> None:
    link, discovered = _discover(_band_services(), PAIRED)  # no MTU exchange: ATT_MTU 23
    entries = tuple(
        ConsentLogEntry(i, ConsentCategory(1 + i % 7), i % 2 == 0, 3, 1_700_000_000 + i, 60,
                        ConsentSource.BAND)
        for i in range(12)
    )  # fmt: skip
    page = ConsentLogPage(0, 12, entries, bytes(range(64)))
    encoded = encode_control(page)
    assert len(encoded) > 10 * (link.server.mtu - 1)  # many Read Blob requests
    handle = _value_handle(discovered, p.KME_CONSENT_CHANGE_LOG)
    link.database.set_value(handle, encoded)
    raw = link.run(link.client.read(handle))
    assert isinstance(raw, bytes)
    assert decode_as(raw, ConsentLogPage) == page


def _discover(services: tuple[p.ServiceDefinition, ...], security: SecurityLevel) -> (
    tuple[Link, GattProfile]
):  # fmt: skip
    link = Link(services, security)
    discovered = link.run(link.client.discover_profile())  # discovery is always open
    assert isinstance(discovered, GattProfile)
    return link, discovered


def _error_code(link: Link, start: ProcedureStart) -> int | None:
    with pytest.raises(GattProcedureError) as info:
        link.run(start)
    return info.value.error_code


def test_protected_characteristics_need_encryption() -> None:
    link, discovered = _discover(_band_services(), OPEN)
    for char_uuid in (p.AGE, p.SERIAL_NUMBER, p.KME_CONSENT_STATE, p.KME_BAND_IDENTITY):
        code = _error_code(link, link.client.read(_value_handle(discovered, char_uuid)))
        assert code == AttErrorCode.INSUFFICIENT_ENCRYPTION
    weight = _value_handle(discovered, p.WEIGHT)
    assert _error_code(link, link.client.write(weight, sc.encode_weight(1))) == (
        AttErrorCode.INSUFFICIENT_ENCRYPTION
    )
    hrm_cccd = discovered.characteristic(p.HEART_RATE_MEASUREMENT).cccd_handle
    assert hrm_cccd is not None
    assert _error_code(link, link.client.subscribe(hrm_cccd)) == (
        AttErrorCode.INSUFFICIENT_ENCRYPTION
    )
    # What a client needs before pairing stays open.
    level = link.run(link.client.read(_value_handle(discovered, p.BATTERY_LEVEL)))
    assert isinstance(level, bytes) and sc.decode_battery_level(level) == 100
    maker = link.run(link.client.read(_value_handle(discovered, p.MANUFACTURER_NAME)))
    assert maker == b"KME"
    link.run(link.client.read(_value_handle(discovered, p.KME_ACTIVATION_STATE)))


def test_unauthenticated_encryption_is_not_enough() -> None:
    link, discovered = _discover(_band_services(), UNAUTHENTICATED)
    code = _error_code(link, link.client.read(_value_handle(discovered, p.HEIGHT)))
    assert code == AttErrorCode.INSUFFICIENT_AUTHENTICATION


def test_third_party_heart_rate_band_works_without_pairing() -> None:
    link, discovered = _discover(p.SIG_ONLY_PROFILE, OPEN)
    assert [s.uuid for s in discovered] == [s.uuid for s in p.SIG_ONLY_PROFILE]
    hrm = discovered.characteristic(p.HEART_RATE_MEASUREMENT)
    assert hrm.cccd_handle is not None
    link.run(link.client.subscribe(hrm.cccd_handle))
    sent = sc.HeartRateMeasurement(61)
    events = link.push(link.server.notify(hrm.value_handle, sc.encode_heart_rate_measurement(sent)))
    assert isinstance(events[0], Notification)
    assert sc.decode_heart_rate_measurement(events[0].value) == sent
