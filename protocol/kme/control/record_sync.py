"""KME control messages of the Record Sync service (types 0x10..0x1F).

The client writes these to the Record Sync Control Point and the band indicates its answers
there; the record chunks themselves travel on the Data characteristic
(``protocol.kme.record_codec``). The state machines that speak them are in
``protocol.kme.record_sync``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from protocol.kme.chunk_framing import MAX_SEQ
from protocol.kme.control.common import ControlResult
from protocol.kme.control.schema import (
    ControlMessage,
    ControlRecord,
    EnumOf,
    Field,
    Int,
    ListOf,
    RecordOf,
    register_message,
    register_record,
)
from protocol.kme.records import StreamId

_SEQ = Int(0, MAX_SEQ)
_COUNT = Int(0, MAX_SEQ)


@register_record
@dataclass(frozen=True, slots=True)
class StreamStatus(ControlRecord):
    """One stream on the band: its live range ``first_seq .. next_seq - 1`` and drops.

    ``dropped`` counts records lost to a full flash before anyone fetched them.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "stream", EnumOf(StreamId)),
        Field(1, "first_seq", _SEQ, doc="oldest live record (== next_seq when empty)"),
        Field(2, "next_seq", _SEQ, doc="sequence number the next record will get"),
        Field(3, "dropped", _COUNT, doc="records dropped by a full flash, ever"),
    )
    stream: StreamId
    first_seq: int
    next_seq: int
    dropped: int


@register_message
@dataclass(frozen=True, slots=True)
class ListStreams(ControlMessage):
    """Record Sync Control Point: ask for every stream's status; answered by StreamList."""

    MESSAGE_TYPE: ClassVar[int] = 0x10
    SERVICE: ClassVar[str] = "record_sync"
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class StreamList(ControlMessage):
    """Every stream's status (also the value of the Record Sync Status characteristic)."""

    MESSAGE_TYPE: ClassVar[int] = 0x11
    SERVICE: ClassVar[str] = "record_sync"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "streams", ListOf(RecordOf(StreamStatus), 15)),)
    streams: tuple[StreamStatus, ...]


@register_message
@dataclass(frozen=True, slots=True)
class StartTransfer(ControlMessage):
    """Record Sync Control Point: send ``stream`` from ``from_seq`` (at most ``max_records``).

    Answered by ControlResult (OK, BUSY while another transfer runs, INVALID_REQUEST when
    ``from_seq`` is beyond the stream's next sequence number); then the chunks follow,
    and TransferEnd after the last one. Records before the band's ``first_seq`` are gone:
    the first chunk (START flag) then begins later, and the client reports the gap.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x12
    SERVICE: ClassVar[str] = "record_sync"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "stream", EnumOf(StreamId)),
        Field(3, "from_seq", _SEQ),
        Field(4, "max_records", Int(1, MAX_SEQ), required=False),
    )
    stream: StreamId
    from_seq: int
    max_records: int | None = None


@register_message
@dataclass(frozen=True, slots=True)
class TransferEnd(ControlMessage):
    """Indicated by the band after a transfer's last chunk (the one with the END flag).

    ``count`` records were sent, the last with ``last_seq`` (absent when none were).
    """

    MESSAGE_TYPE: ClassVar[int] = 0x13
    SERVICE: ClassVar[str] = "record_sync"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "stream", EnumOf(StreamId)),
        Field(3, "count", _COUNT),
        Field(4, "last_seq", _SEQ, required=False),
    )
    stream: StreamId
    count: int
    last_seq: int | None = None


@register_message
@dataclass(frozen=True, slots=True)
class AckRecords(ControlMessage):
    """Record Sync Control Point: the client has durably stored ``stream`` up to ``up_to_seq``.

    The band may free every record of the stream up to and including it. Answered by
    ControlResult (INVALID_REQUEST for a sequence number the band never sent).
    """

    MESSAGE_TYPE: ClassVar[int] = 0x14
    SERVICE: ClassVar[str] = "record_sync"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "stream", EnumOf(StreamId)),
        Field(3, "up_to_seq", _SEQ),
    )
    stream: StreamId
    up_to_seq: int


@register_message
@dataclass(frozen=True, slots=True)
class AbortTransfer(ControlMessage):
    """Record Sync Control Point: stop sending ``stream``; answered by ControlResult OK.

    No TransferEnd follows; chunks already on their way may still arrive.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x15
    SERVICE: ClassVar[str] = "record_sync"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "stream", EnumOf(StreamId)),)
    stream: StreamId


#: The messages a band accepts on the Record Sync Control Point.
CONTROL_POINT_REQUESTS: Final = (ListStreams, StartTransfer, AckRecords, AbortTransfer)
#: The messages a client receives by indication on the Record Sync Control Point.
CONTROL_POINT_INDICATIONS: Final = (ControlResult, StreamList, TransferEnd)


__all__ = [
    "CONTROL_POINT_INDICATIONS",
    "CONTROL_POINT_REQUESTS",
    "AbortTransfer",
    "AckRecords",
    "ListStreams",
    "StartTransfer",
    "StreamList",
    "StreamStatus",
    "TransferEnd",
]
