"""ATT PDUs: the Attribute Protocol's wire format (Core Specification Vol 3, Part F).

Every PDU GATT needs is a slots dataclass with an ``encode()`` method, and
:func:`decode_pdu` turns any bytes into one of them. :data:`PDU_REGISTRY` is the one table
of what each :class:`AttOpcode` is (its role, its dataclass, its decoder, a request's
response): each class's ``OPCODE``, the decoder table, :data:`REQUEST_OPCODES`,
:data:`RESPONSE_OPCODE` and the GATT server's dispatch are derived from it.

Decoding never raises anything but :class:`AttDecodeError`, which carries the error code
and handle a server answers with (Invalid PDU for malformed bytes, Request Not Supported
for an unknown request opcode, Invalid Handle for an empty or reversed handle range), so a
server can turn any decode failure straight into an Error Response.

All multi-octet fields are little-endian. UUIDs are :class:`uuid.UUID` values; on the wire
a SIG alias travels as 2 octets and anything else as 16 (see :mod:`protocol.ble.uuids`).

The hot paths (notifications, Read Request/Response) also have plain functions,
:func:`encode_notification` and :func:`decode_notification`, that skip the dataclasses.
"""

from __future__ import annotations

import enum
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from protocol.ble.uuids import alias16, uuid16, uuid_to_att
from protocol.errors import KmebandError, UsageError

#: The ATT_MTU every LE link starts with (Vol 3 Part F 3.2.8).
DEFAULT_MTU = 23
#: The largest ATT_MTU a peer may announce.
MAX_MTU = 0xFFFF
#: The longest attribute value ATT allows (Vol 3 Part F 3.2.9).
MAX_ATTRIBUTE_LENGTH = 512
#: Handles are 16-bit and 0x0000 is reserved.
MIN_HANDLE = 0x0001
MAX_HANDLE = 0xFFFF

#: Application error codes a profile or application may define (Vol 3 Part F 3.4.1.1).
APPLICATION_ERROR_FIRST = 0x80
APPLICATION_ERROR_LAST = 0x9F

#: The Command Flag (bit 6) marks PDUs that expect no response.
COMMAND_FLAG = 0x40


class AttOpcode(enum.IntEnum):
    """ATT PDU opcodes (Vol 3 Part F 3.4.8)."""

    ERROR_RSP = 0x01
    EXCHANGE_MTU_REQ = 0x02
    EXCHANGE_MTU_RSP = 0x03
    FIND_INFORMATION_REQ = 0x04
    FIND_INFORMATION_RSP = 0x05
    FIND_BY_TYPE_VALUE_REQ = 0x06
    FIND_BY_TYPE_VALUE_RSP = 0x07
    READ_BY_TYPE_REQ = 0x08
    READ_BY_TYPE_RSP = 0x09
    READ_REQ = 0x0A
    READ_RSP = 0x0B
    READ_BLOB_REQ = 0x0C
    READ_BLOB_RSP = 0x0D
    READ_MULTIPLE_REQ = 0x0E
    READ_MULTIPLE_RSP = 0x0F
    READ_BY_GROUP_TYPE_REQ = 0x10
    READ_BY_GROUP_TYPE_RSP = 0x11
    WRITE_REQ = 0x12
    WRITE_RSP = 0x13
    PREPARE_WRITE_REQ = 0x16
    PREPARE_WRITE_RSP = 0x17
    EXECUTE_WRITE_REQ = 0x18
    EXECUTE_WRITE_RSP = 0x19
    READ_MULTIPLE_VARIABLE_REQ = 0x20
    READ_MULTIPLE_VARIABLE_RSP = 0x21
    MULTIPLE_HANDLE_VALUE_NTF = 0x23
    HANDLE_VALUE_NTF = 0x1B
    HANDLE_VALUE_IND = 0x1D
    HANDLE_VALUE_CFM = 0x1E
    WRITE_CMD = 0x52
    SIGNED_WRITE_CMD = 0xD2


class AttErrorCode(enum.IntEnum):
    """ATT error codes (Vol 3 Part F 3.4.1.1) and the common profile codes (CSS Part B 1.2).

    0x14..0x7F and 0xA0..0xDF are reserved; 0x80..0x9F are application errors
    (:data:`APPLICATION_ERROR_FIRST`.. :data:`APPLICATION_ERROR_LAST`), which a firmware
    defines for itself and which travel as plain ints.
    """

    INVALID_HANDLE = 0x01
    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    INVALID_PDU = 0x04
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    INVALID_OFFSET = 0x07
    INSUFFICIENT_AUTHORIZATION = 0x08
    PREPARE_QUEUE_FULL = 0x09
    ATTRIBUTE_NOT_FOUND = 0x0A
    ATTRIBUTE_NOT_LONG = 0x0B
    ENCRYPTION_KEY_SIZE_TOO_SHORT = 0x0C
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D
    UNLIKELY_ERROR = 0x0E
    INSUFFICIENT_ENCRYPTION = 0x0F
    UNSUPPORTED_GROUP_TYPE = 0x10
    INSUFFICIENT_RESOURCES = 0x11
    DATABASE_OUT_OF_SYNC = 0x12
    VALUE_NOT_ALLOWED = 0x13
    # Common Profile and Service Error Codes (Core Specification Supplement, Part B).
    WRITE_REQUEST_REJECTED = 0xFC
    CCCD_IMPROPERLY_CONFIGURED = 0xFD
    PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
    OUT_OF_RANGE = 0xFF


