"""btsnoop capture files (the format of Android's HCI snoop log), written and read as bytes.

A file is a 16-octet header ("btsnoop\\0", version 1, datalink 1002 = HCI UART/H4) and
records; each record has original and included lengths, flags (bit 0: received, bit 1:
command/event rather than data), the cumulative drop count, a timestamp in microseconds
since midnight, 1 January of year 0 (:data:`BTSNOOP_EPOCH_OFFSET_US` before the Unix epoch),
then the H4 packet. All header integers are big-endian.

ATT and SMP PDUs are framed as the host controller interface carries them: an H4 ACL data
packet (type 0x02; connection handle, packet boundary and broadcast flags; length) around
an L2CAP basic frame (length, channel id: 0x0004 ATT, 0x0006 SMP). LE Connection Complete,
Encryption Change and Disconnection Complete events let Wireshark show the link itself.

Everything here returns bytes; :class:`BtsnoopWriter` only writes to a binary stream it is
handed (it never opens a file) and takes every timestamp from its caller.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Protocol

from protocol.errors import KmebandError, UsageError

BTSNOOP_MAGIC = b"btsnoop\x00"
BTSNOOP_VERSION = 1
DATALINK_H4 = 1002
#: Microseconds from 0000-01-01T00:00 to the Unix epoch, as btsnoop counts time.
BTSNOOP_EPOCH_OFFSET_US = 0x00DCDDB30F2F8000

ATT_CID = 0x0004
SMP_CID = 0x0006

H4_COMMAND = 0x01
H4_ACL_DATA = 0x02
H4_EVENT = 0x04

#: ACL packet boundary flag: first automatically flushable packet of an L2CAP frame.
PB_FIRST_FLUSHABLE = 0b10
MAX_CONNECTION_HANDLE = 0x0EFF

_FILE_HEADER = struct.Struct(">8sII")
_RECORD_HEADER = struct.Struct(">IIIIq")

_FLAG_RECEIVED = 0x01
_FLAG_COMMAND_OR_EVENT = 0x02


class BtsnoopFormatError(KmebandError):
    """Bytes that are not a btsnoop capture this module can read."""


class Direction(enum.IntEnum):
    """Which way a packet went, seen from the host whose HCI is captured."""

    SENT = 0
    RECEIVED = 1


class Role(enum.IntEnum):
    """The capturing host's role on an LE connection."""

    CENTRAL = 0
    PERIPHERAL = 1


@dataclass(frozen=True)
class BtsnoopRecord:
    """One captured packet: the H4 bytes (type octet first) and how it was seen."""

    timestamp_us: int
    data: bytes
    direction: Direction
    command_or_event: bool = False
    original_length: int | None = None
    cumulative_drops: int = 0

    def __post_init__(self) -> None:
        if self.original_length is None:
            object.__setattr__(self, "original_length", len(self.data))

    def encode(self) -> bytes:
        original = len(self.data) if self.original_length is None else self.original_length
        if not len(self.data) <= original <= 0xFFFFFFFF:
            raise UsageError("original_length must be at least the captured length (32 bits)")
        if not 0 <= self.cumulative_drops <= 0xFFFFFFFF:
            raise UsageError("cumulative_drops is a 32-bit count")
        stamp = self.timestamp_us + BTSNOOP_EPOCH_OFFSET_US
        if not 0 <= stamp < 1 << 63:
            raise UsageError("the timestamp is outside what btsnoop can store")
        flags = int(self.direction) | (_FLAG_COMMAND_OR_EVENT if self.command_or_event else 0)
        header = _RECORD_HEADER.pack(
            original,
            len(self.data),
            flags,
            self.cumulative_drops,
            stamp,
        )
        return header + self.data


def file_header() -> bytes:
    """The 16-octet header that starts every capture (H4 datalink)."""
    return _FILE_HEADER.pack(BTSNOOP_MAGIC, BTSNOOP_VERSION, DATALINK_H4)


