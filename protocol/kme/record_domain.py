"""The one definition of every record field's type and allowed range.

The band's flash, the on-air chunk codec and the cloud batch all check records against
this table and nothing else, so a record one of them accepts every other one accepts too
(``tests/protocol/test_record_domain.py`` proves it for every field). A codec's wire width
may be wider than a field's range; it is never narrower (each codec asserts that at import).

Two fields are times relative to another field of the same record: a sleep summary's
``sleep_onset``, ``final_wake`` and ``out_of_bed`` lie within :data:`MAX_RELATIVE_S` of its
``bed_time``, an alarm event's ``set_time`` within it of its ``timestamp``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from protocol.errors import KmebandError
from protocol.kme.record_fields import field_columns, int64_column
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    ActivityClass,
    AlarmEventKind,
    Record,
    SleepStage,
    StreamId,
    TelemetryKind,
)

#: Times are unsigned 32-bit UTC seconds (good until 2106).
MAX_UTC_SECONDS: Final = 0xFFFF_FFFF
#: UTC offsets stay within +/-18 h (ISO 8601).
MAX_TZ_OFFSET_MIN: Final = 18 * 60
#: How far a relative time may lie from the field it is relative to (int32 seconds).
MAX_RELATIVE_S: Final = 2**31 - 1
#: The integer an unknown alarm sleep stage (None) is checked as.
NO_STAGE: Final = -1


@dataclass(frozen=True, slots=True)
class FieldDomain:
    """One record field: its name, its integer range, and what the integer stands for.

    ``enum`` is the IntEnum the integer names (its members are contiguous, so the range
    is the enum); ``optional`` fields may be None (checked as ``low``, which then lies one
    below the enum); ``flag`` fields are bools; ``relative_to`` names the field a time is
    measured from.
    """

    name: str
    low: int
    high: int
    enum: type[enum.IntEnum] | None = None
    optional: bool = False
    flag: bool = False
    relative_to: str | None = None


def _time(name: str, relative_to: str | None = None) -> FieldDomain:
    return FieldDomain(name, 0, MAX_UTC_SECONDS, relative_to=relative_to)


def _enum(name: str, kind: type[enum.IntEnum], optional: bool = False) -> FieldDomain:
    low = min(kind)
    return FieldDomain(name, NO_STAGE if optional else low, max(kind), kind, optional)


_TZ = FieldDomain("tz_offset_min", -MAX_TZ_OFFSET_MIN, MAX_TZ_OFFSET_MIN)
_I32 = (-(2**31), 2**31 - 1)

#: Every field of every stream's record type, in dataclass field order.
RECORD_DOMAIN: Final[Mapping[StreamId, tuple[FieldDomain, ...]]] = {
    StreamId.ACTIVITY_MINUTES: (
        _time("start"),
        _TZ,
        FieldDomain("steps", 0, 255),
        _enum("activity_class", ActivityClass),
        FieldDomain("intensity", 0, 3),
        FieldDomain("avg_hr", 0, 255),
        FieldDomain("worn", 0, 1, flag=True),
    ),
    StreamId.HR_SAMPLES: (
        _time("timestamp"),
        _TZ,
        FieldDomain("bpm", 0, 255),
        FieldDomain("confidence", 0, 3),
    ),
    StreamId.SLEEP_EPOCHS: (_time("start"), _TZ, _enum("stage", SleepStage)),
    StreamId.SLEEP_SUMMARIES: (
        _time("bed_time"),
        _TZ,
        _time("sleep_onset", "bed_time"),
        _time("final_wake", "bed_time"),
        _time("out_of_bed", "bed_time"),
        FieldDomain("efficiency_pct", 0, 100),
        FieldDomain("awakenings", 0, 1440),
        FieldDomain("light_min", 0, 1440),
        FieldDomain("deep_min", 0, 1440),
        FieldDomain("rem_min", 0, 1440),
        FieldDomain("wake_min", 0, 1440),
    ),
    StreamId.ALARM_EVENTS: (
        _time("timestamp"),
        _TZ,
        FieldDomain("alarm_id", 0, 255),
        _enum("kind", AlarmEventKind),
        _time("set_time", "timestamp"),
        _enum("sleep_stage", SleepStage, optional=True),
    ),
    StreamId.GNSS_FIXES: (
        _time("timestamp"),
        _TZ,
        FieldDomain("lat_e7", -900_000_000, 900_000_000),
        FieldDomain("lon_e7", -1_800_000_000, 1_800_000_000),
        FieldDomain("alt_m", -1000, 100_000),
        FieldDomain("accuracy_m", 0, 100_000),
    ),
    StreamId.TELEMETRY: (
        _time("timestamp"),
        _TZ,
        _enum("kind", TelemetryKind),
        FieldDomain("value", *_I32),
        FieldDomain("detail", *_I32),
    ),
}


def field_domain(stream: StreamId, name: str) -> FieldDomain:
    """The domain of one field of ``stream``'s records."""
    for domain in RECORD_DOMAIN[stream]:
        if domain.name == name:
            return domain
    raise KeyError(name)


