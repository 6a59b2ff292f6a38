"""The declarative GATT model: properties, permissions, security levels and definitions.

The band's profile (``protocol.kme.profile``) is written as data with these types, and the
attribute database (``protocol.ble.gatt``) is built from it; docs/protocol.md is checked
against the same data. Values follow the Core Specification, Vol 3 Part G (GATT) and
Part C 10.2 (LE security mode 1 levels).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from protocol.ble.uuids import uuid16

PRIMARY_SERVICE = uuid16(0x2800)
SECONDARY_SERVICE = uuid16(0x2801)
INCLUDE = uuid16(0x2802)
CHARACTERISTIC = uuid16(0x2803)
CHARACTERISTIC_EXTENDED_PROPERTIES = uuid16(0x2900)
CHARACTERISTIC_USER_DESCRIPTION = uuid16(0x2901)
CLIENT_CHARACTERISTIC_CONFIGURATION = uuid16(0x2902)
CHARACTERISTIC_PRESENTATION_FORMAT = uuid16(0x2904)


class Properties(enum.IntFlag):
    """Characteristic properties, the bit values of Vol 3 Part G 3.3.1.1."""

    BROADCAST = 0x01
    READ = 0x02
    WRITE_WITHOUT_RESPONSE = 0x04
    WRITE = 0x08
    NOTIFY = 0x10
    INDICATE = 0x20
    AUTHENTICATED_SIGNED_WRITES = 0x40
    EXTENDED_PROPERTIES = 0x80


class SecurityLevel(enum.IntEnum):
    """LE security mode 1 levels of a link (Vol 3 Part C 10.2.1)."""

    NO_SECURITY = 1
    UNAUTHENTICATED_ENCRYPTION = 2
    AUTHENTICATED_ENCRYPTION = 3
    AUTHENTICATED_SECURE_CONNECTIONS = 4


class Permissions(enum.IntFlag):
    """Attribute permissions: access, and the link security each access requires.

    ``READ_ENCRYPTED`` needs any encrypted link (else Insufficient Encryption);
    ``READ_AUTHENTICATED`` needs an authenticated (MITM-protected) pairing (else
    Insufficient Authentication). The WRITE_* flags mean the same for writes.
    """

    NONE = 0
    READABLE = 0x01
    WRITABLE = 0x02
    READ_ENCRYPTED = 0x04
    WRITE_ENCRYPTED = 0x08
    READ_AUTHENTICATED = 0x10
    WRITE_AUTHENTICATED = 0x20

    @property
    def read_level(self) -> SecurityLevel:
        if self & Permissions.READ_AUTHENTICATED:
            return SecurityLevel.AUTHENTICATED_ENCRYPTION
        if self & Permissions.READ_ENCRYPTED:
            return SecurityLevel.UNAUTHENTICATED_ENCRYPTION
        return SecurityLevel.NO_SECURITY

    @property
    def write_level(self) -> SecurityLevel:
        if self & Permissions.WRITE_AUTHENTICATED:
            return SecurityLevel.AUTHENTICATED_ENCRYPTION
        if self & Permissions.WRITE_ENCRYPTED:
            return SecurityLevel.UNAUTHENTICATED_ENCRYPTION
        return SecurityLevel.NO_SECURITY


#: Shorthands for the permission sets the profile uses most.
OPEN_READ = Permissions.READABLE
OPEN_READ_WRITE = Permissions.READABLE | Permissions.WRITABLE
PROTECTED_READ = Permissions.READABLE | Permissions.READ_ENCRYPTED | Permissions.READ_AUTHENTICATED
PROTECTED_READ_WRITE = (
    PROTECTED_READ
    | Permissions.WRITABLE
    | Permissions.WRITE_ENCRYPTED
    | Permissions.WRITE_AUTHENTICATED
)


@dataclass(frozen=True)
class DescriptorDefinition:
    """A descriptor of a characteristic (CCCD descriptors are added automatically)."""

    uuid: uuid.UUID
    permissions: Permissions
    value: bytes = b""
    name: str = ""


@dataclass(frozen=True)
class CharacteristicDefinition:
    """One characteristic: its type, properties, value permissions and documentation.

    ``value_format`` names the codec (or format) of the value for docs/protocol.md.
    A Client Characteristic Configuration descriptor is added by the attribute database
    when ``properties`` include NOTIFY or INDICATE; its write needs the same security as
    the value's read.
    """

    uuid: uuid.UUID
    name: str
    properties: Properties
    permissions: Permissions
    value_format: str
    initial_value: bytes = b""
    description: str = ""
    max_length: int = 512
    descriptors: tuple[DescriptorDefinition, ...] = ()


@dataclass(frozen=True)
class ServiceDefinition:
    """A primary service and its characteristics, in handle order."""

    uuid: uuid.UUID
    name: str
    characteristics: tuple[CharacteristicDefinition, ...] = field(default_factory=tuple)
    description: str = ""
    primary: bool = True