def timestamp_us(seconds: float) -> int:
    """Unix time in seconds (as a Clock gives it) to whole microseconds."""
    return round(seconds * 1_000_000)


def _check_connection_handle(handle: int) -> None:
    if not 0 <= handle <= MAX_CONNECTION_HANDLE:
        raise UsageError("a connection handle is 0x0000..0x0EFF")


def acl_packet(
    handle: int, cid: int, payload: bytes, *, pb_flag: int = PB_FIRST_FLUSHABLE
) -> bytes:
    """An H4 ACL data packet holding one whole L2CAP basic frame on channel ``cid``."""
    _check_connection_handle(handle)
    if not 0 <= pb_flag <= 0b11 or not 0 <= cid <= 0xFFFF:
        raise UsageError("pb_flag is two bits and the channel id 16 bits")
    l2cap = struct.pack("<HH", len(payload), cid) + payload
    if len(l2cap) > 0xFFFF:
        raise UsageError("an ACL packet carries at most 65535 octets")
    return struct.pack("<BHH", H4_ACL_DATA, handle | (pb_flag << 12), len(l2cap)) + l2cap


def parse_acl_packet(data: bytes) -> tuple[int, int, bytes]:
    """(connection handle, channel id, payload) of an H4 ACL packet from :func:`acl_packet`."""
    if len(data) < 9 or data[0] != H4_ACL_DATA:
        raise BtsnoopFormatError("not an H4 ACL data packet with an L2CAP header")
    handle_flags, acl_length, l2cap_length, cid = struct.unpack_from("<HHHH", data, 1)
    if acl_length != len(data) - 5 or l2cap_length != acl_length - 4:
        raise BtsnoopFormatError("ACL or L2CAP length does not match the packet")
    return handle_flags & 0x0FFF, cid, data[9:]


def _event(code: int, parameters: bytes) -> bytes:
    return bytes([H4_EVENT, code, len(parameters)]) + parameters


def le_connection_complete_event(
    handle: int,
    role: Role,
    peer_address: bytes,
    *,
    peer_random: bool = False,
    interval_units: int = 24,
    latency: int = 0,
    supervision_timeout_units: int = 72,
) -> bytes:
    """HCI LE Connection Complete (LE Meta event 0x3E, subevent 0x01) with status success.

    ``peer_address`` is six octets written MSB first; intervals are in the HCI's units
    (1.25 ms for the connection interval, 10 ms for the supervision timeout).
    """
    _check_connection_handle(handle)
    if len(peer_address) != 6:
        raise UsageError("the peer address is six octets")
    parameters = struct.pack(
        "<BBHBB6sHHHB",
        0x01,  # subevent: LE Connection Complete
        0x00,  # status: success
        handle,
        role,
        1 if peer_random else 0,
        peer_address[::-1],
        interval_units,
        latency,
        supervision_timeout_units,
        0x00,  # central clock accuracy: 500 ppm
    )
    return _event(0x3E, parameters)


def encryption_change_event(handle: int, *, enabled: bool = True) -> bytes:
    """HCI Encryption Change (0x08): the link is now encrypted (AES-CCM on LE)."""
    _check_connection_handle(handle)
    return _event(0x08, struct.pack("<BHB", 0x00, handle, 1 if enabled else 0))


def disconnection_complete_event(handle: int, reason: int) -> bytes:
    """HCI Disconnection Complete (0x05) with the HCI error code ``reason`` (e.g. 0x13)."""
    _check_connection_handle(handle)
    if not 0 <= reason <= 0xFF:
        raise UsageError("the disconnection reason is one octet")
    return _event(0x05, struct.pack("<BHB", 0x00, handle, reason))


class BinarySink(Protocol):
    """Anything with ``write(bytes)``: an open binary file, a BytesIO."""

    def write(self, data: bytes, /) -> object: ...


