"""The GATT attribute database: handles allocated from service definitions.

:meth:`AttributeDatabase.from_services` lays the services of a profile out as attributes
(Core Specification Vol 3 Part G 3): for each service a primary (or secondary) service
declaration, then for each characteristic its declaration, its value, a Client
Characteristic Configuration descriptor when it can notify or indicate, a Characteristic
User Description when the definition has a ``description``, and its other descriptors.

One database is shared by every connection (every :class:`protocol.ble.gatt_server.GattServer`);
values live here, while CCCD states are per connection and live in the server.

Firmware can answer reads and vet writes itself with per-attribute hooks:

* a read hook, ``hook(handle, connection) -> bytes``, supplies the value on every Read,
  Read Blob, Read By Type and Read Multiple (a long value is read with several requests,
  so the hook must return the same bytes until the client has read them all);
* a write hook, ``hook(handle, value, connection) -> None``, runs after the permission and
  length checks and before the value is stored; it refuses a write by raising
  :class:`GattRejection` with an ATT error code (an application error 0x80..0x9F, Value
  Not Allowed, Out of Range, ...), which the client gets as the Error Response.

``connection`` is whatever the owner gave the server (see ``GattServer(connection=...)``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from protocol.ble.att import MAX_ATTRIBUTE_LENGTH, MAX_HANDLE, AttErrorCode, error_name
from protocol.ble.gatt_model import (
    CHARACTERISTIC,
    CHARACTERISTIC_USER_DESCRIPTION,
    CLIENT_CHARACTERISTIC_CONFIGURATION,
    PRIMARY_SERVICE,
    SECONDARY_SERVICE,
    CharacteristicDefinition,
    Permissions,
    Properties,
    SecurityLevel,
    ServiceDefinition,
)
from protocol.ble.uuids import short_name, uuid_to_att
from protocol.errors import KmebandError, UsageError

_NO_PROPERTIES = Properties(0)

ReadHook = Callable[[int, object], bytes]
WriteHook = Callable[[int, bytes, object], None]


class GattRejection(KmebandError):
    """Raised by a read or write hook to answer the client with an ATT error code."""

    def __init__(self, error_code: int, why: str = "") -> None:
        if not 0x01 <= error_code <= 0xFF:
            raise UsageError(f"an ATT error code is 0x01..0xFF, got {error_code}")
        self.error_code = error_code
        super().__init__(
            f"the attribute access was refused with {error_name(error_code)}"
            + (f": {why}" if why else "")
        )


class GattDefinitionError(UsageError):
    """The service definitions cannot be laid out as an attribute database."""


class GattLookupError(UsageError, KeyError):
    """No attribute (or more than one) matches what was asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AttributeKind(enum.Enum):
    """What an attribute is in the GATT layout."""

    SERVICE = "service"
    CHARACTERISTIC = "characteristic"
    VALUE = "value"
    CCCD = "cccd"
    DESCRIPTOR = "descriptor"


class Attribute:
    """One attribute: handle, type, permissions and (for static attributes) its value.

    Treat it as read-only: change values with :meth:`AttributeDatabase.set_value` and hooks
    with :meth:`AttributeDatabase.set_read_hook` / :meth:`AttributeDatabase.set_write_hook`.
    ``group_end`` is the last handle of a service for service declarations and the handle
    itself otherwise; ``value_handle`` is the characteristic value a declaration or
    descriptor belongs to (0 for services).
    """

    __slots__ = (
        "group_end",
        "handle",
        "kind",
        "max_length",
        "permissions",
        "properties",
        "read_hook",
        "read_level",
        "readable",
        "type",
        "type_att",
        "value",
        "value_handle",
        "writable",
        "write_hook",
        "write_level",
    )

    def __init__(
        self,
        handle: int,
        attr_type: uuid.UUID,
        kind: AttributeKind,
        permissions: Permissions,
        value: bytes,
        *,
        max_length: int = MAX_ATTRIBUTE_LENGTH,
        properties: Properties = _NO_PROPERTIES,
        value_handle: int = 0,
    ) -> None:
        self.handle = handle
        self.type = attr_type
        self.type_att = uuid_to_att(attr_type)
        self.kind = kind
        self.permissions = permissions
        self.readable = bool(permissions & Permissions.READABLE)
        self.writable = bool(permissions & Permissions.WRITABLE)
        self.read_level = permissions.read_level
        self.write_level = permissions.write_level
        self.value = value
        self.max_length = max_length
        self.properties = properties
        self.value_handle = value_handle
        self.group_end = handle
        self.read_hook: ReadHook | None = None
        self.write_hook: WriteHook | None = None

    def __repr__(self) -> str:
        return f"Attribute(0x{self.handle:04X}, {short_name(self.type)}, {self.kind.value})"


