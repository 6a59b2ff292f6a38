"""KME control messages of the Device Control service: time zone, reboot, find, reset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.kme.control.schema import (
    ControlMessage,
    Field,
    Int,
    Text,
    register_message,
)


@register_message
@dataclass(frozen=True, slots=True)
class SetTimeZone(ControlMessage):
    """Device control point: the wearer's time zone.

    ``utc_offset_min`` is the standard offset (a multiple of 15 minutes), ``dst_offset_min``
    the daylight-saving offset now in force; ``tz_name`` optionally names the IANA zone.
    Answered by :class:`ControlResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x40
    SERVICE: ClassVar[str] = "device_control"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "utc_offset_min", Int(-720, 840, multiple_of=15)),
        Field(3, "dst_offset_min", Int(0, 120, multiple_of=15)),
        Field(4, "tz_name", Text(64), required=False),
    )
    utc_offset_min: int
    dst_offset_min: int
    tz_name: str | None = None


@register_message
@dataclass(frozen=True, slots=True)
class Reboot(ControlMessage):
    """Device control point: restart the firmware (stored data is kept)."""

    MESSAGE_TYPE: ClassVar[int] = 0x41
    SERVICE: ClassVar[str] = "device_control"
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class FindBand(ControlMessage):
    """Device control point: vibrate ``repeat`` times for ``vibrate_ms`` each."""

    MESSAGE_TYPE: ClassVar[int] = 0x42
    SERVICE: ClassVar[str] = "device_control"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "vibrate_ms", Int(100, 5000)),
        Field(3, "repeat", Int(1, 10)),
    )
    vibrate_ms: int
    repeat: int


@register_message
@dataclass(frozen=True, slots=True)
class FactoryReset(ControlMessage):
    """Device control point (owner only): the band's factory reset.

    Erases every record, the consent state and log, alarms, the user profile, the owner
    key and every bond (docs/protocol.md, "Device Control"); keeps the identity key and
    its certificate. Answered by :class:`ControlResult`; the band resets once the client
    confirmed that answer, and drops every link.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x43
    SERVICE: ClassVar[str] = "device_control"
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


__all__ = [
    "FactoryReset",
    "FindBand",
    "Reboot",
    "SetTimeZone",
]
