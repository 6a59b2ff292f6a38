"""The hub client: :class:`RemoteRadio`, a CentralPort that reaches bands hosted by a hub
process (:mod:`device_sim.radio.hub_server`) over its socket.

It speaks the frames of :mod:`device_sim.radio.hub_wire`, and raises the typed error each
``error`` answer's code names (UnknownAddressError, EncryptionRefusedError, RadioError).
"""

from __future__ import annotations

import asyncio
import contextlib

from device_sim.radio.hub_wire import (
    HubAddress,
    HubProtocolError,
    Message,
    bytes_field,
    encode_frame,
    expect,
    int_field,
    read_frame,
    report_from_wire,
)
from device_sim.radio.medium import (
    AdvertisementReport,
    CentralLink,
    DisconnectHandler,
    DisconnectReason,
    FrameHandler,
    RadioError,
    encryption_proof,
)
from protocol.ble.gatt_model import SecurityLevel


class _RemoteLink:
    """The central's end of a link that lives in a hub process."""

    def __init__(
        self,
        radio: RemoteRadio,
        handle: int,
        address: str,
        max_mtu: int | None,
        on_frame: FrameHandler,
        on_disconnect: DisconnectHandler,
    ) -> None:
        self._radio = radio
        self._handle = handle
        self._address = address
        self._max_mtu = max_mtu
        self.on_frame = on_frame
        self.on_disconnect = on_disconnect
        self._connected = True
        self._security = SecurityLevel.NO_SECURITY

    @property
    def handle(self) -> int:
        return self._handle

    @property
    def security_level(self) -> SecurityLevel:
        return self._security

    async def start_encryption(self, ltk: bytes, timeout_s: float = 5.0) -> SecurityLevel:
        if not self._connected:
            raise RadioError("the link is down: reconnect before starting encryption")
        answer = await self._radio._request(
            {"op": "encrypt_start", "link": self._handle}, timeout_s
        )
        skd = bytes_field(expect(answer, "encrypt_skd"), "skd", exact=16)
        answer = await self._radio._request(
            {
                "op": "encrypt_proof",
                "link": self._handle,
                "skd": skd,
                "proof": encryption_proof(ltk, skd),
            },
            timeout_s,
        )
        level = int_field(expect(answer, "encrypted"), "level")
        try:
            self._security = SecurityLevel(level)
        except ValueError:
            raise HubProtocolError(f"the hub answered an unknown security level {level}") from None
        return self._security

    @property
    def peer_address(self) -> str:
        return self._address

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def max_mtu(self) -> int | None:
        return self._max_mtu

    def send(self, cid: int, payload: bytes) -> None:
        if not self._connected:
            raise RadioError("the link is down: reconnect before sending")
        self._radio._send({"op": "frame", "link": self._handle, "cid": cid, "data": payload})

    async def disconnect(self) -> None:
        if self._connected:
            self._radio._send({"op": "disconnect", "id": None, "link": self._handle})
            self._closed(DisconnectReason.LOCAL_HOST_TERMINATED)

    def _closed(self, reason: DisconnectReason) -> None:
        if self._connected:
            self._connected = False
            self._radio._links.pop(self._handle, None)
            self.on_disconnect(reason)


class RemoteRadio:
    """A CentralPort that reaches a hub process; use as an async context manager."""

    def __init__(self, address: HubAddress | str) -> None:
        self.address = HubAddress.parse(address) if isinstance(address, str) else address
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._connecting: dict[int, tuple[str, FrameHandler, DisconnectHandler]] = {}
        self._links: dict[int, _RemoteLink] = {}
        self._next_id = 1

    async def __aenter__(self) -> RemoteRadio:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        try:
            if self.address.kind == "unix":
                self._reader, self._writer = await asyncio.open_unix_connection(self.address.path)
            else:
                self._reader, self._writer = await asyncio.open_connection(
                    self.address.host, self.address.port
                )
        except OSError:
            raise RadioError(
                f"no hub answers at {self.address}: start one with 'kmeband sim' and use the "
                "address it prints"
            ) from None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def close(self) -> None:
        for link in list(self._links.values()):
            await link.disconnect()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _send(self, message: Message) -> None:
        if self._writer is None or self._writer.is_closing():
            raise RadioError("the hub connection is closed: open the RemoteRadio again")
        self._writer.write(encode_frame(message))

    async def _request(
        self,
        message: Message,
        timeout_s: float,
        connecting: tuple[str, FrameHandler, DisconnectHandler] | None = None,
    ) -> Message:
        rid = self._next_id
        self._next_id += 1
        if connecting is not None:
            self._connecting[rid] = connecting
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self._send({**message, "id": rid})
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise RadioError(f"the hub did not answer within {timeout_s:g} s") from None
        finally:
            self._pending.pop(rid, None)
            self._connecting.pop(rid, None)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                message = await read_frame(self._reader)
                if message is None:
                    break
                self._dispatch(message)
        except (HubProtocolError, ConnectionError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RadioError("the hub closed the connection"))
            for link in list(self._links.values()):
                link._closed(DisconnectReason.CONNECTION_TIMEOUT)

    def _dispatch(self, message: Message) -> None:
        op = message["op"]
        if op == "frame":
            link = self._links.get(int_field(message, "link"))
            if link is not None:
                link.on_frame(int_field(message, "cid"), bytes_field(message, "data"))
            return
        if op == "disconnected":
            link = self._links.get(int_field(message, "link"))
            if link is not None:
                code = int_field(message, "reason")
                try:
                    reason = DisconnectReason(code)
                except ValueError:  # a reason unknown here: the link is gone all the same
                    reason = DisconnectReason.CONNECTION_TIMEOUT
                link._closed(reason)
            return
        rid = message.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int):
            return  # an answer to nothing this client asked
        if op == "connected" and rid in self._connecting:
            # Create the link now, not when the connect() caller resumes: frames the band
            # sends straight after connecting are already behind this message.
            address, on_frame, on_disconnect = self._connecting.pop(rid)
            max_mtu = message.get("max_mtu")
            link = _RemoteLink(
                self,
                int_field(message, "link"),
                address,
                max_mtu if isinstance(max_mtu, int) else None,
                on_frame,
                on_disconnect,
            )
            self._links[link.handle] = link
        future = self._pending.get(rid)
        if future is not None and not future.done():
            future.set_result(message)

    async def read_display(self, address: str) -> str | None:
        """What the band's screen shows now (a passkey during pairing)."""
        answer = expect(await self._request({"op": "display", "address": address}, 10.0), "display")
        text = answer.get("text")
        return text if isinstance(text, str) else None

    async def scan(self, duration_s: float = 0.0) -> list[AdvertisementReport]:
        answer = await self._request({"op": "scan", "duration": duration_s}, duration_s + 10.0)
        reports = expect(answer, "scan").get("reports")
        if not isinstance(reports, list):
            raise HubProtocolError("the hub's scan answer has no list of reports")
        return [report_from_wire(item) for item in reports]

    async def connect(
        self,
        address: str,
        *,
        central_address: str,
        on_frame: FrameHandler,
        on_disconnect: DisconnectHandler,
        timeout_s: float = 10.0,
    ) -> CentralLink:
        answer = await self._request(
            {"op": "connect", "address": address, "central": central_address},
            timeout_s,
            connecting=(address, on_frame, on_disconnect),
        )
        link = self._links.get(int_field(expect(answer, "connected"), "link"))
        if link is None:  # the band dropped the link while it was being made
            raise RadioError("the band dropped the connection as it was made: retry")
        return link
