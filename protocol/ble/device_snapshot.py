"""A recorded BLE device: its GATT table, readable values and notifications (device.json).

``kmeband clone`` writes a :class:`DeviceSnapshot` after exploring a device through bleak;
``kmeband sim --clone`` serves one. The JSON form (``to_json`` / ``from_json``, version 1)::

    {"format": "kmeband-device-clone", "version": 1,
     "name": "KME Smart", "advertised_uuids": ["0000180d-..."],
     "manufacturer_data": {"65535": "01a1b2c3"},
     "services": [{"uuid": "00001800-...", "handle": 1, "characteristics": [
         {"uuid": "00002a00-...", "handle": 2, "properties": ["read"],
          "value": "4b4d4520536d617274", "read_error": null,
          "descriptors": [{"uuid": "00002902-...", "handle": 4, "value": null}]}]}],
     "notifications": [{"t": 0.25, "characteristic": "00002a37-...", "value": "0648"}],
     "recorded_s": 10.0}

Handles are those the device reported (a characteristic's is its declaration handle, as
bleak reports it). ``value`` is hex, or null when the value could not be read, with the ATT
error code the device answered in ``read_error``. Notification times are seconds from the
start of the recording. :func:`from_json` checks all of it and raises
:class:`SnapshotFormatError` naming the field to fix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from protocol.ble.gatt_model import (
    CLIENT_CHARACTERISTIC_CONFIGURATION,
    CharacteristicDefinition,
    DescriptorDefinition,
    Permissions,
    Properties,
    ServiceDefinition,
)
from protocol.errors import KmebandError

FORMAT = "kmeband-device-clone"
VERSION = 1
#: bleak's names for the characteristic property bits (Vol 3 Part G 3.3.1.1).
PROPERTY_NAMES: dict[str, Properties] = {
    "broadcast": Properties.BROADCAST,
    "read": Properties.READ,
    "write-without-response": Properties.WRITE_WITHOUT_RESPONSE,
    "write": Properties.WRITE,
    "notify": Properties.NOTIFY,
    "indicate": Properties.INDICATE,
    "authenticated-signed-writes": Properties.AUTHENTICATED_SIGNED_WRITES,
    "extended-properties": Properties.EXTENDED_PROPERTIES,
}
_MAX_VALUE = 512


class SnapshotFormatError(KmebandError):
    """A device.json that cannot be served: the message names the field and what to fix."""


@dataclass(frozen=True)
class DescriptorSnapshot:
    """One descriptor as recorded (CCCDs are recorded but served per connection)."""

    uuid: uuid.UUID
    handle: int
    value: bytes | None = None


@dataclass(frozen=True)
class CharacteristicSnapshot:
    """One characteristic: declaration handle, properties, value or the read's ATT error."""

    uuid: uuid.UUID
    handle: int
    properties: Properties
    value: bytes | None = None
    read_error: int | None = None
    descriptors: tuple[DescriptorSnapshot, ...] = ()


@dataclass(frozen=True)
class ServiceSnapshot:
    """One primary service and its characteristics, in handle order."""

    uuid: uuid.UUID
    handle: int
    characteristics: tuple[CharacteristicSnapshot, ...] = ()


@dataclass(frozen=True)
class RecordedNotification:
    """A notification (or indication) received ``t`` seconds into the recording."""

    t: float
    characteristic: uuid.UUID
    value: bytes


