"""GattClient against GattServer in memory, with no asyncio: every GATT procedure end to end."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ble import att
from protocol.ble.att import AttErrorCode, decode_pdu
from protocol.ble.gatt import (
    AttributeDatabase,
    CharacteristicEntry,
    ClientEvent,
    DiscoveredCharacteristic,
    GattClient,
    GattProcedureError,
    GattRejection,
    GattServer,
    GattValueTooLong,
    Indication,
    IndicationConfirmed,
    IndicationPending,
    MtuChanged,
    Notification,
    NotSubscribable,
    ProcedureCompleted,
    ProcedureFailed,
    ProcedureStart,
    ReadCompleted,
    ServerEvent,
    SubscriptionChanged,
    ValueWritten,
    WriteCompleted,
)
from protocol.ble.gatt_model import (
    CHARACTERISTIC_PRESENTATION_FORMAT,
    OPEN_READ,
    OPEN_READ_WRITE,
    PROTECTED_READ,
    PROTECTED_READ_WRITE,
    CharacteristicDefinition,
    DescriptorDefinition,
    Permissions,
    Properties,
    SecurityLevel,
    ServiceDefinition,
)
from protocol.ble.uuids import uuid16

NONE = SecurityLevel.NO_SECURITY
UNAUTH = SecurityLevel.UNAUTHENTICATED_ENCRYPTION
AUTH = SecurityLevel.AUTHENTICATED_ENCRYPTION

GAP = uuid16(0x1800)
DEVICE_NAME = uuid16(0x2A00)
BATTERY = uuid16(0x180F)
LEVEL = uuid16(0x2A19)
KME = uuid.UUID("8e5a0001-6b1c-4d2a-9a77-0b5e4e6d0001")


def kme(n: int) -> uuid.UUID:
    return uuid.UUID(f"8e5a{n:04x}-6b1c-4d2a-9a77-0b5e4e6d0001")


LOG, PROFILE, SERIAL, CONTROL, INBOX, STATUS, CLOCK = (kme(n) for n in range(2, 9))
LONG_VALUE = bytes(range(256)) + bytes(range(44))  # 300 octets


def services() -> list[ServiceDefinition]:
    r, w, n, i = Properties.READ, Properties.WRITE, Properties.NOTIFY, Properties.INDICATE
    return [
        ServiceDefinition(
            GAP,
            "Generic Access",
            (CharacteristicDefinition(DEVICE_NAME, "Name", r, OPEN_READ, "utf8", b"KME Smart"),),
        ),
        ServiceDefinition(
            BATTERY,
            "Battery",
            (
                CharacteristicDefinition(
                    LEVEL, "Level", r | n, OPEN_READ, "uint8", b"\x64", description="Battery level"
                ),
            ),
        ),
        ServiceDefinition(
            KME,
            "KME",
            (
                CharacteristicDefinition(LOG, "Log", r | w, OPEN_READ_WRITE, "bytes", LONG_VALUE),
                CharacteristicDefinition(
                    PROFILE,
                    "Profile",
                    r | w | n,
                    PROTECTED_READ_WRITE,
                    "cbor",
                    b"\x01",
                    max_length=64,
                ),
                CharacteristicDefinition(
                    SERIAL,
                    "Serial",
                    r,
                    Permissions.READABLE | Permissions.READ_ENCRYPTED,
                    "utf8",
                    b"KME-0000",
                ),
                CharacteristicDefinition(
                    CONTROL, "Control", w | i, Permissions.WRITABLE, "cbor", max_length=32
                ),
                CharacteristicDefinition(
                    INBOX,
                    "Inbox",
                    Properties.WRITE_WITHOUT_RESPONSE | w,
                    Permissions.WRITABLE,
                    "bytes",
                ),
                CharacteristicDefinition(
                    STATUS,
                    "Status",
                    r,
                    OPEN_READ,
                    "uint8",
                    b"\x00",
                    descriptors=(
                        DescriptorDefinition(
                            CHARACTERISTIC_PRESENTATION_FORMAT, OPEN_READ, b"\x04\x00\x00\x27\x01"
                        ),
                    ),
                ),
                CharacteristicDefinition(CLOCK, "Clock", r, PROTECTED_READ, "uint32"),
            ),
        ),
    ]


class Link:
    """Client and server wired back to back; every PDU is logged as it crosses."""

    def __init__(self, db: AttributeDatabase | None = None, *, rx_mtu: int = 517) -> None:
        self.db = db or AttributeDatabase.from_services(services())
        self.server = GattServer(self.db, rx_mtu=rx_mtu, connection="link-1")
        self.client = GattClient(rx_mtu=rx_mtu)
        self.security = NONE
        self.wire: list[tuple[str, bytes]] = []
        self.server_events: list[ServerEvent] = []
        self.client_events: list[ClientEvent] = []

    def pump(self, pdus: list[bytes | None]) -> None:
        queue = [p for p in pdus if p is not None]
        while queue:
            request = queue.pop(0)
            self.wire.append(("c>s", request))
            response, events = self.server.receive(request, self.security)
            self.server_events += events
            if response is None:
                continue
            self.wire.append(("s>c", response))
            to_send, client_events = self.client.receive(response)
            self.client_events += client_events
            queue += to_send

    def run(self, start: ProcedureStart) -> ClientEvent:
        """Drive until ``start``'s procedure ends; return its completion event."""
        self.pump([start.pdu])
        done = [
            e
            for e in self.client_events
            if isinstance(e, ProcedureCompleted | ProcedureFailed)
            and e.procedure_id == start.procedure_id
        ]
        assert len(done) == 1, self.client_events
        return done[0]

    def result(self, start: ProcedureStart) -> object:
        event = self.run(start)
        if isinstance(event, ProcedureFailed):
            raise event.error
        assert isinstance(event, ProcedureCompleted)
        return event.result

    def fails(self, start: ProcedureStart) -> GattProcedureError:
        event = self.run(start)
        assert isinstance(event, ProcedureFailed), event
        return event.error

    def push(self, pdu: bytes | None) -> list[ClientEvent]:
        """Deliver server-initiated bytes to the client and its answers back to the server."""
        assert pdu is not None
        to_send, events = self.client.receive(pdu)
        for reply in to_send:
            response, server_events = self.server.receive(reply, self.security)
            assert response is None
            self.server_events += server_events
        return list(events)

    def opcodes(self, direction: str = "c>s") -> list[int]:
        return [pdu[0] for d, pdu in self.wire if d == direction]


