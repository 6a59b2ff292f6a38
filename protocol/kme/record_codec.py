"""On-air encoding of record chunks: the payloads of the KME Record Sync Data notifications.

This is the entry point callers use (:func:`pack_chunks`, :func:`decode_chunk`,
:class:`ChunkAssembler`). It joins three parts, each in its own module:

- ``protocol.kme.chunk_framing``: the chunk header, the CRC-32 trailer, fragmentation into
  pieces, the limits and the :class:`~protocol.kme.chunk_framing.ChunkError` family;
- ``protocol.kme.activity_code``: the bit-level code of the activity-minute stream;
- ``protocol.kme.column_codec``: the column code of every other stream.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Final

import numpy as np

from protocol.kme.activity_code import pack_activity, unpack_activity
from protocol.kme.chunk_framing import (
    CHUNK_OVERHEAD,
    FLAG_END,
    FLAG_FRAGMENT,
    FLAG_START,
    HEADER_SIZE,
    LAST_PIECE,
    MAX_COUNT,
    MAX_SEQ,
    MAX_TZ_OFFSET_MIN,
    MIN_TZ_OFFSET_MIN,
    PIECE_HEADER_SIZE,
    STREAM_MASK,
    ChunkFormatError,
    ChunkFragmentError,
    ChunkTruncatedError,
    ChunkValueError,
    DecodedChunk,
    PackedChunk,
    check_payload_size,
    chunk_header,
    fragment_chunk,
    open_chunk,
    seal_chunk,
)
from protocol.kme.column_codec import COLUMN_CODECS, ColumnPlan, unpack_columns
from protocol.kme.record_domain import check_domain
from protocol.kme.record_fields import int64_column
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    Record,
    StoredRecord,
    StreamId,
)


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
    record_type = STREAM_RECORD_TYPE[stream]
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


# ------------------------------------------------------------------------- the codec


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
    check_domain(stream, values, ChunkValueError, "the band cannot send a record outside it")
    breaks.append(len(records))
    pack: Callable[[int, int, int], tuple[int, bytes]]
    if stream == StreamId.ACTIVITY_MINUTES:

        def pack(start: int, stop: int, budget: int) -> tuple[int, bytes]:
            return pack_activity(records, start, min(stop, start + MAX_COUNT), budget)

    else:
        pack = ColumnPlan(COLUMN_CODECS[stream], values, tzs).pack

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
        chunk = seal_chunk(chunk_header(stream, records[first].seq, n, flags) + section)
        out.append(PackedChunk(records[first].seq, n, fragment_chunk(stream, chunk, payload_size)))
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
    return seal_chunk(chunk_header(StreamId(stream), next_seq, 0, flags))


def decode_chunk(data: bytes) -> DecodedChunk:
    """Decode one complete chunk (a notification payload, or reassembled fragments).

    Raises :class:`ChunkCrcError`, :class:`ChunkTruncatedError`, :class:`ChunkFormatError`
    or :class:`ChunkValueError`; all derive from :class:`ChunkError`.
    """
    data = bytes(data)
    head, stream, first_seq, count, end = open_chunk(data)
    if count == 0:
        if end != HEADER_SIZE:
            raise ChunkFormatError("an empty chunk has bytes after its header")
        records: list[StoredRecord] = []
    elif first_seq + count - 1 > MAX_SEQ:
        raise ChunkFormatError("chunk sequence numbers run past 2**32-1")
    elif stream == StreamId.ACTIVITY_MINUTES:
        records = unpack_activity(stream, first_seq, count, data, HEADER_SIZE, end)
    else:
        records = unpack_columns(stream, first_seq, count, data, HEADER_SIZE, end)
    check_domain(
        stream,
        [r.record for r in records],
        ChunkValueError,
        "the band sent a record no codec accepts; report it to the band's maker",
    )
    return DecodedChunk(
        stream=stream,
        first_seq=first_seq,
        records=tuple(records),
        start_of_transfer=bool(head & FLAG_START),
        end_of_stream=bool(head & FLAG_END),
        size=len(data),
    )


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
        stream = payload[0] & STREAM_MASK
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
    "SMALL_PAYLOAD_SIZE",
    "ChunkAssembler",
    "decode_chunk",
    "decode_payloads",
    "encode_chunks",
    "encode_empty_chunk",
    "pack_chunks",
]
