"""The sans-IO GATT server: request bytes in, response bytes and events out.

One :class:`GattServer` per connection; any number share one
:class:`~protocol.ble.gatt_database.AttributeDatabase`. The owner (the simulated radio, or a
test) feeds every ATT PDU from the client to :meth:`GattServer.receive` together with the
link's current :class:`~protocol.ble.gatt_model.SecurityLevel`, sends the returned response
bytes, and acts on the returned events. It pushes values with :meth:`GattServer.notify`
and :meth:`GattServer.indicate` and sends the bytes they return.

Rules this machine follows (Core Specification Vol 3 Parts F and G):

* Every request gets exactly one response, produced synchronously by ``receive``: a
  request is complete when ``receive`` returns, so the owner must send that response
  before feeding the next PDU, and the ATT rule of one outstanding request per direction
  holds by construction. Commands (Write Command, and unknown opcodes with the Command
  Flag) never get a response; an invalid command is dropped silently as the spec says.
* PDUs a server never receives from a well-behaved client (responses, notifications) are
  ignored. An unknown request opcode gets Request Not Supported; malformed bytes get
  Invalid PDU; an empty or reversed handle range gets Invalid Handle; a request longer
  than the ATT_MTU gets Invalid PDU.
* Security: an attribute whose permissions need encryption answers Insufficient
  Encryption on an unencrypted link, and one that needs authentication answers
  Insufficient Authentication on a link encrypted with an unauthenticated key (see
  :func:`protocol.ble.gatt_database.required_security_error`).
* Notifications and indications go only to a client that subscribed through the CCCD;
  :meth:`~GattServer.notify` returns None when it has not. A value longer than
  ATT_MTU-3 is truncated to ATT_MTU-3 octets, as Vol 3 Part G 4.10 says, unless the
  caller passes ``strict=True`` (then :class:`GattValueTooLong` is raised). Only one
  indication may be unconfirmed; another raises :class:`IndicationPending`. A
  confirmation with no indication outstanding is ignored.
* Prepared writes are validated when executed: all of them succeed or none is stored.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from protocol.ble import att
from protocol.ble.att import (
    DEFAULT_MTU,
    AttDecodeError,
    AttErrorCode,
    AttOpcode,
    decode_pdu,
    is_command,
)
from protocol.ble.gatt_database import (
    Attribute,
    AttributeDatabase,
    AttributeKind,
    GattRejection,
    required_security_error,
)
from protocol.ble.gatt_model import PRIMARY_SERVICE, SECONDARY_SERVICE, Properties, SecurityLevel
from protocol.errors import UsageError

#: The receive MTU a server announces by default: the largest an LE ATT bearer may use.
DEFAULT_SERVER_RX_MTU = 517
#: How many Prepare Write Requests a server queues before answering Prepare Queue Full.
DEFAULT_PREPARE_QUEUE_LIMIT = 64

_CCCD_NOTIFY = 0x0001
_CCCD_INDICATE = 0x0002

_pack_error = struct.Struct("<BBHB").pack
_pack_op_handle = struct.Struct("<BH").pack

# Opcodes as the plain ints and octets the hot paths use (an enum lookup costs more).
_ERROR_RSP = int(AttOpcode.ERROR_RSP)
_READ_REQ = int(AttOpcode.READ_REQ)
_NTF = int(AttOpcode.HANDLE_VALUE_NTF)
_IND = int(AttOpcode.HANDLE_VALUE_IND)
_READ_RSP = att.ReadResponse.OPCODE_OCTET
_READ_BLOB_RSP = att.ReadBlobResponse.OPCODE_OCTET
_READ_MULTIPLE_RSP = att.ReadMultipleResponse.OPCODE_OCTET
_READ_BY_TYPE_RSP = att.ReadByTypeResponse.OPCODE_OCTET
_READ_BY_GROUP_TYPE_RSP = att.ReadByGroupTypeResponse.OPCODE_OCTET
_FIND_INFORMATION_RSP = att.FindInformationResponse.OPCODE_OCTET
_WRITE_RSP = att.WriteResponse().encode()
_PREPARE_WRITE_RSP = att.PrepareWriteResponse.OPCODE_OCTET
_EXECUTE_WRITE_RSP = att.ExecuteWriteResponse().encode()


class GattValueTooLong(UsageError):
    """A strict notification or indication does not fit into ATT_MTU-3 octets."""


class IndicationPending(UsageError):
    """An indication is still waiting for its confirmation; ATT allows only one."""


class NotSubscribable(UsageError):
    """The handle is not the value of a characteristic that can notify (or indicate)."""


# --- events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueWritten:
    """The client wrote ``value`` to ``handle`` (with a Write Request when ``with_response``)."""

    handle: int
    value: bytes
    with_response: bool


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """The client changed its CCCD of the characteristic whose value is at ``handle``."""

    handle: int
    notify: bool
    indicate: bool


@dataclass(frozen=True, slots=True)
class IndicationConfirmed:
    """The client confirmed the indication of ``handle``: the next one may go."""

    handle: int


@dataclass(frozen=True, slots=True)
class MtuChanged:
    """The client exchanged MTUs; ``mtu`` is the ATT_MTU both sides now use."""

    mtu: int


ServerEvent = ValueWritten | SubscriptionChanged | IndicationConfirmed | MtuChanged


class ServerResult(NamedTuple):
    """What :meth:`GattServer.receive` gives back: bytes to send (or None) and events."""

    response: bytes | None
    events: tuple[ServerEvent, ...]


_NOTHING = ServerResult(None, ())


class _AttError(Exception):
    """Internal: unwinds a request handler to an Error Response."""

    def __init__(self, code: int, handle: int) -> None:
        self.code = code
        self.handle = handle


class GattServer:
    """The server side of one connection's ATT bearer, as a sans-IO state machine.

    ``rx_mtu`` is the MTU this server announces in Exchange MTU; the ATT_MTU in use is
    23 until the client exchanges MTUs. ``connection`` is passed to the database's read
    and write hooks so firmware can tell connections apart. ``security`` is the link's
    starting security level; each :meth:`receive` call may update it.
    """

    def __init__(
        self,
        database: AttributeDatabase,
        *,
        rx_mtu: int = DEFAULT_SERVER_RX_MTU,
        prepare_queue_limit: int = DEFAULT_PREPARE_QUEUE_LIMIT,
        connection: object = None,
        security: SecurityLevel = SecurityLevel.NO_SECURITY,
    ) -> None:
        if not DEFAULT_MTU <= rx_mtu <= att.MAX_MTU:
            raise UsageError(f"rx_mtu must be 23..65535, got {rx_mtu}")
        if prepare_queue_limit < 1:
            raise UsageError("prepare_queue_limit must be at least 1")
        self.database = database
        self.rx_mtu = rx_mtu
        self.prepare_queue_limit = prepare_queue_limit
        self.connection = connection
        self.security = security
        self._find = database.find
        self._mtu = DEFAULT_MTU
        self._cccd: dict[int, int] = {}
        self._notify: set[int] = set()
        self._indicate: set[int] = set()
        self._indication_pending: int | None = None
        self._queue: list[tuple[int, int, bytes]] = []

    # -- state ---------------------------------------------------------------------

    @property
    def mtu(self) -> int:
        """The ATT_MTU in use on this bearer."""
        return self._mtu

    @property
    def indication_pending(self) -> int | None:
        """The value handle of the unconfirmed indication, if any (its timeout is yours)."""
        return self._indication_pending

    @property
    def prepared_writes(self) -> int:
        """How many prepared writes are queued."""
        return len(self._queue)

    def subscription(self, value_handle: int) -> tuple[bool, bool]:
        """``(notify, indicate)`` as this connection's client configured them."""
        return value_handle in self._notify, value_handle in self._indicate

    # -- requests ------------------------------------------------------------------

    def receive(self, data: bytes, security: SecurityLevel | None = None) -> ServerResult:
        """Handle one PDU from the client; returns the response to send and the events.

        Never raises for any ``data``; hooks' own exceptions (other than
        :class:`GattRejection`) propagate, as they are bugs of the firmware.
        """
        if security is not None:
            self.security = security
        n = len(data)
        if n == 3 and data[0] == _READ_REQ:  # Read Request: the hot path, no dataclass
            handle = data[1] | data[2] << 8
            try:
                return ServerResult(_READ_RSP + self._readable_value(handle)[: self._mtu - 1], ())
            except _AttError as err:
                return ServerResult(_pack_error(_ERROR_RSP, _READ_REQ, err.handle, err.code), ())
        if n == 0:
            return ServerResult(_pack_error(_ERROR_RSP, 0x00, 0, AttErrorCode.INVALID_PDU), ())
        opcode = data[0]
        if n > self._mtu:
            if is_command(opcode):
                return _NOTHING
            return ServerResult(_pack_error(_ERROR_RSP, opcode, 0, AttErrorCode.INVALID_PDU), ())
        try:
            pdu = decode_pdu(data)
        except AttDecodeError as err:
            if is_command(opcode) or opcode in _NOT_FOR_SERVER:
                return _NOTHING
            return ServerResult(_pack_error(_ERROR_RSP, opcode, err.handle, err.error_code), ())
        handler = _DISPATCH.get(opcode)
        if handler is None:
            return _NOTHING  # a response, notification or indication: not for a server
        try:
            return handler(self, pdu)
        except _AttError as err:
            return ServerResult(_pack_error(_ERROR_RSP, opcode, err.handle, err.code), ())

    def _attr(self, handle: int) -> Attribute:
        attr = self._find(handle)
        if attr is None:
            raise _AttError(AttErrorCode.INVALID_HANDLE, handle)
        return attr

    def _read_error(self, attr: Attribute) -> int:
        if not attr.readable:
            return AttErrorCode.READ_NOT_PERMITTED
        return required_security_error(self.security, attr.read_level)

    def _value(self, attr: Attribute) -> bytes:
        """The value of a readable attribute, raising _AttError if a hook refuses."""
        if attr.kind is AttributeKind.CCCD:
            return self._cccd.get(attr.handle, 0).to_bytes(2, "little")
        hook = attr.read_hook
        if hook is None:
            return attr.value
        try:
            return bytes(hook(attr.handle, self.connection))
        except GattRejection as rej:
            raise _AttError(rej.error_code, attr.handle) from None

    def _readable_value(self, handle: int) -> bytes:
        attr = self._attr(handle)
        error = self._read_error(attr)
        if error:
            raise _AttError(error, handle)
        return self._value(attr)

    def _exchange_mtu(self, pdu: att.ExchangeMtuRequest) -> ServerResult:
        new_mtu = max(DEFAULT_MTU, min(pdu.client_rx_mtu, self.rx_mtu))
        events: tuple[ServerEvent, ...] = ()
        if new_mtu != self._mtu:
            self._mtu = new_mtu
            events = (MtuChanged(new_mtu),)
        return ServerResult(att.ExchangeMtuResponse(self.rx_mtu).encode(), events)

    def _find_information(self, pdu: att.FindInformationRequest) -> ServerResult:
        entries: list[tuple[int, bytes]] = []
        width = 0
        for attr in self.database.in_range(pdu.start_handle, pdu.end_handle):
            if not width:
                width = len(attr.type_att)
                limit = (self._mtu - 2) // (2 + width)
            elif len(attr.type_att) != width or len(entries) >= limit:
                break
            entries.append((attr.handle, attr.type_att))
        if not entries:
            raise _AttError(AttErrorCode.ATTRIBUTE_NOT_FOUND, pdu.start_handle)
        head = _FIND_INFORMATION_RSP + (b"\x01" if width == 2 else b"\x02")
        body = b"".join(h.to_bytes(2, "little") + t for h, t in entries)
        return ServerResult(head + body, ())

    def _find_by_type_value(self, pdu: att.FindByTypeValueRequest) -> ServerResult:
        found: list[tuple[int, int]] = []
        limit = (self._mtu - 1) // 4
        for attr in self.database.in_range(pdu.start_handle, pdu.end_handle):
            if attr.type != pdu.attribute_type or self._read_error(attr):
                continue
            try:
                value = self._value(attr)
            except _AttError:
                continue
            if value == pdu.value:
                found.append((attr.handle, attr.group_end))
                if len(found) >= limit:
                    break
        if not found:
            raise _AttError(AttErrorCode.ATTRIBUTE_NOT_FOUND, pdu.start_handle)
        return ServerResult(att.FindByTypeValueResponse(tuple(found)).encode(), ())

    def _read_by_type(self, pdu: att.ReadByTypeRequest) -> ServerResult:
        rows: list[bytes] = []
        length = -1
        for attr in self.database.in_range(pdu.start_handle, pdu.end_handle):
            if attr.type != pdu.attribute_type:
                continue
            error = self._read_error(attr)
            try:
                if error:
                    raise _AttError(error, attr.handle)
                value = self._value(attr)
            except _AttError:
                if rows:
                    break  # answer with what we have; the client asks again from here
                raise
            if length < 0:
                length = min(len(value), self._mtu - 4, 253)
                value = value[:length]
                limit = (self._mtu - 2) // (length + 2)
            elif len(value) != length or len(rows) >= limit:
                break
            rows.append(attr.handle.to_bytes(2, "little") + value)
        if not rows:
            raise _AttError(AttErrorCode.ATTRIBUTE_NOT_FOUND, pdu.start_handle)
        return ServerResult(_READ_BY_TYPE_RSP + bytes((length + 2,)) + b"".join(rows), ())

    def _read(self, pdu: att.ReadRequest) -> ServerResult:
        value = self._readable_value(pdu.handle)
        return ServerResult(_READ_RSP + value[: self._mtu - 1], ())

    def _read_blob(self, pdu: att.ReadBlobRequest) -> ServerResult:
        value = self._readable_value(pdu.handle)
        if pdu.offset > len(value):
            raise _AttError(AttErrorCode.INVALID_OFFSET, pdu.handle)
        return ServerResult(_READ_BLOB_RSP + value[pdu.offset : pdu.offset + self._mtu - 1], ())

    def _read_multiple(self, pdu: att.ReadMultipleRequest) -> ServerResult:
        values = b"".join(self._readable_value(h) for h in pdu.handles)
        return ServerResult(_READ_MULTIPLE_RSP + values[: self._mtu - 1], ())

    def _read_by_group_type(self, pdu: att.ReadByGroupTypeRequest) -> ServerResult:
        if pdu.group_type != PRIMARY_SERVICE and pdu.group_type != SECONDARY_SERVICE:
            raise _AttError(AttErrorCode.UNSUPPORTED_GROUP_TYPE, pdu.start_handle)
        rows: list[bytes] = []
        length = -1
        for attr in self.database.in_range(pdu.start_handle, pdu.end_handle):
            if attr.type != pdu.group_type:
                continue
            value = attr.value  # service declarations: always readable, never hooked
            if length < 0:
                length = min(len(value), self._mtu - 6, 251)
                limit = (self._mtu - 2) // (length + 4)
            elif len(value) != length or len(rows) >= limit:
                break
            rows.append(struct.pack("<HH", attr.handle, attr.group_end) + value[:length])
        if not rows:
            raise _AttError(AttErrorCode.ATTRIBUTE_NOT_FOUND, pdu.start_handle)
        return ServerResult(_READ_BY_GROUP_TYPE_RSP + bytes((length + 4,)) + b"".join(rows), ())

    # -- writes --------------------------------------------------------------------

    def _check_writable(self, attr: Attribute) -> None:
        if not attr.writable:
            raise _AttError(AttErrorCode.WRITE_NOT_PERMITTED, attr.handle)
        error = required_security_error(self.security, attr.write_level)
        if error:
            raise _AttError(error, attr.handle)

    def _vet(self, attr: Attribute, value: bytes) -> None:
        """Length, CCCD and hook checks of a value about to be written."""
        if len(value) > attr.max_length:
            raise _AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, attr.handle)
        if attr.kind is AttributeKind.CCCD:
            if len(value) != 2:
                raise _AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, attr.handle)
            allowed = (_CCCD_NOTIFY if attr.properties & Properties.NOTIFY else 0) | (
                _CCCD_INDICATE if attr.properties & Properties.INDICATE else 0
            )
            if int.from_bytes(value, "little") & ~allowed:
                raise _AttError(AttErrorCode.VALUE_NOT_ALLOWED, attr.handle)
            return
        hook = attr.write_hook
        if hook is not None:
            try:
                hook(attr.handle, value, self.connection)
            except GattRejection as rej:
                raise _AttError(rej.error_code, attr.handle) from None

    def _store(self, attr: Attribute, value: bytes, with_response: bool) -> ServerEvent | None:
        if attr.kind is AttributeKind.CCCD:
            flags = int.from_bytes(value, "little")
            old = self._cccd.get(attr.handle, 0)
            self._cccd[attr.handle] = flags
            target = attr.value_handle
            notify, indicate = bool(flags & _CCCD_NOTIFY), bool(flags & _CCCD_INDICATE)
            (self._notify.add if notify else self._notify.discard)(target)
            (self._indicate.add if indicate else self._indicate.discard)(target)
            if flags == old:
                return None
            return SubscriptionChanged(target, notify, indicate)
        self.database.set_value(attr.handle, value)
        return ValueWritten(attr.handle, value, with_response)

    def _write_request(self, pdu: att.WriteRequest) -> ServerResult:
        attr = self._attr(pdu.handle)
        self._check_writable(attr)
        self._vet(attr, pdu.value)
        event = self._store(attr, pdu.value, True)
        return ServerResult(_WRITE_RSP, (event,) if event else ())

    def _write_command(self, pdu: att.WriteCommand) -> ServerResult:
        try:
            attr = self._attr(pdu.handle)
            self._check_writable(attr)
            self._vet(attr, pdu.value)
        except _AttError:
            return _NOTHING  # commands never get an Error Response
        event = self._store(attr, pdu.value, False)
        return ServerResult(None, (event,) if event else ())

    def _prepare_write(self, pdu: att.PrepareWriteRequest) -> ServerResult:
        attr = self._attr(pdu.handle)
        self._check_writable(attr)
        if len(self._queue) >= self.prepare_queue_limit:
            raise _AttError(AttErrorCode.PREPARE_QUEUE_FULL, pdu.handle)
        self._queue.append((pdu.handle, pdu.offset, pdu.value))
        return ServerResult(_PREPARE_WRITE_RSP + pdu.encode()[1:], ())

    def _execute_write(self, pdu: att.ExecuteWriteRequest) -> ServerResult:
        queue, self._queue = self._queue, []
        if not pdu.commit or not queue:
            return ServerResult(_EXECUTE_WRITE_RSP, ())
        # Assemble each handle's new value in queue order; every part must continue
        # within (or right at the end of) what is there so far.
        assembled: dict[int, bytes] = {}
        for handle, offset, part in queue:
            attr = self._attr(handle)
            current = assembled.get(handle)
            if current is None:
                current = self._value(attr) if offset else b""
            if offset > len(current):
                raise _AttError(AttErrorCode.INVALID_OFFSET, handle)
            current = current[:offset] + part
            if len(current) > attr.max_length:
                raise _AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, handle)
            assembled[handle] = current
        for handle, value in assembled.items():
            self._vet(self._attr(handle), value)
        events = []
        for handle, value in assembled.items():
            event = self._store(self._attr(handle), value, True)
            if event is not None:
                events.append(event)
        return ServerResult(_EXECUTE_WRITE_RSP, tuple(events))

    def _confirmation(self, pdu: att.HandleValueConfirmation) -> ServerResult:
        handle = self._indication_pending
        if handle is None:
            return _NOTHING
        self._indication_pending = None
        return ServerResult(None, (IndicationConfirmed(handle),))

    # -- server-initiated ----------------------------------------------------------

    def _push_value(self, value_handle: int, value: bytes | None, strict: bool) -> bytes:
        if value is None:
            attr = self._attr_or_usage(value_handle)
            try:
                value = self._value(attr)
            except _AttError:
                value = attr.value
        limit = self._mtu - 3
        if len(value) > limit:
            if strict:
                raise GattValueTooLong(
                    f"a {len(value)}-octet value does not fit the ATT_MTU of {self._mtu} "
                    f"(at most {limit} octets); exchange a larger MTU or send less"
                )
            value = value[:limit]
        return value

    def _attr_or_usage(self, handle: int) -> Attribute:
        try:
            return self._attr(handle)
        except _AttError:
            raise NotSubscribable(f"there is no attribute at handle 0x{handle:04X}") from None

    def _check_pushable(self, value_handle: int, prop: Properties) -> None:
        attr = self._attr_or_usage(value_handle)
        if attr.kind is not AttributeKind.VALUE or not attr.properties & prop:
            raise NotSubscribable(
                f"handle 0x{value_handle:04X} is not a characteristic value with the "
                f"{prop.name} property; pass the value handle of such a characteristic"
            )

    def notify(self, value_handle: int, value: bytes | None = None, *, strict: bool = False) -> (
        bytes | None
    ):  # fmt: skip
        """Handle Value Notification bytes, or None when the client has not subscribed.

        ``value`` defaults to the characteristic's current value (its read hook, if any).
        """
        if value_handle not in self._notify:
            self._check_pushable(value_handle, Properties.NOTIFY)
            return None
        if value is None or len(value) > self._mtu - 3:
            value = self._push_value(value_handle, value, strict)
        return _pack_op_handle(_NTF, value_handle) + value

    def indicate(self, value_handle: int, value: bytes | None = None, *, strict: bool = False) -> (
        bytes | None
    ):  # fmt: skip
        """Handle Value Indication bytes, or None when the client has not subscribed.

        Raises :class:`IndicationPending` while an earlier indication is unconfirmed.
        """
        if value_handle not in self._indicate:
            self._check_pushable(value_handle, Properties.INDICATE)
            return None
        if self._indication_pending is not None:
            raise IndicationPending(
                "an indication is still unconfirmed; wait for IndicationConfirmed "
                "(or drop the link after the 30 s ATT timeout) before the next one"
            )
        value = self._push_value(value_handle, value, strict)
        self._indication_pending = value_handle
        return _pack_op_handle(_IND, value_handle) + value