# --- MTU and discovery ----------------------------------------------------------------


def test_mtu_exchange_sets_the_same_mtu_on_both_sides() -> None:
    link = Link()
    link.client = GattClient(rx_mtu=185)
    assert link.result(link.client.exchange_mtu()) == 185
    assert link.server.mtu == link.client.mtu == 185
    assert link.server_events == [MtuChanged(185)]


def _discovered(c: DiscoveredCharacteristic) -> tuple[object, ...]:
    descriptors = [(d.handle, d.uuid) for d in c.descriptors]
    return (c.uuid, c.declaration_handle, c.value_handle, c.properties, c.end_handle, descriptors)


def _defined(db: AttributeDatabase, c: CharacteristicEntry) -> tuple[object, ...]:
    descriptors = [(h, db.attribute(h).type) for h in range(c.value_handle + 1, c.end_handle + 1)]
    props = c.definition.properties
    return (c.uuid, c.declaration_handle, c.value_handle, props, c.end_handle, descriptors)


@pytest.mark.parametrize("mtu", [23, 64, 517])
def test_discover_profile_finds_exactly_the_database(mtu: int) -> None:
    link = Link(rx_mtu=mtu)
    link.result(link.client.exchange_mtu())
    profile = link.result(link.client.discover_profile())
    db = link.db
    got = [
        (s.uuid, s.handle, s.end_handle, [_discovered(c) for c in s.characteristics])
        for s in profile  # type: ignore[attr-defined]
    ]
    want = [
        (s.uuid, s.handle, s.end_handle, [_defined(db, c) for c in s.characteristics])
        for s in db.services
    ]
    assert got == want
    # Small MTUs need several Read By Group Type / Read By Type rounds.
    if mtu == 23:
        assert link.opcodes().count(0x10) > 2
    level = profile.characteristic(LEVEL)  # type: ignore[attr-defined]
    assert level.cccd_handle == db.cccd_handle(LEVEL)
    assert profile.characteristic(DEVICE_NAME).cccd_handle is None  # type: ignore[attr-defined]
    assert profile.service(KME).uuid == KME  # type: ignore[attr-defined]


