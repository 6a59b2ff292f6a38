"""The hub server: a process hosting a :class:`~device_sim.radio.medium.Radio` with its bands,
reached by centrals in other processes over a Unix socket (default) or TCP on loopback.

It speaks the frames of :mod:`device_sim.radio.hub_wire`. Garbage, oversized frames or
unknown operations get an ``error`` answer (and the connection is closed if the stream can
no longer be trusted); the hub and the other bands keep running. When a central's socket
closes, every link it held is dropped and freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from device_sim.radio.hub_wire import (
    MAX_SCAN_S,
    HubAddress,
    HubProtocolError,
    Message,
    address_field,
    bytes_field,
    encode_frame,
    error_frame,
    float_field,
    int_field,
    read_frame,
    report_to_wire,
    request_id,
)
from device_sim.radio.medium import DisconnectReason, Radio, RadioError

log = logging.getLogger(__name__)


class _HubSession:
    """One central connected to the hub."""

    def __init__(
        self, radio: Radio, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.radio = radio
        self.reader = reader
        self.writer = writer
        self.links: dict[int, Any] = {}

    def send(self, message: Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_frame(message))

    async def run(self) -> None:
        try:
            while True:
                try:
                    message = await read_frame(self.reader)
                except HubProtocolError as exc:
                    self.send(error_frame(None, exc))
                    return  # the stream cannot be trusted any more
                if message is None:
                    return
                await self._handle(message)
                await self.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:
            # A fault behind the hub (a band's handler) on this central's input: close this
            # session cleanly and keep serving the others. The frame's content is not logged.
            log.warning("closing a hub session after %s", exc.__class__.__name__)
            self.send(error_frame(None, RadioError("the hub closed this session after a fault")))
        finally:
            for link in list(self.links.values()):
                with contextlib.suppress(Exception):
                    await link.disconnect()
            self.links.clear()
            self.writer.close()

    async def _handle(self, message: Message) -> None:
        op = message["op"]
        rid: int | None = None
        try:
            rid = request_id(message)
            if op == "frame":
                link = self._link(message)
                link.send(int_field(message, "cid"), bytes_field(message, "data"))
            elif op == "scan":
                duration = float_field(message, "duration", 0.0, maximum=MAX_SCAN_S)
                reports = await self.radio.scan(duration)
                self.send(
                    {"op": "scan", "id": rid, "reports": [report_to_wire(r) for r in reports]}
                )
            elif op == "connect":
                address = address_field(message, "address")
                await self._connect(rid, address, address_field(message, "central"))
            elif op == "display":
                text = await self.radio.read_display(address_field(message, "address"))
                self.send({"op": "display", "id": rid, "text": text})
            elif op == "encrypt_start":
                self._link(message)
                self.send({"op": "encrypt_skd", "id": rid, "skd": self.radio.random_bytes(16)})
            elif op == "encrypt_proof":
                link = self._link(message)
                skd = bytes_field(message, "skd", exact=16)
                proof = bytes_field(message, "proof", exact=32)
                level = link.encrypt_with_proof(skd, proof)
                self.send({"op": "encrypted", "id": rid, "level": int(level)})
            elif op == "disconnect":
                link = self.links.get(int_field(message, "link"))
                if link is not None:
                    await link.disconnect()
            else:
                raise HubProtocolError(f"unknown operation {op!r}")
        except RadioError as exc:
            self.send(error_frame(rid, exc))

    def _link(self, message: Message) -> Any:
        link = self.links.get(int_field(message, "link"))
        if link is None:
            raise RadioError("that link is not open: connect first")
        return link

    async def _connect(self, rid: int | None, address: str, central: str) -> None:
        # The band may send frames (or even drop the link) while it handles the connection,
        # before the radio has told us the link's handle: hold those until "connected" is out.
        handle_box: list[int] = []
        early: list[Message] = []

        def emit(message: Message) -> None:
            if handle_box:
                self.send({**message, "link": handle_box[0]})
            else:
                early.append(message)

        def on_frame(cid: int, payload: bytes) -> None:
            emit({"op": "frame", "cid": cid, "data": payload})

        def on_disconnect(reason: DisconnectReason) -> None:
            if handle_box:
                self.links.pop(handle_box[0], None)
            emit({"op": "disconnected", "reason": int(reason)})

        link = await self.radio.connect(
            address, central_address=central, on_frame=on_frame, on_disconnect=on_disconnect
        )
        handle_box.append(link.handle)
        if link.connected:
            self.links[link.handle] = link
        self.send({"op": "connected", "id": rid, "link": link.handle, "max_mtu": link.max_mtu})
        for message in early:
            self.send({**message, "link": link.handle})


class HubServer:
    """Serves a Radio to other processes until closed."""

    def __init__(self, radio: Radio, address: HubAddress) -> None:
        self.radio = radio
        self.address = address
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._socket_id: tuple[int, int] | None = None

    async def start(self) -> HubAddress:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            session = _HubSession(self.radio, reader, writer)
            task = asyncio.current_task()
            assert task is not None
            self._sessions.add(task)
            try:
                await session.run()
            finally:
                self._sessions.discard(task)

        if self.address.kind == "unix":
            await self._claim_socket_path()
            # bind under a private umask: the socket is never reachable by others, even briefly
            previous = os.umask(0o077)
            try:
                self._server = await asyncio.start_unix_server(on_client, path=self.address.path)
            finally:
                os.umask(previous)
            os.chmod(self.address.path, 0o600)
            stat = os.stat(self.address.path)
            self._socket_id = (stat.st_dev, stat.st_ino)
        else:
            self._server = await asyncio.start_server(
                on_client, host=self.address.host, port=self.address.port
            )
            port = self._server.sockets[0].getsockname()[1]
            self.address = HubAddress("tcp", host=self.address.host, port=port)
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._sessions):
                task.cancel()
            await self._server.wait_closed()
            self._server = None
        if self.address.kind == "unix" and self._socket_id is not None:
            # remove the socket only if it is still ours (another hub may have replaced it)
            with contextlib.suppress(FileNotFoundError):
                stat = os.stat(self.address.path)
                if (stat.st_dev, stat.st_ino) == self._socket_id:
                    os.unlink(self.address.path)
            self._socket_id = None

    async def _claim_socket_path(self) -> None:
        """Refuse a path another live hub serves; remove a stale socket left by a crash."""
        path = self.address.path
        if not os.path.exists(path):
            return
        try:
            _, writer = await asyncio.open_unix_connection(path)
        except OSError:
            os.unlink(path)  # nobody answers: a leftover of a hub that did not stop cleanly
            return
        writer.close()
        raise RadioError(
            f"a hub is already running at unix:{path}: stop it, or start this one with "
            "another --hub address"
        )
