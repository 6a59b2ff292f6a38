"""On-air encoding of record chunks: the payloads of the KME Record Sync Data notifications.

A *chunk* carries a run of consecutive records (consecutive sequence numbers, one time
zone offset) of one stream and fits one ATT notification payload (``ATT_MTU - 3``, 20..512
bytes). Its layout (all integers little-endian; docs/records.md has the byte tables):

    0      u8   stream number (bits 0-3) | START 0x10 | END 0x20   (bits 6-7 zero)
    1..4   u32  sequence number of the first record
    5..6   u16  record count (0 only in an empty end-of-transfer marker)
    7..    stream section (absent when the count is 0)
    -4..   u32  CRC-32 (zlib.crc32) of every byte before it

The activity-minute stream uses a bit-level code (about one byte per minute: consecutive
minutes carry no timestamp, an unchanged class/intensity/worn state costs one bit, zero
steps one bit, a small heart-rate change four). Every other stream is coded as columns:
each field's first value in full, then per-record residuals (against the previous record,
or against a per-chunk constant step for timestamps) bit-packed at one width per column
and chunk, with numpy doing the bulk work.

A single record that cannot fit the payload on its own (a sleep summary at the 20-byte
minimum, say) travels as a *fragmented* chunk: pieces of ``[stream | 0x40, index | 0x80
on the last piece]`` followed by a slice of the chunk bytes; :class:`ChunkAssembler`
joins them again.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from protocol.errors import KmebandError, UsageError
from protocol.kme.record_fields import RecordBuilder, int64_column
from protocol.kme.records import (
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
    StoredRecord,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
)

#: The smallest notification payload: the default ATT_MTU of 23 minus the 3-byte header.
MIN_PAYLOAD_SIZE: Final = 20
#: The largest: the maximum length of an attribute value.
MAX_PAYLOAD_SIZE: Final = 512

FLAG_START: Final = 0x10  # first chunk of a transfer
FLAG_END: Final = 0x20  # last chunk of a transfer
FLAG_FRAGMENT: Final = 0x40  # a piece of a fragmented chunk (piece header only)
_STREAM_MASK: Final = 0x0F
_RESERVED_BITS: Final = 0x80
LAST_PIECE: Final = 0x80
MAX_PIECES: Final = 0x80

HEADER_SIZE: Final = 7
CRC_SIZE: Final = 4
CHUNK_OVERHEAD: Final = HEADER_SIZE + CRC_SIZE
PIECE_HEADER_SIZE: Final = 2
MAX_COUNT: Final = 0xFFFF
MAX_SEQ: Final = 0xFFFF_FFFF

#: Time zone offsets accepted on the air, in minutes (UTC-18:00..UTC+18:00).
MIN_TZ_OFFSET_MIN: Final = -18 * 60
MAX_TZ_OFFSET_MIN: Final = 18 * 60
MAX_UTC_SECONDS: Final = 0xFFFF_FFFF

ACTIVITY_INTERVAL_S: Final = 60
_MINUTE_MASK: Final = (1 << 26) - 1  # a minute is at most 1 + 6 + 9 + 10 bits


# ------------------------------------------------------------------------------ errors


class ChunkError(KmebandError, ValueError):
    """Base of the record-chunk errors: bytes that are not a valid chunk, or records that
    cannot be put into one. Messages never contain record values."""


class ChunkCrcError(ChunkError):
    """A chunk whose CRC-32 does not match: corrupted on the band or on the way."""


class ChunkTruncatedError(ChunkError):
    """A chunk shorter than its header says (or than any chunk can be)."""


class ChunkFormatError(ChunkError):
    """A chunk whose structure is wrong: reserved bits, unknown stream, length mismatch."""


class ChunkValueError(ChunkError):
    """A record field outside what the chunk format carries (when encoding), or a decoded
    field that is not a valid value (when decoding)."""


class ChunkFragmentError(ChunkError):
    """Pieces of a fragmented chunk that are missing, out of order, or interleaved."""


# ------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class DecodedChunk:
    """One decoded chunk: its records in sequence order and its transfer flags."""

    stream: StreamId
    first_seq: int
    records: tuple[StoredRecord, ...]
    start_of_transfer: bool
    end_of_stream: bool
    size: int  # encoded bytes of the chunk (before any fragmentation)

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def next_seq(self) -> int:
        """The sequence number right after this chunk's last record."""
        return self.first_seq + len(self.records)


@dataclass(frozen=True, slots=True)
class PackedChunk:
    """One encoded chunk, as the notification payloads that carry it.

    ``payloads`` has one element unless the chunk had to be fragmented.
    """

    first_seq: int
    count: int
    payloads: tuple[bytes, ...]

    @property
    def next_seq(self) -> int:
        return self.first_seq + self.count


# --------------------------------------------------------------------------- helpers


