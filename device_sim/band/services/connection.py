"""What a service handler sees of a connection, and the effects it asks the radio for."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from protocol.kme.control.schema import ControlMessage


@dataclass
class BandConnection:
    """The firmware's view of one central's connection: no radio in it.

    ``owner`` is set once the connection proved ownership (or activated the band) and
    lasts until it ends; ``nonce`` is the single-use owner challenge; ``log_page`` the
    consent-log page the client selected; ``consent_record`` the last record signed for
    it; ``mtu`` the negotiated ATT MTU.
    """

    handle: int
    owner: bool = False
    nonce: bytes | None = None
    log_page: int = 0
    consent_record: bytes = b""
    mtu: int = 23


@dataclass(frozen=True)
class Answer:
    """Indicate ``message`` on the control point that received the request."""

    message: ControlMessage


@dataclass(frozen=True)
class AnswerBytes:
    """Indicate ``value`` (a SIG control point's own response format) likewise."""

    value: bytes


@dataclass(frozen=True)
class AfterAnswer:
    """Run ``action`` once the client confirmed the answers (or the link dropped)."""

    action: Callable[[], None]


@dataclass(frozen=True)
class DropLinks:
    """Drop every link, as a power cycle does (the state is persisted)."""


@dataclass(frozen=True)
class PumpRecordSync:
    """The record-sync sender has chunks or answers to send on this connection."""


Effect = Answer | AnswerBytes | AfterAnswer | DropLinks | PumpRecordSync

Read = Callable[[BandConnection], bytes]
#: A characteristic write; refuses with :class:`protocol.ble.gatt.GattRejection`.
Write = Callable[[BandConnection, bytes], None]
#: A decoded control-point request; returns the effects (answers first).
Request = Callable[[BandConnection, ControlMessage, bytes], list[Effect]]
#: A raw write to a SIG control point (its own formats); returns the effects.
RawRequest = Callable[[BandConnection, bytes], list[Effect]]


@dataclass
class Service:
    """One service's handlers, keyed by characteristic UUID."""

    static: Mapping[uuid.UUID, bytes] = field(default_factory=dict)
    reads: Mapping[uuid.UUID, Read] = field(default_factory=dict)
    writes: Mapping[uuid.UUID, Write] = field(default_factory=dict)
    requests: Mapping[uuid.UUID, Request] = field(default_factory=dict)
    raw_requests: Mapping[uuid.UUID, RawRequest] = field(default_factory=dict)