def error_name(code: int) -> str:
    """A readable name for any ATT error code, e.g. ``INSUFFICIENT_ENCRYPTION (0x0F)``."""
    try:
        name = AttErrorCode(code).name
    except ValueError:
        if APPLICATION_ERROR_FIRST <= code <= APPLICATION_ERROR_LAST:
            name = "APPLICATION_ERROR"
        else:
            name = "RESERVED"
    return f"{name} (0x{code:02X})"


class AttDecodeError(KmebandError):
    """Bytes that are not a valid ATT PDU.

    ``error_code`` and ``handle`` are what a server puts in its Error Response;
    ``request_opcode`` is the opcode of the offending PDU (0 when the PDU was empty).
    """

    def __init__(self, error_code: AttErrorCode, request_opcode: int, handle: int, why: str):
        self.error_code = error_code
        self.request_opcode = request_opcode
        self.handle = handle
        super().__init__(
            f"ATT PDU with opcode 0x{request_opcode:02X} rejected with {error_name(error_code)}: "
            f"{why}; the peer must send a well-formed PDU as Core Spec Vol 3 Part F defines it"
        )


class AttEncodeError(UsageError):
    """A PDU dataclass holds values that cannot be put on the wire."""


_U16 = struct.Struct("<H")
_OP_U16 = struct.Struct("<BH")
_OP_U16_U16 = struct.Struct("<BHH")
_OP_U8_U16_U8 = struct.Struct("<BBHB")
_U16_U16 = struct.Struct("<HH")
_pack_op_u16 = _OP_U16.pack
_pack_op_u16_u16 = _OP_U16_U16.pack
_unpack_u16_u16 = _U16_U16.unpack_from


def is_attribute_handle(handle: int) -> bool:
    """True for a handle an attribute can have: 0x0001..0xFFFF (0x0000 is reserved)."""
    return MIN_HANDLE <= handle <= MAX_HANDLE


def check_attribute_handle(handle: int) -> None:
    """Raise :class:`UsageError` unless ``handle`` is one an attribute can have."""
    if not is_attribute_handle(handle):
        raise UsageError(f"an attribute handle is 0x0001..0xFFFF, got {handle}")


def _check_handle_field(handle: int, what: str = "handle") -> None:
    # A handle *field* on the wire may hold 0x0000: an Error Response to a PDU without a
    # handle carries it, and a request's range is vetted by the receiver (Invalid Handle).
    if not 0 <= handle <= MAX_HANDLE:
        raise AttEncodeError(f"{what} must be 0x0000..0xFFFF, got {handle}")