def test_discovery_step_by_step() -> None:
    link = Link()
    svcs = link.result(link.client.discover_services())
    assert [s.uuid for s in svcs] == [GAP, BATTERY, KME]  # type: ignore[attr-defined]
    kme_svc = svcs[2]  # type: ignore[index]
    chars = link.result(link.client.discover_characteristics(kme_svc.handle, kme_svc.end_handle))
    assert [c.uuid for c in chars] == [LOG, PROFILE, SERIAL, CONTROL, INBOX, STATUS, CLOCK]  # type: ignore[attr-defined]
    status = chars[5]  # type: ignore[index]
    descs = link.result(
        link.client.discover_descriptors(status.value_handle + 1, status.end_handle)
    )
    assert [d.uuid for d in descs] == [CHARACTERISTIC_PRESENTATION_FORMAT]  # type: ignore[attr-defined]


# --- reads ------------------------------------------------------------------------------


def test_short_read() -> None:
    link = Link()
    event = link.run(link.client.read(link.db.value_handle(DEVICE_NAME)))
    assert isinstance(event, ReadCompleted)
    assert event.value == b"KME Smart"
    assert link.opcodes() == [0x0A]


def test_long_read_continues_with_read_blob() -> None:
    link = Link()  # ATT_MTU stays 23: 22 octets per part
    value = link.result(link.client.read(link.db.value_handle(LOG)))
    assert value == LONG_VALUE
    assert link.opcodes() == [0x0A] + [0x0C] * (len(LONG_VALUE) // 22)
    offsets = [int.from_bytes(p[3:5], "little") for d, p in link.wire if p[0] == 0x0C]
    assert offsets == list(range(22, len(LONG_VALUE), 22))


def test_read_of_exactly_one_part_asks_once_more() -> None:
    link = Link()
    handle = link.db.value_handle(LOG)
    link.db.set_value(handle, b"x" * 22)
    assert link.result(link.client.read(handle)) == b"x" * 22
    assert link.opcodes() == [0x0A, 0x0C]  # the blob read at offset 22 returns nothing


@settings(max_examples=40, deadline=None)
@given(value=st.binary(max_size=512), mtu=st.integers(23, 120))
def test_any_value_writes_and_reads_back_at_any_mtu(value: bytes, mtu: int) -> None:
    db = AttributeDatabase.from_services(services())
    link = Link(db, rx_mtu=mtu)
    link.result(link.client.exchange_mtu())
    handle = db.value_handle(LOG)
    assert link.result(link.client.write(handle, value)) == handle
    assert db.get_value(handle) == value
    assert link.result(link.client.read(handle)) == value
    written = [e for e in link.server_events if isinstance(e, ValueWritten)]
    assert written == [ValueWritten(handle, value, True)]
    used_long_write = 0x16 in link.opcodes()
    assert used_long_write == (len(value) > mtu - 3)


def test_read_hook_supplies_the_value_and_may_refuse() -> None:
    link = Link()
    handle = link.db.value_handle(STATUS)
    calls: list[tuple[int, object]] = []

    def hook(h: int, connection: object) -> bytes:
        calls.append((h, connection))
        if len(calls) > 1:
            raise GattRejection(0x81, "busy")
        return b"\x07"

    link.db.set_read_hook(handle, hook)
    assert link.result(link.client.read(handle)) == b"\x07"
    assert calls == [(handle, "link-1")]
    error = link.fails(link.client.read(handle))
    assert error.error_code == 0x81
    assert "APPLICATION_ERROR (0x81)" in str(error)


# --- writes -----------------------------------------------------------------------------


def test_write_with_response_stores_and_reports() -> None:
    link = Link()
    handle = link.db.value_handle(INBOX)
    event = link.run(link.client.write(handle, b"\x01\x02"))
    assert event == WriteCompleted(event.procedure_id, handle)
    assert link.server_events == [ValueWritten(handle, b"\x01\x02", True)]
    assert link.db.get_value(handle) == b"\x01\x02"


def test_write_without_response_gets_no_answer() -> None:
    link = Link()
    handle = link.db.value_handle(INBOX)
    link.pump([link.client.write_without_response(handle, b"\x09")])
    assert link.wire == [("c>s", b"\x52" + handle.to_bytes(2, "little") + b"\x09")]
    assert link.server_events == [ValueWritten(handle, b"\x09", False)]
    # A refused command is dropped silently: no Error Response, no event.
    link.pump([link.client.write_without_response(link.db.value_handle(STATUS), b"\x01")])
    assert [d for d, _ in link.wire] == ["c>s", "c>s"]
    assert len(link.server_events) == 1


def test_write_hook_refusal_reaches_the_client_and_nothing_is_stored() -> None:
    link = Link()
    handle = link.db.value_handle(CONTROL)

    def vet(h: int, value: bytes, connection: object) -> None:
        if value == b"\xff":
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED)

    link.db.set_write_hook(handle, vet)
    error = link.fails(link.client.write(handle, b"\xff"))
    assert error.error_code == AttErrorCode.VALUE_NOT_ALLOWED
    assert error.handle == handle
    assert link.db.get_value(handle) == b""
    assert link.server_events == []
    link.result(link.client.write(handle, b"\x01"))
    assert link.db.get_value(handle) == b"\x01"


