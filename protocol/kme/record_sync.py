"""Record sync over the KME Record Sync service, as two sans-IO state machines.

The client writes CBOR requests (``protocol.kme.control.record_sync``, types 0x10..0x1F) to
the Record Sync Control Point; the band answers by indication on the same characteristic and sends
record chunks (``protocol.kme.record_codec``) as notifications of the Data characteristic.
One transfer runs at a time::

    client                                   band
      | ListStreams -------------------------> |      (or read Record Sync Status)
      | <------------------------- StreamList  |
      | StartTransfer(stream, from_seq, max) -> |
      | <--------------------- ControlResult OK |
      | <============== chunk START ...        |      Data notifications
      | <============== chunk ... END          |
      | <----------- TransferEnd(count, last)   |
      |    (stores the records durably)        |
      | AckRecords(stream, up_to_seq) -------> |      band may now free ..up_to_seq
      | <--------------------- ControlResult OK |

:class:`BandSyncSender` is the band's side: it reads records from a
:class:`RecordSource` (the flash) in batches, yields the payloads to notify, and reports
when an acknowledged range may be freed. :class:`ClientSyncReceiver` is the client's side
for one stream: it checks every chunk (CRC, stream, sequence continuity, size, the counts
against the end marker), drops duplicates, and makes an acknowledgement only when its
caller says the records are durably stored. Resuming after a disconnect is a new receiver
starting at the last stored sequence number + 1.

Neither does I/O or reads a clock: bytes in, events and bytes out (timeouts belong to the
caller, which knows what it is waiting for).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from protocol.errors import KmebandError, UsageError
from protocol.kme.chunk_framing import MAX_SEQ, ChunkError, check_payload_size
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.record_sync import (
    CONTROL_POINT_INDICATIONS,
    CONTROL_POINT_REQUESTS,
    AbortTransfer,
    AckRecords,
    ListStreams,
    StartTransfer,
    StreamList,
    StreamStatus,
    TransferEnd,
)
from protocol.kme.control.schema import (
    ControlDecodeError,
    UnknownMessageTypeError,
    UnsupportedVersionError,
    decode_as,
    encode_control,
)
from protocol.kme.record_codec import ChunkAssembler, decode_chunk, encode_empty_chunk, pack_chunks
from protocol.kme.records import StoredRecord, StreamId


class RecordSyncError(KmebandError):
    """Base of the record-sync state machine errors."""


class RecordSyncUsageError(RecordSyncError, UsageError):
    """The caller drove a sync state machine in a way that cannot work (see the message)."""


# ------------------------------------------------------------------------ band side


class RecordSource(Protocol):
    """Where the band's records come from (``device_sim.band.flash.Flash`` fits as it is)."""

    def read(self, stream: StreamId, from_seq: int, max_records: int) -> Sequence[StoredRecord]:
        """Up to ``max_records`` live records of ``stream`` from ``max(from_seq, first)``."""
        ...

    def first_seq(self, stream: StreamId) -> int: ...

    def next_seq(self, stream: StreamId) -> int: ...

    def dropped(self, stream: StreamId) -> int: ...


@dataclass(frozen=True, slots=True)
class NotifyData:
    """Band: notify this payload on the Record Sync Data characteristic."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class IndicateControl:
    """Band: indicate this CBOR message on the Record Sync Control Point."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class FreeRecords:
    """Band: the owner's client stored ``stream`` up to ``up_to_seq``; free that range."""

    stream: StreamId
    up_to_seq: int


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """Band: a transfer ended (``aborted`` by the client or the link), ``count`` records sent."""

    stream: StreamId
    count: int
    aborted: bool


BandEvent = NotifyData | IndicateControl | FreeRecords | TransferFinished

#: Records read from the source per batch at first (doubled while a batch fits one chunk).
READ_BATCH: Final = 512


@dataclass(slots=True)
class _Transfer:
    stream: StreamId
    cursor: int  # next seq to read
    end: int  # one past the last seq to send
    sent: int = 0
    last_seq: int | None = None
    first_chunk: bool = True
    finished: bool = False