def _check_u16(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFF:
        raise AttEncodeError(f"{what} must be 0..65535, got {value}")


# --------------------------------------------------------------------------------------
# PDU dataclasses. ``OPCODE`` is the class's opcode; ``encode()`` gives the wire bytes.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """ATT_ERROR_RSP: the request ``request_opcode`` on ``handle`` failed with ``error_code``."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    request_opcode: int
    handle: int
    error_code: int

    def encode(self) -> bytes:
        if not 0 <= self.request_opcode <= 0xFF or not 0 <= self.error_code <= 0xFF:
            raise AttEncodeError("request_opcode and error_code must each fit in one octet")
        _check_handle_field(self.handle)
        return _OP_U8_U16_U8.pack(self.OPCODE, self.request_opcode, self.handle, self.error_code)


@dataclass(frozen=True, slots=True)
class ExchangeMtuRequest:
    """ATT_EXCHANGE_MTU_REQ: the client's receive MTU."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    client_rx_mtu: int

    def encode(self) -> bytes:
        _check_u16(self.client_rx_mtu, "client_rx_mtu")
        return _pack_op_u16(self.OPCODE, self.client_rx_mtu)


@dataclass(frozen=True, slots=True)
class ExchangeMtuResponse:
    """ATT_EXCHANGE_MTU_RSP: the server's receive MTU."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    server_rx_mtu: int

    def encode(self) -> bytes:
        _check_u16(self.server_rx_mtu, "server_rx_mtu")
        return _pack_op_u16(self.OPCODE, self.server_rx_mtu)


@dataclass(frozen=True, slots=True)
class FindInformationRequest:
    """ATT_FIND_INFORMATION_REQ: list attribute handles and types in a handle range."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    start_handle: int
    end_handle: int

    def encode(self) -> bytes:
        _check_handle_field(self.start_handle, "start_handle")
        _check_handle_field(self.end_handle, "end_handle")
        return _pack_op_u16_u16(self.OPCODE, self.start_handle, self.end_handle)


@dataclass(frozen=True, slots=True)
class FindInformationResponse:
    """ATT_FIND_INFORMATION_RSP: ``(handle, type)`` pairs.

    On the wire all entries share one format: 16-bit UUIDs (format 0x01) when every type
    is a SIG alias, otherwise 128-bit UUIDs (format 0x02) for all of them.
    """

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    entries: tuple[tuple[int, uuid.UUID], ...]

    def encode(self) -> bytes:
        if not self.entries:
            raise AttEncodeError("a Find Information Response needs at least one entry")
        short = all(alias16(t) is not None for _, t in self.entries)
        parts = [self.OPCODE_OCTET, b"\x01" if short else b"\x02"]
        for handle, attr_type in self.entries:
            _check_handle_field(handle)
            parts.append(_U16.pack(handle))
            parts.append(uuid_to_att(attr_type) if short else attr_type.bytes[::-1])
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class FindByTypeValueRequest:
    """ATT_FIND_BY_TYPE_VALUE_REQ: attributes of a 16-bit type whose value equals ``value``."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    start_handle: int
    end_handle: int
    attribute_type: uuid.UUID
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.start_handle, "start_handle")
        _check_handle_field(self.end_handle, "end_handle")
        alias = alias16(self.attribute_type)
        if alias is None:
            raise AttEncodeError("Find By Type Value carries only 16-bit (SIG alias) types")
        return _OP_U16_U16.pack(self.OPCODE, self.start_handle, self.end_handle) + (
            _U16.pack(alias) + bytes(self.value)
        )


@dataclass(frozen=True, slots=True)
class FindByTypeValueResponse:
    """ATT_FIND_BY_TYPE_VALUE_RSP: ``(found handle, group end handle)`` pairs."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handles: tuple[tuple[int, int], ...]

    def encode(self) -> bytes:
        if not self.handles:
            raise AttEncodeError("a Find By Type Value Response needs at least one entry")
        parts = [self.OPCODE_OCTET]
        for found, end in self.handles:
            _check_handle_field(found)
            _check_handle_field(end)
            parts.append(_U16_U16.pack(found, end))
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ReadByTypeRequest:
    """ATT_READ_BY_TYPE_REQ: values of attributes of ``attribute_type`` in a handle range."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    start_handle: int
    end_handle: int
    attribute_type: uuid.UUID

    def encode(self) -> bytes:
        _check_handle_field(self.start_handle, "start_handle")
        _check_handle_field(self.end_handle, "end_handle")
        return _pack_op_u16_u16(self.OPCODE, self.start_handle, self.end_handle) + uuid_to_att(
            self.attribute_type
        )


def _encode_handle_values(opcode: bytes, rows: list[bytes]) -> bytes:
    if not rows:
        raise AttEncodeError("the response needs at least one attribute")
    length = len(rows[0])
    if length > 0xFF or any(len(r) != length for r in rows):
        raise AttEncodeError("every attribute in one response must have the same length (<=255)")
    return opcode + bytes((length,)) + b"".join(rows)


@dataclass(frozen=True, slots=True)
class ReadByTypeResponse:
    """ATT_READ_BY_TYPE_RSP: ``(handle, value)`` pairs, all values of the same length."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    attributes: tuple[tuple[int, bytes], ...]

    def encode(self) -> bytes:
        rows = []
        for handle, value in self.attributes:
            _check_handle_field(handle)
            rows.append(_U16.pack(handle) + bytes(value))
        return _encode_handle_values(self.OPCODE_OCTET, rows)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """ATT_READ_REQ: the value of one attribute."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        return _pack_op_u16(self.OPCODE, self.handle)


@dataclass(frozen=True, slots=True)
class ReadResponse:
    """ATT_READ_RSP: the value (or its first ATT_MTU-1 octets)."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    value: bytes

    def encode(self) -> bytes:
        return self.OPCODE_OCTET + self.value


@dataclass(frozen=True, slots=True)
class ReadBlobRequest:
    """ATT_READ_BLOB_REQ: part of a long value, from ``offset``."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    offset: int

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        _check_u16(self.offset, "offset")
        return _pack_op_u16_u16(self.OPCODE, self.handle, self.offset)


