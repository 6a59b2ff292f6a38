"""The activity-minute bit code: the stream section of an activity-minute chunk.

About one byte per minute: consecutive minutes carry no timestamp, an unchanged
class/intensity/worn state costs one bit, zero steps one bit, a small heart-rate change
four. docs/records.md has the bit layout; ``protocol.kme.chunk_framing`` the chunk around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Final

from protocol.kme.chunk_framing import (
    MAX_TZ_OFFSET_MIN,
    MAX_UTC_SECONDS,
    MIN_TZ_OFFSET_MIN,
    ChunkError,
    ChunkFormatError,
    ChunkTruncatedError,
    ChunkValueError,
    stored_run,
)
from protocol.kme.record_fields import RecordBuilder
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    StoredRecord,
    StreamId,
)

ACTIVITY_INTERVAL_S: Final = 60
_MINUTE_MASK: Final = (1 << 26) - 1  # a minute is at most 1 + 6 + 9 + 10 bits
_MINUTES: Final = RecordBuilder(ActivityMinute)

# ----------------------------------------------------------------- activity minute code
#
# Per minute, least significant bit first:
#   state:  1                      same class/intensity/worn as the previous minute
#           0, class:3, intensity:2, worn:1
#   steps:  0                      no steps
#           1, steps:8             1..255 steps
#   hr:     0, delta:3 (signed)    previous reading -4..+3 bpm
#           1, 0, bpm:8            a reading 1..255 bpm
#           1, 1                   no reading (avg_hr 0)


def _minute_code(
    minute: ActivityMinute, prev_state: int, prev_hr: int
) -> tuple[int, int, int, int]:
    """(code, bits, state, hr) for one minute given the previous minute's state and hr."""
    cls = int(minute.activity_class)
    intensity = minute.intensity
    steps = minute.steps
    hr = minute.avg_hr
    if cls not in _ACTIVITY_CLASSES:
        raise ChunkValueError("an activity minute has an unknown activity class")
    if type(intensity) is not int or not 0 <= intensity <= 3:
        raise ChunkValueError("an activity minute's intensity must be 0..3")
    if type(steps) is not int or not 0 <= steps <= 0xFF:
        raise ChunkValueError("an activity minute's steps must be 0..255")
    if type(hr) is not int or not 0 <= hr <= 0xFF:
        raise ChunkValueError("an activity minute's average heart rate must be 0..255 bpm")
    if type(minute.worn) is not bool:
        raise ChunkValueError("an activity minute's worn flag must be a bool")
    state = cls | intensity << 3 | minute.worn << 5
    if state == prev_state:
        code, bits = 1, 1
    else:
        code, bits = state << 1, 7
    if steps:
        code |= (1 | steps << 1) << bits
        bits += 9
    else:
        bits += 1
    if hr == 0:
        code |= 0b11 << bits
        bits += 2
    elif prev_hr and -4 <= hr - prev_hr <= 3:
        code |= ((hr - prev_hr) & 0b111) << (bits + 1)
        bits += 4
    else:
        code |= (0b01 | hr << 2) << bits
        bits += 10
    return code, bits, state, hr or prev_hr


_ACTIVITY_CLASSES: Final = {int(c): c for c in ActivityClass}