def domain_fault(stream: StreamId, records: Sequence[Record]) -> str | None:
    """Why ``records`` of ``stream`` are outside the record domain (naming the field, never a
    value), or None when every field of every record is inside it."""
    if not records:
        return None
    expected = STREAM_RECORD_TYPE[stream]
    if any(type(r) is not expected for r in records):
        return f"stream {stream.name} holds {expected.__name__} records only"
    domains = RECORD_DOMAIN[stream]
    names = [d.name for d in domains]
    columns = dict(zip(names, field_columns(records, names), strict=True))
    ints: dict[str, npt.NDArray[np.int64]] = {}
    for domain in domains:
        values = columns[domain.name]
        fault = _column_fault(domain, values)
        if fault is not None:
            return f"{expected.__name__} field {domain.name!r} {fault}"
        column = int64_column([NO_STAGE if v is None else v for v in values])
        assert column is not None  # _column_fault checked every value is an int in range
        ints[domain.name] = column
    for domain in domains:
        if domain.relative_to is not None:
            offset = ints[domain.name] - ints[domain.relative_to]
            if int(np.abs(offset).max()) > MAX_RELATIVE_S:
                return (
                    f"{expected.__name__} field {domain.name!r} lies more than 2**31-1 s "
                    f"from {domain.relative_to!r}"
                )
    return None


def _column_fault(domain: FieldDomain, values: list[object]) -> str | None:
    if domain.flag:
        return None if all(type(v) is bool for v in values) else "must be a bool"
    if domain.optional:
        values = [NO_STAGE if v is None else v for v in values]
    if any(type(v) is not int and not isinstance(v, enum.IntEnum) for v in values):
        return "must be an integer"
    if domain.enum is not None and any(
        isinstance(v, enum.IntEnum) and not isinstance(v, domain.enum) for v in values
    ):
        return f"must be a {domain.enum.__name__}"
    column = int64_column(values)
    if column is None or int(column.min()) < domain.low or int(column.max()) > domain.high:
        return f"is outside {domain.low}..{domain.high}"
    return None


def check_domain(
    stream: StreamId, records: Sequence[Record], error: type[KmebandError], action: str
) -> None:
    """Raise ``error`` (telling the user ``action``) when ``records`` leave the domain."""
    fault = domain_fault(stream, records)
    if fault is not None:
        raise error(f"{fault}; {action}")


def check_width(stream: StreamId, name: str, low: int, high: int) -> None:
    """Assert a codec's wire range for a field holds the field's whole domain."""
    domain = field_domain(stream, name)
    if low > domain.low or high < domain.high:  # pragma: no cover - a wrong codec table
        raise AssertionError(f"{stream.name}.{name}: wire range narrower than its domain")


__all__ = [
    "MAX_RELATIVE_S",
    "MAX_TZ_OFFSET_MIN",
    "MAX_UTC_SECONDS",
    "NO_STAGE",
    "RECORD_DOMAIN",
    "FieldDomain",
    "check_domain",
    "check_width",
    "domain_fault",
    "field_domain",
]