@dataclass(frozen=True, slots=True)
class ReadBlobResponse:
    """ATT_READ_BLOB_RSP: a part of a long value."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    value: bytes

    def encode(self) -> bytes:
        return self.OPCODE_OCTET + self.value


@dataclass(frozen=True, slots=True)
class ReadMultipleRequest:
    """ATT_READ_MULTIPLE_REQ: the values of two or more attributes, concatenated."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handles: tuple[int, ...]

    def encode(self) -> bytes:
        if len(self.handles) < 2:
            raise AttEncodeError("Read Multiple needs at least two handles")
        for handle in self.handles:
            _check_handle_field(handle)
        return self.OPCODE_OCTET + struct.pack(f"<{len(self.handles)}H", *self.handles)


@dataclass(frozen=True, slots=True)
class ReadMultipleResponse:
    """ATT_READ_MULTIPLE_RSP: the requested values, concatenated without lengths."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    values: bytes

    def encode(self) -> bytes:
        return self.OPCODE_OCTET + self.values


@dataclass(frozen=True, slots=True)
class ReadByGroupTypeRequest:
    """ATT_READ_BY_GROUP_TYPE_REQ: grouping attributes (services) in a handle range."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    start_handle: int
    end_handle: int
    group_type: uuid.UUID

    def encode(self) -> bytes:
        _check_handle_field(self.start_handle, "start_handle")
        _check_handle_field(self.end_handle, "end_handle")
        return _pack_op_u16_u16(self.OPCODE, self.start_handle, self.end_handle) + uuid_to_att(
            self.group_type
        )


@dataclass(frozen=True, slots=True)
class ReadByGroupTypeResponse:
    """ATT_READ_BY_GROUP_TYPE_RSP: ``(handle, end group handle, value)``, same-length values."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    groups: tuple[tuple[int, int, bytes], ...]

    def encode(self) -> bytes:
        rows = []
        for handle, end, value in self.groups:
            _check_handle_field(handle)
            _check_handle_field(end)
            rows.append(_U16_U16.pack(handle, end) + bytes(value))
        return _encode_handle_values(self.OPCODE_OCTET, rows)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """ATT_WRITE_REQ: write a value and expect a Write Response."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        return _pack_op_u16(self.OPCODE, self.handle) + self.value


@dataclass(frozen=True, slots=True)
class WriteResponse:
    """ATT_WRITE_RSP: the write succeeded."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]

    def encode(self) -> bytes:
        return self.OPCODE_OCTET


@dataclass(frozen=True, slots=True)
class WriteCommand:
    """ATT_WRITE_CMD: write a value with no response (errors are silently dropped)."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        return _pack_op_u16(self.OPCODE, self.handle) + self.value


@dataclass(frozen=True, slots=True)
class PrepareWriteRequest:
    """ATT_PREPARE_WRITE_REQ: queue part of a long or reliable write."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    offset: int
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        _check_u16(self.offset, "offset")
        return _pack_op_u16_u16(self.OPCODE, self.handle, self.offset) + self.value


@dataclass(frozen=True, slots=True)
class PrepareWriteResponse:
    """ATT_PREPARE_WRITE_RSP: echoes the queued part, so the client can verify it."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    offset: int
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        _check_u16(self.offset, "offset")
        return _pack_op_u16_u16(self.OPCODE, self.handle, self.offset) + self.value


class ExecuteWriteFlags(enum.IntEnum):
    """The flags of ATT_EXECUTE_WRITE_REQ."""

    CANCEL = 0x00
    WRITE = 0x01


@dataclass(frozen=True, slots=True)
class ExecuteWriteRequest:
    """ATT_EXECUTE_WRITE_REQ: write (``commit=True``) or discard all prepared values."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    commit: bool

    def encode(self) -> bytes:
        return self.OPCODE_OCTET + (b"\x01" if self.commit else b"\x00")


@dataclass(frozen=True, slots=True)
class ExecuteWriteResponse:
    """ATT_EXECUTE_WRITE_RSP: the queue was written or discarded."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]

    def encode(self) -> bytes:
        return self.OPCODE_OCTET


@dataclass(frozen=True, slots=True)
class HandleValueNotification:
    """ATT_HANDLE_VALUE_NTF: a value pushed by the server, unacknowledged."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        return _pack_op_u16(self.OPCODE, self.handle) + self.value


@dataclass(frozen=True, slots=True)
class HandleValueIndication:
    """ATT_HANDLE_VALUE_IND: a value pushed by the server; the client must confirm it."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]
    handle: int
    value: bytes

    def encode(self) -> bytes:
        _check_handle_field(self.handle)
        return _pack_op_u16(self.OPCODE, self.handle) + self.value


@dataclass(frozen=True, slots=True)
class HandleValueConfirmation:
    """ATT_HANDLE_VALUE_CFM: the client received the indication."""

    OPCODE: ClassVar[AttOpcode]
    OPCODE_OCTET: ClassVar[bytes]

    def encode(self) -> bytes:
        return self.OPCODE_OCTET


