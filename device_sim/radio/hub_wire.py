"""The hub's wire format: how a central in another process talks to a hub over a socket.

Both directions carry frames: a 4-byte big-endian length, then a CBOR map (at most
:data:`MAX_FRAME` bytes) whose ``op`` string names the operation. Requests carry an ``id``
echoed in the answer.

| central -> hub                                   | hub -> central                          |
| ------------------------------------------------ | --------------------------------------- |
| ``{op: "scan", id, duration}``                   | ``{op: "scan", id, reports: [...]}``    |
| ``{op: "connect", id, address, central}``        | ``{op: "connected", id, link, max_mtu}``|
| ``{op: "frame", link, cid, data}``               | ``{op: "frame", link, cid, data}``      |
| ``{op: "disconnect", id, link}``                 | ``{op: "disconnected", link, reason}``  |
| ``{op: "display", id, address}``                 | ``{op: "display", id, text}``           |
| ``{op: "encrypt_start", id, link}``              | ``{op: "encrypt_skd", id, skd}``        |
| ``{op: "encrypt_proof", id, link, skd, proof}``  | ``{op: "encrypted", id, level}``        |
| any request that fails                           | ``{op: "error", id, code, message}``    |

An ``error`` frame's ``code`` (:class:`HubErrorCode`) says which :class:`RadioError` the
hub raised, so the central raises the same typed error (an unknown address, a refused
encryption) without reading the ``message``, which is for people.

The hub serves this format in :mod:`device_sim.radio.hub_server`; centrals speak it through
:class:`~device_sim.radio.hub_client.RemoteRadio` in :mod:`device_sim.radio.hub_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import struct
from dataclasses import dataclass
from typing import Any

import cbor2

from device_sim.radio.medium import (
    AdvertisementReport,
    AdvertisingData,
    EncryptionRefusedError,
    RadioError,
    UnknownAddressError,
)
from protocol.errors import UsageError

#: The largest CBOR body either side accepts; a longer frame closes the connection.
MAX_FRAME = 64 * 1024
_LEN = struct.Struct(">I")

Message = dict[str, Any]


class HubProtocolError(RadioError):
    """A peer sent something that is not a valid hub frame or request."""


class HubErrorCode(enum.IntEnum):
    """Which error a failed request raised: the ``code`` of an ``error`` frame."""

    RADIO = 1  # any other RadioError: out of range, a dead link, not connectable
    UNKNOWN_ADDRESS = 2
    ENCRYPTION_REFUSED = 3
    MALFORMED = 4  # the request was not a valid hub frame


#: Each code's error class, most specific first (the first that matches names an error).
_ERROR_CLASSES: dict[HubErrorCode, type[RadioError]] = {
    HubErrorCode.UNKNOWN_ADDRESS: UnknownAddressError,
    HubErrorCode.ENCRYPTION_REFUSED: EncryptionRefusedError,
    HubErrorCode.MALFORMED: HubProtocolError,
    HubErrorCode.RADIO: RadioError,
}


def error_frame(rid: Any, error: RadioError) -> Message:
    """The ``error`` answer to request ``rid`` that failed with ``error``."""
    code = next(c for c, cls in _ERROR_CLASSES.items() if isinstance(error, cls))
    return {"op": "error", "id": rid, "code": int(code), "message": str(error)}


def expect(answer: Message, op: str) -> Message:
    """``answer`` if it is an ``op`` frame; raise the error an ``error`` frame carries."""
    if answer["op"] == op:
        return answer
    if answer["op"] != "error":
        raise HubProtocolError(f"the hub answered {answer['op']!r} where {op!r} was due")
    message, code = answer.get("message"), answer.get("code")
    text = message if isinstance(message, str) else "the hub refused the request"
    cls: type[RadioError] = RadioError  # also for a code from a newer hub
    if isinstance(code, int):
        with contextlib.suppress(ValueError):
            cls = _ERROR_CLASSES[HubErrorCode(code)]
    raise cls(text)


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


# -- frames ----------------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader) -> Message | None:
    """The next frame, or None when the peer closed the stream.

    Raises HubProtocolError for a frame over :data:`MAX_FRAME`, a body that is not CBOR,
    or a map without an ``op`` string: the stream cannot be trusted after that.
    """
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


def encode_frame(message: Message) -> bytes:
    """``message`` as a length-prefixed CBOR frame."""
    body = cbor2.dumps(message)
    return _LEN.pack(len(body)) + body


# -- fields ----------------------------------------------------------------------------
#
# Every field a peer sends is checked for its type and its size before anything uses it: a
# value that is wrong in either way is a HubProtocolError naming the field, never a
# TypeError, a huge allocation or a crash in the band behind the hub.

#: The largest request ``id`` (a 64-bit counter) and link handle or CID (16-bit) accepted.
MAX_REQUEST_ID = 2**63 - 1
MAX_U16 = 0xFFFF
#: The longest scan a request may ask for, in seconds of the hub's clock.
MAX_SCAN_S = 60.0
#: The length of a Bluetooth address as text, "AA:BB:CC:DD:EE:FF".
_ADDRESS_LEN = 17
_HEX = frozenset("0123456789abcdefABCDEF")


def _malformed(message: Message, name: str, what: str) -> HubProtocolError:
    return HubProtocolError(f"malformed {message['op']!r} frame: {name!r} {what}")


def request_id(message: Message) -> int | None:
    """The request's ``id`` (None when absent); HubProtocolError unless a 64-bit counter."""
    value = message.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REQUEST_ID:
        raise _malformed(message, "id", f"must be an integer 0..{MAX_REQUEST_ID}")
    return value


