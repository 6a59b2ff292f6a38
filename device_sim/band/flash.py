"""The band's flash: typed record streams with per-stream sequence numbers, bounded, persisted.

Semantics
---------
- Each :class:`~protocol.kme.records.StreamId` is its own ring of records. ``append`` gives a
  record the stream's next sequence number (1, 2, 3, ...); numbers are never reused, not
  even after the records are freed, dropped, or the band process restarts.
- Live records of a stream always form one contiguous range ``first_seq .. next_seq - 1``:
  records leave a stream only from its oldest end, by :meth:`Flash.free_up_to`
  (acknowledged by the owner's client) or by a drop when the flash is full.
- Capacity counts record bytes (each record type has a fixed size, see
  :data:`device_sim.band.flash_codec.RECORD_SIZE`). When an append does not fit, the flash
  erases like a real NOR flash, a block (``erase_block_bytes``, 4 KiB by default) at a
  time: it drops oldest records until the new one fits with a block to spare. "Oldest"
  across streams means: the stream whose oldest live record has the earliest record time
  (:func:`protocol.kme.records.record_time`; ties go to the lower stream number) loses that
  record, repeatedly. Drops are counted per stream (:meth:`Flash.dropped`) and reported to
  ``on_drop(stream, count)`` after the append, so the firmware can log a telemetry event;
  appends made from inside the callback are safe (their drops are reported in turn).

Durability
----------
``append`` and ``free_up_to`` change memory only. :meth:`Flash.flush` (the firmware calls
it at the end of each processing block, and :meth:`Flash.close` calls it) appends the
changes to the file as checksummed entries in one write and fsyncs. A crash loses at most
the records since the last flush, and a lost free only means data is sent again (the sync
is at-least-once with sequence dedup).

File format (all little-endian; see also docs/traces.md for the trace format)
-------------------------------------------------------------------------
Header, 16 bytes: magic ``b"KMEFLASH"``, u16 format version (1), u16 reserved (0),
u32 CRC-32 of the preceding 12 bytes. Then entries, each
``u8 kind | u32 body length | body | u32 CRC-32 of kind, length and body``:

- kind 1, segment: ``u8 stream | u64 first seq | u32 count | count fixed-size records``.
  A segment continues its stream exactly at the stream's next sequence number, or, when
  the stream holds no live records, at any later number.
- kind 2, stream state: ``u8 stream | u64 first seq | u64 next seq | u64 dropped``; the
  stream's live range and drop count after the entries before it.

The file only grows until the space taken by freed and dropped records exceeds half the
capacity; then it is compacted: rewritten (live segments, then states) to a temporary file,
fsynced, and renamed over the old one. Any failed check on open (magic, version, header or
entry CRC, truncated entry, inconsistent sequence numbers, undecodable record) raises
:class:`FlashCorruptError` and leaves the file untouched. An open flash file is locked
(``flock``) so two band processes cannot share it.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from device_sim.band.flash_codec import RECORD_SIZE, FlashRecordError, decode_records, encode_record
from device_sim.band.state_file import StateFileCorruptError, fsync_directory
from protocol.errors import KmebandError, UsageError
from protocol.kme.records import Record, StoredRecord, StreamId, record_time

__all__ = [
    "DEFAULT_CAPACITY_BYTES",
    "DEFAULT_ERASE_BLOCK_BYTES",
    "Flash",
    "FlashCapacityError",
    "FlashCorruptError",
    "FlashInUseError",
    "FlashRecordError",
    "FlashSeqError",
    "RecordSink",
]

DEFAULT_CAPACITY_BYTES = 4 * 1024 * 1024
DEFAULT_ERASE_BLOCK_BYTES = 4096
_MIN_CAPACITY_BYTES = 256

MAGIC = b"KMEFLASH"
FORMAT_VERSION = 1
_FILE_HEADER = struct.Struct("<8sHH")
_CRC = struct.Struct("<I")
_ENTRY_HEAD = struct.Struct("<BI")
_SEGMENT_HEAD = struct.Struct("<BQI")
_STATE = struct.Struct("<BQQQ")
_KIND_SEGMENT = 1
_KIND_STATE = 2
_HEADER_SIZE = _FILE_HEADER.size + _CRC.size
_ENTRY_OVERHEAD = _ENTRY_HEAD.size + _CRC.size

DropCallback = Callable[[StreamId, int], None]


class FlashCorruptError(StateFileCorruptError):
    """The flash file is damaged or truncated; it was neither loaded nor changed."""


class FlashInUseError(KmebandError):
    """Another process (or another Flash in this one) has the flash file open."""


class FlashCapacityError(UsageError):
    """The flash file holds more live data than the capacity it was opened with."""


class FlashSeqError(UsageError):
    """A sequence number outside what the stream has handed out (e.g. freeing the future)."""


class RecordSink(Protocol):
    """What the firmware writes records to: ``append(stream, record) -> seq``.

    :class:`Flash` is the real one; firmware code may type its dependency as
    ``RecordSink`` so tests can pass any object with this ``append``.
    """

    def append(self, stream: StreamId, record: Record) -> int: ...


class _Stream:
    """One stream's live records (a list with a moving head) and its counters."""

    __slots__ = ("dropped", "first_seq", "head", "pending", "pending_first", "records", "size")

    def __init__(self, size: int) -> None:
        self.records: list[Record] = []
        self.head = 0  # index in ``records`` of the record numbered first_seq
        self.first_seq = 1
        self.dropped = 0
        self.size = size
        self.pending = bytearray()  # encoded records appended since the last flush
        self.pending_first = 0

    @property
    def count(self) -> int:
        return len(self.records) - self.head

    @property
    def next_seq(self) -> int:
        return self.first_seq + self.count

    def remove_oldest(self, n: int) -> None:
        self.head += n
        self.first_seq += n
        # reclaim the list's dead prefix now and then; keeps removal O(1) amortised
        if self.head > 4096 and self.head * 2 > len(self.records):
            del self.records[: self.head]
            self.head = 0

    def reset_empty(self, next_seq: int) -> None:
        self.records = []
        self.head = 0
        self.first_seq = next_seq


