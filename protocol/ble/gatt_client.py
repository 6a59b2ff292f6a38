"""The sans-IO GATT client: procedures in, request bytes out, events back.

Every procedure method (:meth:`GattClient.read`, :meth:`GattClient.discover_profile`, ...)
returns a :class:`ProcedureStart`: the procedure's id and the PDU to send now, or None
when another procedure is still running. Procedures queue: ATT allows one outstanding
request per direction, so the client sends the next queued request itself once the
previous procedure finishes, through the ``to_send`` of :meth:`GattClient.receive`.

Feed every PDU from the server to :meth:`GattClient.receive`; it returns a
:class:`ClientResult` with the PDUs to send (the next request, a Handle Value
Confirmation) and the events: :class:`Notification`, :class:`Indication`, and exactly one
completion per procedure, a :class:`ProcedureCompleted` subclass or a
:class:`ProcedureFailed`, both carrying the procedure's id (so an asyncio wrapper maps ids
to futures: ``future.set_result(event.result)`` or ``future.set_exception(event.error)``).

Timeouts are the caller's: :attr:`GattClient.pending` says which request is outstanding
since when the caller sent it. After an ATT timeout (30 s) the bearer is dead (Vol 3 Part
F 3.3.3): call :meth:`GattClient.abort`, which fails every procedure and closes the client.

Requests that arrive from the peer (this machine has no local server) are answered with
Request Not Supported; stray responses that match no outstanding request are ignored.
"""

from __future__ import annotations

import struct
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from protocol.ble import att
from protocol.ble.att import (
    DEFAULT_MTU,
    MAX_ATTRIBUTE_LENGTH,
    MAX_HANDLE,
    MIN_HANDLE,
    REQUEST_OPCODES,
    AttDecodeError,
    AttErrorCode,
    AttOpcode,
    check_attribute_handle,
    decode_pdu,
    error_name,
)
from protocol.ble.gatt_database import GattLookupError
from protocol.ble.gatt_model import (
    CHARACTERISTIC,
    CLIENT_CHARACTERISTIC_CONFIGURATION,
    PRIMARY_SERVICE,
    Properties,
)
from protocol.ble.uuids import UUIDError, short_name, uuid_from_att
from protocol.errors import KmebandError, UsageError

#: The receive MTU a client announces by default.
DEFAULT_CLIENT_RX_MTU = 517

_pack_op_handle = struct.Struct("<BH").pack
_pack_error = struct.Struct("<BBHB").pack
_unpack_error = struct.Struct("<BBHB").unpack

# Plain ints of the opcodes the hot paths compare against (an enum lookup costs more).
_ERROR_RSP = int(AttOpcode.ERROR_RSP)
_NTF = int(AttOpcode.HANDLE_VALUE_NTF)
_IND = int(AttOpcode.HANDLE_VALUE_IND)
_READ_REQ = int(AttOpcode.READ_REQ)
_READ_RSP = int(AttOpcode.READ_RSP)
_READ_BLOB_RSP = int(AttOpcode.READ_BLOB_RSP)
_WRITE_REQ = int(AttOpcode.WRITE_REQ)
_WRITE_RSP = int(AttOpcode.WRITE_RSP)
_WRITE_CMD = int(AttOpcode.WRITE_CMD)
_PREPARE_WRITE_RSP = int(AttOpcode.PREPARE_WRITE_RSP)
_EXECUTE_WRITE_RSP = int(AttOpcode.EXECUTE_WRITE_RSP)
_CONFIRMATION = att.HandleValueConfirmation().encode()
_EXECUTE = att.ExecuteWriteRequest(commit=True).encode()
_CANCEL = att.ExecuteWriteRequest(commit=False).encode()

_ADVICE: dict[int, str] = {
    AttErrorCode.INSUFFICIENT_ENCRYPTION: "encrypt the link (pair or bond with the band) and retry",
    AttErrorCode.INSUFFICIENT_AUTHENTICATION: (
        "pair again with MITM protection (enter the passkey shown on the band) and retry"
    ),
    AttErrorCode.READ_NOT_PERMITTED: "this attribute cannot be read",
    AttErrorCode.WRITE_NOT_PERMITTED: "this attribute cannot be written",
    AttErrorCode.INVALID_HANDLE: "rediscover the profile: the handle does not exist",
    AttErrorCode.REQUEST_NOT_SUPPORTED: "the server does not support this request",
    AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH: "send a value of the length the profile gives",
}


