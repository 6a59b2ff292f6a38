"""AttributeDatabase: handle layout from definitions, lookups, values and hooks."""

from __future__ import annotations

import uuid

import pytest

from protocol.ble import att
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt import (
    AttributeDatabase,
    AttributeKind,
    GattDefinitionError,
    GattLookupError,
    GattServer,
    required_security_error,
)
from protocol.ble.gatt_model import (
    CHARACTERISTIC_PRESENTATION_FORMAT,
    CHARACTERISTIC_USER_DESCRIPTION,
    CLIENT_CHARACTERISTIC_CONFIGURATION,
    OPEN_READ,
    OPEN_READ_WRITE,
    PROTECTED_READ,
    CharacteristicDefinition,
    DescriptorDefinition,
    Permissions,
    Properties,
    SecurityLevel,
    ServiceDefinition,
)
from protocol.ble.uuids import uuid16
from protocol.errors import UsageError

BATTERY = uuid16(0x180F)
LEVEL = uuid16(0x2A19)
HR = uuid16(0x180D)
HRM = uuid16(0x2A37)
VENDOR_SVC = uuid.UUID("8e5a0001-6b1c-4d2a-9a77-0b5e4e6d0001")
READ = Properties.READ
# Presentation Format: uint8, exponent 0, unit percentage (0x27AD), SIG namespace.
PERCENT_FORMAT = b"\x04\x00\xad\x27\x01\x00\x00"
VENDOR_CHR = uuid.UUID("8e5a0002-6b1c-4d2a-9a77-0b5e4e6d0001")


def _services() -> list[ServiceDefinition]:
    return [
        ServiceDefinition(
            BATTERY,
            "Battery",
            (
                CharacteristicDefinition(
                    LEVEL,
                    "Battery Level",
                    Properties.READ | Properties.NOTIFY,
                    OPEN_READ,
                    "uint8",
                    b"\x64",
                    description="Battery level",
                    descriptors=(
                        DescriptorDefinition(
                            CHARACTERISTIC_PRESENTATION_FORMAT,
                            OPEN_READ,
                            b"\x04\x00\xad\x27\x01\x00\x00",
                        ),
                    ),
                ),
            ),
        ),
        ServiceDefinition(
            HR,
            "Heart Rate",
            (
                CharacteristicDefinition(
                    HRM, "HRM", Properties.NOTIFY, PROTECTED_READ, "hrm", max_length=20
                ),
            ),
        ),
        ServiceDefinition(
            VENDOR_SVC,
            "Vendor",
            (
                CharacteristicDefinition(
                    VENDOR_CHR,
                    "Data",
                    Properties.READ | Properties.WRITE,
                    OPEN_READ_WRITE,
                    "bytes",
                    descriptors=(
                        DescriptorDefinition(CHARACTERISTIC_USER_DESCRIPTION, OPEN_READ, b"Data"),
                    ),
                ),
                CharacteristicDefinition(LEVEL, "Second level", Properties.READ, OPEN_READ, "u8"),
            ),
            primary=False,
        ),
    ]


def test_handles_are_allocated_in_spec_order() -> None:
    db = AttributeDatabase.from_services(_services())
    layout = [(a.handle, a.type, a.kind) for a in db]
    assert layout == [
        (1, uuid16(0x2800), AttributeKind.SERVICE),
        (2, uuid16(0x2803), AttributeKind.CHARACTERISTIC),
        (3, LEVEL, AttributeKind.VALUE),
        (4, CLIENT_CHARACTERISTIC_CONFIGURATION, AttributeKind.CCCD),
        (5, CHARACTERISTIC_USER_DESCRIPTION, AttributeKind.DESCRIPTOR),
        (6, CHARACTERISTIC_PRESENTATION_FORMAT, AttributeKind.DESCRIPTOR),
        (7, uuid16(0x2800), AttributeKind.SERVICE),
        (8, uuid16(0x2803), AttributeKind.CHARACTERISTIC),
        (9, HRM, AttributeKind.VALUE),
        (10, CLIENT_CHARACTERISTIC_CONFIGURATION, AttributeKind.CCCD),
        (11, uuid16(0x2801), AttributeKind.SERVICE),
        (12, uuid16(0x2803), AttributeKind.CHARACTERISTIC),
        (13, VENDOR_CHR, AttributeKind.VALUE),
        (14, CHARACTERISTIC_USER_DESCRIPTION, AttributeKind.DESCRIPTOR),
        (15, uuid16(0x2803), AttributeKind.CHARACTERISTIC),
        (16, LEVEL, AttributeKind.VALUE),
    ]
    assert len(db) == db.last_handle == 16