def int_field(message: Message, name: str, *, maximum: int = MAX_U16) -> int:
    """The integer field ``name`` in 0..``maximum``; HubProtocolError otherwise."""
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _malformed(message, name, f"must be an integer 0..{maximum}")
    return value


def float_field(message: Message, name: str, default: float, *, maximum: float) -> float:
    """The finite number field ``name`` in 0..``maximum`` (``default`` when absent)."""
    value = message.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(message, name, "must be a number")
    number = float(value) if isinstance(value, float) or abs(value) <= 2**53 else math.inf
    if not 0.0 <= number <= maximum:  # also refuses NaN and infinities
        raise _malformed(message, name, f"must be a number 0..{maximum:g}")
    return number


def str_field(message: Message, name: str, *, max_len: int = 256) -> str:
    """The text field ``name`` of at most ``max_len`` characters."""
    value = message.get(name)
    if not isinstance(value, str):
        raise _malformed(message, name, "must be text")
    if len(value) > max_len:
        raise _malformed(message, name, f"must be at most {max_len} characters")
    return value


def address_field(message: Message, name: str) -> str:
    """The Bluetooth address field ``name``: text like "AA:BB:CC:DD:EE:FF"."""
    value = message.get(name)
    if (
        not isinstance(value, str)
        or len(value) != _ADDRESS_LEN
        or any(value[i] != ":" for i in range(2, _ADDRESS_LEN, 3))
        or any(c not in _HEX for i, c in enumerate(value) if i % 3 != 2)
    ):
        raise _malformed(message, name, "must be a Bluetooth address like AA:BB:CC:DD:EE:FF")
    return value


def bytes_field(
    message: Message, name: str, *, max_len: int = MAX_FRAME, exact: int | None = None
) -> bytes:
    """The byte-string field ``name``: at most ``max_len`` bytes, or exactly ``exact``.

    Only a byte string is accepted: an integer (which ``bytes()`` would turn into that many
    zero bytes) or a list is malformed.
    """
    value = message.get(name)
    if not isinstance(value, bytes | bytearray):
        raise _malformed(message, name, "must be a byte string")
    if exact is not None and len(value) != exact:
        raise _malformed(message, name, f"must be {exact} bytes")
    if len(value) > max_len:
        raise _malformed(message, name, f"must be at most {max_len} bytes")
    return bytes(value)


# -- advertisement reports -------------------------------------------------------------


def report_to_wire(report: AdvertisementReport) -> Message:
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


def report_from_wire(item: Any) -> AdvertisementReport:
    """An advertisement report from a ``scan`` answer; HubProtocolError if malformed."""
    try:
        data = AdvertisingData(
            local_name=item["name"] if isinstance(item["name"], str) else None,
            service_uuids=tuple(str(u) for u in item["uuids"]),
            manufacturer_data={int(k): bytes(v) for k, v in item["mfr"].items()},
            tx_power=int(item["tx"]),
            connectable=bool(item["connectable"]),
        )
        if not isinstance(item["address"], str) or any(
            not isinstance(v, bytes) for v in item["mfr"].values()
        ):
            raise TypeError
        return AdvertisementReport(address=item["address"], data=data, rssi=int(item["rssi"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise HubProtocolError("the hub sent a malformed advertisement report") from None