@dataclass(frozen=True, slots=True)
class CharacteristicEntry:
    """Where a characteristic landed: its handles and its definition."""

    service_uuid: uuid.UUID
    definition: CharacteristicDefinition
    declaration_handle: int
    value_handle: int
    cccd_handle: int | None
    end_handle: int

    @property
    def uuid(self) -> uuid.UUID:
        return self.definition.uuid


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """Where a service landed: its declaration handle, last handle and characteristics."""

    definition: ServiceDefinition
    handle: int
    end_handle: int
    characteristics: tuple[CharacteristicEntry, ...]

    @property
    def uuid(self) -> uuid.UUID:
        return self.definition.uuid


def _cccd_permissions(value_permissions: Permissions) -> Permissions:
    # Subscribing must need the same link security as reading the value itself.
    perms = Permissions.READABLE | Permissions.WRITABLE
    if value_permissions & Permissions.READ_ENCRYPTED:
        perms |= Permissions.WRITE_ENCRYPTED
    if value_permissions & Permissions.READ_AUTHENTICATED:
        perms |= Permissions.WRITE_AUTHENTICATED
    return perms


class AttributeDatabase:
    """The attributes of a GATT server, in handle order, with lookups by UUID.

    Build it with :meth:`from_services`. Handles start at 0x0001 and are contiguous.
    """

    def __init__(self) -> None:
        # Index = handle - 1: handles start at 0x0001 (0x0000 is reserved).
        self._attributes: list[Attribute] = []
        self._services: list[ServiceEntry] = []

    # -- building ------------------------------------------------------------------

    @classmethod
    def from_services(cls, services: Sequence[ServiceDefinition]) -> AttributeDatabase:
        """Lay out ``services`` in order, allocating handles from 0x0001."""
        db = cls()
        for service in services:
            db._add_service(service)
        return db

    def _append(
        self,
        attr_type: uuid.UUID,
        kind: AttributeKind,
        perms: Permissions,
        value: bytes,
        *,
        max_length: int = MAX_ATTRIBUTE_LENGTH,
        properties: Properties = _NO_PROPERTIES,
        value_handle: int = 0,
    ) -> Attribute:
        handle = len(self._attributes) + 1
        if handle > MAX_HANDLE:
            raise GattDefinitionError(
                "the profile needs more than 65535 attribute handles; split or trim services"
            )
        attr = Attribute(
            handle,
            attr_type,
            kind,
            perms,
            value,
            max_length=max_length,
            properties=properties,
            value_handle=value_handle,
        )
        self._attributes.append(attr)
        return attr

    def _add_service(self, service: ServiceDefinition) -> None:
        decl_type = PRIMARY_SERVICE if service.primary else SECONDARY_SERVICE
        decl = self._append(
            decl_type, AttributeKind.SERVICE, Permissions.READABLE, uuid_to_att(service.uuid)
        )
        chars = [self._add_characteristic(service, c) for c in service.characteristics]
        decl.group_end = self.last_handle
        self._services.append(ServiceEntry(service, decl.handle, decl.group_end, tuple(chars)))

    def _add_characteristic(
        self, service: ServiceDefinition, char: CharacteristicDefinition
    ) -> CharacteristicEntry:
        where = f"characteristic {char.name!r} ({short_name(char.uuid)})"
        if not 0 <= char.max_length <= MAX_ATTRIBUTE_LENGTH:
            raise GattDefinitionError(f"{where}: max_length must be 0..512")
        if len(char.initial_value) > char.max_length:
            raise GattDefinitionError(f"{where}: initial_value is longer than max_length")
        value_handle = self.last_handle + 2  # after the declaration
        decl_value = bytes((int(char.properties) & 0xFF,)) + value_handle.to_bytes(2, "little")
        decl = self._append(
            CHARACTERISTIC,
            AttributeKind.CHARACTERISTIC,
            Permissions.READABLE,
            decl_value + uuid_to_att(char.uuid),
            properties=char.properties,
            value_handle=value_handle,
        )
        self._append(
            char.uuid,
            AttributeKind.VALUE,
            char.permissions,
            bytes(char.initial_value),
            max_length=char.max_length,
            properties=char.properties,
            value_handle=value_handle,
        )
        cccd_handle = None
        if char.properties & (Properties.NOTIFY | Properties.INDICATE):
            cccd = self._append(
                CLIENT_CHARACTERISTIC_CONFIGURATION,
                AttributeKind.CCCD,
                _cccd_permissions(char.permissions),
                b"\x00\x00",
                max_length=2,
                properties=char.properties,
                value_handle=value_handle,
            )
            cccd_handle = cccd.handle
        has_cud = any(d.uuid == CHARACTERISTIC_USER_DESCRIPTION for d in char.descriptors)
        if char.description and not has_cud:
            text = char.description.encode("utf-8")
            if len(text) > MAX_ATTRIBUTE_LENGTH:
                raise GattDefinitionError(f"{where}: description is longer than 512 octets")
            self._append(
                CHARACTERISTIC_USER_DESCRIPTION,
                AttributeKind.DESCRIPTOR,
                Permissions.READABLE,
                text,
                value_handle=value_handle,
            )
        for desc in char.descriptors:
            if desc.uuid == CLIENT_CHARACTERISTIC_CONFIGURATION:
                raise GattDefinitionError(
                    f"{where}: do not define a CCCD; it is added for NOTIFY/INDICATE"
                )
            if len(desc.value) > MAX_ATTRIBUTE_LENGTH:
                raise GattDefinitionError(f"{where}: a descriptor value exceeds 512 octets")
            self._append(
                desc.uuid,
                AttributeKind.DESCRIPTOR,
                desc.permissions,
                bytes(desc.value),
                value_handle=value_handle,
            )
        return CharacteristicEntry(
            service.uuid, char, decl.handle, value_handle, cccd_handle, self.last_handle
        )

    # -- lookups -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._attributes)

    def __iter__(self) -> Iterator[Attribute]:
        """All attributes in handle order."""
        return iter(self._attributes)

    @property
    def last_handle(self) -> int:
        """The highest handle in use (0x0000 while the database is empty)."""
        return len(self._attributes)

    @property
    def services(self) -> tuple[ServiceEntry, ...]:
        return tuple(self._services)

    def attribute(self, handle: int) -> Attribute:
        """The attribute at ``handle``; raises :class:`GattLookupError` if there is none."""
        attr = self.find(handle)
        if attr is not None:
            return attr
        raise GattLookupError(
            f"there is no attribute at handle 0x{handle:04X}; handles run 0x0001.."
            f"0x{self.last_handle:04X}"
        )

    def find(self, handle: int) -> Attribute | None:
        """The attribute at ``handle``, or None: the lookup a server does per request."""
        if 0 < handle <= len(self._attributes):
            return self._attributes[handle - 1]
        return None

    def in_range(self, start_handle: int, end_handle: int) -> list[Attribute]:
        """The attributes with handles ``start_handle..end_handle``, in handle order."""
        return self._attributes[max(start_handle, 1) - 1 : max(end_handle, 0)]

    def characteristic(
        self, char_uuid: uuid.UUID, service_uuid: uuid.UUID | None = None
    ) -> CharacteristicEntry:
        """The one characteristic with ``char_uuid`` (in ``service_uuid``, if given)."""
        found = [
            c
            for s in self._services
            if service_uuid is None or s.uuid == service_uuid
            for c in s.characteristics
            if c.uuid == char_uuid
        ]
        if not found:
            where = f" in service {short_name(service_uuid)}" if service_uuid else ""
            raise GattLookupError(
                f"no characteristic {short_name(char_uuid)}{where} in this database; "
                "check the UUID against the profile"
            )
        if len(found) > 1:
            raise GattLookupError(
                f"characteristic {short_name(char_uuid)} appears {len(found)} times; "
                "pass service_uuid to say which one"
            )
        return found[0]

    def value_handle(self, char_uuid: uuid.UUID, service_uuid: uuid.UUID | None = None) -> int:
        """The value handle of a characteristic."""
        return self.characteristic(char_uuid, service_uuid).value_handle

    def cccd_handle(self, char_uuid: uuid.UUID, service_uuid: uuid.UUID | None = None) -> int:
        """The Client Characteristic Configuration handle of a notifying characteristic."""
        entry = self.characteristic(char_uuid, service_uuid)
        if entry.cccd_handle is None:
            raise GattLookupError(
                f"characteristic {short_name(char_uuid)} neither notifies nor indicates, "
                "so it has no CCCD"
            )
        return entry.cccd_handle

    def descriptor_handle(
        self,
        char_uuid: uuid.UUID,
        descriptor_uuid: uuid.UUID,
        service_uuid: uuid.UUID | None = None,
    ) -> int:
        """The handle of a descriptor of a characteristic."""
        entry = self.characteristic(char_uuid, service_uuid)
        for handle in range(entry.value_handle + 1, entry.end_handle + 1):
            if self.attribute(handle).type == descriptor_uuid:
                return handle
        raise GattLookupError(
            f"characteristic {short_name(char_uuid)} has no descriptor "
            f"{short_name(descriptor_uuid)}"
        )

    # -- values and hooks ----------------------------------------------------------

    def get_value(self, handle: int) -> bytes:
        """The stored value (CCCDs read 0x0000 here: their state is per connection)."""
        return self.attribute(handle).value

    def set_value(self, handle: int, value: bytes) -> None:
        """Store a new value, e.g. a fresh battery level before notifying it."""
        attr = self.attribute(handle)
        if attr.kind in (AttributeKind.SERVICE, AttributeKind.CHARACTERISTIC, AttributeKind.CCCD):
            raise UsageError(
                f"handle 0x{handle:04X} is a {attr.kind.value} attribute, which the database "
                "manages itself; set characteristic values or descriptors instead"
            )
        if len(value) > attr.max_length:
            raise UsageError(
                f"a value of {len(value)} octets does not fit handle 0x{handle:04X} "
                f"(max_length {attr.max_length}); shorten it or raise max_length in the profile"
            )
        attr.value = bytes(value)

    def set_read_hook(self, handle: int, hook: ReadHook | None) -> None:
        """Answer reads of ``handle`` with ``hook(handle, connection)`` (None removes it)."""
        self._hookable(handle).read_hook = hook

    def set_write_hook(self, handle: int, hook: WriteHook | None) -> None:
        """Vet writes of ``handle`` with ``hook(handle, value, connection)`` (None removes)."""
        self._hookable(handle).write_hook = hook

    def _hookable(self, handle: int) -> Attribute:
        attr = self.attribute(handle)
        if attr.kind not in (AttributeKind.VALUE, AttributeKind.DESCRIPTOR):
            raise UsageError(
                f"hooks go on characteristic values and descriptors, not on the "
                f"{attr.kind.value} attribute at 0x{handle:04X}"
            )
        return attr


def required_security_error(link: SecurityLevel, needed: SecurityLevel) -> int:
    """The error for a link below ``needed``, or 0 when the link is good enough.

    Vol 3 Part C 10.3.1: on an unencrypted link the answer is Insufficient Encryption (the
    client holds, or is about to create, a key and should encrypt); on an encrypted link
    whose key is not strong enough it is Insufficient Authentication (the client should
    pair again with MITM protection). The server does not track bonds, so an unencrypted
    link always gets Insufficient Encryption.
    """
    if link >= needed:
        return 0
    if link <= SecurityLevel.NO_SECURITY:
        return AttErrorCode.INSUFFICIENT_ENCRYPTION
    return AttErrorCode.INSUFFICIENT_AUTHENTICATION
