"""The band's record data model: streams, record types, and the consent each needs.

Records live in typed streams (:class:`StreamId`) with per-stream monotonic sequence
numbers assigned by the band's flash. Every timestamp is UTC seconds since the Unix epoch
with the band's local offset from UTC, in minutes, carried beside it
(``tz_offset_min``), so a DST or time-zone change never shifts or duplicates data.

This module holds the data model only; the on-air chunk codec lives in
``protocol.kme.record_codec`` and the cloud batch encoding in ``protocol.kme.batch``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StreamId(enum.IntEnum):
    """The record streams a band keeps, with their on-air stream numbers."""

    ACTIVITY_MINUTES = 1
    HR_SAMPLES = 2
    SLEEP_EPOCHS = 3
    SLEEP_SUMMARIES = 4
    ALARM_EVENTS = 5
    GNSS_FIXES = 6
    TELEMETRY = 7


class ConsentCategory(enum.IntEnum):
    """The consent categories of the KME Smart privacy policy, with their wire numbers."""

    ACTIVITY = 1  # cloud sync of activity and movement data
    HEART_RATE = 2  # heart rate and other sensor data
    SLEEP = 3
    SMART_ALARM = 4
    LOCATION = 5  # location access (GNSS)
    UX_PROGRAM = 6  # User Experience Improvement Program: device telemetry
    THIRD_PARTY_SHARING = 7


#: The consent a whole record of a stream needs to be collected, queued or uploaded.
STREAM_CONSENT: dict[StreamId, ConsentCategory] = {
    StreamId.ACTIVITY_MINUTES: ConsentCategory.ACTIVITY,
    StreamId.HR_SAMPLES: ConsentCategory.HEART_RATE,
    StreamId.SLEEP_EPOCHS: ConsentCategory.SLEEP,
    StreamId.SLEEP_SUMMARIES: ConsentCategory.SLEEP,
    StreamId.ALARM_EVENTS: ConsentCategory.SMART_ALARM,
    StreamId.GNSS_FIXES: ConsentCategory.LOCATION,
    StreamId.TELEMETRY: ConsentCategory.UX_PROGRAM,
}

#: Fields that need a consent beyond their stream's: (stream, field) -> category.
#: Without it the field is cleared to its "absent" value before the record is queued.
FIELD_CONSENT: dict[tuple[StreamId, str], ConsentCategory] = {
    (StreamId.ACTIVITY_MINUTES, "avg_hr"): ConsentCategory.HEART_RATE,
}


class ActivityClass(enum.IntEnum):
    """What the wearer was doing in a minute, as the firmware estimates it."""

    OFF_WRIST = 0
    SEDENTARY = 1
    LIGHT = 2
    WALK = 3
    RUN = 4
    SLEEP = 5


class SleepStage(enum.IntEnum):
    """The four sleep stages of a 30-second epoch (AASM-style, N1+N2 as LIGHT)."""

    WAKE = 0
    LIGHT = 1
    DEEP = 2
    REM = 3


class AlarmEventKind(enum.IntEnum):
    """What happened to an alarm."""

    FIRED = 1  # at the set time
    SMART_FIRED = 2  # early, in light sleep or wake inside the smart window
    SNOOZED = 3
    DISMISSED = 4
    MISSED = 5  # the band was off or dead at the time


class TelemetryKind(enum.IntEnum):
    """Device telemetry events (User Experience Improvement Program)."""

    BOOT = 1
    SHUTDOWN = 2
    BATTERY_LOW = 3
    CHARGE_START = 4
    CHARGE_STOP = 5
    CONNECT = 6
    DISCONNECT = 7
    RECORDS_DROPPED = 8  # flash full: value = records dropped, detail = stream number
    CLOCK_SET = 9


@dataclass(frozen=True, slots=True)
class ActivityMinute:
    """One minute of activity. ``avg_hr`` 0 means no valid reading in that minute."""

    start: int  # UTC seconds, a multiple of 60
    tz_offset_min: int
    steps: int  # 0..255 in practice; the codec rejects larger
    activity_class: ActivityClass
    intensity: int  # 0..3, from the movement energy
    avg_hr: int  # bpm, 0 = none
    worn: bool


@dataclass(frozen=True, slots=True)
class HeartRateSample:
    """A heart-rate estimate at one instant. ``bpm`` 0 means no valid reading."""

    timestamp: int  # UTC seconds
    tz_offset_min: int
    bpm: int
    confidence: int  # 0..3 (0 = motion-corrupted, 3 = clean)


@dataclass(frozen=True, slots=True)
class SleepEpoch:
    """The sleep stage of one 30-second epoch."""

    start: int  # UTC seconds, a multiple of 30
    tz_offset_min: int
    stage: SleepStage


@dataclass(frozen=True, slots=True)
class SleepSummary:
    """One night's summary. Times are UTC seconds; durations are minutes."""

    bed_time: int
    tz_offset_min: int
    sleep_onset: int
    final_wake: int
    out_of_bed: int
    efficiency_pct: int  # 0..100, asleep / in bed
    awakenings: int
    light_min: int
    deep_min: int
    rem_min: int
    wake_min: int


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """Something that happened to an alarm."""

    timestamp: int
    tz_offset_min: int
    alarm_id: int  # 0..255
    kind: AlarmEventKind
    set_time: int  # UTC seconds of the alarm's set time that day
    sleep_stage: SleepStage | None  # the stage when it fired, if known


@dataclass(frozen=True, slots=True)
class GnssFix:
    """One GNSS fix (collected only outdoors and only with location consent)."""

    timestamp: int
    tz_offset_min: int
    lat_e7: int  # degrees x 1e7
    lon_e7: int
    alt_m: int
    accuracy_m: int


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """A device telemetry event."""

    timestamp: int
    tz_offset_min: int
    kind: TelemetryKind
    value: int = 0
    detail: int = 0


Record = (
    ActivityMinute
    | HeartRateSample
    | SleepEpoch
    | SleepSummary
    | AlarmEvent
    | GnssFix
    | TelemetryEvent
)

#: The record type each stream holds.
STREAM_RECORD_TYPE: dict[StreamId, type] = {
    StreamId.ACTIVITY_MINUTES: ActivityMinute,
    StreamId.HR_SAMPLES: HeartRateSample,
    StreamId.SLEEP_EPOCHS: SleepEpoch,
    StreamId.SLEEP_SUMMARIES: SleepSummary,
    StreamId.ALARM_EVENTS: AlarmEvent,
    StreamId.GNSS_FIXES: GnssFix,
    StreamId.TELEMETRY: TelemetryEvent,
}


def record_time(record: Record) -> int:
    """The UTC instant a record is about: what consent is checked against."""
    if isinstance(record, ActivityMinute | SleepEpoch):
        return record.start
    if isinstance(record, SleepSummary):
        return record.bed_time
    return record.timestamp


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record with the sequence number its stream's flash gave it."""

    stream: StreamId
    seq: int
    record: Record