class GattProcedureError(KmebandError):
    """A GATT procedure failed: the server's ATT error, or a malformed or missing answer.

    ``error_code`` is the ATT error code the server answered (None when the server's
    answer was malformed or the client was aborted); ``handle`` and ``request_opcode``
    are those of the Error Response.
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: int | None = None,
        handle: int = 0,
        request_opcode: int = 0,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.handle = handle
        self.request_opcode = request_opcode


class GattClientClosed(GattProcedureError):
    """The client was aborted (e.g. after an ATT timeout); reconnect to use GATT again."""


# --- discovered profile -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoveredDescriptor:
    """A descriptor found by Find Information."""

    handle: int
    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class DiscoveredCharacteristic:
    """A characteristic found by Read By Type, with its descriptors once discovered."""

    declaration_handle: int
    value_handle: int
    properties: Properties
    uuid: uuid.UUID
    end_handle: int
    descriptors: tuple[DiscoveredDescriptor, ...] = ()

    @property
    def cccd_handle(self) -> int | None:
        """The Client Characteristic Configuration descriptor's handle, if discovered."""
        for desc in self.descriptors:
            if desc.uuid == CLIENT_CHARACTERISTIC_CONFIGURATION:
                return desc.handle
        return None


@dataclass(frozen=True, slots=True)
class DiscoveredService:
    """A primary service found by Read By Group Type."""

    handle: int
    end_handle: int
    uuid: uuid.UUID
    characteristics: tuple[DiscoveredCharacteristic, ...] = ()