#: The handler of each PDU a server receives, by PDU class; the opcodes come from
#: :data:`protocol.ble.att.PDU_REGISTRY` (see :data:`SERVER_OPCODES`).
_HANDLERS: dict[type[att.AttPdu], Callable[[GattServer, Any], ServerResult]] = {
    att.ExchangeMtuRequest: GattServer._exchange_mtu,
    att.FindInformationRequest: GattServer._find_information,
    att.FindByTypeValueRequest: GattServer._find_by_type_value,
    att.ReadByTypeRequest: GattServer._read_by_type,
    att.ReadRequest: GattServer._read,
    att.ReadBlobRequest: GattServer._read_blob,
    att.ReadMultipleRequest: GattServer._read_multiple,
    att.ReadByGroupTypeRequest: GattServer._read_by_group_type,
    att.WriteRequest: GattServer._write_request,
    att.PrepareWriteRequest: GattServer._prepare_write,
    att.ExecuteWriteRequest: GattServer._execute_write,
    att.WriteCommand: GattServer._write_command,
    att.HandleValueConfirmation: GattServer._confirmation,
}

_DISPATCH: dict[int, Callable[[GattServer, Any], ServerResult]] = {
    int(pdu_type.OPCODE): handler for pdu_type, handler in _HANDLERS.items()
}

#: The opcodes this server handles: every client-sent PDU :mod:`protocol.ble.att` decodes.
SERVER_OPCODES = frozenset(AttOpcode(op) for op in _DISPATCH)

# Opcodes a server may receive malformed but must not answer: they are not requests.
_NOT_FOR_SERVER = frozenset(
    int(op)
    for op, spec in att.PDU_REGISTRY.items()
    if spec.supported and spec.role is not att.PduRole.REQUEST
)