def test_long_write_uses_prepare_and_execute() -> None:
    link = Link()
    handle = link.db.value_handle(LOG)
    new = bytes(reversed(LONG_VALUE))[:100]
    link.result(link.client.write(handle, new))
    assert link.opcodes() == [0x16] * 6 + [0x18]  # 18-octet parts at ATT_MTU 23
    assert link.db.get_value(handle) == new
    assert link.server_events == [ValueWritten(handle, new, True)]


def test_long_write_too_long_for_the_attribute_is_refused_at_execute() -> None:
    link = Link()
    handle = link.db.value_handle(CONTROL)  # max_length 32
    error = link.fails(link.client.write(handle, b"z" * 40))
    assert error.error_code == AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    assert link.db.get_value(handle) == b""
    assert link.server.prepared_writes == 0


def test_write_longer_than_max_length_is_refused() -> None:
    link = Link()
    error = link.fails(link.client.write(link.db.value_handle(CONTROL), b"z" * 20 + b"!" * 13))
    assert error.error_code == AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH


# --- notifications and indications --------------------------------------------------


def test_notifications_only_after_subscribing() -> None:
    link = Link()
    level = link.db.value_handle(LEVEL)
    assert link.server.notify(level, b"\x50") is None
    link.result(link.client.subscribe(link.db.cccd_handle(LEVEL)))
    assert link.server_events == [SubscriptionChanged(level, notify=True, indicate=False)]
    assert link.server.subscription(level) == (True, False)
    assert link.push(link.server.notify(level, b"\x50")) == [Notification(level, b"\x50")]
    link.db.set_value(level, b"\x4f")
    assert link.push(link.server.notify(level)) == [Notification(level, b"\x4f")]
    link.result(link.client.unsubscribe(link.db.cccd_handle(LEVEL)))
    assert link.server_events[-1] == SubscriptionChanged(level, notify=False, indicate=False)
    assert link.server.notify(level, b"\x4e") is None


def test_cccd_reads_back_per_connection() -> None:
    link = Link()
    other = GattServer(link.db)
    cccd = link.db.cccd_handle(LEVEL)
    link.result(link.client.subscribe(cccd))
    assert link.result(link.client.read(cccd)) == b"\x01\x00"
    response, _ = other.receive(att.ReadRequest(cccd).encode())
    assert response == b"\x0b\x00\x00"
    assert other.notify(link.db.value_handle(LEVEL), b"\x01") is None


def test_notification_is_truncated_to_mtu_minus_3_unless_strict() -> None:
    link = Link()
    link.db.set_value(link.db.value_handle(PROFILE), b"")
    link.security = AUTH
    link.result(link.client.subscribe(link.db.cccd_handle(PROFILE)))
    handle = link.db.value_handle(PROFILE)
    events = link.push(link.server.notify(handle, bytes(30)))
    assert events == [Notification(handle, bytes(20))]
    with pytest.raises(GattValueTooLong, match="ATT_MTU of 23"):
        link.server.notify(handle, bytes(21), strict=True)


def test_notify_on_a_handle_that_cannot_notify_is_a_usage_error() -> None:
    link = Link()
    with pytest.raises(NotSubscribable):
        link.server.notify(link.db.value_handle(DEVICE_NAME), b"")
    with pytest.raises(NotSubscribable):
        link.server.indicate(link.db.value_handle(LEVEL), b"")
    with pytest.raises(NotSubscribable):
        link.server.notify(0x7777, b"")