class BandSyncSender:
    """The band's side of record sync, for all streams (one transfer at a time).

    Feed each Record Sync Control Point write to :meth:`receive_control`; then call
    :meth:`next_event` until it returns None, doing what each event says (notify,
    indicate, free flash). Chunks are produced lazily, one per call, so the caller paces
    them to the radio. Records are freed only through :class:`FreeRecords`, only after the
    client acknowledged them, and never beyond what this sender has sent.
    """

    def __init__(
        self, source: RecordSource, payload_size: int, *, read_batch: int = READ_BATCH
    ) -> None:
        check_payload_size(payload_size)
        if read_batch < 1:
            raise RecordSyncUsageError("read_batch must be at least 1 record")
        self._read_batch = read_batch
        self._source = source
        self._payload_size = payload_size
        self._events: deque[BandEvent] = deque()
        self._data: deque[tuple[bytes, int | None]] = deque()
        self._transfer: _Transfer | None = None
        self._sent_up_to: dict[StreamId, int] = {}
        self._acked_up_to: dict[StreamId, int] = {}

    @property
    def payload_size(self) -> int:
        """Notification payload size (ATT_MTU - 3) used for the next chunks."""
        return self._payload_size

    @payload_size.setter
    def payload_size(self, value: int) -> None:
        check_payload_size(value)
        self._payload_size = value

    @property
    def active_stream(self) -> StreamId | None:
        """The stream being sent, if a transfer is running."""
        return self._transfer.stream if self._transfer else None

    def sent_up_to(self, stream: StreamId) -> int | None:
        """The highest sequence number of ``stream`` handed out for notification."""
        return self._sent_up_to.get(StreamId(stream))

    def connection_lost(self) -> None:
        """The link dropped: forget the running transfer and anything not yet sent.

        What was sent stays known, so the client can still acknowledge it later.
        """
        transfer = self._transfer
        self._data.clear()
        self._events = deque(e for e in self._events if isinstance(e, FreeRecords))
        self._transfer = None
        if transfer is not None:
            self._events.append(TransferFinished(transfer.stream, transfer.sent, aborted=True))

    def status(self) -> StreamList:
        """Every stream's status: the Record Sync Status value and the ListStreams answer."""
        source = self._source
        return StreamList(
            tuple(
                StreamStatus(s, source.first_seq(s), source.next_seq(s), source.dropped(s))
                for s in StreamId
            )
        )

    # -- input

    def receive_control(self, data: bytes) -> None:
        """Handle one write to the Record Sync Control Point (bytes of a CBOR request)."""
        try:
            message = decode_as(data, *CONTROL_POINT_REQUESTS)
        except UnsupportedVersionError:
            self._reply(0, ControlStatus.UNSUPPORTED)
            return
        except UnknownMessageTypeError:
            self._reply(0, ControlStatus.UNSUPPORTED)
            return
        except ControlDecodeError:
            self._reply(0, ControlStatus.INVALID_REQUEST)
            return
        if isinstance(message, ListStreams):
            self._events.append(IndicateControl(encode_control(self.status())))
        elif isinstance(message, StartTransfer):
            self._start(message)
        elif isinstance(message, AckRecords):
            self._ack(message)
        elif isinstance(message, AbortTransfer):
            self._abort(message)

    def _reply(self, request_type: int, status: ControlStatus) -> None:
        self._events.append(IndicateControl(encode_control(ControlResult(request_type, status))))

    def _start(self, request: StartTransfer) -> None:
        kind = StartTransfer.MESSAGE_TYPE
        if self._transfer is not None:
            self._reply(kind, ControlStatus.BUSY)
            return
        stream = request.stream
        next_seq = self._source.next_seq(stream)
        if request.from_seq > next_seq:
            self._reply(kind, ControlStatus.INVALID_REQUEST)
            return
        cursor = max(request.from_seq, self._source.first_seq(stream))
        end = next_seq
        if request.max_records is not None:
            end = min(end, cursor + request.max_records)
        self._transfer = _Transfer(stream, cursor, end)
        self._reply(kind, ControlStatus.OK)

    def _ack(self, request: AckRecords) -> None:
        stream = request.stream
        sent = self._sent_up_to.get(stream)
        if sent is None or request.up_to_seq > sent:
            # the client cannot have stored what was never sent: refuse, free nothing
            self._reply(AckRecords.MESSAGE_TYPE, ControlStatus.INVALID_REQUEST)
            return
        if request.up_to_seq > self._acked_up_to.get(stream, -1):
            self._acked_up_to[stream] = request.up_to_seq
            self._events.append(FreeRecords(stream, request.up_to_seq))
        self._reply(AckRecords.MESSAGE_TYPE, ControlStatus.OK)

    def _abort(self, request: AbortTransfer) -> None:
        transfer = self._transfer
        if transfer is not None and transfer.stream == request.stream:
            self._data.clear()
            self._transfer = None
            self._events.append(TransferFinished(transfer.stream, transfer.sent, aborted=True))
        self._reply(AbortTransfer.MESSAGE_TYPE, ControlStatus.OK)

    # -- output

    def next_event(self) -> BandEvent | None:
        """The next thing to do, or None when there is nothing until the next input."""
        if self._events:
            return self._events.popleft()
        if not self._data and self._transfer is not None:
            self._fill(self._transfer)
        if self._data:
            payload, last_seq = self._data.popleft()
            if last_seq is not None and self._transfer is not None:
                stream = self._transfer.stream
                self._sent_up_to[stream] = max(self._sent_up_to.get(stream, -1), last_seq)
            if not self._data and self._transfer is not None and self._transfer.finished:
                self._finish(self._transfer)
            return NotifyData(payload)
        return self._events.popleft() if self._events else None

    def _finish(self, transfer: _Transfer) -> None:
        end = TransferEnd(transfer.stream, transfer.sent, transfer.last_seq)
        self._events.append(IndicateControl(encode_control(end)))
        self._events.append(TransferFinished(transfer.stream, transfer.sent, aborted=False))
        self._transfer = None

    def _fill(self, transfer: _Transfer) -> None:
        """Encode the next chunks of ``transfer`` into the data queue."""
        batch = self._read_batch
        while True:
            wanted = min(batch, transfer.end - transfer.cursor)
            records: Sequence[StoredRecord] = ()
            if wanted > 0:
                records = self._source.read(transfer.stream, transfer.cursor, wanted)
            records = self._contiguous(transfer, records)
            final = not records or records[-1].seq + 1 >= transfer.end or len(records) < wanted
            if not records:
                payload = encode_empty_chunk(
                    transfer.stream,
                    transfer.cursor,
                    start_of_transfer=transfer.first_chunk,
                    end_of_stream=True,
                )
                self._data.append((payload, None))
                transfer.finished = True
                return
            chunks = pack_chunks(
                transfer.stream,
                records,
                self._payload_size,
                start_of_transfer=transfer.first_chunk,
                end_of_stream=final,
            )
            if not final:
                if len(chunks) == 1:
                    batch *= 2  # everything read fits one chunk: read more before sending
                    continue
                chunks = chunks[:-1]  # re-encoded with the next batch, so chunks stay full
            for chunk in chunks:
                last = len(chunk.payloads) - 1
                for index, payload in enumerate(chunk.payloads):
                    self._data.append((payload, chunk.next_seq - 1 if index == last else None))
                transfer.sent += chunk.count
                transfer.last_seq = chunk.next_seq - 1
                transfer.cursor = chunk.next_seq
            transfer.first_chunk = False
            transfer.finished = final
            return

    @staticmethod
    def _contiguous(transfer: _Transfer, records: Sequence[StoredRecord]) -> Sequence[StoredRecord]:
        """The leading records that continue the transfer without a gap."""
        if not records:
            return records
        expected = records[0].seq
        if not transfer.first_chunk and expected != transfer.cursor:
            return ()  # records vanished (flash full) mid-transfer: end here, client resumes
        count = 0
        for stored in records:
            if stored.seq != expected or stored.seq >= transfer.end:
                break
            expected += 1
            count += 1
        return records[:count]