def check_payload_size(payload_size: int) -> None:
    """Raise :class:`UsageError` unless ``payload_size`` is a notification payload size."""
    if not MIN_PAYLOAD_SIZE <= payload_size <= MAX_PAYLOAD_SIZE:
        raise UsageError(
            f"payload size must be {MIN_PAYLOAD_SIZE}..{MAX_PAYLOAD_SIZE} bytes "
            "(the ATT MTU minus 3)"
        )


def _header(stream: StreamId, first_seq: int, count: int, flags: int) -> bytes:
    return (
        bytes((int(stream) | flags,))
        + first_seq.to_bytes(4, "little")
        + count.to_bytes(2, "little")
    )


def _seal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def _fragment(stream: StreamId, chunk: bytes, payload_size: int) -> tuple[bytes, ...]:
    if len(chunk) <= payload_size:
        return (chunk,)
    step = payload_size - PIECE_HEADER_SIZE
    slices = [chunk[i : i + step] for i in range(0, len(chunk), step)]
    if len(slices) > MAX_PIECES:
        raise ChunkValueError("a single record is too large to send even in fragments")
    head = int(stream) | FLAG_FRAGMENT
    last = len(slices) - 1
    return tuple(
        bytes((head, index | (LAST_PIECE if index == last else 0))) + piece
        for index, piece in enumerate(slices)
    )