def test_indication_is_confirmed_and_only_one_at_a_time() -> None:
    link = Link()
    control = link.db.value_handle(CONTROL)
    link.result(link.client.subscribe(link.db.cccd_handle(CONTROL), notify=False, indicate=True))
    assert link.server_events == [SubscriptionChanged(control, notify=False, indicate=True)]
    pdu = link.server.indicate(control, b"\xa1")
    assert link.server.indication_pending == control
    with pytest.raises(IndicationPending):
        link.server.indicate(control, b"\xa2")
    to_send, events = link.client.receive(pdu)  # type: ignore[arg-type]
    assert events == (Indication(control, b"\xa1"),)
    assert to_send == (b"\x1e",)
    assert link.server.receive(to_send[0]) == (None, (IndicationConfirmed(control),))
    assert link.server.indication_pending is None
    assert link.server.indicate(control, b"\xa2") is not None
    assert link.server.receive(b"\x1e").events == (IndicationConfirmed(control),)
    # A confirmation with nothing outstanding is ignored.
    assert link.server.receive(b"\x1e") == (None, ())


def test_cccd_refuses_bits_the_characteristic_does_not_support() -> None:
    link = Link()
    cccd = link.db.cccd_handle(LEVEL)  # notify only
    error = link.fails(link.client.subscribe(cccd, notify=False, indicate=True))
    assert error.error_code == AttErrorCode.VALUE_NOT_ALLOWED
    error = link.fails(link.client.write(cccd, b"\x01"))
    assert error.error_code == AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    assert link.server.subscription(link.db.value_handle(LEVEL)) == (False, False)


# --- permissions and security -------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "security", "code"),
    [
        (PROFILE, NONE, AttErrorCode.INSUFFICIENT_ENCRYPTION),
        (PROFILE, UNAUTH, AttErrorCode.INSUFFICIENT_AUTHENTICATION),
        (PROFILE, AUTH, None),
        (SERIAL, NONE, AttErrorCode.INSUFFICIENT_ENCRYPTION),
        (SERIAL, UNAUTH, None),
        (CLOCK, SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS, None),
        (CONTROL, AUTH, AttErrorCode.READ_NOT_PERMITTED),
    ],
)
def test_read_security(char: uuid.UUID, security: SecurityLevel, code: int | None) -> None:
    link = Link()
    link.security = security
    event = link.run(link.client.read(link.db.value_handle(char)))
    if code is None:
        assert isinstance(event, ReadCompleted)
    else:
        assert isinstance(event, ProcedureFailed)
        assert event.error.error_code == code
        assert event.error.handle == link.db.value_handle(char)
        assert event.error.request_opcode == 0x0A


def test_protected_writes_and_subscriptions_need_the_same_security() -> None:
    link = Link()
    profile = link.db.value_handle(PROFILE)
    cccd = link.db.cccd_handle(PROFILE)
    for security, code in [
        (NONE, AttErrorCode.INSUFFICIENT_ENCRYPTION),
        (UNAUTH, AttErrorCode.INSUFFICIENT_AUTHENTICATION),
    ]:
        link.security = security
        assert link.fails(link.client.write(profile, b"\x02")).error_code == code
        assert link.fails(link.client.subscribe(cccd)).error_code == code
        assert link.fails(link.client.write(profile, bytes(40))).error_code == code  # prepare
    assert link.db.get_value(profile) == b"\x01"
    link.security = AUTH
    link.result(link.client.write(profile, b"\x02"))
    link.result(link.client.subscribe(cccd))
    assert link.db.get_value(profile) == b"\x02"


def test_write_not_permitted_and_invalid_handle() -> None:
    link = Link()
    assert (
        link.fails(link.client.write(link.db.value_handle(STATUS), b"\x01")).error_code
        == AttErrorCode.WRITE_NOT_PERMITTED
    )
    error = link.fails(link.client.read(0x0999))
    assert error.error_code == AttErrorCode.INVALID_HANDLE
    assert error.handle == 0x0999
    assert "rediscover" in str(error)


def test_insufficient_encryption_on_read_by_type_and_read_multiple() -> None:
    link = Link()
    rsp, _ = link.server.receive(att.ReadByTypeRequest(1, 0xFFFF, PROFILE).encode())
    assert decode_pdu(rsp) == att.ErrorResponse(  # type: ignore[arg-type]
        0x08, link.db.value_handle(PROFILE), AttErrorCode.INSUFFICIENT_ENCRYPTION
    )
    handles = (link.db.value_handle(DEVICE_NAME), link.db.value_handle(SERIAL))
    rsp, _ = link.server.receive(att.ReadMultipleRequest(handles).encode())
    assert decode_pdu(rsp) == att.ErrorResponse(  # type: ignore[arg-type]
        0x0E, handles[1], AttErrorCode.INSUFFICIENT_ENCRYPTION
    )
    rsp, _ = link.server.receive(att.ReadMultipleRequest(handles).encode(), UNAUTH)
    assert rsp == b"\x0fKME SmartKME-0000"