@dataclass(frozen=True, slots=True)
class GattProfile:
    """A server's whole profile: services, characteristics and descriptors, with lookups."""

    services: tuple[DiscoveredService, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[DiscoveredService]:
        return iter(self.services)

    def service(self, service_uuid: uuid.UUID) -> DiscoveredService:
        """The first service with ``service_uuid``."""
        for svc in self.services:
            if svc.uuid == service_uuid:
                return svc
        raise GattLookupError(
            f"the server has no service {short_name(service_uuid)}; is it the right device?"
        )

    def characteristic(
        self, char_uuid: uuid.UUID, service_uuid: uuid.UUID | None = None
    ) -> DiscoveredCharacteristic:
        """The one characteristic with ``char_uuid`` (in ``service_uuid``, if given)."""
        found = [
            c
            for s in self.services
            if service_uuid is None or s.uuid == service_uuid
            for c in s.characteristics
            if c.uuid == char_uuid
        ]
        if len(found) != 1:
            raise GattLookupError(
                f"characteristic {short_name(char_uuid)} was found {len(found)} times; "
                + ("pass service_uuid to say which" if found else "is it the right device?")
            )
        return found[0]


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """The server notified ``value`` for ``handle``."""

    handle: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Indication:
    """The server indicated ``value``; the confirmation is already in ``to_send``."""

    handle: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ProcedureCompleted:
    """Base of the events that end a procedure successfully; ``result`` is its outcome."""

    procedure_id: int

    @property
    def result(self) -> object:
        return None


@dataclass(frozen=True, slots=True)
class MtuExchanged(ProcedureCompleted):
    """The MTU exchange finished; ``mtu`` is the ATT_MTU now in use."""

    mtu: int

    @property
    def result(self) -> int:
        return self.mtu


@dataclass(frozen=True, slots=True)
class ServicesDiscovered(ProcedureCompleted):
    """All primary services (without their characteristics)."""

    services: tuple[DiscoveredService, ...]

    @property
    def result(self) -> tuple[DiscoveredService, ...]:
        return self.services


@dataclass(frozen=True, slots=True)
class CharacteristicsDiscovered(ProcedureCompleted):
    """The characteristics in a handle range (without their descriptors)."""

    characteristics: tuple[DiscoveredCharacteristic, ...]

    @property
    def result(self) -> tuple[DiscoveredCharacteristic, ...]:
        return self.characteristics


@dataclass(frozen=True, slots=True)
class DescriptorsDiscovered(ProcedureCompleted):
    """The attributes found by Find Information in a handle range."""

    descriptors: tuple[DiscoveredDescriptor, ...]

    @property
    def result(self) -> tuple[DiscoveredDescriptor, ...]:
        return self.descriptors


@dataclass(frozen=True, slots=True)
class ProfileDiscovered(ProcedureCompleted):
    """The whole profile: services, characteristics, descriptors."""

    profile: GattProfile

    @property
    def result(self) -> GattProfile:
        return self.profile


@dataclass(frozen=True, slots=True)
class ReadCompleted(ProcedureCompleted):
    """The full value of ``handle`` (long values already joined from Read Blob parts)."""

    handle: int
    value: bytes

    @property
    def result(self) -> bytes:
        return self.value


@dataclass(frozen=True, slots=True)
class WriteCompleted(ProcedureCompleted):
    """The server acknowledged the write (or the subscription change) of ``handle``."""

    handle: int

    @property
    def result(self) -> int:
        return self.handle


@dataclass(frozen=True, slots=True)
class ProcedureFailed:
    """A procedure ended with ``error`` (raise it, or hand it to a future)."""

    procedure_id: int
    error: GattProcedureError


ClientEvent = Notification | Indication | ProcedureCompleted | ProcedureFailed


class ClientResult(NamedTuple):
    """What :meth:`GattClient.receive` gives back: PDUs to send now, in order, and events."""

    to_send: tuple[bytes, ...]
    events: tuple[ClientEvent, ...]


class ProcedureStart(NamedTuple):
    """A procedure's id and the PDU to send now (None: it waits in the queue)."""

    procedure_id: int
    pdu: bytes | None


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """The request on the wire: whose it is and which ATT opcode it was."""

    procedure_id: int
    procedure: str
    opcode: AttOpcode


_EMPTY = ClientResult((), ())
_Steps = Generator[bytes, bytes, object]
_MakeEvent = Callable[[int, Any], ProcedureCompleted]
_T = TypeVar("_T")


class _Procedure:
    __slots__ = ("id", "kind", "make_event", "opcode", "steps")

    def __init__(self, pid: int, kind: str, steps: _Steps, make_event: _MakeEvent) -> None:
        self.id = pid
        self.kind = kind
        self.steps = steps
        self.make_event = make_event
        self.opcode = 0


def _malformed(kind: str, why: str) -> GattProcedureError:
    return GattProcedureError(
        f"{kind}: the server's answer was malformed ({why}); the server does not follow "
        "Core Spec Vol 3 Part F, retry or reconnect"
    )


def _failure(kind: str, data: bytes) -> GattProcedureError:
    """The error for an unexpected answer: the server's Error Response, or garbage."""
    if len(data) == 5 and data[0] == _ERROR_RSP:
        _, req, handle, code = _unpack_error(data)
        advice = _ADVICE.get(code, "see the profile documentation for this error")
        return GattProcedureError(
            f"{kind} failed: the server answered {error_name(code)} for handle "
            f"0x{handle:04X}; {advice}",
            error_code=code,
            handle=handle,
            request_opcode=req,
        )
    return _malformed(kind, f"unexpected PDU opcode 0x{data[0]:02X}")


def _decode_as(kind: str, data: bytes, cls: type[_T]) -> _T:
    try:
        pdu = decode_pdu(data)
    except AttDecodeError as exc:
        raise _malformed(kind, f"{error_name(exc.error_code)}") from None
    if not isinstance(pdu, cls):
        raise _failure(kind, data)
    return pdu


def _not_found(data: bytes) -> bool:
    return len(data) == 5 and data[0] == _ERROR_RSP and data[4] == AttErrorCode.ATTRIBUTE_NOT_FOUND


class GattClient:
    """The client side of an ATT bearer, as a sans-IO state machine with a request queue.

    ``rx_mtu`` is the MTU this client announces in Exchange MTU; the ATT_MTU in use is 23
    until :meth:`exchange_mtu` completes.
    """

    def __init__(self, *, rx_mtu: int = DEFAULT_CLIENT_RX_MTU) -> None:
        if not DEFAULT_MTU <= rx_mtu <= att.MAX_MTU:
            raise UsageError(f"rx_mtu must be 23..65535, got {rx_mtu}")
        self.rx_mtu = rx_mtu
        self._mtu = DEFAULT_MTU
        self._next_id = 1
        self._current: _Procedure | None = None
        self._queue: deque[_Procedure] = deque()
        self._closed = False

    # -- state ---------------------------------------------------------------------

    @property
    def mtu(self) -> int:
        """The ATT_MTU in use."""
        return self._mtu

    @property
    def pending(self) -> PendingRequest | None:
        """The outstanding request (start its timer when you send it), or None."""
        proc = self._current
        if proc is None:
            return None
        return PendingRequest(proc.id, proc.kind, AttOpcode(proc.opcode))

    @property
    def queued(self) -> int:
        """How many procedures wait behind the outstanding one."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self, reason: str = "the ATT transaction timed out") -> tuple[ProcedureFailed, ...]:
        """Fail every running and queued procedure and close the client for good.

        Use after an ATT transaction timeout: the spec allows no more ATT traffic on the
        bearer, so reconnect and create a new client.
        """
        procs = ([self._current] if self._current else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        self._closed = True
        message = f"{reason}; the GATT client was closed, reconnect to continue"
        return tuple(ProcedureFailed(p.id, GattClientClosed(message)) for p in procs)

    # -- procedures ----------------------------------------------------------------

    def _submit(self, kind: str, steps: _Steps, make_event: _MakeEvent) -> ProcedureStart:
        if self._closed:
            steps.close()
            raise GattClientClosed("the GATT client was aborted; reconnect and create a new client")
        pid = self._next_id
        self._next_id += 1
        proc = _Procedure(pid, kind, steps, make_event)
        if self._current is not None:
            self._queue.append(proc)
            return ProcedureStart(pid, None)
        first = next(steps)
        proc.opcode = first[0]
        self._current = proc
        return ProcedureStart(pid, first)

    def exchange_mtu(self) -> ProcedureStart:
        """Exchange MTUs (do it first, once): completes with :class:`MtuExchanged`."""
        return self._submit("MTU exchange", self._mtu_steps(), lambda pid, r: MtuExchanged(pid, r))

    def discover_services(self) -> ProcedureStart:
        """Discover all primary services: completes with :class:`ServicesDiscovered`."""
        return self._submit(
            "service discovery",
            self._service_steps(),
            lambda pid, r: ServicesDiscovered(pid, tuple(r)),
        )

    def discover_characteristics(self, start_handle: int, end_handle: int) -> ProcedureStart:
        """Discover the characteristics of a service's handle range."""
        check_attribute_handle(start_handle)
        check_attribute_handle(end_handle)
        return self._submit(
            "characteristic discovery",
            self._characteristic_steps(start_handle, end_handle),
            lambda pid, r: CharacteristicsDiscovered(pid, tuple(r)),
        )

    def discover_descriptors(self, start_handle: int, end_handle: int) -> ProcedureStart:
        """Discover the descriptors in a handle range (after a characteristic's value)."""
        check_attribute_handle(start_handle)
        check_attribute_handle(end_handle)
        return self._submit(
            "descriptor discovery",
            self._descriptor_steps(start_handle, end_handle),
            lambda pid, r: DescriptorsDiscovered(pid, tuple(r)),
        )

    def discover_profile(self) -> ProcedureStart:
        """Discover everything: completes with :class:`ProfileDiscovered`."""
        return self._submit(
            "profile discovery",
            self._profile_steps(),
            lambda pid, r: ProfileDiscovered(pid, r),
        )

    def read(self, handle: int) -> ProcedureStart:
        """Read a value, continuing with Read Blob while parts fill the MTU."""
        check_attribute_handle(handle)
        return self._submit(
            "read",
            self._read_steps(handle),
            lambda pid, r: ReadCompleted(pid, handle, r),
        )

    def write(self, handle: int, value: bytes) -> ProcedureStart:
        """Write with response; values over ATT_MTU-3 go as Prepare/Execute Write."""
        check_attribute_handle(handle)
        if len(value) > MAX_ATTRIBUTE_LENGTH:
            raise UsageError(f"an attribute value is at most 512 octets, got {len(value)}")
        return self._submit(
            "write",
            self._write_steps("write", handle, bytes(value)),
            lambda pid, r: WriteCompleted(pid, handle),
        )

    def write_without_response(self, handle: int, value: bytes) -> bytes:
        """The Write Command to send now (commands need no turn); at most ATT_MTU-3 octets."""
        check_attribute_handle(handle)
        if self._closed:
            raise GattClientClosed("the GATT client was aborted; reconnect first")
        if len(value) > self._mtu - 3:
            raise UsageError(
                f"a write without response carries at most ATT_MTU-3 = {self._mtu - 3} octets, "
                f"got {len(value)}; use write() or exchange a larger MTU"
            )
        return _pack_op_handle(_WRITE_CMD, handle) + bytes(value)

    def subscribe(self, cccd_handle: int, *, notify: bool = True, indicate: bool = False) -> (
        ProcedureStart
    ):  # fmt: skip
        """Write the CCCD at ``cccd_handle``; completes with :class:`WriteCompleted`."""
        check_attribute_handle(cccd_handle)
        flags = (0x0001 if notify else 0) | (0x0002 if indicate else 0)
        return self._submit(
            "subscribe" if flags else "unsubscribe",
            self._write_steps("subscribe", cccd_handle, flags.to_bytes(2, "little")),
            lambda pid, r: WriteCompleted(pid, cccd_handle),
        )

    def unsubscribe(self, cccd_handle: int) -> ProcedureStart:
        """Clear the CCCD at ``cccd_handle``: no more notifications or indications."""
        return self.subscribe(cccd_handle, notify=False, indicate=False)

    # -- receiving -----------------------------------------------------------------

    def receive(self, data: bytes) -> ClientResult:
        """Handle one PDU from the server. Never raises for any ``data``."""
        n = len(data)
        if n == 0 or self._closed:
            return _EMPTY
        opcode = data[0]
        if opcode == _NTF:
            if n < 3:
                return _EMPTY
            return ClientResult((), (Notification(data[1] | data[2] << 8, bytes(data[3:])),))
        if opcode == _IND:
            if n < 3:
                return _EMPTY
            event = Indication(data[1] | data[2] << 8, bytes(data[3:]))
            return ClientResult((_CONFIRMATION,), (event,))
        proc = self._current
        if proc is not None and (
            opcode == proc.opcode + 1 or (opcode == _ERROR_RSP and n > 1 and data[1] == proc.opcode)
        ):
            return self._advance(proc, bytes(data))
        if opcode in REQUEST_OPCODES:
            return ClientResult(
                (_pack_error(_ERROR_RSP, opcode, 0, AttErrorCode.REQUEST_NOT_SUPPORTED),), ()
            )
        return _EMPTY

    def _advance(self, proc: _Procedure, data: bytes) -> ClientResult:
        event: ClientEvent
        try:
            request = proc.steps.send(data)
        except StopIteration as done:
            event = proc.make_event(proc.id, done.value)
        except GattProcedureError as err:
            event = ProcedureFailed(proc.id, err)
        else:
            proc.opcode = request[0]
            return ClientResult((request,), ())
        self._current = None
        if not self._queue:
            return ClientResult((), (event,))
        nxt = self._queue.popleft()
        first = next(nxt.steps)
        nxt.opcode = first[0]
        self._current = nxt
        return ClientResult((first,), (event,))

    # -- procedure steps: each yields a request and receives the server's answer ------

    def _mtu_steps(self) -> _Steps:
        data = yield att.ExchangeMtuRequest(self.rx_mtu).encode()
        rsp = _decode_as("MTU exchange", data, att.ExchangeMtuResponse)
        self._mtu = max(DEFAULT_MTU, min(self.rx_mtu, rsp.server_rx_mtu))
        return self._mtu

    def _service_steps(self) -> Generator[bytes, bytes, list[DiscoveredService]]:
        kind = "service discovery"
        found: list[DiscoveredService] = []
        start = MIN_HANDLE
        while start <= MAX_HANDLE:
            data = yield att.ReadByGroupTypeRequest(start, MAX_HANDLE, PRIMARY_SERVICE).encode()
            if _not_found(data):
                break
            rsp = _decode_as(kind, data, att.ReadByGroupTypeResponse)
            for handle, end, value in rsp.groups:
                if handle < start or end < handle:
                    raise _malformed(kind, "service handles out of order")
                try:
                    service_uuid = uuid_from_att(value)
                except UUIDError:
                    raise _malformed(kind, "a service UUID is not 2 or 16 octets") from None
                found.append(DiscoveredService(handle, end, service_uuid))
                start = end + 1
        return found

    def _characteristic_steps(
        self, start: int, end: int
    ) -> Generator[bytes, bytes, list[DiscoveredCharacteristic]]:
        kind = "characteristic discovery"
        found: list[tuple[int, int, Properties, uuid.UUID]] = []
        while start <= end:
            data = yield att.ReadByTypeRequest(start, end, CHARACTERISTIC).encode()
            if _not_found(data):
                break
            rsp = _decode_as(kind, data, att.ReadByTypeResponse)
            for handle, value in rsp.attributes:
                if not start <= handle <= end or len(value) not in (5, 19):
                    raise _malformed(kind, "a characteristic declaration is out of range")
                value_handle = value[1] | value[2] << 8
                found.append((handle, value_handle, Properties(value[0]), uuid_from_att(value[3:])))
                start = handle + 1
        ends = [h - 1 for h, *_ in found[1:]] + [end]
        return [
            DiscoveredCharacteristic(h, vh, props, u, e)
            for (h, vh, props, u), e in zip(found, ends, strict=True)
        ]

    def _descriptor_steps(
        self, start: int, end: int
    ) -> Generator[bytes, bytes, list[DiscoveredDescriptor]]:
        kind = "descriptor discovery"
        found: list[DiscoveredDescriptor] = []
        while start <= end:
            data = yield att.FindInformationRequest(start, end).encode()
            if _not_found(data):
                break
            rsp = _decode_as(kind, data, att.FindInformationResponse)
            for handle, attr_type in rsp.entries:
                if not start <= handle <= end:
                    raise _malformed(kind, "a descriptor handle is out of range")
                found.append(DiscoveredDescriptor(handle, attr_type))
                start = handle + 1
        return found

    def _profile_steps(self) -> Generator[bytes, bytes, GattProfile]:
        services = yield from self._service_steps()
        complete: list[DiscoveredService] = []
        for svc in services:
            chars: list[DiscoveredCharacteristic] = []
            if svc.end_handle > svc.handle:
                chars = yield from self._characteristic_steps(svc.handle + 1, svc.end_handle)
            with_descriptors = []
            for char in chars:
                descs: list[DiscoveredDescriptor] = []
                if char.end_handle > char.value_handle:
                    descs = yield from self._descriptor_steps(
                        char.value_handle + 1, char.end_handle
                    )
                with_descriptors.append(
                    DiscoveredCharacteristic(
                        char.declaration_handle,
                        char.value_handle,
                        char.properties,
                        char.uuid,
                        char.end_handle,
                        tuple(descs),
                    )
                )
            complete.append(
                DiscoveredService(svc.handle, svc.end_handle, svc.uuid, tuple(with_descriptors))
            )
        return GattProfile(tuple(complete))

    def _read_steps(self, handle: int) -> Generator[bytes, bytes, bytes]:
        data = yield _pack_op_handle(_READ_REQ, handle)
        if data[0] != _READ_RSP:
            raise _failure("read", data)
        value = data[1:]
        part_size = self._mtu - 1
        if len(value) < part_size:
            return value
        parts = [value]
        offset = len(value)
        while offset <= 0xFFFF:
            data = yield att.ReadBlobRequest(handle, offset).encode()
            if data[0] != _READ_BLOB_RSP:
                if _error_code(data) == AttErrorCode.ATTRIBUTE_NOT_LONG:
                    break
                raise _failure("read", data)
            part = data[1:]
            parts.append(part)
            offset += len(part)
            if len(part) < part_size:
                break
        return b"".join(parts)

    def _write_steps(self, kind: str, handle: int, value: bytes) -> Generator[bytes, bytes, None]:
        if len(value) <= self._mtu - 3:
            data = yield _pack_op_handle(_WRITE_REQ, handle) + value
            if data[0] != _WRITE_RSP:
                raise _failure(kind, data)
            return None
        part_size = self._mtu - 5
        for offset in range(0, len(value), part_size):
            request = att.PrepareWriteRequest(handle, offset, value[offset : offset + part_size])
            sent = request.encode()
            data = yield sent
            if data[0] != _PREPARE_WRITE_RSP or data[1:] != sent[1:]:
                error = (
                    _failure(kind, data)
                    if data[0] != _PREPARE_WRITE_RSP
                    else _malformed(kind, "the prepared part came back changed")
                )
                yield _CANCEL  # discard what the server queued so far
                raise error
        data = yield _EXECUTE
        if data[0] != _EXECUTE_WRITE_RSP:
            raise _failure(kind, data)
        return None


def _error_code(data: bytes) -> int | None:
    return data[4] if len(data) == 5 and data[0] == _ERROR_RSP else None