@dataclass(frozen=True)
class DeviceSnapshot:
    """A device's GATT table, its readable values and a recording of its notifications."""

    name: str | None
    services: tuple[ServiceSnapshot, ...]
    advertised_uuids: tuple[uuid.UUID, ...] = ()
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    notifications: tuple[RecordedNotification, ...] = ()
    recorded_s: float = 0.0

    def table(self) -> list[tuple[Any, ...]]:
        """The layout alone (UUIDs, handles, properties), for comparing two devices."""
        return [
            (
                str(s.uuid),
                s.handle,
                [
                    (
                        str(c.uuid),
                        c.handle,
                        int(c.properties),
                        [(str(d.uuid), d.handle) for d in c.descriptors],
                    )
                    for c in s.characteristics
                ],
            )
            for s in self.services
        ]

    def to_services(self) -> tuple[ServiceDefinition, ...]:
        """The table as service definitions: what a clone's attribute database is built from.

        Every value is served without link security (the snapshot cannot tell what the
        device required of a reader that could read it); a value that could not be read is
        answered with its recorded error by the clone. CCCDs are added by the database.
        """
        services = []
        for s in self.services:
            chars = []
            for c in s.characteristics:
                perms = Permissions.READABLE
                if c.properties & (Properties.WRITE | Properties.WRITE_WITHOUT_RESPONSE):
                    perms |= Permissions.WRITABLE
                chars.append(
                    CharacteristicDefinition(
                        c.uuid,
                        str(c.uuid),
                        c.properties,
                        perms,
                        "recorded bytes",
                        initial_value=c.value or b"",
                        descriptors=tuple(
                            DescriptorDefinition(d.uuid, Permissions.READABLE, d.value or b"")
                            for d in c.descriptors
                            if d.uuid != CLIENT_CHARACTERISTIC_CONFIGURATION
                        ),
                    )
                )
            services.append(ServiceDefinition(s.uuid, str(s.uuid), tuple(chars)))
        return tuple(services)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "advertised_uuids": [str(u) for u in self.advertised_uuids],
            "manufacturer_data": {str(k): v.hex() for k, v in self.manufacturer_data},
            "services": [
                {
                    "uuid": str(s.uuid),
                    "handle": s.handle,
                    "characteristics": [
                        {
                            "uuid": str(c.uuid),
                            "handle": c.handle,
                            "properties": [
                                n for n, bit in PROPERTY_NAMES.items() if c.properties & bit
                            ],
                            "value": None if c.value is None else c.value.hex(),
                            "read_error": c.read_error,
                            "descriptors": [
                                {
                                    "uuid": str(d.uuid),
                                    "handle": d.handle,
                                    "value": None if d.value is None else d.value.hex(),
                                }
                                for d in c.descriptors
                            ],
                        }
                        for c in s.characteristics
                    ],
                }
                for s in self.services
            ],
            "notifications": [
                {
                    "t": round(n.t, 6),
                    "characteristic": str(n.characteristic),
                    "value": n.value.hex(),
                }
                for n in self.notifications
            ],
            "recorded_s": self.recorded_s,
        }


# -- reading device.json ------------------------------------------------------------------


def _fail(where: str, what: str) -> SnapshotFormatError:
    return SnapshotFormatError(f"device.json: {where}: {what}")


def _get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise _fail(where, "must be a JSON object")
    if key not in obj:
        raise _fail(f"{where}.{key}" if where else key, "is missing; add it")
    return obj[key]


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = obj.get(key, []) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise _fail(f"{where}{key}", "must be a JSON array")
    return value