# --- raw server behaviour -------------------------------------------------------------


def raw(link: Link, pdu: bytes, security: SecurityLevel = NONE) -> att.AttPdu | None:
    response, _ = link.server.receive(pdu, security)
    return None if response is None else decode_pdu(response)


def test_request_not_supported_and_ignored_commands() -> None:
    link = Link()
    assert raw(link, b"\x20\x01\x00\x02\x00") == att.ErrorResponse(
        0x20, 0, AttErrorCode.REQUEST_NOT_SUPPORTED
    )
    assert raw(link, b"\x3f") == att.ErrorResponse(0x3F, 0, AttErrorCode.REQUEST_NOT_SUPPORTED)
    assert raw(link, b"\x7e\x00") is None  # unknown command: ignored
    assert raw(link, b"\xd2\x01\x00" + bytes(13)) is None  # signed write: ignored
    assert raw(link, b"\x0b\x00") is None  # a response is not for a server
    assert raw(link, b"\x1b\x03\x00\x01") is None


@pytest.mark.parametrize(
    ("pdu", "expected"),
    [
        (b"", att.ErrorResponse(0x00, 0, AttErrorCode.INVALID_PDU)),
        (b"\x0a\x01", att.ErrorResponse(0x0A, 0, AttErrorCode.INVALID_PDU)),
        (b"\x12\x01", att.ErrorResponse(0x12, 0, AttErrorCode.INVALID_PDU)),
        (b"\x18\x07", att.ErrorResponse(0x18, 0, AttErrorCode.INVALID_PDU)),
        (b"\x04\x09\x00\x01\x00", att.ErrorResponse(0x04, 9, AttErrorCode.INVALID_HANDLE)),
        (b"\x04\x00\x00\x01\x00", att.ErrorResponse(0x04, 0, AttErrorCode.INVALID_HANDLE)),
        (
            b"\x12\x01\x00" + bytes(21),
            att.ErrorResponse(0x12, 0, AttErrorCode.INVALID_PDU),
        ),  # over ATT_MTU
    ],
)
def test_malformed_requests_get_invalid_pdu(pdu: bytes, expected: att.ErrorResponse) -> None:
    assert raw(Link(), pdu) == expected


def test_discovery_edges() -> None:
    link = Link()
    last = link.db.last_handle
    assert raw(link, att.FindInformationRequest(last + 1, 0xFFFF).encode()) == att.ErrorResponse(
        0x04, last + 1, AttErrorCode.ATTRIBUTE_NOT_FOUND
    )
    assert raw(
        link, att.ReadByGroupTypeRequest(1, 0xFFFF, uuid16(0x2803)).encode()
    ) == att.ErrorResponse(0x10, 1, AttErrorCode.UNSUPPORTED_GROUP_TYPE)
    assert raw(
        link, att.ReadByTypeRequest(1, 0xFFFF, uuid16(0x2A6E)).encode()
    ) == att.ErrorResponse(0x08, 1, AttErrorCode.ATTRIBUTE_NOT_FOUND)
    # Find By Type Value: where is the Battery service?
    battery = link.db.services[1]
    found = raw(link, att.FindByTypeValueRequest(1, 0xFFFF, uuid16(0x2800), b"\x0f\x18").encode())
    assert found == att.FindByTypeValueResponse(((battery.handle, battery.end_handle),))
    # Read using the characteristic UUID.
    found = raw(link, att.ReadByTypeRequest(1, 0xFFFF, DEVICE_NAME).encode())
    assert found == att.ReadByTypeResponse(((link.db.value_handle(DEVICE_NAME), b"KME Smart"),))
    # Find Information never mixes 16- and 128-bit formats in one response.
    kme_svc = link.db.services[2]
    rsp = raw(link, att.FindInformationRequest(kme_svc.handle, kme_svc.end_handle).encode())
    assert isinstance(rsp, att.FindInformationResponse)
    assert [h for h, _ in rsp.entries] == [kme_svc.handle, kme_svc.handle + 1]