def _zigzag(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


def _unzigzag(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    half = (values >> np.uint64(1)).view(np.int64)
    sign = (values & np.uint64(1)).view(np.int64)
    result: npt.NDArray[np.int64] = half ^ -sign
    return result


def _bit_widths(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    # Exact for values below 2**53, far above anything a column can hold.
    widths: npt.NDArray[np.int64] = np.frexp(values.astype(np.float64))[1].astype(np.int64)
    return widths


def _zigzag_int(value: int) -> int:
    return value << 1 if value >= 0 else (-value << 1) - 1


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_uvarint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise ChunkTruncatedError("chunk ends inside a column header; the chunk is cut short")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ChunkFormatError("a column step is not a valid varint")


def _runs_break(seqs: Sequence[int], tzs: Sequence[int]) -> list[int]:
    """Indices i > 0 where record i cannot share a chunk with record i-1."""
    return [i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1 or tzs[i] != tzs[i - 1]]


def _check_common(
    stream: StreamId, records: Sequence[StoredRecord], values: Sequence[Record]
) -> tuple[list[int], list[int]]:
    """Check every record's stream, type, sequence number and time zone offset; return the
    indices where a new chunk must start (see :func:`_runs_break`) and the offsets.

    ``values`` holds each StoredRecord's record.
    """
    record_type = _CODECS[stream].record_type
    seqs = list(map(_SEQ_OF, records))
    tzs = list(map(_TZ_OF, values))
    seq_col, tz_col = int64_column(seqs), int64_column(tzs)
    if (
        seq_col is not None
        and tz_col is not None
        and all(map(operator.eq, map(_STREAM_OF, records), repeat(stream)))
        and set(map(type, values)) == {record_type}
        and int(seq_col.min()) >= 0
        and int(seq_col.max()) <= MAX_SEQ
        and int(tz_col.min()) >= MIN_TZ_OFFSET_MIN
        and int(tz_col.max()) <= MAX_TZ_OFFSET_MIN
    ):
        # in range, differences of sequence numbers cannot wrap
        new_run = (np.diff(seq_col) != 1) | (np.diff(tz_col) != 0)
        breaks: list[int] = (np.flatnonzero(new_run) + 1).tolist()
        return breaks, tzs
    # something is wrong (or not an int): find the first record at fault, as it is
    for stored in records:
        if stored.stream != stream or type(stored.record) is not record_type:
            raise ChunkValueError(
                f"every record passed for stream {stream.name} must be a "
                f"{record_type.__name__} of that stream"
            )
        if not 0 <= stored.seq <= MAX_SEQ:
            raise ChunkValueError("sequence numbers must be 0..2**32-1")
        tz = stored.record.tz_offset_min
        if not MIN_TZ_OFFSET_MIN <= tz <= MAX_TZ_OFFSET_MIN:
            raise ChunkValueError("a time zone offset is outside -1080..1080 minutes")
    return _runs_break(seqs, tzs), tzs


_RECORD_OF: Final = operator.attrgetter("record")
_STREAM_OF: Final = operator.attrgetter("stream")
_SEQ_OF: Final = operator.attrgetter("seq")
_TZ_OF: Final = operator.attrgetter("tz_offset_min")
_STORED: Final = RecordBuilder(StoredRecord)
_MINUTES: Final = RecordBuilder(ActivityMinute)


def _stored(stream: StreamId, first_seq: int, records: Sequence[Record]) -> list[StoredRecord]:
    """``records`` as StoredRecords of ``stream`` numbered from ``first_seq``."""
    n = len(records)
    return _STORED.build(n, (repeat(stream), range(first_seq, first_seq + n), records))


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


def _pack_activity(
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


def _unpack_activity(
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
    return _stored(stream, first_seq, minutes)


# ------------------------------------------------------------------------ column codec

_UNSIGNED: Final = 0  # value - minimum, no reference to other records
_DELTA: Final = 1  # zigzag(value - previous value)
_STEP: Final = 2  # zigzag(value - previous value - step), step in the column header


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: int
    minimum: int
    maximum: int

    @property
    def head_bytes(self) -> int:
        return max(1, ((self.maximum - self.minimum).bit_length() + 7) // 8)

    @property
    def max_width(self) -> int:
        if self.kind == _UNSIGNED:
            return (self.maximum - self.minimum).bit_length()
        # a residual is at most twice the range (a step and a delta of opposite signs)
        return (4 * (self.maximum - self.minimum)).bit_length()


_I32: Final = (-(2**31), 2**31 - 1)


@dataclass(frozen=True, slots=True)
class _ColumnCodec:
    """How one stream's records turn into integer columns and back."""

    record_type: type
    columns: tuple[_Column, ...]
    extract: Callable[[Sequence[Record]], list[list[int]]]
    build: Callable[[npt.NDArray[np.int64], int], Sequence[Record]]
    # per column, as (columns, 1) arrays that broadcast over a chunk's records
    minima: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)
    maxima: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False)
    unsigned: npt.NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    stepped: npt.NDArray[np.bool_] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def per_column(values: Sequence[int], dtype: type) -> npt.NDArray[Any]:
            return np.array(values, dtype=dtype).reshape(len(values), 1)

        object.__setattr__(self, "minima", per_column([c.minimum for c in self.columns], np.int64))
        object.__setattr__(self, "maxima", per_column([c.maximum for c in self.columns], np.int64))
        unsigned = [c.kind == _UNSIGNED for c in self.columns]
        object.__setattr__(self, "unsigned", per_column(unsigned, np.bool_))
        stepped = [c.kind == _STEP for c in self.columns]
        object.__setattr__(self, "stepped", per_column(stepped, np.bool_))

    def decode_rows(
        self,
        bits: npt.NDArray[np.uint8],
        rows: int,
        widths: list[int],
        steps: list[int],
        firsts: list[int],
    ) -> npt.NDArray[np.int64]:
        """The (columns, rows + 1) values of a chunk from its body's bits (LSB first).

        The body holds each column's residuals in turn, each ``width`` bits LSB first: so
        the bits fill, in order, the low ``width`` bits of one byte-aligned lane per
        residual, and one boolean mask over all lanes places every bit at once.
        """
        n_columns = len(widths)
        width_col = np.array(widths, dtype=np.int64).reshape(n_columns, 1)
        lane_bits = 8 * ((max(widths) + 7) // 8)
        lanes = np.zeros((n_columns, rows, lane_bits), dtype=np.uint8)
        if lane_bits:
            used = np.arange(lane_bits) < width_col
            lanes[np.broadcast_to(used[:, None, :], lanes.shape)] = bits[: rows * sum(widths)]
        padded = np.zeros((n_columns, rows, 8), dtype=np.uint8)
        padded[:, :, : lane_bits // 8] = np.packbits(lanes, axis=2, bitorder="little")
        raw = padded.view(np.dtype("<u8")).reshape(n_columns, rows).astype(np.uint64)
        step_col = np.array(steps, dtype=np.int64).reshape(n_columns, 1)
        first_col = np.array(firsts, dtype=np.int64).reshape(n_columns, 1)
        unsigned = raw.view(np.int64) + self.minima
        # int64 sums may wrap exactly as the per-column decoding always did; a wrapped
        # column fails the range check below (and unsigned columns never take this path)
        running = np.cumsum(_unzigzag(raw) + step_col, axis=1) + first_col
        values = np.where(self.unsigned, unsigned, running)
        bad = (values.min(axis=1, keepdims=True) < self.minima) | (
            values.max(axis=1, keepdims=True) > self.maxima
        )
        if bad.any():
            spec = self.columns[int(np.argmax(bad))]
            raise ChunkValueError(f"a decoded {spec.name} is outside its range")
        matrix: npt.NDArray[np.int64] = np.concatenate((first_col, values), axis=1)
        return matrix


def _attrs(*names: str) -> Callable[[Sequence[Record]], list[list[int]]]:
    getters = [operator.attrgetter(n) for n in names]

    def extract(records: Sequence[Record]) -> list[list[int]]:
        return [list(map(g, records)) for g in getters]

    return extract


_T = TypeVar("_T")


def _enum_lookup(values: Iterable[int], members: dict[int, _T], what: str) -> list[_T]:
    try:
        return list(map(members.__getitem__, values))
    except KeyError:
        raise ChunkValueError(f"a decoded {what} is not a known code") from None


_SLEEP_STAGES: Final[dict[int, SleepStage]] = {int(s): s for s in SleepStage}
_ALARM_KINDS: Final[dict[int, AlarmEventKind]] = {int(k): k for k in AlarmEventKind}
_TELEMETRY_KINDS: Final[dict[int, TelemetryKind]] = {int(k): k for k in TelemetryKind}
_ALARM_STAGES: Final[dict[int, SleepStage | None]] = {
    0: None,
    **{int(s) + 1: s for s in SleepStage},
}

_HR_SAMPLES: Final = RecordBuilder(HeartRateSample)
_SLEEP_EPOCHS: Final = RecordBuilder(SleepEpoch)
_SLEEP_SUMMARIES: Final = RecordBuilder(SleepSummary)
_ALARM_EVENTS: Final = RecordBuilder(AlarmEvent)
_GNSS_FIXES: Final = RecordBuilder(GnssFix)
_TELEMETRY_EVENTS: Final = RecordBuilder(TelemetryEvent)

#: A chunk's decoded columns: one row per column, one int64 per record.
_Matrix = npt.NDArray[np.int64]


def _build_hr(cols: _Matrix, tz: int) -> Sequence[Record]:
    t, bpm, confidence = cols.tolist()
    return _HR_SAMPLES.build(len(t), (t, repeat(tz), bpm, confidence))


def _build_sleep(cols: _Matrix, tz: int) -> Sequence[Record]:
    start, stage = cols.tolist()
    stages = _enum_lookup(stage, _SLEEP_STAGES, "sleep stage")
    return _SLEEP_EPOCHS.build(len(start), (start, repeat(tz), stages))


def _extract_summary(records: Sequence[Record]) -> list[list[int]]:
    rs = [r for r in records if isinstance(r, SleepSummary)]
    return [
        [r.bed_time for r in rs],
        [r.sleep_onset - r.bed_time for r in rs],
        [r.final_wake - r.bed_time for r in rs],
        [r.out_of_bed - r.bed_time for r in rs],
        [r.efficiency_pct for r in rs],
        [r.awakenings for r in rs],
        [r.light_min for r in rs],
        [r.deep_min for r in rs],
        [r.rem_min for r in rs],
        [r.wake_min for r in rs],
    ]


def _build_summary(cols: _Matrix, tz: int) -> Sequence[Record]:
    # bed time (0..2**32-1) plus an offset (int32) cannot overflow int64
    bed, *rest = cols.tolist()
    onset, final_wake, out_of_bed = (cols[1:4] + cols[0]).tolist()
    columns = (bed, repeat(tz), onset, final_wake, out_of_bed, *rest[3:])
    return _SLEEP_SUMMARIES.build(len(bed), columns)


def _extract_alarm(records: Sequence[Record]) -> list[list[int]]:
    rs = [r for r in records if isinstance(r, AlarmEvent)]
    return [
        [r.timestamp for r in rs],
        [r.alarm_id for r in rs],
        [int(r.kind) for r in rs],
        [r.set_time - r.timestamp for r in rs],
        [0 if r.sleep_stage is None else int(r.sleep_stage) + 1 for r in rs],
    ]


def _build_alarm(cols: _Matrix, tz: int) -> Sequence[Record]:
    t, alarm_id, kind, _, stage = cols.tolist()
    set_time = (cols[3] + cols[0]).tolist()
    kinds = _enum_lookup(kind, _ALARM_KINDS, "alarm event kind")
    stages = _enum_lookup(stage, _ALARM_STAGES, "sleep stage")
    columns = (t, repeat(tz), alarm_id, kinds, set_time, stages)
    return _ALARM_EVENTS.build(len(t), columns)


def _build_gnss(cols: _Matrix, tz: int) -> Sequence[Record]:
    t, lat, lon, alt, accuracy = cols.tolist()
    return _GNSS_FIXES.build(len(t), (t, repeat(tz), lat, lon, alt, accuracy))


def _build_telemetry(cols: _Matrix, tz: int) -> Sequence[Record]:
    t, kind, value, detail = cols.tolist()
    kinds = _enum_lookup(kind, _TELEMETRY_KINDS, "telemetry kind")
    return _TELEMETRY_EVENTS.build(len(t), (t, repeat(tz), kinds, value, detail))


_TIME = _Column("timestamp", _STEP, 0, MAX_UTC_SECONDS)
_OFFSET = (-(2**31), 2**31 - 1)

_COLUMN_CODECS: Final[dict[StreamId, _ColumnCodec]] = {
    StreamId.HR_SAMPLES: _ColumnCodec(
        HeartRateSample,
        (_TIME, _Column("bpm", _DELTA, 0, 255), _Column("confidence", _UNSIGNED, 0, 3)),
        _attrs("timestamp", "bpm", "confidence"),
        _build_hr,
    ),
    StreamId.SLEEP_EPOCHS: _ColumnCodec(
        SleepEpoch,
        (_Column("start", _STEP, 0, MAX_UTC_SECONDS), _Column("stage", _UNSIGNED, 0, 3)),
        _attrs("start", "stage"),
        _build_sleep,
    ),
    StreamId.SLEEP_SUMMARIES: _ColumnCodec(
        SleepSummary,
        (
            _Column("bed_time", _STEP, 0, MAX_UTC_SECONDS),
            _Column("sleep_onset", _DELTA, *_OFFSET),
            _Column("final_wake", _DELTA, *_OFFSET),
            _Column("out_of_bed", _DELTA, *_OFFSET),
            _Column("efficiency_pct", _UNSIGNED, 0, 100),
            _Column("awakenings", _UNSIGNED, 0, 0xFFFF),
            _Column("light_min", _DELTA, 0, 0xFFFF),
            _Column("deep_min", _DELTA, 0, 0xFFFF),
            _Column("rem_min", _DELTA, 0, 0xFFFF),
            _Column("wake_min", _DELTA, 0, 0xFFFF),
        ),
        _extract_summary,
        _build_summary,
    ),
    StreamId.ALARM_EVENTS: _ColumnCodec(
        AlarmEvent,
        (
            _TIME,
            _Column("alarm_id", _UNSIGNED, 0, 0xFF),
            _Column("kind", _UNSIGNED, 0, 0xFF),
            _Column("set_time", _DELTA, *_OFFSET),
            _Column("sleep_stage", _UNSIGNED, 0, len(SleepStage)),
        ),
        _extract_alarm,
        _build_alarm,
    ),
    StreamId.GNSS_FIXES: _ColumnCodec(
        GnssFix,
        (
            _TIME,
            _Column("lat_e7", _DELTA, -900_000_000, 900_000_000),
            _Column("lon_e7", _DELTA, -1_800_000_000, 1_800_000_000),
            _Column("alt_m", _DELTA, *_I32),
            _Column("accuracy_m", _UNSIGNED, 0, 0xFFFF_FFFF),
        ),
        _attrs("timestamp", "lat_e7", "lon_e7", "alt_m", "accuracy_m"),
        _build_gnss,
    ),
    StreamId.TELEMETRY: _ColumnCodec(
        TelemetryEvent,
        (
            _TIME,
            _Column("kind", _UNSIGNED, 0, 0xFF),
            _Column("value", _DELTA, *_I32),
            _Column("detail", _DELTA, *_I32),
        ),
        _attrs("timestamp", "kind", "value", "detail"),
        _build_telemetry,
    ),
}


class _ColumnPlan:
    """A stream's records as checked int64 columns, ready to be cut into chunks.

    Every column's residual against the previous record (value - minimum for unsigned
    columns, the plain delta otherwise) is computed once for the whole run; a chunk then
    only subtracts its timestamp step and measures widths over a window of them.
    """

    def __init__(self, codec: _ColumnCodec, records: Sequence[Record], tzs: list[int]) -> None:
        self.codec = codec
        raw = codec.extract(records)
        checked: list[npt.NDArray[np.int64]] = []
        for spec, values in zip(codec.columns, raw, strict=True):
            column = int64_column(values)
            if column is None:
                # numpy would silently truncate floats and wrap huge ints: check the kind
                inferred = np.array(values)
                if inferred.dtype.kind not in "iub":
                    raise ChunkValueError(f"a {spec.name} value is not an integer in range")
                column = inferred
            if column.min() < spec.minimum or column.max() > spec.maximum:
                raise ChunkValueError(
                    f"a {spec.name} value is outside {spec.minimum}..{spec.maximum}"
                )
            checked.append(column.astype(np.int64, copy=False))
        self.cols = np.stack(checked)
        self.tzs = tzs
        # in range, deltas fit int64 easily: columns are at most 32 bits wide
        self.residuals = np.where(
            codec.unsigned, self.cols[:, 1:] - codec.minima, np.diff(self.cols, axis=1)
        )
        self.last_count = 0

    def pack(self, start: int, stop: int, budget: int) -> tuple[int, bytes]:
        columns = self.codec.columns
        first = self.cols[:, start]
        head = bytearray(self.tzs[start].to_bytes(2, "little", signed=True))
        for spec, value in zip(columns, first.tolist(), strict=True):
            head += (value - spec.minimum).to_bytes(spec.head_bytes, "little")
        if stop - start == 1:
            return 1, bytes(head)
        # Any window gives the same count (a prefix that fits never depends on the records
        # after it) as long as it grows while everything in it fits: so start near the
        # previous chunk's count instead of a worst case.
        last = self.last_count
        guess = last + last // 4 + 8 if last else max(64, 2 * budget)
        window = min(stop - start, guess)
        while True:
            n, widths, steps, residuals = self._fit(start, window, budget - len(head))
            if n < window or start + window >= stop:
                break
            window = min(stop - start, window * 2)
        self.last_count = n
        if n <= 1:
            return 1, bytes(head)
        for spec, width, step in zip(columns, widths, steps, strict=True):
            head.append(width)
            if spec.kind == _STEP:
                head += _uvarint(_zigzag_int(step))
        lane_bits = max(widths)
        if not lane_bits:
            return n, bytes(head)
        # each residual's low ``width`` bits, LSB first, column after column: the order in
        # which a boolean mask over (column, record, bit) lanes lists them
        shifts = np.arange(lane_bits, dtype=np.uint64)
        lanes = ((residuals[:, : n - 1, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        used = shifts < np.array(widths, dtype=np.uint64).reshape(len(widths), 1)
        flat = lanes[np.broadcast_to(used[:, None, :], lanes.shape)]
        return n, bytes(head) + np.packbits(flat, bitorder="little").tobytes()

    def _fit(
        self, start: int, window: int, budget: int
    ) -> tuple[int, list[int], list[int], npt.NDArray[np.uint64]]:
        """How many records from ``start`` fit ``budget`` bytes (header of widths included)."""
        codec = self.codec
        block = self.residuals[:, start : start + window - 1]
        step_col = np.where(codec.stepped, block[:, :1], 0)
        steps: list[int] = step_col[:, 0].tolist()
        fixed = len(codec.columns) + sum(
            len(_uvarint(_zigzag_int(step)))
            for step, spec in zip(steps, codec.columns, strict=True)
            if spec.kind == _STEP
        )
        stepped = block - step_col
        residuals = np.where(codec.unsigned, stepped.view(np.uint64), _zigzag(stepped))
        running = np.maximum.accumulate(_bit_widths(residuals), axis=1)
        row_bits = running.sum(axis=0)
        used = (np.arange(1, window, dtype=np.int64) * row_bits + 7) // 8 + fixed
        k = int(np.searchsorted(used, budget, side="right"))
        k = min(k, MAX_COUNT - 1)
        n = k + 1
        widths: list[int] = running[:, k - 1].tolist() if k else [0] * len(codec.columns)
        return n, widths, steps, residuals


def _unpack_columns(
    stream: StreamId, first_seq: int, count: int, data: bytes, pos: int, end: int
) -> list[StoredRecord]:
    codec = _COLUMN_CODECS[stream]
    columns = codec.columns
    need = 2 + sum(spec.head_bytes for spec in columns)
    if end - pos < need:
        raise ChunkTruncatedError("chunk too short for its column header; the chunk is cut short")
    tz = int.from_bytes(data[pos : pos + 2], "little", signed=True)
    if not MIN_TZ_OFFSET_MIN <= tz <= MAX_TZ_OFFSET_MIN:
        raise ChunkValueError("chunk time zone offset outside -1080..1080 minutes")
    pos += 2
    firsts: list[int] = []
    for spec in columns:
        raw = int.from_bytes(data[pos : pos + spec.head_bytes], "little")
        pos += spec.head_bytes
        value = raw + spec.minimum
        if value > spec.maximum:
            raise ChunkValueError(f"a decoded {spec.name} is outside its range")
        firsts.append(value)
    if count == 1:
        if pos != end:
            raise ChunkFormatError("a one-record chunk has bytes after its record")
        matrix = np.array(firsts, dtype=np.int64).reshape(len(columns), 1)
    else:
        widths: list[int] = []
        steps: list[int] = []
        for spec in columns:
            if pos >= end:
                raise ChunkTruncatedError("chunk ends inside its column widths; cut short")
            width = data[pos]
            pos += 1
            if width > spec.max_width:
                raise ChunkFormatError(f"the {spec.name} column width is impossible")
            step = 0
            if spec.kind == _STEP:
                zz, pos = _read_uvarint(data, pos, end)
                step = (zz >> 1) ^ -(zz & 1)
                if abs(step) > spec.maximum - spec.minimum:
                    raise ChunkFormatError(f"the {spec.name} column step is impossible")
            widths.append(width)
            steps.append(step)
        rows = count - 1
        total_bits = rows * sum(widths)
        body = data[pos:end]
        if len(body) != (total_bits + 7) // 8:
            if len(body) < (total_bits + 7) // 8:
                raise ChunkTruncatedError("chunk body shorter than its columns; cut short")
            raise ChunkFormatError("chunk body longer than its columns")
        bits = np.unpackbits(np.frombuffer(body, dtype=np.uint8), bitorder="little")
        if bits[total_bits:].any():
            raise ChunkFormatError("chunk body has non-zero padding bits")
        matrix = codec.decode_rows(bits, rows, widths, steps, firsts)
    records = codec.build(matrix, tz)
    return _stored(stream, first_seq, records)


# ------------------------------------------------------------------------- the codec


@dataclass(frozen=True, slots=True)
class _StreamCodec:
    record_type: type


_CODECS: Final[dict[StreamId, _StreamCodec]] = {
    StreamId.ACTIVITY_MINUTES: _StreamCodec(ActivityMinute),
    **{s: _StreamCodec(c.record_type) for s, c in _COLUMN_CODECS.items()},
}


#: At or below this payload size a chunk may span a few fragment pieces when that carries
#: more records per byte on the air (a fixed header weighs heavily in a 20-byte payload).
SMALL_PAYLOAD_SIZE: Final = 64
_EXTRA_PIECE_OPTIONS: Final = 3


def _air_bytes(section_len: int, payload_size: int) -> int:
    size = section_len + CHUNK_OVERHEAD
    if size <= payload_size:
        return size
    return size + PIECE_HEADER_SIZE * math.ceil(size / (payload_size - PIECE_HEADER_SIZE))


def _pack_best(
    pack: Callable[[int, int, int], tuple[int, bytes]], start: int, stop: int, payload_size: int
) -> tuple[int, bytes]:
    """Pack one chunk; in small payloads also try spanning 2..4 pieces and keep the best."""
    budget = payload_size - CHUNK_OVERHEAD
    n, section = pack(start, stop, budget)
    oversize = len(section) > budget
    if not oversize and (payload_size > SMALL_PAYLOAD_SIZE or start + n >= stop):
        return n, section
    piece = payload_size - PIECE_HEADER_SIZE
    pieces = max(2, math.ceil((len(section) + CHUNK_OVERHEAD) / piece))
    best = (n / _air_bytes(len(section), payload_size), n, section)
    for m in range(pieces, pieces + _EXTRA_PIECE_OPTIONS):
        n_m, section_m = pack(start, stop, m * piece - CHUNK_OVERHEAD)
        candidate = (n_m / _air_bytes(len(section_m), payload_size), n_m, section_m)
        if candidate[0] > best[0]:
            best = candidate
    return best[1], best[2]


def pack_chunks(
    stream: StreamId,
    records: Sequence[StoredRecord],
    payload_size: int,
    *,
    start_of_transfer: bool = False,
    end_of_stream: bool = False,
) -> list[PackedChunk]:
    """Encode ``records`` (in sequence order) into as few chunks as fit ``payload_size``.

    A new chunk starts wherever sequence numbers or the time zone offset change (and, for
    activity minutes, where a minute does not follow the previous one). START is set on
    the first chunk and END on the last when asked. With no records the result is empty:
    see :func:`encode_empty_chunk` for an end-of-transfer marker.

    Raises :class:`ChunkValueError` for a record the format cannot carry and
    :class:`UsageError` for a payload size outside 20..512.
    """
    check_payload_size(payload_size)
    stream = StreamId(stream)
    if not records:
        return []
    values = list(map(_RECORD_OF, records))
    breaks, tzs = _check_common(stream, records, values)
    breaks.append(len(records))
    pack: Callable[[int, int, int], tuple[int, bytes]]
    if stream == StreamId.ACTIVITY_MINUTES:

        def pack(start: int, stop: int, budget: int) -> tuple[int, bytes]:
            return _pack_activity(records, start, min(stop, start + MAX_COUNT), budget)

    else:
        pack = _ColumnPlan(_COLUMN_CODECS[stream], values, tzs).pack

    sections: list[tuple[int, int, bytes]] = []
    start = 0
    for stop in breaks:
        while start < stop:
            n, section = _pack_best(pack, start, stop, payload_size)
            sections.append((start, n, section))
            start += n
    out: list[PackedChunk] = []
    last = len(sections) - 1
    for index, (first, n, section) in enumerate(sections):
        flags = (FLAG_START if start_of_transfer and index == 0 else 0) | (
            FLAG_END if end_of_stream and index == last else 0
        )
        chunk = _seal(_header(stream, records[first].seq, n, flags) + section)
        out.append(PackedChunk(records[first].seq, n, _fragment(stream, chunk, payload_size)))
    return out


def encode_chunks(
    stream: StreamId,
    records: Sequence[StoredRecord],
    payload_size: int,
    *,
    start_of_transfer: bool = False,
    end_of_stream: bool = False,
) -> list[bytes]:
    """The notification payloads carrying ``records``; see :func:`pack_chunks`."""
    return [
        payload
        for chunk in pack_chunks(
            stream,
            records,
            payload_size,
            start_of_transfer=start_of_transfer,
            end_of_stream=end_of_stream,
        )
        for payload in chunk.payloads
    ]


def encode_empty_chunk(
    stream: StreamId, next_seq: int, *, start_of_transfer: bool = False, end_of_stream: bool = True
) -> bytes:
    """A chunk with no records: the end marker of a transfer that had nothing (more) to send.

    ``next_seq`` is the sequence number the next record would have.
    """
    if not 0 <= next_seq <= MAX_SEQ:
        raise ChunkValueError("sequence numbers must be 0..2**32-1")
    flags = (FLAG_START if start_of_transfer else 0) | (FLAG_END if end_of_stream else 0)
    return _seal(_header(StreamId(stream), next_seq, 0, flags))


def decode_chunk(data: bytes) -> DecodedChunk:
    """Decode one complete chunk (a notification payload, or reassembled fragments).

    Raises :class:`ChunkCrcError`, :class:`ChunkTruncatedError`, :class:`ChunkFormatError`
    or :class:`ChunkValueError`; all derive from :class:`ChunkError`.
    """
    data = bytes(data)
    if len(data) < CHUNK_OVERHEAD:
        raise ChunkTruncatedError(
            f"a chunk is at least {CHUNK_OVERHEAD} bytes; this one is cut short"
        )
    end = len(data) - CRC_SIZE
    if zlib.crc32(data[:end]) != int.from_bytes(data[end:], "little"):
        raise ChunkCrcError("chunk CRC-32 mismatch: the chunk was corrupted; fetch it again")
    head = data[0]
    if head & (_RESERVED_BITS | FLAG_FRAGMENT):
        raise ChunkFormatError("chunk has reserved header bits set (a newer format?)")
    try:
        stream = StreamId(head & _STREAM_MASK)
    except ValueError:
        raise ChunkFormatError("chunk names an unknown stream") from None
    first_seq = int.from_bytes(data[1:5], "little")
    count = int.from_bytes(data[5:7], "little")
    if count == 0:
        if end != HEADER_SIZE:
            raise ChunkFormatError("an empty chunk has bytes after its header")
        records: list[StoredRecord] = []
    elif first_seq + count - 1 > MAX_SEQ:
        raise ChunkFormatError("chunk sequence numbers run past 2**32-1")
    elif stream == StreamId.ACTIVITY_MINUTES:
        records = _unpack_activity(stream, first_seq, count, data, HEADER_SIZE, end)
    else:
        records = _unpack_columns(stream, first_seq, count, data, HEADER_SIZE, end)
    return DecodedChunk(
        stream=stream,
        first_seq=first_seq,
        records=tuple(records),
        start_of_transfer=bool(head & FLAG_START),
        end_of_stream=bool(head & FLAG_END),
        size=len(data),
    )


def is_fragment(payload: bytes) -> bool:
    """Whether a notification payload is a piece of a fragmented chunk."""
    return bool(payload) and bool(payload[0] & FLAG_FRAGMENT)


class ChunkAssembler:
    """Joins the pieces of fragmented chunks; passes whole chunks through.

    Feed every Data notification in order; :meth:`feed` returns a complete chunk's bytes
    (for :func:`decode_chunk`) or None while a fragmented chunk is still incomplete. A
    repeat of the piece just received is ignored (notifications can be re-sent).
    """

    def __init__(self) -> None:
        self._stream = -1
        self._pieces: list[bytes] = []

    @property
    def pending(self) -> bool:
        """Whether a fragmented chunk has started but not finished."""
        return bool(self._pieces)

    def feed(self, payload: bytes) -> bytes | None:
        payload = bytes(payload)
        if not payload:
            raise ChunkTruncatedError("an empty notification is not a chunk")
        if not payload[0] & FLAG_FRAGMENT:
            if self._pieces:
                self._pieces = []
                raise ChunkFragmentError(
                    "a chunk arrived before the last piece of a fragmented chunk; "
                    "fetch the stream again from the last stored record"
                )
            return payload
        if len(payload) <= PIECE_HEADER_SIZE:
            raise ChunkTruncatedError("a fragment piece carries no bytes")
        stream = payload[0] & _STREAM_MASK
        index = payload[1] & ~LAST_PIECE
        if (
            self._pieces
            and index == len(self._pieces) - 1
            and stream == self._stream
            and payload[PIECE_HEADER_SIZE:] == self._pieces[-1]
        ):
            return None
        if index != len(self._pieces) or (self._pieces and stream != self._stream):
            self._pieces = []
            raise ChunkFragmentError(
                "a fragment piece is missing or out of order; "
                "fetch the stream again from the last stored record"
            )
        self._stream = stream
        self._pieces.append(payload[PIECE_HEADER_SIZE:])
        if payload[1] & LAST_PIECE:
            whole = b"".join(self._pieces)
            self._pieces = []
            return whole
        return None


def decode_payloads(payloads: Iterable[bytes]) -> list[DecodedChunk]:
    """Decode a sequence of notification payloads (fragments joined) into chunks."""
    assembler = ChunkAssembler()
    out: list[DecodedChunk] = []
    for payload in payloads:
        whole = assembler.feed(payload)
        if whole is not None:
            out.append(decode_chunk(whole))
    if assembler.pending:
        raise ChunkFragmentError("the payloads end inside a fragmented chunk")
    return out


__all__ = [
    "CHUNK_OVERHEAD",
    "FLAG_END",
    "FLAG_FRAGMENT",
    "FLAG_START",
    "MAX_PAYLOAD_SIZE",
    "MIN_PAYLOAD_SIZE",
    "ChunkAssembler",
    "ChunkCrcError",
    "ChunkError",
    "ChunkFormatError",
    "ChunkFragmentError",
    "ChunkTruncatedError",
    "ChunkValueError",
    "DecodedChunk",
    "PackedChunk",
    "check_payload_size",
    "decode_chunk",
    "decode_payloads",
    "encode_chunks",
    "encode_empty_chunk",
    "is_fragment",
]