def _uuid(value: Any, where: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise _fail(where, "must be a UUID string such as 0000180d-0000-1000-8000-00805f9b34fb")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _fail(where, f"{value!r} is not a UUID; write it as 8-4-4-4-12 hex digits") from None


def _handle(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0x0001 <= value <= 0xFFFF:
        raise _fail(where, "must be an attribute handle, an integer 1..65535")
    return value


def _hex(value: Any, where: str, *, optional: bool = True) -> bytes | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(where, "must be a hex string (or null)")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _fail(where, "is not valid hex; use pairs of 0-9a-f digits") from None
    if len(raw) > _MAX_VALUE:
        raise _fail(where, f"is {len(raw)} octets; an attribute value holds at most 512")
    return raw


def _properties(value: Any, where: str) -> Properties:
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of property names ({', '.join(PROPERTY_NAMES)})")
    bits = Properties(0)
    for i, name in enumerate(value):
        if name not in PROPERTY_NAMES:
            raise _fail(f"{where}[{i}]", f"{name!r} is not one of {', '.join(PROPERTY_NAMES)}")
        bits |= PROPERTY_NAMES[name]
    return bits


def _descriptor(obj: Any, where: str) -> DescriptorSnapshot:
    return DescriptorSnapshot(
        _uuid(_get(obj, "uuid", where), f"{where}.uuid"),
        _handle(_get(obj, "handle", where), f"{where}.handle"),
        _hex(obj.get("value"), f"{where}.value"),
    )


def _characteristic(obj: Any, where: str) -> CharacteristicSnapshot:
    error = obj.get("read_error") if isinstance(obj, dict) else None
    if error is not None and (
        isinstance(error, bool) or not isinstance(error, int) or not 0x01 <= error <= 0xFF
    ):
        raise _fail(f"{where}.read_error", "must be an ATT error code 1..255 (or null)")
    return CharacteristicSnapshot(
        _uuid(_get(obj, "uuid", where), f"{where}.uuid"),
        _handle(_get(obj, "handle", where), f"{where}.handle"),
        _properties(_get(obj, "properties", where), f"{where}.properties"),
        _hex(obj.get("value"), f"{where}.value"),
        error,
        tuple(
            _descriptor(d, f"{where}.descriptors[{i}]")
            for i, d in enumerate(_list(obj, "descriptors", f"{where}."))
        ),
    )


def _notification(obj: Any, where: str, known: set[uuid.UUID]) -> RecordedNotification:
    t = _get(obj, "t", where)
    if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0:
        raise _fail(f"{where}.t", "must be seconds from the recording's start, >= 0")
    char = _uuid(_get(obj, "characteristic", where), f"{where}.characteristic")
    if char not in known:
        raise _fail(
            f"{where}.characteristic",
            "names no characteristic that notifies or indicates in services; fix the UUID",
        )
    value = _hex(_get(obj, "value", where), f"{where}.value", optional=False)
    assert value is not None
    return RecordedNotification(float(t), char, value)


def from_json(doc: Any) -> DeviceSnapshot:
    """Check a parsed device.json and build the snapshot; SnapshotFormatError if it is bad."""
    if not isinstance(doc, dict):
        raise _fail("top level", "must be a JSON object written by 'kmeband clone'")
    if doc.get("format") != FORMAT:
        raise _fail("format", f"must be {FORMAT!r}: is this a file from 'kmeband clone'?")
    if doc.get("version") != VERSION:
        raise _fail("version", f"must be {VERSION}; clone the device again with this kmeband")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise _fail("name", "must be a string or null")
    services = tuple(
        ServiceSnapshot(
            _uuid(_get(s, "uuid", f"services[{i}]"), f"services[{i}].uuid"),
            _handle(_get(s, "handle", f"services[{i}]"), f"services[{i}].handle"),
            tuple(
                _characteristic(c, f"services[{i}].characteristics[{j}]")
                for j, c in enumerate(_list(s, "characteristics", f"services[{i}]."))
            ),
        )
        for i, s in enumerate(_list(doc, "services", ""))
    )
    if not services:
        raise _fail("services", "is empty; a clone needs at least one service")
    last = 0
    for i, s in enumerate(services):
        handles = [s.handle] + [
            h for c in s.characteristics for h in (c.handle, *(d.handle for d in c.descriptors))
        ]
        if handles[0] <= last or handles != sorted(set(handles)):
            raise _fail(f"services[{i}]", "handles must increase through the table")
        last = handles[-1]
    notifying = {
        c.uuid
        for s in services
        for c in s.characteristics
        if c.properties & (Properties.NOTIFY | Properties.INDICATE)
    }
    notifications = tuple(
        _notification(n, f"notifications[{i}]", notifying)
        for i, n in enumerate(_list(doc, "notifications", ""))
    )
    if [n.t for n in notifications] != sorted(n.t for n in notifications):
        raise _fail("notifications", "must be in time order")
    recorded = doc.get("recorded_s", 0.0)
    if isinstance(recorded, bool) or not isinstance(recorded, int | float) or recorded < 0:
        raise _fail("recorded_s", "must be the recording's length in seconds, >= 0")
    advertised = tuple(
        _uuid(u, f"advertised_uuids[{i}]") for i, u in enumerate(_list(doc, "advertised_uuids", ""))
    )
    maker = doc.get("manufacturer_data", {})
    if not isinstance(maker, dict):
        raise _fail("manufacturer_data", "must map company identifiers to hex strings")
    manufacturer: list[tuple[int, bytes]] = []
    for key, value in maker.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) <= 0xFFFF):
            raise _fail("manufacturer_data", f"{key!r} is not a company identifier 0..65535")
        raw = _hex(value, f"manufacturer_data.{key}", optional=False)
        assert raw is not None
        manufacturer.append((int(key), raw))
    return DeviceSnapshot(
        name, services, advertised, tuple(manufacturer), notifications, float(recorded)
    )