def test_read_blob_past_the_end_is_invalid_offset() -> None:
    link = Link()
    handle = link.db.value_handle(DEVICE_NAME)
    assert raw(link, att.ReadBlobRequest(handle, 9).encode()) == att.ReadBlobResponse(b"")
    assert raw(link, att.ReadBlobRequest(handle, 10).encode()) == att.ErrorResponse(
        0x0C, handle, AttErrorCode.INVALID_OFFSET
    )


def test_prepare_queue_full_cancel_and_bad_offsets() -> None:
    db = AttributeDatabase.from_services(services())
    server = GattServer(db, prepare_queue_limit=2)
    log = db.value_handle(LOG)
    inbox = db.value_handle(INBOX)

    def send(pdu: att.AttPdu) -> att.AttPdu | None:
        response, _ = server.receive(pdu.encode())
        return None if response is None else decode_pdu(response)

    assert send(att.PrepareWriteRequest(log, 0, b"ab")) == att.PrepareWriteResponse(log, 0, b"ab")
    assert send(att.PrepareWriteRequest(log, 2, b"cd")) == att.PrepareWriteResponse(log, 2, b"cd")
    assert send(att.PrepareWriteRequest(log, 4, b"ef")) == att.ErrorResponse(
        0x16, log, AttErrorCode.PREPARE_QUEUE_FULL
    )
    assert send(att.ExecuteWriteRequest(commit=False)) == att.ExecuteWriteResponse()
    assert server.prepared_writes == 0
    assert db.get_value(log) == LONG_VALUE
    # A gap in the assembled value is Invalid Offset, and nothing at all is written.
    send(att.PrepareWriteRequest(inbox, 0, b"ok"))
    send(att.PrepareWriteRequest(log, 400, b"gap"))
    assert send(att.ExecuteWriteRequest(commit=True)) == att.ErrorResponse(
        0x18, log, AttErrorCode.INVALID_OFFSET
    )
    assert db.get_value(inbox) == b""
    assert server.prepared_writes == 0
    # An offset into the current value patches it.
    send(att.PrepareWriteRequest(log, 298, b"!!"))
    assert send(att.ExecuteWriteRequest(commit=True)) == att.ExecuteWriteResponse()
    assert db.get_value(log) == LONG_VALUE[:298] + b"!!"
    assert send(att.ExecuteWriteRequest(commit=True)) == att.ExecuteWriteResponse()  # empty


def test_prepare_write_checks_permissions_at_once() -> None:
    link = Link()
    handle = link.db.value_handle(STATUS)
    assert raw(link, att.PrepareWriteRequest(handle, 0, b"x").encode()) == att.ErrorResponse(
        0x16, handle, AttErrorCode.WRITE_NOT_PERMITTED
    )
    assert raw(link, att.PrepareWriteRequest(0x999, 0, b"x").encode()) == att.ErrorResponse(
        0x16, 0x999, AttErrorCode.INVALID_HANDLE
    )


security_levels = st.sampled_from(list(SecurityLevel))


@settings(max_examples=2000)
@given(data=st.binary(max_size=40), security=security_levels)
def test_server_never_crashes_and_answers_only_valid_pdus(
    data: bytes, security: SecurityLevel
) -> None:
    server = GattServer(AttributeDatabase.from_services(services()))
    response, events = server.receive(data, security)
    if response is not None:
        pdu = decode_pdu(response)
        assert len(response) <= server.mtu
        if isinstance(pdu, att.ErrorResponse):
            assert pdu.request_opcode == (data[0] if data else 0)
        else:
            assert data and att.RESPONSE_OPCODE[data[0]] == pdu.OPCODE  # type: ignore[index]
    for event in events:
        assert isinstance(event, ValueWritten | SubscriptionChanged | MtuChanged)


@settings(max_examples=500)
@given(
    opcode=st.sampled_from(sorted(att.REQUEST_OPCODES | {0x52, 0x1E})),
    body=st.binary(max_size=30),
    security=security_levels,
)
def test_server_never_crashes_on_requests_with_arbitrary_fields(
    opcode: int, body: bytes, security: SecurityLevel
) -> None:
    server = GattServer(AttributeDatabase.from_services(services()))
    server.receive(b"\x02\x00\x01")  # ATT_MTU 256: longer PDUs get through
    response, _ = server.receive(bytes([opcode]) + body, security)
    if response is not None:
        decode_pdu(response)


# --- client machine ---------------------------------------------------------------------