class Flash:
    """The band's record storage: bounded, per-stream sequenced, optionally file-backed.

    ``Flash(capacity_bytes)`` is memory-only (for tests and fleets of summary-fidelity
    bands); :meth:`Flash.open` backs it with a file that survives a restart.
    """

    def __init__(
        self,
        capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
        *,
        erase_block_bytes: int | None = None,
        on_drop: DropCallback | None = None,
    ) -> None:
        if not isinstance(capacity_bytes, int) or capacity_bytes < _MIN_CAPACITY_BYTES:
            raise UsageError(
                f"flash capacity must be an integer of at least {_MIN_CAPACITY_BYTES} bytes, "
                f"got {capacity_bytes!r}"
            )
        if erase_block_bytes is None:
            erase_block_bytes = min(DEFAULT_ERASE_BLOCK_BYTES, capacity_bytes // 8)
        if not 1 <= erase_block_bytes <= capacity_bytes // 2:
            raise UsageError(
                f"erase block must be between 1 and half the capacity ({capacity_bytes // 2}) "
                f"bytes, got {erase_block_bytes!r}"
            )
        self.capacity_bytes = capacity_bytes
        self.erase_block_bytes = erase_block_bytes
        self.on_drop = on_drop
        self._streams = {s: _Stream(RECORD_SIZE[s]) for s in StreamId}
        self._used = 0
        self._state_dirty: set[StreamId] = set()
        self._unreported: dict[StreamId, int] = {}
        self._reporting = False
        self._path: Path | None = None
        self._file: IO[bytes] | None = None
        self._fsync = True
        self._file_size = 0
        self._closed = False

    # ----------------------------------------------------------------- file backing

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
        *,
        erase_block_bytes: int | None = None,
        on_drop: DropCallback | None = None,
        fsync: bool = True,
    ) -> Flash:
        """Load the flash file at ``path``, or create it if it does not exist.

        Raises FlashCorruptError for a damaged file (left untouched), FlashInUseError if
        another Flash holds it, FlashCapacityError if its live data exceed the capacity.
        """
        flash = cls(capacity_bytes, erase_block_bytes=erase_block_bytes, on_drop=on_drop)
        flash._fsync = fsync
        file_path = Path(path)
        if file_path.exists():
            handle = open(file_path, "r+b")  # noqa: SIM115 - held for the Flash's lifetime
            try:
                _lock(handle, file_path)
                data = handle.read()
                flash._load(file_path, data)
            except BaseException:
                handle.close()
                raise
            if flash._used > capacity_bytes:
                handle.close()
                raise FlashCapacityError(
                    f"the flash file holds {flash._used} bytes of records but the capacity "
                    f"asked for is {capacity_bytes}; open it with a capacity of at least "
                    f"{flash._used} bytes"
                )
            handle.seek(0, os.SEEK_END)
            flash._file_size = len(data)
        else:
            fd = os.open(file_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            handle = os.fdopen(fd, "r+b")
            try:
                _lock(handle, file_path)
                header = _file_header()
                handle.write(header)
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
                    fsync_directory(file_path.parent)
            except BaseException:
                handle.close()
                raise
            flash._file_size = len(header)
        flash._path = file_path
        flash._file = handle
        return flash

    def _load(self, path: Path, data: bytes) -> None:
        def corrupt(problem: str) -> FlashCorruptError:
            return FlashCorruptError(path, f"flash file is corrupt: {problem}")

        if len(data) < _HEADER_SIZE:
            raise corrupt(f"truncated header ({len(data)} of {_HEADER_SIZE} bytes)")
        magic, version, _ = _FILE_HEADER.unpack_from(data)
        if magic != MAGIC:
            raise FlashCorruptError(path, "not a kmeband flash file (wrong magic)")
        (header_crc,) = _CRC.unpack_from(data, _FILE_HEADER.size)
        if zlib.crc32(data[: _FILE_HEADER.size]) != header_crc:
            raise corrupt("header checksum mismatch")
        if version != FORMAT_VERSION:
            raise FlashCorruptError(
                path,
                f"flash format version {version} is not supported (this code reads "
                f"{FORMAT_VERSION}); use the kmeband version that wrote it",
            )
        pos = _HEADER_SIZE
        end = len(data)
        view = memoryview(data)
        while pos < end:
            if end - pos < _ENTRY_OVERHEAD:
                raise corrupt(f"truncated entry at byte {pos}")
            kind, length = _ENTRY_HEAD.unpack_from(data, pos)
            body_start = pos + _ENTRY_HEAD.size
            body_end = body_start + length
            if body_end + _CRC.size > end:
                raise corrupt(f"truncated entry at byte {pos} (needs {length} body bytes)")
            (crc,) = _CRC.unpack_from(data, body_end)
            if zlib.crc32(view[pos:body_end]) != crc:
                raise corrupt(f"entry checksum mismatch at byte {pos}")
            body = view[body_start:body_end]
            problem = self._apply_entry(kind, body)
            if problem is not None:
                raise corrupt(f"{problem} (entry at byte {pos})")
            pos = body_end + _CRC.size
        self._used = sum(s.count * s.size for s in self._streams.values())

    def _apply_entry(self, kind: int, body: memoryview) -> str | None:
        """Apply one loaded entry; return what is wrong with it, or None."""
        if kind == _KIND_SEGMENT:
            if len(body) < _SEGMENT_HEAD.size:
                return "segment entry too short"
            stream_no, first, count = _SEGMENT_HEAD.unpack_from(body)
            stream = _stream_or_none(stream_no)
            if stream is None:
                return f"unknown stream number {stream_no}"
            st = self._streams[stream]
            payload = bytes(body[_SEGMENT_HEAD.size :])
            if len(payload) != count * st.size:
                return f"segment of {count} {stream.name} records has {len(payload)} bytes"
            if first < 1 or first < st.next_seq or (st.count and first != st.next_seq):
                return f"{stream.name} segment starts at seq {first}, expected {st.next_seq}"
            try:
                records = decode_records(stream, payload)
            except ValueError as exc:
                return f"undecodable {stream.name} record ({exc})"
            if not st.count:
                st.reset_empty(first)
            st.records.extend(records)
            return None
        if kind == _KIND_STATE:
            if len(body) != _STATE.size:
                return "stream state entry has the wrong size"
            stream_no, first, nxt, dropped = _STATE.unpack(body)
            stream = _stream_or_none(stream_no)
            if stream is None:
                return f"unknown stream number {stream_no}"
            st = self._streams[stream]
            if not 1 <= first <= nxt or nxt < st.next_seq or first < st.first_seq:
                return f"{stream.name} state {first}..{nxt} contradicts the records before it"
            if first < nxt and nxt != st.next_seq:
                return f"{stream.name} state claims records up to {nxt - 1} that are missing"
            if first >= st.next_seq:
                st.reset_empty(nxt)
            else:
                st.remove_oldest(first - st.first_seq)
            if dropped < st.dropped:
                return f"{stream.name} drop count went backwards"
            st.dropped = dropped
            return None
        return f"unknown entry kind {kind}"

    # ----------------------------------------------------------------- record API

    def append(self, stream: StreamId, record: Record) -> int:
        """Store ``record`` in ``stream`` and return its sequence number."""
        self._check_open()
        stream = StreamId(stream)
        st = self._streams[stream]
        data = encode_record(stream, record)
        if self._used + st.size > self.capacity_bytes:
            self._make_room(st.size)
        seq = st.next_seq
        st.records.append(record)
        self._used += st.size
        if self._file is not None:
            if not st.pending:
                st.pending_first = seq
            st.pending += data
        if self._unreported and not self._reporting:
            self._report_drops()
        return seq

    def read(self, stream: StreamId, from_seq: int, max_records: int) -> list[StoredRecord]:
        """Up to ``max_records`` live records of ``stream`` with seq >= ``from_seq``.

        Records before ``first_seq`` are gone (freed or dropped), so the result starts at
        ``max(from_seq, first_seq)``; it is empty once ``from_seq >= next_seq``.
        """
        if max_records < 1:
            raise UsageError(f"max_records must be at least 1, got {max_records!r}")
        stream = StreamId(stream)
        st = self._streams[stream]
        start_seq = max(from_seq, st.first_seq)
        start = st.head + (start_seq - st.first_seq)
        chunk = st.records[start : start + max_records]
        return [StoredRecord(stream, start_seq + i, r) for i, r in enumerate(chunk)]

    def first_seq(self, stream: StreamId) -> int:
        """The oldest live record's seq (== next_seq when the stream is empty)."""
        return self._streams[StreamId(stream)].first_seq

    def next_seq(self, stream: StreamId) -> int:
        """The seq the next appended record of ``stream`` will get."""
        return self._streams[StreamId(stream)].next_seq

    def count(self, stream: StreamId) -> int:
        """Live records in ``stream``."""
        return self._streams[StreamId(stream)].count

    def dropped(self, stream: StreamId) -> int:
        """Records of ``stream`` lost to a full flash since the flash was created."""
        return self._streams[StreamId(stream)].dropped

    def free_up_to(self, stream: StreamId, seq: int) -> int:
        """Free the acknowledged records of ``stream`` with seq <= ``seq``; return how many.

        Freeing what is already gone is a no-op (acknowledgements may repeat); freeing a
        seq the stream has not handed out yet raises FlashSeqError.
        """
        self._check_open()
        stream = StreamId(stream)
        st = self._streams[stream]
        if seq >= st.next_seq:
            raise FlashSeqError(
                f"cannot free {stream.name} up to seq {seq}: the newest record is "
                f"{st.next_seq - 1}; only acknowledge records that were read"
            )
        n = seq - st.first_seq + 1
        if n <= 0:
            return 0
        st.remove_oldest(n)
        self._used -= n * st.size
        self._state_dirty.add(stream)
        return n

    def erase(self) -> None:
        """Erase every record of every stream and its drop count (factory reset).

        The file is rewritten without them, so no byte of an erased record stays on disk.
        Sequence numbers go on from where they were: a record written after the erase can
        never be mistaken for an erased one by a client or an ingest that saw the old ones.
        """
        self._check_open()
        for sid, st in self._streams.items():
            st.reset_empty(st.next_seq)
            st.dropped = 0
            st.pending = bytearray()
            self._state_dirty.add(sid)
        self._used = 0
        self._unreported.clear()
        if self._file is not None:
            self.compact()

    @property
    def used_bytes(self) -> int:
        """Bytes taken by live records."""
        return self._used

    @property
    def free_bytes(self) -> int:
        """Bytes left before the next append drops old records."""
        return self.capacity_bytes - self._used

    # ----------------------------------------------------------------- capacity

    def _make_room(self, needed: int) -> None:
        target = self.capacity_bytes - self.erase_block_bytes - needed
        streams = self._streams
        while self._used > target:
            oldest: StreamId | None = None
            oldest_time = 0
            for sid, st in streams.items():  # StreamId order breaks ties
                if st.count:
                    t = record_time(st.records[st.head])
                    if oldest is None or t < oldest_time:
                        oldest, oldest_time = sid, t
            if oldest is None:  # cannot happen: capacity >= 2 erase blocks > one record
                break
            st = streams[oldest]
            st.remove_oldest(1)
            st.dropped += 1
            self._used -= st.size
            self._state_dirty.add(oldest)
            self._unreported[oldest] = self._unreported.get(oldest, 0) + 1

    def _report_drops(self) -> None:
        self._reporting = True
        try:
            while self._unreported:
                batch, self._unreported = self._unreported, {}
                for stream in sorted(batch):
                    if self.on_drop is not None:
                        self.on_drop(stream, batch[stream])
        finally:
            self._reporting = False

    # ----------------------------------------------------------------- durability

    def flush(self) -> None:
        """Write the changes since the last flush to the file (one write, then fsync)."""
        self._check_open()
        if self._file is None:
            return
        parts: list[bytes] = []
        for sid, st in self._streams.items():
            if st.pending:
                pending = bytes(st.pending)
                count = len(pending) // st.size
                parts.append(
                    _entry(
                        _KIND_SEGMENT, _SEGMENT_HEAD.pack(sid, st.pending_first, count) + pending
                    )
                )
                st.pending = bytearray()
                self._state_dirty.add(sid)
        for sid in sorted(self._state_dirty):
            st = self._streams[sid]
            parts.append(
                _entry(_KIND_STATE, _STATE.pack(sid, st.first_seq, st.next_seq, st.dropped))
            )
        self._state_dirty.clear()
        if not parts:
            return
        data = b"".join(parts)
        self._file.write(data)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._file_size += len(data)
        if self._file_size - self._used - _HEADER_SIZE > self.capacity_bytes // 2:
            self.compact()

    def compact(self) -> None:
        """Rewrite the file with only live records (temp file, fsync, atomic rename)."""
        self._check_open()
        if self._file is None or self._path is None:
            return
        parts = [_file_header()]
        for sid, st in self._streams.items():
            if st.count:
                live = st.records[st.head :]
                payload = b"".join(encode_record(sid, r) for r in live)
                parts.append(
                    _entry(_KIND_SEGMENT, _SEGMENT_HEAD.pack(sid, st.first_seq, st.count) + payload)
                )
        for sid, st in self._streams.items():
            parts.append(
                _entry(_KIND_STATE, _STATE.pack(sid, st.first_seq, st.next_seq, st.dropped))
            )
        data = b"".join(parts)
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        handle = os.fdopen(fd, "r+b")
        try:
            # lock the new inode before it takes the name, so no other process slips in
            _lock(handle, tmp)
            handle.write(data)
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
            if self._fsync:
                fsync_directory(self._path.parent)
        except BaseException:
            handle.close()
            raise
        self._file.close()
        self._file = handle
        self._file_size = len(data)
        # the rewrite holds everything in memory, so nothing is left to append
        for st in self._streams.values():
            st.pending = bytearray()
        self._state_dirty.clear()

    @property
    def file_bytes(self) -> int:
        """Size of the backing file (0 for a memory-only flash)."""
        return self._file_size

    def close(self) -> None:
        """Flush and release the file. The Flash cannot be used afterwards."""
        if self._closed:
            return
        if self._file is not None:
            try:
                self.flush()
            finally:
                self._file.close()
                self._file = None
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("this flash is closed; open it again with Flash.open")

    def __enter__(self) -> Flash:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self._path is None else "file"
        return f"<Flash {where} used={self._used}/{self.capacity_bytes} bytes>"


def _file_header() -> bytes:
    head = _FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0)
    return head + _CRC.pack(zlib.crc32(head))


def _entry(kind: int, body: bytes) -> bytes:
    head = _ENTRY_HEAD.pack(kind, len(body))
    return head + body + _CRC.pack(zlib.crc32(body, zlib.crc32(head)))


def _stream_or_none(number: int) -> StreamId | None:
    try:
        return StreamId(number)
    except ValueError:
        return None


def _lock(handle: IO[bytes], path: Path) -> None:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FlashInUseError(
            f"{path} is already open by another band process (or another Flash object); "
            "close that one first, or give this band its own flash file"
        ) from None