class BtsnoopWriter:
    """Appends a capture to a binary stream the caller opened; writes the header first.

    Every method takes the packet's Unix time in microseconds (see :func:`timestamp_us`).
    """

    def __init__(self, sink: BinarySink) -> None:
        self._sink = sink
        self._drops = 0
        sink.write(file_header())

    def record_drops(self, count: int) -> None:
        """``count`` packets were lost before the next record (kept cumulatively)."""
        if count < 0:
            raise UsageError("a drop count cannot be negative")
        self._drops += count

    def write_packet(
        self, time_us: int, data: bytes, direction: Direction, *, command_or_event: bool
    ) -> None:
        record = BtsnoopRecord(
            time_us, data, direction, command_or_event, cumulative_drops=self._drops
        )
        self._sink.write(record.encode())

    def att(self, time_us: int, handle: int, pdu: bytes, direction: Direction) -> None:
        """One ATT PDU on the LE link ``handle``."""
        self.write_packet(
            time_us, acl_packet(handle, ATT_CID, pdu), direction, command_or_event=False
        )

    def smp(self, time_us: int, handle: int, pdu: bytes, direction: Direction) -> None:
        """One SMP PDU on the LE link ``handle``."""
        self.write_packet(
            time_us, acl_packet(handle, SMP_CID, pdu), direction, command_or_event=False
        )

    def connected(
        self,
        time_us: int,
        handle: int,
        role: Role,
        peer_address: bytes,
        *,
        peer_random: bool = False,
    ) -> None:
        """The link came up (LE Connection Complete)."""
        event = le_connection_complete_event(handle, role, peer_address, peer_random=peer_random)
        self.write_packet(time_us, event, Direction.RECEIVED, command_or_event=True)

    def encrypted(self, time_us: int, handle: int) -> None:
        """The link is now encrypted (Encryption Change)."""
        event = encryption_change_event(handle)
        self.write_packet(time_us, event, Direction.RECEIVED, command_or_event=True)

    def disconnected(self, time_us: int, handle: int, reason: int) -> None:
        """The link went down (Disconnection Complete with an HCI reason code)."""
        event = disconnection_complete_event(handle, reason)
        self.write_packet(time_us, event, Direction.RECEIVED, command_or_event=True)


def read_btsnoop(data: bytes, *, allow_truncated_tail: bool = False) -> list[BtsnoopRecord]:
    """Every record of a capture; raises :class:`BtsnoopFormatError` for anything else.

    A capture cut off by a crash ends in a partial record: ``allow_truncated_tail`` drops
    it instead of raising.
    """
    if len(data) < _FILE_HEADER.size:
        raise BtsnoopFormatError("too short for a btsnoop header: is this a btsnoop capture?")
    magic, version, datalink = _FILE_HEADER.unpack_from(data)
    if magic != BTSNOOP_MAGIC or version != BTSNOOP_VERSION:
        raise BtsnoopFormatError("not a btsnoop version 1 capture")
    if datalink != DATALINK_H4:
        raise BtsnoopFormatError("only HCI UART (H4, datalink 1002) captures are supported")
    records: list[BtsnoopRecord] = []
    offset = _FILE_HEADER.size
    while offset < len(data):
        if offset + _RECORD_HEADER.size > len(data):
            if allow_truncated_tail:
                break
            raise BtsnoopFormatError("the capture ends inside a record header")
        original, included, flags, drops, stamp = _RECORD_HEADER.unpack_from(data, offset)
        start = offset + _RECORD_HEADER.size
        if start + included > len(data):
            if allow_truncated_tail:
                break
            raise BtsnoopFormatError("the capture ends inside a record")
        if included > original or flags & ~0x03:
            raise BtsnoopFormatError("a record header is inconsistent")
        records.append(
            BtsnoopRecord(
                timestamp_us=stamp - BTSNOOP_EPOCH_OFFSET_US,
                data=data[start : start + included],
                direction=Direction(flags & _FLAG_RECEIVED),
                command_or_event=bool(flags & _FLAG_COMMAND_OR_EVENT),
                original_length=original,
                cumulative_drops=drops,
            )
        )
        offset = start + included
    return records
