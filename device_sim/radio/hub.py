"""The hub: a process hosting a :class:`~device_sim.radio.medium.Radio` with its bands,
reached by centrals in other processes over a Unix socket (default) or TCP on loopback.

Wire format, both directions: a 4-byte big-endian length, then a CBOR map (at most
:data:`MAX_FRAME` bytes). Requests carry an ``id`` echoed in the answer.

| central -> hub                                   | hub -> central                          |
| ------------------------------------------------ | --------------------------------------- |
| ``{op: "scan", id, duration}``                   | ``{op: "scan", id, reports: [...]}``    |
| ``{op: "connect", id, address, central}``        | ``{op: "connected", id, link, max_mtu}``|
| ``{op: "frame", link, cid, data}``               | ``{op: "frame", link, cid, data}``      |
| ``{op: "disconnect", id, link}``                 | ``{op: "disconnected", link, reason}``  |
| ``{op: "display", id, address}``                 | ``{op: "display", id, text}``           |
| ``{op: "encrypt_start", id, link}``              | ``{op: "encrypt_skd", id, skd}``        |
| ``{op: "encrypt_proof", id, link, skd, proof}``  | ``{op: "encrypted", id, level}``        |
| any request that fails                           | ``{op: "error", id, message}``          |

Garbage, oversized frames or unknown operations get an ``error`` answer (and the
connection is closed if the stream can no longer be trusted); the hub and the other bands
keep running. When a central's socket closes, every link it held is dropped and freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

import cbor2

from device_sim.radio.medium import (
    AdvertisementReport,
    AdvertisingData,
    CentralLink,
    DisconnectHandler,
    DisconnectReason,
    EncryptionRefusedError,
    FrameHandler,
    Radio,
    RadioError,
    encryption_proof,
)
from protocol.ble.gatt_model import SecurityLevel
from protocol.errors import UsageError

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
_LEN = struct.Struct(">I")


class HubProtocolError(RadioError):
    """A peer sent something that is not a valid hub frame."""


@dataclass(frozen=True)
class HubAddress:
    """Where a hub listens: ``unix:/path/to/socket`` or ``tcp:127.0.0.1:PORT``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> HubAddress:
        if text.startswith("unix:"):
            path = text[5:]
            if not path:
                raise UsageError("a unix hub address needs a path: unix:/tmp/kmeband.sock")
            return cls("unix", path=path)
        if text.startswith("tcp:"):
            host, _, port = text[4:].rpartition(":")
            if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
                raise UsageError("the hub only listens on loopback: use tcp:127.0.0.1:PORT")
            try:
                return cls("tcp", host=host.strip("[]"), port=int(port))
            except ValueError:
                raise UsageError(f"{text!r} has no valid port: use tcp:127.0.0.1:PORT") from None
        raise UsageError(
            f"{text!r} is not a hub address: use unix:/path/to/socket or tcp:127.0.0.1:PORT"
        )

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        header = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _LEN.unpack(header)
    if length > MAX_FRAME:
        raise HubProtocolError(f"frame of {length} bytes exceeds the hub limit of {MAX_FRAME}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    try:
        message = cbor2.loads(body)
    except Exception:
        raise HubProtocolError("frame is not valid CBOR") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise HubProtocolError("frame is not a CBOR map with an 'op' string")
    return message


def _encode_frame(message: dict[str, Any]) -> bytes:
    body = cbor2.dumps(message)
    return _LEN.pack(len(body)) + body


def _report_to_wire(report: AdvertisementReport) -> dict[str, Any]:
    d = report.data
    return {
        "address": report.address,
        "rssi": report.rssi,
        "name": d.local_name,
        "uuids": list(d.service_uuids),
        "mfr": {int(k): v for k, v in d.manufacturer_data.items()},
        "tx": d.tx_power,
        "connectable": d.connectable,
    }


def _report_from_wire(item: dict[str, Any]) -> AdvertisementReport:
    data = AdvertisingData(
        local_name=item["name"],
        service_uuids=tuple(item["uuids"]),
        manufacturer_data={int(k): bytes(v) for k, v in item["mfr"].items()},
        tx_power=int(item["tx"]),
        connectable=bool(item["connectable"]),
    )
    return AdvertisementReport(address=item["address"], data=data, rssi=int(item["rssi"]))


class _HubSession:
    """One central connected to the hub."""

    def __init__(
        self, radio: Radio, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.radio = radio
        self.reader = reader
        self.writer = writer
        self.links: dict[int, Any] = {}

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(_encode_frame(message))

    async def run(self) -> None:
        try:
            while True:
                try:
                    message = await _read_frame(self.reader)
                except HubProtocolError as exc:
                    self.send({"op": "error", "id": None, "message": str(exc)})
                    return  # the stream cannot be trusted any more
                if message is None:
                    return
                await self._handle(message)
                await self.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for link in list(self.links.values()):
                with contextlib.suppress(Exception):
                    await link.disconnect()
            self.links.clear()
            self.writer.close()

    async def _handle(self, message: dict[str, Any]) -> None:
        op = message["op"]
        rid = message.get("id")
        try:
            if op == "frame":
                link = self.links.get(int(message["link"]))
                if link is None:
                    raise RadioError("that link is not open: connect first")
                link.send(int(message["cid"]), bytes(message["data"]))
            elif op == "scan":
                reports = await self.radio.scan(float(message.get("duration", 0.0)))
                self.send(
                    {"op": "scan", "id": rid, "reports": [_report_to_wire(r) for r in reports]}
                )
            elif op == "connect":
                await self._connect(rid, str(message["address"]), str(message["central"]))
            elif op == "display":
                text = await self.radio.read_display(str(message["address"]))
                self.send({"op": "display", "id": rid, "text": text})
            elif op == "encrypt_start":
                if int(message["link"]) not in self.links:
                    raise RadioError("that link is not open: connect first")
                self.send({"op": "encrypt_skd", "id": rid, "skd": self.radio._random(16)})
            elif op == "encrypt_proof":
                link = self.links.get(int(message["link"]))
                if link is None:
                    raise RadioError("that link is not open: connect first")
                level = link.encrypt_with_proof(bytes(message["skd"]), bytes(message["proof"]))
                self.send({"op": "encrypted", "id": rid, "level": int(level)})
            elif op == "disconnect":
                link = self.links.get(int(message["link"]))
                if link is not None:
                    await link.disconnect()
            else:
                raise HubProtocolError(f"unknown operation {op!r}")
        except (KeyError, TypeError, ValueError):
            self.send({"op": "error", "id": rid, "message": f"malformed {op!r} request"})
        except RadioError as exc:
            self.send({"op": "error", "id": rid, "message": str(exc)})

    async def _connect(self, rid: Any, address: str, central: str) -> None:
        # The band may send frames (or even drop the link) while it handles the connection,
        # before the radio has told us the link's handle: hold those until "connected" is out.
        handle_box: list[int] = []
        early: list[dict[str, Any]] = []

        def emit(message: dict[str, Any]) -> None:
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
        if answer["op"] != "encrypt_skd":
            raise RadioError(str(answer.get("message", "encryption start failed")))
        skd = bytes(answer["skd"])
        answer = await self._radio._request(
            {
                "op": "encrypt_proof",
                "link": self._handle,
                "skd": skd,
                "proof": encryption_proof(ltk, skd),
            },
            timeout_s,
        )
        if answer["op"] != "encrypted":
            raise EncryptionRefusedError(str(answer.get("message", "encryption refused")))
        self._security = SecurityLevel(int(answer["level"]))
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
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
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

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise RadioError("the hub connection is closed: open the RemoteRadio again")
        self._writer.write(_encode_frame(message))

    async def _request(
        self,
        message: dict[str, Any],
        timeout_s: float,
        connecting: tuple[str, FrameHandler, DisconnectHandler] | None = None,
    ) -> dict[str, Any]:
        rid = self._next_id
        self._next_id += 1
        if connecting is not None:
            self._connecting[rid] = connecting
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
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
                message = await _read_frame(self._reader)
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

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "frame":
            link = self._links.get(message["link"])
            if link is not None:
                link.on_frame(int(message["cid"]), bytes(message["data"]))
            return
        if op == "disconnected":
            link = self._links.get(message["link"])
            if link is not None:
                link._closed(DisconnectReason(int(message["reason"])))
            return
        rid = message.get("id", -1)
        if op == "connected" and rid in self._connecting:
            # Create the link now, not when the connect() caller resumes: frames the band
            # sends straight after connecting are already behind this message.
            address, on_frame, on_disconnect = self._connecting.pop(rid)
            link = _RemoteLink(
                self, int(message["link"]), address, message.get("max_mtu"), on_frame, on_disconnect
            )
            self._links[link.handle] = link
        future = self._pending.get(rid)
        if future is not None and not future.done():
            future.set_result(message)

    async def read_display(self, address: str) -> str | None:
        """What the band's screen shows now (a passkey during pairing)."""
        answer = await self._request({"op": "display", "address": address}, 10.0)
        if answer["op"] == "error":
            raise RadioError(str(answer["message"]))
        text = answer.get("text")
        return text if isinstance(text, str) else None

    async def scan(self, duration_s: float = 0.0) -> list[AdvertisementReport]:
        answer = await self._request({"op": "scan", "duration": duration_s}, duration_s + 10.0)
        if answer["op"] == "error":
            raise RadioError(str(answer["message"]))
        return [_report_from_wire(item) for item in answer["reports"]]

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
        if answer["op"] == "error":
            raise RadioError(str(answer["message"]))
        link = self._links.get(int(answer["link"]))
        if link is None:  # the band dropped the link while it was being made
            raise RadioError("the band dropped the connection as it was made: retry")
        return link
