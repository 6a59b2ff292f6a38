"""Record chunk framing: the header, the CRC-32 trailer and fragmentation into pieces.

A *chunk* carries a run of consecutive records (consecutive sequence numbers, one time
zone offset) of one stream and fits one ATT notification payload (``ATT_MTU - 3``, 20..512
bytes). Its layout (all integers little-endian; docs/records.md has the byte tables):

    0      u8   stream number (bits 0-3) | START 0x10 | END 0x20   (bits 6-7 zero)
    1..4   u32  sequence number of the first record
    5..6   u16  record count (0 only in an empty end-of-transfer marker)
    7..    stream section (absent when the count is 0)
    -4..   u32  CRC-32 (zlib.crc32) of every byte before it

A single record that cannot fit the payload on its own (a sleep summary at the 20-byte
minimum, say) travels as a *fragmented* chunk: pieces of ``[stream | 0x40, index | 0x80
on the last piece]`` followed by a slice of the chunk bytes.

The stream sections are coded by ``protocol.kme.activity_code`` (activity minutes) and
``protocol.kme.column_codec`` (every other stream); ``protocol.kme.record_codec`` puts the
three together and is what callers use.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Final

from protocol.errors import KmebandError, UsageError
from protocol.kme.record_fields import RecordBuilder
from protocol.kme.records import Record, StoredRecord, StreamId

#: The smallest notification payload: the default ATT_MTU of 23 minus the 3-byte header.
MIN_PAYLOAD_SIZE: Final = 20
#: The largest: the maximum length of an attribute value.
MAX_PAYLOAD_SIZE: Final = 512

FLAG_START: Final = 0x10  # first chunk of a transfer
FLAG_END: Final = 0x20  # last chunk of a transfer
FLAG_FRAGMENT: Final = 0x40  # a piece of a fragmented chunk (piece header only)
STREAM_MASK: Final = 0x0F
RESERVED_BITS: Final = 0x80
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


# ------------------------------------------------------------------- framing and CRC


def check_payload_size(payload_size: int) -> None:
    """Raise :class:`UsageError` unless ``payload_size`` is a notification payload size."""
    if not MIN_PAYLOAD_SIZE <= payload_size <= MAX_PAYLOAD_SIZE:
        raise UsageError(
            f"payload size must be {MIN_PAYLOAD_SIZE}..{MAX_PAYLOAD_SIZE} bytes "
            "(the ATT MTU minus 3)"
        )


def chunk_header(stream: StreamId, first_seq: int, count: int, flags: int) -> bytes:
    """The 7-byte chunk header: stream and flags, first sequence number, record count."""
    return (
        bytes((int(stream) | flags,))
        + first_seq.to_bytes(4, "little")
        + count.to_bytes(2, "little")
    )


def seal_chunk(body: bytes) -> bytes:
    """``body`` (header and stream section) followed by its CRC-32 trailer."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def fragment_chunk(stream: StreamId, chunk: bytes, payload_size: int) -> tuple[bytes, ...]:
    """The notification payloads of a sealed chunk: itself, or its pieces if it is larger."""
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


def open_chunk(data: bytes) -> tuple[int, StreamId, int, int, int]:
    """Check a complete chunk's length, CRC and header bits.

    Returns ``(head, stream, first_seq, count, end)``: the header byte, its fields and the
    offset of the CRC (where the stream section ends).
    """
    if len(data) < CHUNK_OVERHEAD:
        raise ChunkTruncatedError(
            f"a chunk is at least {CHUNK_OVERHEAD} bytes; this one is cut short"
        )
    end = len(data) - CRC_SIZE
    if zlib.crc32(data[:end]) != int.from_bytes(data[end:], "little"):
        raise ChunkCrcError("chunk CRC-32 mismatch: the chunk was corrupted; fetch it again")
    head = data[0]
    if head & (RESERVED_BITS | FLAG_FRAGMENT):
        raise ChunkFormatError("chunk has reserved header bits set (a newer format?)")
    try:
        stream = StreamId(head & STREAM_MASK)
    except ValueError:
        raise ChunkFormatError("chunk names an unknown stream") from None
    first_seq = int.from_bytes(data[1:5], "little")
    count = int.from_bytes(data[5:7], "little")
    return head, stream, first_seq, count, end


def is_fragment(payload: bytes) -> bool:
    """Whether a notification payload is a piece of a fragmented chunk."""
    return bool(payload) and bool(payload[0] & FLAG_FRAGMENT)


_STORED: Final = RecordBuilder(StoredRecord)


def stored_run(stream: StreamId, first_seq: int, records: Sequence[Record]) -> list[StoredRecord]:
    """``records`` as StoredRecords of ``stream`` numbered from ``first_seq``."""
    n = len(records)
    return _STORED.build(n, (repeat(stream), range(first_seq, first_seq + n), records))


__all__ = [
    "CHUNK_OVERHEAD",
    "CRC_SIZE",
    "FLAG_END",
    "FLAG_FRAGMENT",
    "FLAG_START",
    "HEADER_SIZE",
    "LAST_PIECE",
    "MAX_COUNT",
    "MAX_PAYLOAD_SIZE",
    "MAX_PIECES",
    "MAX_SEQ",
    "MAX_TZ_OFFSET_MIN",
    "MAX_UTC_SECONDS",
    "MIN_PAYLOAD_SIZE",
    "MIN_TZ_OFFSET_MIN",
    "PIECE_HEADER_SIZE",
    "RESERVED_BITS",
    "STREAM_MASK",
    "ChunkCrcError",
    "ChunkError",
    "ChunkFormatError",
    "ChunkFragmentError",
    "ChunkTruncatedError",
    "ChunkValueError",
    "DecodedChunk",
    "PackedChunk",
    "check_payload_size",
    "chunk_header",
    "fragment_chunk",
    "is_fragment",
    "open_chunk",
    "seal_chunk",
    "stored_run",
]