def test_declaration_values_follow_vol3_part_g() -> None:
    db = AttributeDatabase.from_services(_services())
    assert db.get_value(1) == b"\x0f\x18"  # service UUID, 16-bit little-endian
    assert db.get_value(2) == b"\x12\x03\x00\x19\x2a"  # READ|NOTIFY, value 0x0003, 0x2A19
    assert db.get_value(11) == VENDOR_SVC.bytes[::-1]
    assert db.get_value(12) == b"\x0a\x0d\x00" + VENDOR_CHR.bytes[::-1]
    assert db.get_value(5) == b"Battery level"
    assert db.get_value(4) == b"\x00\x00"
    assert [(s.handle, s.end_handle) for s in db.services] == [(1, 6), (7, 10), (11, 16)]
    assert db.attribute(1).group_end == 6


def test_cccd_needs_the_security_of_the_value_read() -> None:
    db = AttributeDatabase.from_services(_services())
    open_cccd = db.attribute(db.cccd_handle(LEVEL, BATTERY))
    protected_cccd = db.attribute(db.cccd_handle(HRM))
    assert open_cccd.write_level == SecurityLevel.NO_SECURITY
    assert protected_cccd.write_level == SecurityLevel.AUTHENTICATED_ENCRYPTION
    assert protected_cccd.read_level == SecurityLevel.NO_SECURITY
    assert protected_cccd.writable and protected_cccd.readable


def test_lookups_resolve_ambiguity_with_the_service() -> None:
    db = AttributeDatabase.from_services(_services())
    with pytest.raises(GattLookupError, match="pass service_uuid"):
        db.value_handle(LEVEL)
    assert db.value_handle(LEVEL, BATTERY) == 3
    assert db.value_handle(LEVEL, VENDOR_SVC) == 16
    assert db.characteristic(HRM).end_handle == 10
    assert db.descriptor_handle(VENDOR_CHR, CHARACTERISTIC_USER_DESCRIPTION) == 14
    with pytest.raises(GattLookupError, match="no characteristic"):
        db.value_handle(uuid16(0x2A00))
    with pytest.raises(GattLookupError, match="neither notifies"):
        db.cccd_handle(VENDOR_CHR)
    with pytest.raises(GattLookupError, match="no descriptor"):
        db.descriptor_handle(HRM, CHARACTERISTIC_PRESENTATION_FORMAT)
    with pytest.raises(GattLookupError):
        db.attribute(0)
    with pytest.raises(GattLookupError):
        db.attribute(17)


def test_set_value_checks_length_and_kind() -> None:
    db = AttributeDatabase.from_services(_services())
    hrm = db.value_handle(HRM)
    db.set_value(hrm, b"\x00" * 20)
    assert db.get_value(hrm) == b"\x00" * 20
    with pytest.raises(UsageError, match="max_length"):
        db.set_value(hrm, b"\x00" * 21)
    for handle in (1, 2, db.cccd_handle(HRM)):
        with pytest.raises(UsageError, match="manages itself"):
            db.set_value(handle, b"")
    with pytest.raises(UsageError, match="hooks go on"):
        db.set_read_hook(1, lambda h, c: b"")
    db.set_write_hook(hrm, lambda h, v, c: None)
    assert db.attribute(hrm).write_hook is not None
    db.set_write_hook(hrm, None)
    assert db.attribute(hrm).write_hook is None


@pytest.mark.parametrize(
    "char",
    [
        CharacteristicDefinition(
            LEVEL, "x", Properties.READ, OPEN_READ, "u8", b"\x00" * 3, max_length=2
        ),
        CharacteristicDefinition(LEVEL, "x", Properties.READ, OPEN_READ, "u8", max_length=513),
        CharacteristicDefinition(
            LEVEL, "x", Properties.READ, OPEN_READ, "u8", description="é" * 300
        ),
        CharacteristicDefinition(
            LEVEL,
            "x",
            Properties.NOTIFY,
            OPEN_READ,
            "u8",
            descriptors=(DescriptorDefinition(CLIENT_CHARACTERISTIC_CONFIGURATION, OPEN_READ),),
        ),
    ],
    ids=["initial-too-long", "max-too-big", "description-too-long", "explicit-cccd"],
)
def test_bad_definitions_are_refused(char: CharacteristicDefinition) -> None:
    with pytest.raises(GattDefinitionError):
        AttributeDatabase.from_services([ServiceDefinition(BATTERY, "B", (char,))])


