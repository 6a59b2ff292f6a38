"""An asyncio ATT bearer over the sans-IO :class:`~protocol.ble.gatt_client.GattClient`.

It owns the client's request queue (one ATT request outstanding), maps procedure ids to
futures, dispatches notifications and indications (confirmations are sent by the client
machine), and times out the outstanding request: after ``timeout_s`` without an answer the
ATT bearer is dead (Core Spec Vol 3 Part F 3.3.3), every procedure fails and the owner is
told so it can drop the link.

The timeout follows progress, not the request's age: it runs from the later of the request
and the last PDU received from the band. On a slow link a band's queued notifications can
fill the air for longer than the timeout ahead of its response; a link that keeps
delivering is alive, and only one that stopped delivering anything times out.

In the radio's fast mode frames cross synchronously: a request's response arrives while
``send`` is still on the stack. Incoming PDUs are queued and drained iteratively so that
long procedures (discovery) never recurse, and a request answered before ``send`` returns
completes without arming a timer or yielding to the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from bleak.exc import BleakError, BleakGATTProtocolError

from protocol.ble.gatt_client import (
    GattClient,
    GattClientClosed,
    GattProcedureError,
    Notification,
    ProcedureCompleted,
    ProcedureFailed,
    ProcedureStart,
)
from protocol.errors import KmebandError, UsageError


class SimLinkLostError(BleakError, KmebandError):
    """The simulated backend's link to the band is gone (dropped, timed out or disconnected).

    A ``BleakError``, as bleak's OS backends raise on a lost link: reconnect.
    """


class AttBearer:
    """Runs GATT procedures on one link; ``send`` puts an ATT PDU on the link."""

    def __init__(
        self,
        client: GattClient,
        send: Callable[[bytes], None],
        on_value: Callable[[int, bytes], None],
        on_dead: Callable[[], None],
        timeout_s: float,
    ) -> None:
        self.client = client
        self._send = send
        self._on_value = on_value
        self._on_dead = on_dead
        self.timeout_s = timeout_s
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._inbox: deque[bytes] = deque()
        self._draining = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_request = 0.0
        self._last_received = 0.0  # when a PDU last arrived: progress restarts the timer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: SimLinkLostError | None = None

    # -- incoming ----------------------------------------------------------------------

    def feed(self, pdu: bytes) -> None:
        """Handle one ATT PDU from the band (the link's frame handler calls this)."""
        if self._futures:  # only a waiting request needs to know the link moves
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._last_received = self._loop.time()
        if self._draining:
            self._inbox.append(pdu)
            return
        if len(pdu) >= 3 and pdu[0] == 0x1B:
            # Handle Value Notification: the hot path, no event objects.
            self._on_value(pdu[1] | pdu[2] << 8, pdu[3:])
            return
        self._inbox.append(pdu)
        self._drain()

    def _drain(self) -> None:
        self._draining = True
        try:
            inbox = self._inbox
            while inbox:
                to_send, events = self.client.receive(inbox.popleft())
                for event in events:
                    self._dispatch(event)
                for pdu in to_send:
                    self._transmit(pdu)
        finally:
            self._draining = False

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ProcedureCompleted):
            future = self._futures.pop(event.procedure_id, None)
            if future is not None and not future.done():
                future.set_result(event.result)
        elif isinstance(event, ProcedureFailed):
            future = self._futures.pop(event.procedure_id, None)
            if future is not None and not future.done():
                future.set_exception(_bleak_error(event.error))
        elif isinstance(event, Notification):
            self._on_value(event.handle, event.value)
        else:  # Indication: the confirmation is already among the PDUs to send
            self._on_value(event.handle, event.value)  # type: ignore[attr-defined]

    # -- outgoing ----------------------------------------------------------------------

    def _transmit(self, pdu: bytes) -> None:
        if pdu[0] != 0x1E:  # a request: its transaction timer starts now
            self._last_request = asyncio.get_running_loop().time()
        try:
            self._send(pdu)
        except KmebandError as exc:
            self.close(SimLinkLostError(f"the link to the band is down ({exc}): reconnect"))

    async def run(self, start: Callable[[], ProcedureStart]) -> Any:
        """Start a procedure (``start`` calls a GattClient method) and await its result."""
        if self._closed is not None:
            raise SimLinkLostError(str(self._closed))
        try:
            pid, pdu = start()
        except GattProcedureError as exc:
            raise SimLinkLostError(str(exc)) from None
        except UsageError as exc:
            raise BleakError(str(exc)) from None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[pid] = future
        if pdu is not None:
            self._transmit(pdu)
        if not future.done():
            self._arm_timer()
        return await future

    def write_command(self, handle: int, value: bytes) -> None:
        """Send a Write Command now (no response, no turn to wait for)."""
        if self._closed is not None:
            raise SimLinkLostError(str(self._closed))
        try:
            pdu = self.client.write_without_response(handle, value)
        except GattProcedureError as exc:
            raise SimLinkLostError(str(exc)) from None
        except UsageError as exc:
            raise BleakError(str(exc)) from None
        self._transmit(pdu)
        if self._closed is not None:
            raise SimLinkLostError(str(self._closed))

    # -- the ATT transaction timeout -----------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is None and self._closed is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(self._deadline(), self._check_timeout)

    def _deadline(self) -> float:
        return max(self._last_request, self._last_received) + self.timeout_s

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._futures or self._closed is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = self._deadline()
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._check_timeout)
            return
        for failed in self.client.abort("the band did not answer an ATT request in time"):
            future = self._futures.pop(failed.procedure_id, None)
            if future is not None and not future.done():
                future.set_exception(
                    SimLinkLostError(
                        f"nothing came from the band for {self.timeout_s:g} s while a request "
                        "waited (ATT transaction timeout): the link was closed, reconnect"
                    )
                )
        self.close(SimLinkLostError("the ATT transaction timed out: reconnect"))
        self._on_dead()

    # -- end -----------------------------------------------------------------------------

    def close(self, error: SimLinkLostError) -> None:
        """Fail every waiting procedure with ``error``; later calls raise it too."""
        if self._closed is None:
            self._closed = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(SimLinkLostError(str(error)))

    @property
    def closed(self) -> bool:
        return self._closed is not None


def _bleak_error(error: GattProcedureError) -> BleakError:
    """ATT Error Responses become bleak's BleakGATTProtocolError; the rest a BleakError."""
    if error.error_code is not None:
        mapped: BleakError = BleakGATTProtocolError(error.error_code)
    elif isinstance(error, GattClientClosed):
        mapped = SimLinkLostError(str(error))
    else:
        mapped = BleakError(str(error))
    mapped.__cause__ = error
    return mapped