AttPdu = (
    ErrorResponse
    | ExchangeMtuRequest
    | ExchangeMtuResponse
    | FindInformationRequest
    | FindInformationResponse
    | FindByTypeValueRequest
    | FindByTypeValueResponse
    | ReadByTypeRequest
    | ReadByTypeResponse
    | ReadRequest
    | ReadResponse
    | ReadBlobRequest
    | ReadBlobResponse
    | ReadMultipleRequest
    | ReadMultipleResponse
    | ReadByGroupTypeRequest
    | ReadByGroupTypeResponse
    | WriteRequest
    | WriteResponse
    | WriteCommand
    | PrepareWriteRequest
    | PrepareWriteResponse
    | ExecuteWriteRequest
    | ExecuteWriteResponse
    | HandleValueNotification
    | HandleValueIndication
    | HandleValueConfirmation
)


def is_command(opcode: int) -> bool:
    """True for PDUs with the Command Flag set: a server ignores those it does not support."""
    return bool(opcode & COMMAND_FLAG)


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def _invalid(data: bytes, why: str) -> AttDecodeError:
    return AttDecodeError(AttErrorCode.INVALID_PDU, data[0], 0x0000, why)


def _need(data: bytes, exact: int | None = None, minimum: int | None = None) -> None:
    n = len(data)
    if exact is not None and n != exact:
        raise _invalid(data, f"expected {exact} octets, got {n}")
    if minimum is not None and n < minimum:
        raise _invalid(data, f"expected at least {minimum} octets, got {n}")


def _handle_range(data: bytes) -> tuple[int, int]:
    start, end = _unpack_u16_u16(data, 1)
    if start == 0 or start > end:
        # Vol 3 Part F 3.4.3.1 and siblings: a reversed or zero range is Invalid Handle.
        raise AttDecodeError(
            AttErrorCode.INVALID_HANDLE, data[0], start, "the handle range is empty or starts at 0"
        )
    return start, end


def _uuid_field(data: bytes, raw: bytes) -> uuid.UUID:
    if len(raw) == 2:
        return uuid16(raw[0] | raw[1] << 8)
    if len(raw) == 16:
        return uuid.UUID(bytes=raw[::-1])
    raise _invalid(data, "an attribute type must be a 2- or 16-octet UUID")


def _dec_error_rsp(data: bytes) -> AttPdu:
    _need(data, exact=5)
    _, req, handle, code = _OP_U8_U16_U8.unpack(data)
    return ErrorResponse(req, handle, code)


def _dec_mtu_req(data: bytes) -> AttPdu:
    _need(data, exact=3)
    return ExchangeMtuRequest(data[1] | data[2] << 8)


def _dec_mtu_rsp(data: bytes) -> AttPdu:
    _need(data, exact=3)
    return ExchangeMtuResponse(data[1] | data[2] << 8)


def _dec_find_info_req(data: bytes) -> AttPdu:
    _need(data, exact=5)
    return FindInformationRequest(*_handle_range(data))


def _dec_find_info_rsp(data: bytes) -> AttPdu:
    _need(data, minimum=2)
    fmt = data[1]
    if fmt == 0x01:
        size = 4
    elif fmt == 0x02:
        size = 18
    else:
        raise _invalid(data, f"unknown Find Information format 0x{fmt:02X}")
    body = data[2:]
    if not body or len(body) % size:
        raise _invalid(data, "the information data is not a whole number of entries")
    entries = []
    for i in range(0, len(body), size):
        handle = body[i] | body[i + 1] << 8
        entries.append((handle, _uuid_field(data, body[i + 2 : i + size])))
    return FindInformationResponse(tuple(entries))


def _dec_find_by_type_req(data: bytes) -> AttPdu:
    _need(data, minimum=7)
    start, end = _handle_range(data)
    return FindByTypeValueRequest(start, end, uuid16(data[5] | data[6] << 8), data[7:])


def _dec_find_by_type_rsp(data: bytes) -> AttPdu:
    body = data[1:]
    if not body or len(body) % 4:
        raise _invalid(data, "the handles information list is not a whole number of entries")
    return FindByTypeValueResponse(tuple(_U16_U16.iter_unpack(body)))


def _dec_typed_range(data: bytes) -> tuple[int, int, uuid.UUID]:
    if len(data) not in (7, 21):
        raise _invalid(data, f"expected 7 or 21 octets, got {len(data)}")
    start, end = _handle_range(data)
    return start, end, _uuid_field(data, data[5:])


def _dec_read_by_type_req(data: bytes) -> AttPdu:
    return ReadByTypeRequest(*_dec_typed_range(data))


def _split_rows(data: bytes, header: int) -> list[bytes]:
    _need(data, minimum=2)
    length = data[1]
    body = data[2:]
    if length < header or not body or len(body) % length:
        raise _invalid(data, "the attribute data list is not a whole number of entries")
    return [body[i : i + length] for i in range(0, len(body), length)]