# ---------------------------------------------------------------------- client side


class ReceiverState(enum.Enum):
    """Where a :class:`ClientSyncReceiver` is."""

    IDLE = "idle"  # start_request() not yet called
    RECEIVING = "receiving"
    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class RecordsReceived:
    """New records, in sequence order, never seen before by this receiver."""

    stream: StreamId
    records: tuple[StoredRecord, ...]
    chunk_bytes: int  # bytes of the chunk on the air (for progress and rate displays)


@dataclass(frozen=True, slots=True)
class RecordsLostOnBand:
    """The band no longer holds ``first_seq .. first_seq + count - 1`` (its flash was full)."""

    stream: StreamId
    first_seq: int
    count: int


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """The transfer ended and every count matched; ``last_seq`` is None if nothing came."""

    stream: StreamId
    last_seq: int | None
    count: int


@dataclass(frozen=True, slots=True)
class SyncError:
    """The stream's sync stopped: ``reason`` says why and what to do. Nothing more of this
    transfer is accepted; records reported before it are valid and may be stored."""

    stream: StreamId
    reason: str


ReceiverEvent = RecordsReceived | RecordsLostOnBand | TransferComplete | SyncError


class ClientSyncReceiver:
    """The client's side of one transfer of one stream.

    Create it with the sequence number after the last durably stored record; send
    :meth:`start_request`; feed every Data notification to :meth:`receive_data` and every
    Control Point indication to :meth:`receive_control`. When the caller has stored
    records durably it calls :meth:`stored_up_to` and writes the acknowledgement returned.
    After a disconnect or a :class:`SyncError`, resume with a new receiver from the last
    stored sequence number + 1.
    """

    def __init__(
        self,
        stream: StreamId,
        next_seq: int,
        payload_size: int,
        *,
        max_records: int | None = None,
    ) -> None:
        check_payload_size(payload_size)
        if not 0 <= next_seq <= MAX_SEQ:
            raise RecordSyncUsageError("next_seq must be 0..2**32-1: the last stored seq + 1")
        if max_records is not None and max_records < 1:
            raise RecordSyncUsageError("max_records must be at least 1 (or None for all)")
        self.stream = StreamId(stream)
        self.payload_size = payload_size
        self.max_records = max_records
        self.state = ReceiverState.IDLE
        self._from_seq = next_seq
        self._next_seq = next_seq  # next sequence number expected
        self._received = 0
        self._acked: int | None = None
        self._stored_floor = next_seq - 1  # already stored before this receiver
        self._started = False  # the START chunk has arrived
        self._end_chunk = False
        self._end_message: TransferEnd | None = None
        self._assembler = ChunkAssembler()
        self._pending_requests: deque[int] = deque()

    @property
    def next_seq(self) -> int:
        """The sequence number of the next record expected (last received + 1)."""
        return self._next_seq

    @property
    def received_count(self) -> int:
        """New records received in this transfer."""
        return self._received

    def start_request(self) -> bytes:
        """The StartTransfer message to write to the Control Point."""
        if self.state is not ReceiverState.IDLE:
            raise RecordSyncUsageError("a receiver runs one transfer; create a new one to resume")
        self.state = ReceiverState.RECEIVING
        self._pending_requests.append(StartTransfer.MESSAGE_TYPE)
        return encode_control(StartTransfer(self.stream, self._from_seq, self.max_records))

    def abort(self) -> bytes:
        """Stop the transfer: the AbortTransfer message to write. Later data is ignored."""
        if self.state in (ReceiverState.RECEIVING, ReceiverState.IDLE):
            self.state = ReceiverState.ABORTED
        self._pending_requests.append(AbortTransfer.MESSAGE_TYPE)
        return encode_control(AbortTransfer(self.stream))

    def stored_up_to(self, seq: int) -> bytes:
        """The AckRecords message for records durably stored up to ``seq`` (inclusive).

        Raises :class:`RecordSyncUsageError` for a sequence number this receiver has not
        delivered (nothing unstored may ever be acknowledged) or below an earlier ack.
        """
        highest = max(self._next_seq - 1, self._stored_floor)
        if seq > highest or seq < 0:
            raise RecordSyncUsageError(
                "can only acknowledge records that were received and stored; "
                "pass the last stored sequence number"
            )
        if self._acked is not None and seq < self._acked:
            raise RecordSyncUsageError("acknowledgements only move forward")
        self._acked = seq
        self._pending_requests.append(AckRecords.MESSAGE_TYPE)
        return encode_control(AckRecords(self.stream, seq))

    # -- input

    def _fail(self, reason: str) -> list[ReceiverEvent]:
        self.state = ReceiverState.FAILED
        return [SyncError(self.stream, reason)]

    def receive_data(self, payload: bytes) -> list[ReceiverEvent]:
        """Handle one Record Sync Data notification."""
        if self.state not in (ReceiverState.RECEIVING, ReceiverState.COMPLETE):
            return []  # idle, aborted or failed: stray chunks still in flight are ignored
        if len(payload) > self.payload_size:
            return self._fail(
                f"the band sent a {len(payload)}-byte chunk, over the {self.payload_size}-byte "
                "payload of this link; the band's firmware is faulty"
            )
        try:
            whole = self._assembler.feed(payload)
            if whole is None:
                return []
            chunk = decode_chunk(whole)
        except ChunkError as exc:
            return self._fail(f"bad chunk: {exc}")
        if chunk.stream != self.stream:
            return self._fail("a chunk of another stream arrived; sync this stream again")
        events: list[ReceiverEvent] = []
        opens = not self._started
        if opens:
            if not chunk.start_of_transfer:
                return self._fail("the transfer's first chunk is missing; sync again")
            self._started = True
            if chunk.first_seq > self._next_seq:
                lost = chunk.first_seq - self._next_seq
                events.append(RecordsLostOnBand(self.stream, self._next_seq, lost))
                self._next_seq = chunk.first_seq
        if chunk.first_seq > self._next_seq:
            return self._fail("a chunk is missing (sequence gap); sync again from the last stored")
        new = chunk.records[self._next_seq - chunk.first_seq :]
        if not new:
            # a repeat of records already delivered, or an empty end marker
            if chunk.end_of_stream and not self._end_chunk:
                self._end_chunk = True
                events.extend(self._check_complete())
            return events
        if chunk.start_of_transfer and not opens:
            return self._fail("a second transfer start arrived mid-transfer; sync again")
        if self._end_chunk:
            return self._fail("the band sent records after its end marker; sync again")
        if self.max_records is not None and self._received + len(new) > self.max_records:
            return self._fail("the band sent more records than asked for; sync again")
        if self._end_message is not None:
            claimed = self._end_message.last_seq
            if claimed is None or new[-1].seq > claimed:
                return self._fail("the band sent more records than its end marker counts")
        self._next_seq = chunk.next_seq
        self._received += len(new)
        events.append(RecordsReceived(self.stream, new, chunk.size))
        if chunk.end_of_stream:
            self._end_chunk = True
            events.extend(self._check_complete())
        return events

    def receive_control(self, data: bytes) -> list[ReceiverEvent]:
        """Handle one Record Sync Control Point indication."""
        try:
            message = decode_as(data, *CONTROL_POINT_INDICATIONS)
        except ControlDecodeError as exc:
            if self.state is ReceiverState.RECEIVING:
                return self._fail(f"bad control message from the band: {exc}")
            return []
        if isinstance(message, ControlResult):
            return self._result(message)
        if isinstance(message, TransferEnd):
            if message.stream != self.stream or self.state is not ReceiverState.RECEIVING:
                return []
            if self._end_message is not None:
                return self._fail("the band sent two end markers; sync again")
            self._end_message = message
            if message.last_seq is not None and message.last_seq < self._next_seq - 1:
                return self._fail("the band's end marker counts fewer records than it sent")
            return self._check_complete()
        return []  # StreamList: the caller's business

    def _result(self, message: ControlResult) -> list[ReceiverEvent]:
        if message.request_type in self._pending_requests:
            self._pending_requests.remove(message.request_type)
        elif message.request_type != 0:
            return []
        if message.status is ControlStatus.OK:
            return []
        if message.request_type == AckRecords.MESSAGE_TYPE:
            reason = f"the band refused the acknowledgement ({message.status.name})"
            self.state = ReceiverState.FAILED
            return [SyncError(self.stream, reason + "; the records stay on the band")]
        if self.state is ReceiverState.RECEIVING:
            return self._fail(f"the band refused the request ({message.status.name})")
        return []

    def _check_complete(self) -> list[ReceiverEvent]:
        end = self._end_message
        if end is None or not self._end_chunk:
            return []
        last = self._next_seq - 1 if self._received else None
        if end.count != self._received or end.last_seq != last:
            return self._fail("the band's end marker does not match the records it sent")
        self.state = ReceiverState.COMPLETE
        return [TransferComplete(self.stream, end.last_seq, end.count)]


__all__ = [
    "READ_BATCH",
    "BandEvent",
    "BandSyncSender",
    "ClientSyncReceiver",
    "FreeRecords",
    "IndicateControl",
    "NotifyData",
    "ReceiverEvent",
    "ReceiverState",
    "RecordSource",
    "RecordSyncError",
    "RecordSyncUsageError",
    "RecordsLostOnBand",
    "RecordsReceived",
    "SyncError",
    "TransferComplete",
    "TransferFinished",
]
