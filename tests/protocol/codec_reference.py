"""The previous, one-record-at-a-time implementations of the record chunk and batch body
codecs, kept as the reference that the vectorised ones must match byte for byte.

Only what the vectorised code replaced lives here; the helpers both share (headers, CRC,
fragmenting, the activity-minute code, column tables) are imported from the codecs.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Callable, Sequence
from itertools import pairwise, repeat

import cbor2
import numpy as np
import numpy.typing as npt

from protocol.kme.activity_code import pack_activity
from protocol.kme.batch import (
    _LITTLE_ENDIAN,
    COLUMNS,
    MAX_CONSENT_RECORD_LEN,
    MAX_RECORDS_PER_BATCH,
    SEQ_COLUMN,
    ZLIB_LEVEL,
    BatchError,
    ColumnSpec,
)
from protocol.kme.chunk_framing import (
    FLAG_END,
    FLAG_START,
    MAX_COUNT,
    MAX_SEQ,
    MAX_TZ_OFFSET_MIN,
    MIN_TZ_OFFSET_MIN,
    ChunkFormatError,
    ChunkTruncatedError,
    ChunkValueError,
    PackedChunk,
    check_payload_size,
    chunk_header,
    fragment_chunk,
    seal_chunk,
)
from protocol.kme.column_codec import (
    _ALARM_KINDS,
    _ALARM_STAGES,
    _SLEEP_STAGES,
    _STEP,
    _TELEMETRY_KINDS,
    _UNSIGNED,
    COLUMN_CODECS,
    _bit_widths,
    _ColumnCodec,
    _read_uvarint,
    _unzigzag,
    _uvarint,
    _zigzag,
    _zigzag_int,
)
from protocol.kme.record_codec import _pack_best, _runs_break
from protocol.kme.record_domain import check_domain
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    AlarmEvent,
    GnssFix,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepSummary,
    StoredRecord,
    StreamId,
    TelemetryEvent,
)


def _reference_check_common(stream: StreamId, records: Sequence[StoredRecord]) -> None:
    record_type = STREAM_RECORD_TYPE[stream]
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


def _lookup(values: list[int], members: dict[int, object], what: str) -> list[object]:
    try:
        return [members[v] for v in values]
    except KeyError:
        raise ChunkValueError(f"a decoded {what} is not a known code") from None


_REFERENCE_BUILD: dict[StreamId, Callable[[list[list[int]], int], list[Record]]] = {
    StreamId.HR_SAMPLES: lambda c, tz: list(map(HeartRateSample, c[0], repeat(tz), c[1], c[2])),
    StreamId.SLEEP_EPOCHS: lambda c, tz: list(
        map(SleepEpoch, c[0], repeat(tz), _lookup(c[1], _SLEEP_STAGES, "sleep stage"))
    ),
    StreamId.SLEEP_SUMMARIES: lambda c, tz: [
        SleepSummary(bed, tz, bed + on, bed + fw, bed + ob, eff, aw, li, de, re, wa)
        for bed, on, fw, ob, eff, aw, li, de, re, wa in zip(*c, strict=True)
    ],
    StreamId.ALARM_EVENTS: lambda c, tz: [
        AlarmEvent(t, tz, a, k, t + s, st)  # type: ignore[arg-type]
        for t, a, k, s, st in zip(
            c[0],
            c[1],
            _lookup(c[2], _ALARM_KINDS, "alarm event kind"),  # type: ignore[arg-type]
            c[3],
            _lookup(c[4], _ALARM_STAGES, "sleep stage"),  # type: ignore[arg-type]
            strict=True,
        )
    ],
    StreamId.GNSS_FIXES: lambda c, tz: [
        GnssFix(t, tz, la, lo, al, ac) for t, la, lo, al, ac in zip(*c, strict=True)
    ],
    StreamId.TELEMETRY: lambda c, tz: [
        TelemetryEvent(t, tz, k, v, d)  # type: ignore[arg-type]
        for t, k, v, d in zip(
            c[0], _lookup(c[1], _TELEMETRY_KINDS, "telemetry kind"), c[2], c[3], strict=True
        )
    ],
}


class ReferenceColumnPlan:
    """A stream's records as checked int64 columns, ready to be cut into chunks."""

    def __init__(self, codec: _ColumnCodec, records: Sequence[StoredRecord]) -> None:
        self.codec = codec
        raw = codec.extract([s.record for s in records])
        for spec, values in zip(codec.columns, raw, strict=True):
            # numpy would silently truncate floats and wrap huge ints: check kind and range
            column = np.array(values)
            if column.dtype.kind not in "iub":
                raise ChunkValueError(f"a {spec.name} value is not an integer in range")
            if column.min() < spec.minimum or column.max() > spec.maximum:
                raise ChunkValueError(
                    f"a {spec.name} value is outside {spec.minimum}..{spec.maximum}"
                )
        self.cols = np.array(raw, dtype=np.int64)
        self.tzs = [s.record.tz_offset_min for s in records]

    def pack(self, start: int, stop: int, budget: int) -> tuple[int, bytes]:
        columns = self.codec.columns
        cols = self.cols
        first = cols[:, start]
        head = bytearray(self.tzs[start].to_bytes(2, "little", signed=True))
        for spec, value in zip(columns, first.tolist(), strict=True):
            head += (value - spec.minimum).to_bytes(spec.head_bytes, "little")
        if stop - start == 1:
            return 1, bytes(head)
        window = min(stop - start, max(64, budget * 8))
        while True:
            n, widths, steps, residuals = self._fit(start, window, budget - len(head))
            if n < window or start + window >= stop:
                break
            window = min(stop - start, window * 2)
        if n <= 1:
            return 1, bytes(head)
        for spec, width, step in zip(columns, widths, steps, strict=True):
            head.append(width)
            if spec.kind == _STEP:
                head += _uvarint(_zigzag_int(step))
        bits = [
            ((r[: n - 1, None] >> np.arange(w, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
            for r, w in zip(residuals, widths, strict=True)
            if w
        ]
        body = b""
        if bits:
            flat = np.concatenate([b.ravel() for b in bits])
            body = np.packbits(flat, bitorder="little").tobytes()
        return n, bytes(head) + body

    def _fit(
        self, start: int, window: int, budget: int
    ) -> tuple[int, list[int], list[int], list[npt.NDArray[np.uint64]]]:
        """How many records from ``start`` fit ``budget`` bytes (header of widths included)."""
        columns = self.codec.columns
        block = self.cols[:, start : start + window]
        residuals: list[npt.NDArray[np.uint64]] = []
        steps: list[int] = []
        fixed = 0
        for spec, values in zip(columns, block, strict=True):
            fixed += 1
            if spec.kind == _UNSIGNED:
                residuals.append((values[1:] - spec.minimum).view(np.uint64))
                steps.append(0)
                continue
            deltas = np.diff(values)
            step = int(deltas[0]) if spec.kind == _STEP else 0
            if spec.kind == _STEP:
                deltas = deltas - step
                fixed += len(_uvarint(_zigzag_int(step)))
            steps.append(step)
            residuals.append(_zigzag(deltas))
        width_rows = np.stack([_bit_widths(r) for r in residuals], axis=1)
        running = np.maximum.accumulate(width_rows, axis=0)
        row_bits = running.sum(axis=1)
        used = (np.arange(1, window, dtype=np.int64) * row_bits + 7) // 8 + fixed
        k = int(np.searchsorted(used, budget, side="right"))
        k = min(k, MAX_COUNT - 1)
        n = k + 1
        widths = running[k - 1].tolist() if k else [0] * len(columns)
        return n, widths, steps, residuals


def reference_unpack_columns(
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
    values: list[list[int]]
    if count == 1:
        if pos != end:
            raise ChunkFormatError("a one-record chunk has bytes after its record")
        values = [[v] for v in firsts]
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
        values = []
        offset = 0
        for spec, width, step, first in zip(columns, widths, steps, firsts, strict=True):
            if width:
                matrix = bits[offset : offset + rows * width].reshape(rows, width)
                offset += rows * width
                weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
                raw_u = (matrix.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
            else:
                raw_u = np.zeros(rows, dtype=np.uint64)
            if spec.kind == _UNSIGNED:
                column = raw_u.view(np.int64) + spec.minimum
            else:
                deltas = _unzigzag(raw_u) + step
                column = np.cumsum(deltas) + first
            if column.size and (column.min() < spec.minimum or column.max() > spec.maximum):
                raise ChunkValueError(f"a decoded {spec.name} is outside its range")
            values.append([first, *column.tolist()])
    records = _REFERENCE_BUILD[stream](values, tz)
    seqs = range(first_seq, first_seq + len(records))
    return list(map(StoredRecord, repeat(stream), seqs, records))


def reference_pack_chunks(
    stream: StreamId,
    records: Sequence[StoredRecord],
    payload_size: int,
    *,
    start_of_transfer: bool = False,
    end_of_stream: bool = False,
) -> list[PackedChunk]:
    """The previous ``pack_chunks``: one record at a time, a worst-case window."""
    check_payload_size(payload_size)
    stream = StreamId(stream)
    if not records:
        return []
    _reference_check_common(stream, records)
    check_domain(
        stream,
        [s.record for s in records],
        ChunkValueError,
        "the band cannot send a record outside it",
    )
    seqs = [s.seq for s in records]
    tzs = [s.record.tz_offset_min for s in records]
    breaks = [*_runs_break(seqs, tzs), len(records)]
    pack: Callable[[int, int, int], tuple[int, bytes]]
    if stream == StreamId.ACTIVITY_MINUTES:

        def pack(start: int, stop: int, budget: int) -> tuple[int, bytes]:
            return pack_activity(records, start, min(stop, start + MAX_COUNT), budget)

    else:
        pack = ReferenceColumnPlan(COLUMN_CODECS[stream], records).pack

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
        chunk = seal_chunk(chunk_header(stream, seqs[first], n, flags) + section)
        out.append(PackedChunk(seqs[first], n, fragment_chunk(stream, chunk, payload_size)))
    return out


def _pack(spec: ColumnSpec, values: Sequence[int]) -> bytes:
    if spec.delta:
        values = [b - a for a, b in zip([0, *values[:-1]], values, strict=True)]
    try:
        packed = array(spec.typecode, values)
    except (OverflowError, TypeError) as exc:
        raise BatchError(f"record field {spec.field!r} does not fit its column") from exc
    if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts only
        packed.byteswap()
    return packed.tobytes()


def _field_value(record: Record, name: str) -> int:
    value = getattr(record, name)
    if value is None:  # AlarmEvent.sleep_stage not known
        return -1
    return int(value)


def reference_batch_plaintext(records: Sequence[StoredRecord], consent_record: bytes) -> bytes:
    """The previous ``encode_batch_plaintext``: one getattr and int() per field."""
    if not records:
        raise BatchError("a batch needs at least one record")
    if len(records) > MAX_RECORDS_PER_BATCH:
        raise BatchError(f"a batch holds at most {MAX_RECORDS_PER_BATCH} records; cut it")
    if type(consent_record) is not bytes or not 0 < len(consent_record) <= MAX_CONSENT_RECORD_LEN:
        raise BatchError("the consent record must be 1..16384 encoded bytes")
    stream = records[0].stream
    record_type = STREAM_RECORD_TYPE[stream]
    seqs = [r.seq for r in records]
    for r in records:
        if r.stream is not stream or type(r.record) is not record_type:
            raise BatchError("a batch holds records of one stream and its record type only")
    values_all = [r.record for r in records]
    check_domain(
        stream, values_all, BatchError, "the band stored a record outside the record domain"
    )
    if any(b <= a for a, b in pairwise(seqs)):
        raise BatchError("batch records must be in strictly increasing sequence order")
    columns = {SEQ_COLUMN.field: _pack(SEQ_COLUMN, seqs)}
    for spec in COLUMNS[stream]:
        values = [_field_value(r.record, spec.field) for r in records]
        if min(values) < spec.low or max(values) > spec.high:
            raise BatchError(f"record field {spec.field!r} is outside its allowed range")
        columns[spec.field] = _pack(spec, values)
    body = {"consent": consent_record, "records": columns}
    return zlib.compress(cbor2.dumps(body, canonical=True), ZLIB_LEVEL)
