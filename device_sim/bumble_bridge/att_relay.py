"""One bumble connection seen by a simulated peripheral as a link from a central.

:class:`RelayLink` stands where :class:`~device_sim.radio.medium.PeripheralLink` stands on the
simulated radio: the peripheral sends ATT PDUs on it and reads its security level. The
relay speaks ATT to the peripheral on behalf of bumble's GATT server, one request at a time
as an ATT client must (Vol 3 Part F 3.3.2): a value is read whole with Read and Read Blob
requests, a value longer than a Write Request holds is written with Prepare and Execute
Write, and the peripheral's notifications and indications are handed to callbacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from device_sim.radio.medium import ATT_CID, DisconnectReason, LinkFault
from protocol.ble import att
from protocol.ble.att import AttOpcode
from protocol.ble.gatt_model import SecurityLevel
from protocol.errors import KmebandError

#: An ATT transaction that has not completed in 30 s has failed (Vol 3 Part F 3.3.3).
ATT_TRANSACTION_TIMEOUT_S = 30.0
#: The longest attribute value (Vol 3 Part F 3.2.9).
MAX_VALUE = 512
_RESPONSES = frozenset(
    {
        AttOpcode.ERROR_RSP,
        AttOpcode.EXCHANGE_MTU_RSP,
        AttOpcode.READ_RSP,
        AttOpcode.READ_BLOB_RSP,
        AttOpcode.WRITE_RSP,
        AttOpcode.PREPARE_WRITE_RSP,
        AttOpcode.EXECUTE_WRITE_RSP,
    }
)


class RelayAttError(KmebandError):
    """The peripheral answered a relayed request with an ATT Error Response."""

    def __init__(self, error_code: int, handle: int) -> None:
        self.error_code = error_code
        self.handle = handle
        super().__init__(
            f"the peripheral refused handle 0x{handle:04X} with {att.error_name(error_code)}"
        )


class RelayClosedError(KmebandError):
    """The connection went down (or the peripheral stopped answering) mid-request."""


class RelayLink:
    """The peripheral's end of a bridged connection (duck-types ``PeripheralLink``)."""

    def __init__(
        self,
        handle: int,
        central_address: str,
        *,
        on_notification: Callable[[int, bytes], None],
        on_indication: Callable[[int, bytes], None],
        on_disconnect_request: Callable[[DisconnectReason], None],
    ) -> None:
        self.handle = handle
        self.central_address = central_address
        self.connected = True
        self.fault = LinkFault()
        self.security_level = SecurityLevel.NO_SECURITY
        self.mtu = att.DEFAULT_MTU
        self._on_notification = on_notification
        self._on_indication = on_indication
        self._on_disconnect_request = on_disconnect_request
        self._deliver: Callable[[bytes], None] | None = None
        self._direct: Callable[[bytes], None] | None = None
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[att.AttPdu] | None = None

    def attach(self, deliver: Callable[[bytes], None]) -> None:
        """Where requests go: the peripheral's ``on_frame`` for this link's ATT channel."""
        self._deliver = deliver

    def send_directly(self, sink: Callable[[bytes], None]) -> None:
        """Hand every ATT PDU the peripheral sends to ``sink`` as it is (direct ATT mode)."""
        self._direct = sink

    # -- the peripheral's side ----------------------------------------------------------
    def send(self, cid: int, payload: bytes) -> None:
        if cid != ATT_CID or not payload or not self.connected:
            return  # pairing is bumble's own: the peripheral's SMP channel stays silent
        if self._direct is not None:
            self._direct(payload)
            return
        opcode = payload[0]
        if opcode in _RESPONSES:
            pending = self._pending
            if pending is not None and not pending.done():
                pending.set_result(att.decode_pdu(payload))
        elif opcode == AttOpcode.HANDLE_VALUE_NTF:
            handle, value = att.decode_notification(payload)
            self._on_notification(handle, value)
        elif opcode == AttOpcode.HANDLE_VALUE_IND:
            pdu = att.decode_pdu(payload)
            assert isinstance(pdu, att.HandleValueIndication)
            self._on_indication(pdu.handle, pdu.value)

    def disconnect(
        self, reason: DisconnectReason = DisconnectReason.REMOTE_USER_TERMINATED
    ) -> None:
        if self.connected:
            self._on_disconnect_request(reason)

    # -- bumble's side ------------------------------------------------------------------
    def close(self) -> None:
        self.connected = False
        pending = self._pending
        if pending is not None and not pending.done():
            pending.set_exception(RelayClosedError("the central disconnected"))

    def confirm_indication(self) -> None:
        """The central confirmed the indication: pass the confirmation on."""
        if self.connected and self._deliver is not None:
            self._deliver(att.HandleValueConfirmation().encode())

    async def _request(self, pdu: bytes) -> att.AttPdu:
        if self._deliver is None or not self.connected:
            raise RelayClosedError("the connection is down")
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            try:
                self._deliver(pdu)
                answer = await asyncio.wait_for(self._pending, ATT_TRANSACTION_TIMEOUT_S)
            except TimeoutError:
                raise RelayClosedError("the peripheral did not answer within 30 s") from None
            finally:
                self._pending = None
        if isinstance(answer, att.ErrorResponse):
            raise RelayAttError(answer.error_code, answer.handle)
        return answer

    async def exchange_mtu(self, mtu: int) -> int:
        """Offer the central's negotiated MTU, so the peripheral sizes values as bumble does."""
        answer = await self._request(att.ExchangeMtuRequest(mtu).encode())
        assert isinstance(answer, att.ExchangeMtuResponse)
        self.mtu = max(23, min(mtu, answer.server_rx_mtu))
        return self.mtu

    async def read(self, handle: int) -> bytes:
        """The whole value: a Read, then Read Blobs while each part fills the response."""
        answer = await self._request(att.ReadRequest(handle).encode())
        assert isinstance(answer, att.ReadResponse)
        value = answer.value
        part = answer.value
        while len(part) == self.mtu - 1 and len(value) < MAX_VALUE:
            try:
                blob = await self._request(att.ReadBlobRequest(handle, len(value)).encode())
            except RelayAttError as exc:
                if exc.error_code == att.AttErrorCode.ATTRIBUTE_NOT_LONG:
                    break  # the value was exactly one response long
                raise
            assert isinstance(blob, att.ReadBlobResponse)
            part = blob.value
            value += part
        return value

    async def write(self, handle: int, value: bytes) -> None:
        """Write a value with a Write Request, or a long one with a prepared write."""
        if len(value) <= self.mtu - 3:
            answer = await self._request(att.WriteRequest(handle, value).encode())
            assert isinstance(answer, att.WriteResponse)
            return
        step = self.mtu - 5
        try:
            for offset in range(0, len(value), step):
                part = value[offset : offset + step]
                await self._request(att.PrepareWriteRequest(handle, offset, part).encode())
        except RelayAttError:
            await self._request(att.ExecuteWriteRequest(commit=False).encode())
            raise
        await self._request(att.ExecuteWriteRequest(commit=True).encode())
