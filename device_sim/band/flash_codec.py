"""The flash's own fixed-size binary layout for each record type (not the on-air codec).

Every record of a stream has the same size, so the flash can account its capacity by
counting records and decode a whole segment with one ``struct.iter_unpack``. Times are
unsigned 32-bit UTC seconds (good until 2106), offsets signed 16-bit minutes, all
little-endian. ``AlarmEvent.sleep_stage`` None is stored as 255.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from typing import TypeVar

from protocol.errors import UsageError
from protocol.kme.record_domain import check_domain
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    ActivityClass,
    ActivityMinute,
    AlarmEvent,
    AlarmEventKind,
    GnssFix,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    SleepSummary,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
)


class FlashRecordError(UsageError):
    """A record cannot be stored: wrong type for its stream or a field out of range."""


_NO_STAGE = 255

_FORMATS: dict[StreamId, struct.Struct] = {
    # start, tz, steps, class, intensity, avg_hr, worn
    StreamId.ACTIVITY_MINUTES: struct.Struct("<IhHBBBB"),
    # timestamp, tz, bpm, confidence
    StreamId.HR_SAMPLES: struct.Struct("<IhBB"),
    # start, tz, stage
    StreamId.SLEEP_EPOCHS: struct.Struct("<IhB"),
    # bed, tz, onset, final wake, out of bed, efficiency, awakenings, light, deep, rem, wake
    StreamId.SLEEP_SUMMARIES: struct.Struct("<IhIIIBHHHHH"),
    # timestamp, tz, alarm id, kind, set time, stage (255 = unknown)
    StreamId.ALARM_EVENTS: struct.Struct("<IhBBIB"),
    # timestamp, tz, lat e7, lon e7, alt m, accuracy m
    StreamId.GNSS_FIXES: struct.Struct("<IhiiiI"),
    # timestamp, tz, kind, value, detail
    StreamId.TELEMETRY: struct.Struct("<IhBqq"),
}

#: Bytes one record of each stream takes in the flash.
RECORD_SIZE: dict[StreamId, int] = {stream: fmt.size for stream, fmt in _FORMATS.items()}


_E = TypeVar("_E", bound=enum.IntEnum)


def _enum_lookup(enum_type: type[_E]) -> Callable[[int], _E]:
    members = {int(m): m for m in enum_type}

    def lookup(value: int) -> _E:
        try:
            return members[value]
        except (KeyError, TypeError):
            raise ValueError(f"{value} is not a valid {enum_type.__name__}") from None

    return lookup


_activity_class = _enum_lookup(ActivityClass)
_sleep_stage = _enum_lookup(SleepStage)
_alarm_kind = _enum_lookup(AlarmEventKind)
_telemetry_kind = _enum_lookup(TelemetryKind)


def _fields(stream: StreamId, r: Record) -> tuple[object, ...]:
    if stream is StreamId.HR_SAMPLES:
        assert isinstance(r, HeartRateSample)
        return (r.timestamp, r.tz_offset_min, r.bpm, r.confidence)
    if stream is StreamId.ACTIVITY_MINUTES:
        assert isinstance(r, ActivityMinute)
        return (
            r.start, r.tz_offset_min, r.steps, _activity_class(r.activity_class), r.intensity,
            r.avg_hr, 1 if r.worn else 0,
        )  # fmt: skip
    if stream is StreamId.SLEEP_EPOCHS:
        assert isinstance(r, SleepEpoch)
        return (r.start, r.tz_offset_min, _sleep_stage(r.stage))
    if stream is StreamId.SLEEP_SUMMARIES:
        assert isinstance(r, SleepSummary)
        return (
            r.bed_time, r.tz_offset_min, r.sleep_onset, r.final_wake, r.out_of_bed,
            r.efficiency_pct, r.awakenings, r.light_min, r.deep_min, r.rem_min, r.wake_min,
        )  # fmt: skip
    if stream is StreamId.ALARM_EVENTS:
        assert isinstance(r, AlarmEvent)
        stage = _NO_STAGE if r.sleep_stage is None else _sleep_stage(r.sleep_stage)
        return (r.timestamp, r.tz_offset_min, r.alarm_id, _alarm_kind(r.kind), r.set_time, stage)
    if stream is StreamId.GNSS_FIXES:
        assert isinstance(r, GnssFix)
        return (r.timestamp, r.tz_offset_min, r.lat_e7, r.lon_e7, r.alt_m, r.accuracy_m)
    assert isinstance(r, TelemetryEvent)
    return (r.timestamp, r.tz_offset_min, _telemetry_kind(r.kind), r.value, r.detail)


def encode_record(stream: StreamId, record: Record) -> bytes:
    """The flash bytes of ``record``; raises FlashRecordError if it does not fit."""
    expected = STREAM_RECORD_TYPE[stream]
    if type(record) is not expected:
        raise FlashRecordError(
            f"stream {stream.name} holds {expected.__name__} records, not "
            f"{type(record).__name__}; append it to the stream of its own type"
        )
    check_domain(stream, [record], FlashRecordError, "check the values the firmware produced")
    try:
        return _FORMATS[stream].pack(*_fields(stream, record))
    except (struct.error, TypeError, ValueError) as exc:
        raise FlashRecordError(
            f"a {expected.__name__} record has a field out of the range the flash stores "
            f"({exc}); check the values the firmware produced"
        ) from None


def _decoder(stream: StreamId) -> Callable[[tuple[int, ...]], Record]:
    if stream is StreamId.HR_SAMPLES:
        return lambda f: HeartRateSample(f[0], f[1], f[2], f[3])
    if stream is StreamId.ACTIVITY_MINUTES:
        return lambda f: ActivityMinute(
            f[0],
            f[1],
            f[2],
            _activity_class(f[3]),
            f[4],
            f[5],
            bool(f[6]),
        )
    if stream is StreamId.SLEEP_EPOCHS:
        return lambda f: SleepEpoch(f[0], f[1], _sleep_stage(f[2]))
    if stream is StreamId.SLEEP_SUMMARIES:
        return lambda f: SleepSummary(*f)
    if stream is StreamId.ALARM_EVENTS:
        return lambda f: AlarmEvent(
            f[0], f[1], f[2], _alarm_kind(f[3]), f[4],
            None if f[5] == _NO_STAGE else _sleep_stage(f[5]),
        )  # fmt: skip
    if stream is StreamId.GNSS_FIXES:
        return lambda f: GnssFix(*f)
    return lambda f: TelemetryEvent(f[0], f[1], _telemetry_kind(f[2]), f[3], f[4])


_DECODERS = {stream: _decoder(stream) for stream in StreamId}


def decode_records(stream: StreamId, payload: bytes) -> list[Record]:
    """Decode a run of records of ``stream``; raises ValueError on a bad enum value."""
    make = _DECODERS[stream]
    return [make(f) for f in _FORMATS[stream].iter_unpack(payload)]


def encode_many(stream: StreamId, records: Iterable[Record]) -> bytes:
    """Concatenated flash bytes of ``records`` (used when rewriting a flash file)."""
    return b"".join(encode_record(stream, r) for r in records)