def _dec_read_by_type_rsp(data: bytes) -> AttPdu:
    rows = _split_rows(data, 2)
    return ReadByTypeResponse(tuple((r[0] | r[1] << 8, r[2:]) for r in rows))


def _dec_read_req(data: bytes) -> AttPdu:
    _need(data, exact=3)
    return ReadRequest(data[1] | data[2] << 8)


def _dec_read_rsp(data: bytes) -> AttPdu:
    return ReadResponse(data[1:])


def _dec_read_blob_req(data: bytes) -> AttPdu:
    _need(data, exact=5)
    return ReadBlobRequest(*_unpack_u16_u16(data, 1))


def _dec_read_blob_rsp(data: bytes) -> AttPdu:
    return ReadBlobResponse(data[1:])


def _dec_read_multiple_req(data: bytes) -> AttPdu:
    body = data[1:]
    if len(body) < 4 or len(body) % 2:
        raise _invalid(data, "Read Multiple needs two or more 2-octet handles")
    return ReadMultipleRequest(tuple(h for (h,) in _U16.iter_unpack(body)))


def _dec_read_multiple_rsp(data: bytes) -> AttPdu:
    return ReadMultipleResponse(data[1:])


def _dec_read_by_group_req(data: bytes) -> AttPdu:
    return ReadByGroupTypeRequest(*_dec_typed_range(data))


def _dec_read_by_group_rsp(data: bytes) -> AttPdu:
    rows = _split_rows(data, 4)
    return ReadByGroupTypeResponse(tuple((*_unpack_u16_u16(r, 0), r[4:]) for r in rows))


def _dec_write_req(data: bytes) -> AttPdu:
    _need(data, minimum=3)
    return WriteRequest(data[1] | data[2] << 8, data[3:])


def _dec_write_rsp(data: bytes) -> AttPdu:
    _need(data, exact=1)
    return WriteResponse()


def _dec_write_cmd(data: bytes) -> AttPdu:
    _need(data, minimum=3)
    return WriteCommand(data[1] | data[2] << 8, data[3:])


def _dec_prepare_req(data: bytes) -> AttPdu:
    _need(data, minimum=5)
    handle, offset = _unpack_u16_u16(data, 1)
    return PrepareWriteRequest(handle, offset, data[5:])


def _dec_prepare_rsp(data: bytes) -> AttPdu:
    _need(data, minimum=5)
    handle, offset = _unpack_u16_u16(data, 1)
    return PrepareWriteResponse(handle, offset, data[5:])


def _dec_execute_req(data: bytes) -> AttPdu:
    _need(data, exact=2)
    if data[1] > 0x01:
        raise _invalid(data, f"Execute Write flags must be 0x00 or 0x01, got 0x{data[1]:02X}")
    return ExecuteWriteRequest(data[1] == 0x01)


def _dec_execute_rsp(data: bytes) -> AttPdu:
    _need(data, exact=1)
    return ExecuteWriteResponse()


def _dec_notification(data: bytes) -> AttPdu:
    _need(data, minimum=3)
    return HandleValueNotification(data[1] | data[2] << 8, data[3:])


def _dec_indication(data: bytes) -> AttPdu:
    _need(data, minimum=3)
    return HandleValueIndication(data[1] | data[2] << 8, data[3:])


def _dec_confirmation(data: bytes) -> AttPdu:
    _need(data, exact=1)
    return HandleValueConfirmation()


# --------------------------------------------------------------------------------------
# The PDU registry: the one table of what each opcode is. Encoding (each class's OPCODE),
# decoding and the servers' and clients' dispatch are all derived from it.
# --------------------------------------------------------------------------------------


class PduRole(enum.Enum):
    """Who sends a PDU and what its receiver owes it (Vol 3 Part F 3.3 and 3.4.9)."""

    REQUEST = "request"  # client to server; answered by its response or an Error Response
    RESPONSE = "response"  # server to client, answering a request
    COMMAND = "command"  # client to server; never answered
    NOTIFICATION = "notification"  # server to client; unacknowledged
    INDICATION = "indication"  # server to client; the client confirms it
    CONFIRMATION = "confirmation"  # client to server, confirming an indication

    @property
    def from_client(self) -> bool:
        """True for the PDUs a client sends (so a server receives them)."""
        return self in _CLIENT_ROLES


_CLIENT_ROLES = frozenset({PduRole.REQUEST, PduRole.COMMAND, PduRole.CONFIRMATION})


