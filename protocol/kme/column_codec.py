"""The column codec: the stream section of every chunk but activity minutes.

Each field's first value travels in full, then per-record residuals (against the previous
record, or against a per-chunk constant step for timestamps) bit-packed at one width per
column and chunk, with numpy doing the bulk work. docs/records.md has the layout;
``protocol.kme.chunk_framing`` the chunk around it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from protocol.kme.chunk_framing import (
    MAX_COUNT,
    MAX_TZ_OFFSET_MIN,
    MAX_UTC_SECONDS,
    MIN_TZ_OFFSET_MIN,
    ChunkFormatError,
    ChunkTruncatedError,
    ChunkValueError,
    stored_run,
)
from protocol.kme.record_fields import RecordBuilder, int64_column
from protocol.kme.records import (
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

COLUMN_CODECS: Final[dict[StreamId, _ColumnCodec]] = {
    StreamId.HR_SAMPLES: _ColumnCodec(
        (_TIME, _Column("bpm", _DELTA, 0, 255), _Column("confidence", _UNSIGNED, 0, 3)),
        _attrs("timestamp", "bpm", "confidence"),
        _build_hr,
    ),
    StreamId.SLEEP_EPOCHS: _ColumnCodec(
        (_Column("start", _STEP, 0, MAX_UTC_SECONDS), _Column("stage", _UNSIGNED, 0, 3)),
        _attrs("start", "stage"),
        _build_sleep,
    ),
    StreamId.SLEEP_SUMMARIES: _ColumnCodec(
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


class ColumnPlan:
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


def unpack_columns(
    stream: StreamId, first_seq: int, count: int, data: bytes, pos: int, end: int
) -> list[StoredRecord]:
    codec = COLUMN_CODECS[stream]
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
    return stored_run(stream, first_seq, records)


__all__ = ["COLUMN_CODECS", "ColumnPlan", "unpack_columns"]