def pack_activity(
    records: Sequence[StoredRecord], start: int, stop: int, budget: int
) -> tuple[int, bytes]:
    first = records[start].record
    assert isinstance(first, ActivityMinute)
    if not 0 <= first.start <= MAX_UTC_SECONDS:
        raise ChunkValueError("an activity minute's start is outside 0..2**32-1 UTC seconds")
    section = first.start.to_bytes(4, "little") + first.tz_offset_min.to_bytes(
        2, "little", signed=True
    )
    budget_bits = max(0, (budget - len(section)) * 8)
    acc = 0
    pos = 0
    prev_state = -1
    prev_hr = 0
    expected_start = first.start
    tz = first.tz_offset_min
    n = 0
    for index in range(start, stop):
        minute = records[index].record
        assert isinstance(minute, ActivityMinute)
        if minute.start != expected_start or minute.tz_offset_min != tz:
            break
        if minute.start > MAX_UTC_SECONDS:
            raise ChunkValueError("an activity minute's start is outside 0..2**32-1 UTC seconds")
        code, bits, state, hr = _minute_code(minute, prev_state, prev_hr)
        if pos + bits > budget_bits and n:
            break
        acc |= code << pos
        pos += bits
        n += 1
        prev_state, prev_hr = state, hr
        expected_start += ACTIVITY_INTERVAL_S
    return n, section + acc.to_bytes((pos + 7) // 8, "little")


def unpack_activity(
    stream: StreamId, first_seq: int, count: int, data: bytes, pos: int, end: int
) -> list[StoredRecord]:
    if end - pos < 6:
        raise ChunkTruncatedError("activity chunk too short for its base time; cut short")
    base = int.from_bytes(data[pos : pos + 4], "little")
    tz = int.from_bytes(data[pos + 4 : pos + 6], "little", signed=True)
    if not MIN_TZ_OFFSET_MIN <= tz <= MAX_TZ_OFFSET_MIN:
        raise ChunkValueError("chunk time zone offset outside -1080..1080 minutes")
    body = data[pos + 6 : end]
    acc = int.from_bytes(body, "little")
    total_bits = len(body) * 8
    bit = 0
    state = -1
    hr = 0
    rows: list[tuple[int, ActivityClass, int, int, bool]] = []
    append = rows.append
    classes = _ACTIVITY_CLASSES
    for _ in range(count):
        word = (acc >> bit) & _MINUTE_MASK
        problem: ChunkError | None = None
        if word & 1:
            if state < 0:
                problem = ChunkFormatError("a chunk's first minute cannot repeat a previous state")
            used = 1
        else:
            state = (word >> 1) & 0x3F
            used = 7
        if (word >> used) & 1:
            steps = (word >> (used + 1)) & 0xFF
            if steps == 0:
                problem = ChunkFormatError("an activity minute codes zero steps the long way")
            used += 9
        else:
            steps = 0
            used += 1
        if (word >> used) & 1:
            if (word >> (used + 1)) & 1:
                avg_hr = 0
                used += 2
            else:
                avg_hr = (word >> (used + 2)) & 0xFF
                if avg_hr == 0:
                    problem = ChunkFormatError("an activity minute codes no reading as 0 bpm")
                hr = avg_hr
                used += 10
        else:
            delta = (word >> (used + 1)) & 0b111
            avg_hr = hr + (delta - 8 if delta & 0b100 else delta)
            if hr == 0:
                problem = ChunkFormatError("an activity minute's heart-rate delta has no base")
            elif not 1 <= avg_hr <= 0xFF:
                problem = ChunkValueError("an activity minute's heart rate decodes outside 1..255")
            hr = avg_hr
            used += 4
        bit += used
        if bit > total_bits:
            raise ChunkTruncatedError("activity chunk body ends early; the chunk is cut short")
        if problem is not None:
            raise problem
        cls = classes.get(state & 0b111)
        if cls is None:
            raise ChunkValueError("an activity minute has an unknown activity class")
        append((steps, cls, (state >> 3) & 0b11, avg_hr, bool(state >> 5)))
    if (total_bits + 7) // 8 != (bit + 7) // 8 or acc >> bit:
        raise ChunkFormatError("activity chunk has bytes or bits after its last minute")
    steps_col, class_col, intensity_col, hr_col, worn_col = zip(*rows, strict=True)
    starts = range(base, base + ACTIVITY_INTERVAL_S * count, ACTIVITY_INTERVAL_S)
    minutes = _MINUTES.build(
        count, (starts, repeat(tz), steps_col, class_col, intensity_col, hr_col, worn_col)
    )
    return stored_run(stream, first_seq, minutes)


__all__ = ["ACTIVITY_INTERVAL_S", "pack_activity", "unpack_activity"]