def test_procedures_queue_behind_the_outstanding_request() -> None:
    link = Link()
    first = link.client.read(link.db.value_handle(DEVICE_NAME))
    second = link.client.read(link.db.value_handle(LEVEL))
    third = link.client.write(link.db.value_handle(INBOX), b"q")
    assert first.pdu is not None and second.pdu is None and third.pdu is None
    assert link.client.queued == 2
    pending = link.client.pending
    assert pending is not None
    assert (pending.procedure_id, pending.procedure, pending.opcode) == (
        first.procedure_id,
        "read",
        att.AttOpcode.READ_REQ,
    )
    link.pump([first.pdu])
    done = [e for e in link.client_events if isinstance(e, ProcedureCompleted)]
    assert [e.procedure_id for e in done] == [
        first.procedure_id,
        second.procedure_id,
        third.procedure_id,
    ]
    assert [e.result for e in done] == [b"KME Smart", b"\x64", link.db.value_handle(INBOX)]
    assert link.client.pending is None and link.client.queued == 0
    # Strictly alternating on the wire: one outstanding request at a time.
    assert [d for d, _ in link.wire] == ["c>s", "s>c"] * 3


def test_abort_fails_everything_and_closes() -> None:
    client = GattClient()
    a = client.read(3)
    b = client.discover_profile()
    failed = client.abort()
    assert [f.procedure_id for f in failed] == [a.procedure_id, b.procedure_id]
    assert all("timed out" in str(f.error) for f in failed)
    assert client.closed and client.pending is None
    with pytest.raises(GattProcedureError):
        client.read(3)
    assert client.receive(b"\x0b\x01") == ((), ())


def test_client_ignores_stray_responses_and_refuses_requests() -> None:
    client = GattClient()
    assert client.receive(b"\x0b\x01\x02") == ((), ())  # nothing outstanding
    assert client.receive(b"\x0a\x01\x00") == ((b"\x01\x0a\x00\x00\x06",), ())
    start = client.read(5)
    assert client.receive(b"\x13") == ((), ())  # a Write Response answers no read
    assert client.receive(b"\x01\x12\x05\x00\x01") == ((), ())  # error for another request
    assert client.pending is not None
    to_send, events = client.receive(b"\x01\x0a\x05\x00\x02")
    assert to_send == ()
    assert isinstance(events[0], ProcedureFailed)
    assert events[0].procedure_id == start.procedure_id
    assert events[0].error.error_code == AttErrorCode.READ_NOT_PERMITTED


def test_client_rejects_bad_arguments() -> None:
    client = GattClient()
    for call in (lambda: client.read(0), lambda: client.write(0x10000, b"")):
        with pytest.raises(att.UsageError):
            call()
    with pytest.raises(att.UsageError, match="512"):
        client.write(1, bytes(513))
    with pytest.raises(att.UsageError, match="ATT_MTU-3"):
        client.write_without_response(1, bytes(21))
    assert client.pending is None


def test_malformed_server_answers_fail_the_procedure() -> None:
    client = GattClient()
    start = client.discover_services()
    _, events = client.receive(b"\x11\x06\x01\x00")  # truncated group list
    assert isinstance(events[0], ProcedureFailed)
    assert events[0].procedure_id == start.procedure_id
    assert events[0].error.error_code is None
    assert "malformed" in str(events[0].error)


def test_long_write_is_cancelled_when_the_server_refuses_a_part() -> None:
    client = GattClient()
    start = client.write(7, bytes(50))
    assert start.pdu is not None and start.pdu[0] == 0x16
    to_send, _ = client.receive(b"\x17" + start.pdu[1:])
    assert to_send[0][0] == 0x16
    to_send, events = client.receive(b"\x01\x16\x07\x00\x09")  # Prepare Queue Full
    assert to_send == (b"\x18\x00",) and events == ()
    to_send, events = client.receive(b"\x19")
    assert isinstance(events[0], ProcedureFailed)
    assert events[0].error.error_code == AttErrorCode.PREPARE_QUEUE_FULL


@settings(max_examples=1000)
@given(st.lists(st.binary(max_size=30), max_size=6))
def test_client_never_crashes_on_arbitrary_bytes(pdus: list[bytes]) -> None:
    client = GattClient()
    client.discover_profile()
    client.read(3)
    client.write(4, bytes(60))
    for pdu in pdus:
        to_send, _ = client.receive(pdu)
        for out in to_send:
            decode_pdu(out)
    assert client.queued <= 2