def test_more_than_65535_handles_are_refused() -> None:
    chars = tuple(
        CharacteristicDefinition(LEVEL, "x", Properties.READ, OPEN_READ, "u8")
        for _ in range(0x7FFF)
    )
    with pytest.raises(GattDefinitionError, match="65535"):
        AttributeDatabase.from_services(
            [ServiceDefinition(BATTERY, "a", chars), ServiceDefinition(BATTERY, "b", chars)]
        )


@pytest.mark.parametrize(
    ("link", "needed", "error"),
    [
        (SecurityLevel.NO_SECURITY, SecurityLevel.NO_SECURITY, 0),
        (
            SecurityLevel.NO_SECURITY,
            SecurityLevel.UNAUTHENTICATED_ENCRYPTION,
            AttErrorCode.INSUFFICIENT_ENCRYPTION,
        ),
        (
            SecurityLevel.NO_SECURITY,
            SecurityLevel.AUTHENTICATED_ENCRYPTION,
            AttErrorCode.INSUFFICIENT_ENCRYPTION,
        ),
        (SecurityLevel.UNAUTHENTICATED_ENCRYPTION, SecurityLevel.UNAUTHENTICATED_ENCRYPTION, 0),
        (
            SecurityLevel.UNAUTHENTICATED_ENCRYPTION,
            SecurityLevel.AUTHENTICATED_ENCRYPTION,
            AttErrorCode.INSUFFICIENT_AUTHENTICATION,
        ),
        (SecurityLevel.AUTHENTICATED_ENCRYPTION, SecurityLevel.AUTHENTICATED_ENCRYPTION, 0),
        (SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS, SecurityLevel.AUTHENTICATED_ENCRYPTION, 0),
    ],
)
def test_security_error_rule(link: SecurityLevel, needed: SecurityLevel, error: int) -> None:
    assert required_security_error(link, needed) == error


def test_permissions_flags_are_copied_to_the_attribute() -> None:
    db = AttributeDatabase.from_services(_services())
    hrm = db.attribute(db.value_handle(HRM))
    assert hrm.readable and not hrm.writable
    assert hrm.permissions == PROTECTED_READ
    assert hrm.read_level == SecurityLevel.AUTHENTICATED_ENCRYPTION
    assert Permissions.READ_ENCRYPTED in hrm.permissions
    assert "0x2A37" in repr(hrm)


def test_find_and_in_range_are_the_servers_lookups() -> None:
    db = AttributeDatabase.from_services(_services())
    last = db.last_handle
    assert db.find(0x0000) is None
    assert db.find(last + 1) is None
    assert db.find(1) is db.attribute(1)
    assert [a.handle for a in db.in_range(1, 0xFFFF)] == list(range(1, last + 1))
    assert [a.handle for a in db.in_range(2, 3)] == [2, 3]
    assert db.in_range(0, 1) == [db.attribute(1)]
    assert db.in_range(3, 2) == []
    assert db.in_range(last + 1, 0xFFFF) == []


def test_a_server_write_goes_through_the_database() -> None:
    db = AttributeDatabase.from_services(_services())
    handle = db.value_handle(VENDOR_CHR)
    stored: list[tuple[int, bytes]] = []
    original = db.set_value

    def spy(h: int, value: bytes) -> None:
        stored.append((h, value))
        original(h, value)

    db.set_value = spy  # type: ignore[method-assign]
    response, _ = GattServer(db).receive(att.WriteRequest(handle, b"\x07").encode())
    assert response == att.WriteResponse().encode()
    assert stored == [(handle, b"\x07")]
    assert db.get_value(handle) == b"\x07"


def test_one_definition_of_an_attribute_handle() -> None:
    assert not att.is_attribute_handle(0x0000)
    assert att.is_attribute_handle(0x0001)
    assert att.is_attribute_handle(0xFFFF)
    assert not att.is_attribute_handle(0x10000)
    with pytest.raises(UsageError, match=r"0x0001\.\.0xFFFF"):
        att.check_attribute_handle(0)