@dataclass(frozen=True, slots=True)
class PduSpec:
    """One row of :data:`PDU_REGISTRY`: an opcode, its role, and its codec.

    ``pdu_type`` and ``decode`` are None for opcodes the Core Specification defines but
    this module does not implement: decoding them raises Request Not Supported.
    ``response`` is the opcode that answers a request.
    """

    opcode: AttOpcode
    role: PduRole
    pdu_type: type[AttPdu] | None = None
    decode: Callable[[bytes], AttPdu] | None = None
    response: AttOpcode | None = None

    @property
    def supported(self) -> bool:
        """True when this module encodes and decodes the PDU."""
        return self.decode is not None


_Op = AttOpcode
_Role = PduRole

#: Every ATT opcode, keyed by :class:`AttOpcode`.
PDU_REGISTRY: Mapping[AttOpcode, PduSpec] = MappingProxyType(
    {
        spec.opcode: spec
        for spec in (
            PduSpec(_Op.ERROR_RSP, _Role.RESPONSE, ErrorResponse, _dec_error_rsp),
            PduSpec(
                _Op.EXCHANGE_MTU_REQ,
                _Role.REQUEST,
                ExchangeMtuRequest,
                _dec_mtu_req,
                _Op.EXCHANGE_MTU_RSP,
            ),
            PduSpec(_Op.EXCHANGE_MTU_RSP, _Role.RESPONSE, ExchangeMtuResponse, _dec_mtu_rsp),
            PduSpec(
                _Op.FIND_INFORMATION_REQ,
                _Role.REQUEST,
                FindInformationRequest,
                _dec_find_info_req,
                _Op.FIND_INFORMATION_RSP,
            ),
            PduSpec(
                _Op.FIND_INFORMATION_RSP,
                _Role.RESPONSE,
                FindInformationResponse,
                _dec_find_info_rsp,
            ),
            PduSpec(
                _Op.FIND_BY_TYPE_VALUE_REQ,
                _Role.REQUEST,
                FindByTypeValueRequest,
                _dec_find_by_type_req,
                _Op.FIND_BY_TYPE_VALUE_RSP,
            ),
            PduSpec(
                _Op.FIND_BY_TYPE_VALUE_RSP,
                _Role.RESPONSE,
                FindByTypeValueResponse,
                _dec_find_by_type_rsp,
            ),
            PduSpec(
                _Op.READ_BY_TYPE_REQ,
                _Role.REQUEST,
                ReadByTypeRequest,
                _dec_read_by_type_req,
                _Op.READ_BY_TYPE_RSP,
            ),
            PduSpec(
                _Op.READ_BY_TYPE_RSP, _Role.RESPONSE, ReadByTypeResponse, _dec_read_by_type_rsp
            ),
            PduSpec(_Op.READ_REQ, _Role.REQUEST, ReadRequest, _dec_read_req, _Op.READ_RSP),
            PduSpec(_Op.READ_RSP, _Role.RESPONSE, ReadResponse, _dec_read_rsp),
            PduSpec(
                _Op.READ_BLOB_REQ,
                _Role.REQUEST,
                ReadBlobRequest,
                _dec_read_blob_req,
                _Op.READ_BLOB_RSP,
            ),
            PduSpec(_Op.READ_BLOB_RSP, _Role.RESPONSE, ReadBlobResponse, _dec_read_blob_rsp),
            PduSpec(
                _Op.READ_MULTIPLE_REQ,
                _Role.REQUEST,
                ReadMultipleRequest,
                _dec_read_multiple_req,
                _Op.READ_MULTIPLE_RSP,
            ),
            PduSpec(
                _Op.READ_MULTIPLE_RSP,
                _Role.RESPONSE,
                ReadMultipleResponse,
                _dec_read_multiple_rsp,
            ),
            PduSpec(
                _Op.READ_BY_GROUP_TYPE_REQ,
                _Role.REQUEST,
                ReadByGroupTypeRequest,
                _dec_read_by_group_req,
                _Op.READ_BY_GROUP_TYPE_RSP,
            ),
            PduSpec(
                _Op.READ_BY_GROUP_TYPE_RSP,
                _Role.RESPONSE,
                ReadByGroupTypeResponse,
                _dec_read_by_group_rsp,
            ),
            PduSpec(_Op.WRITE_REQ, _Role.REQUEST, WriteRequest, _dec_write_req, _Op.WRITE_RSP),
            PduSpec(_Op.WRITE_RSP, _Role.RESPONSE, WriteResponse, _dec_write_rsp),
            PduSpec(
                _Op.PREPARE_WRITE_REQ,
                _Role.REQUEST,
                PrepareWriteRequest,
                _dec_prepare_req,
                _Op.PREPARE_WRITE_RSP,
            ),
            PduSpec(_Op.PREPARE_WRITE_RSP, _Role.RESPONSE, PrepareWriteResponse, _dec_prepare_rsp),
            PduSpec(
                _Op.EXECUTE_WRITE_REQ,
                _Role.REQUEST,
                ExecuteWriteRequest,
                _dec_execute_req,
                _Op.EXECUTE_WRITE_RSP,
            ),
            PduSpec(_Op.EXECUTE_WRITE_RSP, _Role.RESPONSE, ExecuteWriteResponse, _dec_execute_rsp),
            # Defined by Core Specification 5.2 (EATT era); not implemented here.
            PduSpec(
                _Op.READ_MULTIPLE_VARIABLE_REQ,
                _Role.REQUEST,
                response=_Op.READ_MULTIPLE_VARIABLE_RSP,
            ),
            PduSpec(_Op.READ_MULTIPLE_VARIABLE_RSP, _Role.RESPONSE),
            PduSpec(_Op.MULTIPLE_HANDLE_VALUE_NTF, _Role.NOTIFICATION),
            PduSpec(
                _Op.HANDLE_VALUE_NTF,
                _Role.NOTIFICATION,
                HandleValueNotification,
                _dec_notification,
            ),
            PduSpec(_Op.HANDLE_VALUE_IND, _Role.INDICATION, HandleValueIndication, _dec_indication),
            PduSpec(
                _Op.HANDLE_VALUE_CFM,
                _Role.CONFIRMATION,
                HandleValueConfirmation,
                _dec_confirmation,
            ),
            PduSpec(_Op.WRITE_CMD, _Role.COMMAND, WriteCommand, _dec_write_cmd),
            # Signed writes need a CSRK from bonding; kmeband encrypts the link instead.
            PduSpec(_Op.SIGNED_WRITE_CMD, _Role.COMMAND),
        )
    }
)


