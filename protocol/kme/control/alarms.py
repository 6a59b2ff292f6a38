"""KME control messages of the Alarm service: list, set and delete alarms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from protocol.kme.control.schema import (
    Bool,
    ControlMessage,
    ControlRecord,
    Field,
    Int,
    ListOf,
    RecordOf,
    register_message,
    register_record,
)

#: Weekday bits of :attr:`Alarm.weekdays`: bit 0 Monday .. bit 6 Sunday; 0 = once.
WEEKDAY_BITS: Mapping[str, int] = {
    "mon": 0x01,
    "tue": 0x02,
    "wed": 0x04,
    "thu": 0x08,
    "fri": 0x10,
    "sat": 0x20,
    "sun": 0x40,
}
MAX_ALARMS = 8
MAX_SMART_WINDOW_MIN = 60


@register_record
@dataclass(frozen=True, slots=True)
class Alarm(ControlRecord):
    """One alarm in the band's local time.

    ``weekdays`` is a bitmask (:data:`WEEKDAY_BITS`; 0 = ring once);
    ``smart_window_min`` > 0 lets the band ring up to that many minutes early when the
    wearer is in light sleep or awake.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "alarm_id", Int(0, MAX_ALARMS - 1)),
        Field(1, "hour", Int(0, 23)),
        Field(2, "minute", Int(0, 59)),
        Field(3, "weekdays", Int(0, 0x7F)),
        Field(4, "smart_window_min", Int(0, MAX_SMART_WINDOW_MIN)),
        Field(5, "enabled", Bool()),
    )
    alarm_id: int
    hour: int
    minute: int
    weekdays: int
    smart_window_min: int
    enabled: bool


@register_message
@dataclass(frozen=True, slots=True)
class ListAlarms(ControlMessage):
    """Alarm control point: ask for every alarm; answered by :class:`AlarmList`."""

    MESSAGE_TYPE: ClassVar[int] = 0x30
    SERVICE: ClassVar[str] = "alarms"
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class AlarmList(ControlMessage):
    """Every alarm on the band (also the value of the Alarm List characteristic)."""

    MESSAGE_TYPE: ClassVar[int] = 0x31
    SERVICE: ClassVar[str] = "alarms"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "alarms", ListOf(RecordOf(Alarm), MAX_ALARMS)),)
    alarms: tuple[Alarm, ...]


@register_message
@dataclass(frozen=True, slots=True)
class SetAlarm(ControlMessage):
    """Alarm control point: create or replace the alarm with this id.

    Answered by :class:`ControlResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x32
    SERVICE: ClassVar[str] = "alarms"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "alarm", RecordOf(Alarm)),)
    alarm: Alarm


@register_message
@dataclass(frozen=True, slots=True)
class DeleteAlarm(ControlMessage):
    """Alarm control point: delete one alarm (NOT_FOUND if there is none)."""

    MESSAGE_TYPE: ClassVar[int] = 0x33
    SERVICE: ClassVar[str] = "alarms"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "alarm_id", Int(0, MAX_ALARMS - 1)),)
    alarm_id: int


__all__ = [
    "MAX_ALARMS",
    "MAX_SMART_WINDOW_MIN",
    "WEEKDAY_BITS",
    "Alarm",
    "AlarmList",
    "DeleteAlarm",
    "ListAlarms",
    "SetAlarm",
]
