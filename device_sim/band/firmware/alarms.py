"""Alarms: validated settings, occurrences in local time, smart windows, snooze and dismiss.

An :class:`Alarm` rings at ``hour:minute`` local time on the weekdays of its mask (bit 0 =
Monday ... bit 6 = Sunday; a mask of 0 means once, at the next occurrence). With a smart
window of ``w`` minutes it may ring up to ``w`` minutes early, at the first sleep epoch in
the window that the band scores LIGHT or WAKE: waking from light sleep is easier than from
deep sleep. Otherwise it rings at the set time. A ringing alarm is snoozed or dismissed by
the wearer; if nobody answers within ``ring_timeout_s`` it snoozes itself, and after
``max_auto_snoozes`` unanswered rings it gives up (recorded as DISMISSED). An occurrence that
passed while the band was off is recorded as MISSED. Every event is an :class:`AlarmEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.errors import UsageError
from protocol.kme.records import AlarmEvent, AlarmEventKind, SleepStage

DAY_S = 86_400
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
MAX_SMART_WINDOW_MIN = 60


class AlarmError(UsageError):
    """An alarm setting or action that cannot work as given."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm as the wearer set it (validated on construction)."""

    id: int
    hour: int
    minute: int
    weekdays: int = 0x7F  # bit 0 = Monday ... bit 6 = Sunday; 0 = once
    smart_window_min: int = 0  # 0 = a plain alarm
    enabled: bool = True

    def __post_init__(self) -> None:
        checks = (
            (0 <= self.id <= 255, "alarm id must be 0..255"),
            (0 <= self.hour <= 23, "alarm hour must be 0..23"),
            (0 <= self.minute <= 59, "alarm minute must be 0..59"),
            (0 <= self.weekdays <= 0x7F, "weekday mask must be 0..127 (bit 0 = Monday)"),
            (
                0 <= self.smart_window_min <= MAX_SMART_WINDOW_MIN,
                f"smart window must be 0..{MAX_SMART_WINDOW_MIN} minutes",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise AlarmError(f"{message}; fix the alarm setting and set it again")
        if not isinstance(self.enabled, bool):
            raise AlarmError("alarm 'enabled' must be True or False")

    def next_occurrence(self, after: float, tz_offset_min: int) -> int | None:
        """UTC second of the first set time strictly after ``after``, or None if disabled."""
        if not self.enabled:
            return None
        offset = tz_offset_min * 60
        local_day = int((after + offset) // DAY_S)
        for d in range(0, 9):
            day = local_day + d
            weekday = (day + _EPOCH_WEEKDAY) % 7
            if self.weekdays and not (self.weekdays >> weekday) & 1:
                continue
            utc = day * DAY_S + self.hour * 3600 + self.minute * 60 - offset
            if utc > after:
                return utc
        return None


@dataclass
class _Occurrence:
    set_time: int
    ringing_since: int | None = None
    snoozed_until: int | None = None
    auto_snoozes: int = 0


@dataclass(frozen=True)
class AlarmTimings:
    """How long a snooze lasts and how long an unanswered alarm rings."""

    snooze_s: int = 9 * 60
    ring_timeout_s: int = 5 * 60
    max_auto_snoozes: int = 3
    missed_grace_s: int = 120  # a set time this far behind the first tick after it: missed


@dataclass
class AlarmScheduler:
    """Decides when alarms ring; time is given to it (no clock of its own)."""

    timings: AlarmTimings = field(default_factory=AlarmTimings)
    tz_offset_min: int = 0

    def __post_init__(self) -> None:
        self._alarms: dict[int, Alarm] = {}
        self._pending: dict[int, _Occurrence] = {}

    @property
    def alarms(self) -> list[Alarm]:
        return [self._alarms[k] for k in sorted(self._alarms)]

    def set_alarm(self, alarm: Alarm, now: float) -> None:
        """Add or replace an alarm; its next occurrence counts from ``now``."""
        self._alarms[alarm.id] = alarm
        self._schedule(alarm, now)

    def remove_alarm(self, alarm_id: int) -> None:
        if alarm_id not in self._alarms:
            raise AlarmError(f"no alarm with id {alarm_id}; list the alarms to see their ids")
        del self._alarms[alarm_id]
        self._pending.pop(alarm_id, None)

    def set_tz_offset(self, tz_offset_min: int, now: float) -> None:
        """A new local time: alarms not yet ringing move to the new local set times."""
        self.tz_offset_min = tz_offset_min
        for alarm in self._alarms.values():
            occ = self._pending.get(alarm.id)
            if occ is None or (occ.ringing_since is None and occ.snoozed_until is None):
                self._schedule(alarm, now)

    def next_set_time(self, alarm_id: int) -> int | None:
        occ = self._pending.get(alarm_id)
        return None if occ is None else occ.set_time

    def ringing(self) -> list[int]:
        return sorted(k for k, o in self._pending.items() if o.ringing_since is not None)

    def _schedule(self, alarm: Alarm, after: float) -> None:
        nxt = alarm.next_occurrence(after, self.tz_offset_min)
        if nxt is None:
            self._pending.pop(alarm.id, None)
        else:
            self._pending[alarm.id] = _Occurrence(nxt)

    def _event(
        self,
        t: float,
        alarm_id: int,
        kind: AlarmEventKind,
        occ: _Occurrence,
        stage: SleepStage | None,
    ) -> AlarmEvent:
        return AlarmEvent(int(t), self.tz_offset_min, alarm_id, kind, occ.set_time, stage)

    def _finish(self, alarm_id: int, occ: _Occurrence) -> None:
        alarm = self._alarms[alarm_id]
        if alarm.weekdays == 0:  # a one-shot alarm disables itself
            self._alarms[alarm_id] = Alarm(
                alarm.id, alarm.hour, alarm.minute, 0, alarm.smart_window_min, False
            )
            self._pending.pop(alarm_id, None)
        else:
            self._schedule(alarm, occ.set_time)

    def tick(
        self, now: float, stage: SleepStage | None, recorded: SleepStage | None = None
    ) -> list[AlarmEvent]:
        """Advance to ``now`` with the band's current sleep stage (None: not sleeping, or
        not sure enough to act on). ``recorded`` is the stage written into events (by
        default ``stage``)."""
        if recorded is None:
            recorded = stage
        events: list[AlarmEvent] = []
        t = self.timings
        for alarm_id in sorted(self._pending):
            occ = self._pending[alarm_id]
            alarm = self._alarms[alarm_id]
            if occ.ringing_since is not None:
                if now >= occ.ringing_since + t.ring_timeout_s:
                    at = occ.ringing_since + t.ring_timeout_s
                    occ.ringing_since = None
                    occ.auto_snoozes += 1
                    if occ.auto_snoozes > t.max_auto_snoozes:
                        events.append(
                            self._event(at, alarm_id, AlarmEventKind.DISMISSED, occ, recorded)
                        )
                        self._finish(alarm_id, occ)
                        continue
                    occ.snoozed_until = at + t.snooze_s
                    events.append(self._event(at, alarm_id, AlarmEventKind.SNOOZED, occ, recorded))
                continue
            if occ.snoozed_until is not None:
                if now >= occ.snoozed_until:
                    at = occ.snoozed_until
                    occ.snoozed_until = None
                    occ.ringing_since = at
                    events.append(self._event(at, alarm_id, AlarmEventKind.FIRED, occ, recorded))
                continue
            if now >= occ.set_time:
                if now - occ.set_time > t.missed_grace_s:
                    events.append(self._event(now, alarm_id, AlarmEventKind.MISSED, occ, None))
                    self._finish(alarm_id, occ)
                    continue
                occ.ringing_since = occ.set_time
                events.append(
                    self._event(occ.set_time, alarm_id, AlarmEventKind.FIRED, occ, recorded)
                )
                continue
            window_open = occ.set_time - alarm.smart_window_min * 60
            if (
                alarm.smart_window_min
                and now >= window_open
                and stage in (SleepStage.LIGHT, SleepStage.WAKE)
            ):
                occ.ringing_since = int(now)
                events.append(self._event(now, alarm_id, AlarmEventKind.SMART_FIRED, occ, recorded))
        return events

    def _ringing_occurrence(self, alarm_id: int, action: str) -> _Occurrence:
        occ = self._pending.get(alarm_id)
        if occ is None or occ.ringing_since is None:
            raise AlarmError(f"alarm {alarm_id} is not ringing, so it cannot be {action}")
        return occ

    def snooze(self, alarm_id: int, now: float) -> AlarmEvent:
        """The wearer snoozes a ringing alarm: it rings again after the snooze time."""
        occ = self._ringing_occurrence(alarm_id, "snoozed")
        occ.ringing_since = None
        occ.snoozed_until = int(now) + self.timings.snooze_s
        return self._event(now, alarm_id, AlarmEventKind.SNOOZED, occ, None)

    def dismiss(self, alarm_id: int, now: float) -> AlarmEvent:
        """The wearer dismisses a ringing alarm: this occurrence is over."""
        occ = self._ringing_occurrence(alarm_id, "dismissed")
        event = self._event(now, alarm_id, AlarmEventKind.DISMISSED, occ, None)
        self._finish(alarm_id, occ)
        return event