def _bind_opcodes() -> None:
    # Each PDU class learns its opcode from the registry, so encode() writes no literal.
    for spec in PDU_REGISTRY.values():
        if spec.pdu_type is not None:
            spec.pdu_type.OPCODE = spec.opcode
            spec.pdu_type.OPCODE_OCTET = bytes((spec.opcode,))


_bind_opcodes()

#: Opcodes of the PDUs a client sends and a server answers (requests).
REQUEST_OPCODES = frozenset(op for op, spec in PDU_REGISTRY.items() if spec.role is PduRole.REQUEST)

#: For each request opcode this module decodes, the opcode of its successful response.
RESPONSE_OPCODE: Mapping[AttOpcode, AttOpcode] = MappingProxyType(
    {
        op: spec.response
        for op, spec in PDU_REGISTRY.items()
        if spec.supported and spec.response is not None
    }
)

_DECODERS: dict[int, Callable[[bytes], AttPdu]] = {
    int(op): spec.decode for op, spec in PDU_REGISTRY.items() if spec.decode is not None
}


def decode_pdu(data: bytes) -> AttPdu:
    """Decode one ATT PDU.

    Raises :class:`AttDecodeError` (and nothing else) when ``data`` is not a PDU this module
    knows: Invalid PDU for malformed or empty bytes, Request Not Supported for an unknown
    opcode, Invalid Handle for a request whose handle range is empty or starts at 0x0000.
    """
    if not data:
        raise AttDecodeError(AttErrorCode.INVALID_PDU, 0x00, 0x0000, "the PDU is empty")
    data = bytes(data)
    decoder = _DECODERS.get(data[0])
    if decoder is None:
        raise AttDecodeError(
            AttErrorCode.REQUEST_NOT_SUPPORTED, data[0], 0x0000, "the opcode is not supported"
        )
    return decoder(data)


def encode_pdu(pdu: AttPdu) -> bytes:
    """The wire bytes of ``pdu`` (the same as ``pdu.encode()``)."""
    return pdu.encode()


# --------------------------------------------------------------------------------------
# Hot-path helpers: no dataclass on the way.
# --------------------------------------------------------------------------------------


_NTF = int(AttOpcode.HANDLE_VALUE_NTF)
_READ_REQ = int(AttOpcode.READ_REQ)


def encode_notification(handle: int, value: bytes) -> bytes:
    """ATT_HANDLE_VALUE_NTF bytes for ``handle`` (0..0xFFFF, not checked) and ``value``."""
    return _pack_op_u16(_NTF, handle) + value


def decode_notification(data: bytes) -> tuple[int, bytes]:
    """``(handle, value)`` of notification bytes; raises :class:`AttDecodeError` otherwise."""
    if len(data) < 3 or data[0] != _NTF:
        if not data:
            raise AttDecodeError(AttErrorCode.INVALID_PDU, 0x00, 0x0000, "the PDU is empty")
        raise _invalid(bytes(data), "not a Handle Value Notification")
    return data[1] | data[2] << 8, bytes(data[3:])


def encode_read_request(handle: int) -> bytes:
    """ATT_READ_REQ bytes for ``handle`` (0..0xFFFF, not checked)."""
    return _pack_op_u16(_READ_REQ, handle)
