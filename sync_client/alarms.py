"""The band's alarms from the owner's client: list, set and delete over the KME Alarms service.

Requests go to the Alarm Control Point (CBOR ``ListAlarms``, ``SetAlarm``, ``DeleteAlarm``)
and the band indicates its answer (``AlarmList`` or ``ControlResult``). The band only
takes them from its owner on an encrypted link, so callers prove ownership first
(:func:`sync_client.activation.ensure_owner`). Alarms are in the band's local time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import cast

from protocol.errors import KmebandError, UsageError
from protocol.kme.control.alarms import (
    MAX_ALARMS,
    MAX_SMART_WINDOW_MIN,
    WEEKDAY_BITS,
    Alarm,
    AlarmList,
    DeleteAlarm,
    ListAlarms,
    SetAlarm,
)
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.profile import KME_ALARM_CONTROL_POINT
from sync_client.ble import BandLink

#: Weekday names in bit order, for printing a weekday mask.
WEEKDAY_NAMES = tuple(WEEKDAY_BITS)


class AlarmError(KmebandError):
    """The band refused or failed an alarm request; the message says why and what to do."""


class AlarmNotFoundError(AlarmError):
    """No alarm with that id on the band."""

    exit_code = 3


class AlarmSpecError(UsageError):
    """An alarm given on the command line cannot be an alarm (time, days, window)."""


_ADVICE = {
    ControlStatus.NOT_OWNER: "prove ownership first (this client is not the band's owner)",
    ControlStatus.NOT_ACTIVATED: "activate the band first with 'kmeband pair'",
    ControlStatus.INSUFFICIENT_SECURITY: "pair with the band first ('kmeband pair')",
    ControlStatus.LIMIT_REACHED: f"the band holds at most {MAX_ALARMS} alarms; delete one",
    ControlStatus.INVALID_REQUEST: "check the alarm's time, days and smart window",
    ControlStatus.BUSY: "the band is busy; try again in a moment",
    ControlStatus.UNSUPPORTED: "this band's firmware does not support alarms",
}


def _check(result: ControlResult, what: str) -> None:
    if result.status is ControlStatus.OK:
        return
    if result.status is ControlStatus.NOT_FOUND:
        raise AlarmNotFoundError(f"{what}: the band has no such alarm; list them with 'alarm list'")
    advice = _ADVICE.get(result.status, "try again")
    raise AlarmError(f"{what}: the band answered {result.status.name}; {advice}")


async def list_alarms(link: BandLink) -> tuple[Alarm, ...]:
    """Every alarm on the band, by id."""
    answer = await link.request(KME_ALARM_CONTROL_POINT, ListAlarms(), AlarmList, ControlResult)
    if isinstance(answer, ControlResult):
        _check(answer, "listing alarms")
        raise AlarmError("listing alarms: the band answered without a list; try again")
    return tuple(sorted(cast(AlarmList, answer).alarms, key=lambda a: a.alarm_id))


async def set_alarm(link: BandLink, alarm: Alarm) -> None:
    """Create or replace the alarm with ``alarm.alarm_id``."""
    _check(await link.request(KME_ALARM_CONTROL_POINT, SetAlarm(alarm), ControlResult), "setting")


async def delete_alarm(link: BandLink, alarm_id: int) -> None:
    """Delete one alarm; :class:`AlarmNotFoundError` when the band has none with that id."""
    request = DeleteAlarm(alarm_id)
    _check(await link.request(KME_ALARM_CONTROL_POINT, request, ControlResult), "deleting")


def parse_time(text: str) -> tuple[int, int]:
    """``HH:MM`` (24-hour) to (hour, minute)."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise AlarmSpecError(f"alarm time {text!r} is not HH:MM (24-hour, e.g. 06:45)")
    return int(match[1]), int(match[2])


def parse_weekdays(text: str) -> int:
    """``once``, ``daily``, ``weekdays``, ``weekends`` or names like ``mon,wed,fri``: a mask."""
    word = text.strip().lower()
    named = {"once": 0, "daily": 0x7F, "weekdays": 0x1F, "weekends": 0x60}
    if word in named:
        return named[word]
    mask = 0
    for part in filter(None, (p.strip()[:3] for p in word.split(","))):
        if part not in WEEKDAY_BITS:
            raise AlarmSpecError(
                f"unknown day {part!r}; use mon,tue,... or once, daily, weekdays, weekends"
            )
        mask |= WEEKDAY_BITS[part]
    if not mask:
        raise AlarmSpecError("no day given; use mon,tue,... or once, daily, weekdays, weekends")
    return mask


def make_alarm(
    alarm_id: int, time: str, days: str = "once", smart_window_min: int = 0, enabled: bool = True
) -> Alarm:
    """An :class:`Alarm` from command-line values, each checked with a clear message."""
    if not 0 <= alarm_id < MAX_ALARMS:
        raise AlarmSpecError(f"alarm id must be 0..{MAX_ALARMS - 1}")
    if not 0 <= smart_window_min <= MAX_SMART_WINDOW_MIN:
        raise AlarmSpecError(f"the smart window must be 0..{MAX_SMART_WINDOW_MIN} minutes")
    hour, minute = parse_time(time)
    return Alarm(alarm_id, hour, minute, parse_weekdays(days), smart_window_min, enabled)


def describe_days(mask: int) -> str:
    if mask == 0:
        return "once"
    if mask == 0x7F:
        return "daily"
    return ",".join(name for name in WEEKDAY_NAMES if mask & WEEKDAY_BITS[name])


def alarm_to_json(alarm: Alarm) -> dict[str, object]:
    return {
        "id": alarm.alarm_id,
        "time": f"{alarm.hour:02d}:{alarm.minute:02d}",
        "days": describe_days(alarm.weekdays),
        "weekdays_mask": alarm.weekdays,
        "smart_window_min": alarm.smart_window_min,
        "enabled": alarm.enabled,
    }


def describe_alarms(alarms: Iterable[Alarm]) -> str:
    lines = [
        f"{a.alarm_id}  {a.hour:02d}:{a.minute:02d}  {describe_days(a.weekdays)}"
        + (f"  smart window {a.smart_window_min} min" if a.smart_window_min else "")
        + ("" if a.enabled else "  (off)")
        for a in alarms
    ]
    return "\n".join(lines) or "no alarms"


__all__ = [
    "AlarmError",
    "AlarmNotFoundError",
    "AlarmSpecError",
    "alarm_to_json",
    "delete_alarm",
    "describe_alarms",
    "list_alarms",
    "make_alarm",
    "parse_time",
    "parse_weekdays",
    "set_alarm",
]
