"""KME control messages shared by every service: the generic result and its status codes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from protocol.kme.control.schema import (
    ControlMessage,
    EnumOf,
    Field,
    Int,
    register_message,
)


class ControlStatus(enum.IntEnum):
    """Outcome codes of KME control-point requests."""

    OK = 0
    INVALID_REQUEST = 1  # a well-formed message the band cannot act on as given
    UNSUPPORTED = 2  # message type or schema version not supported by this band
    NOT_ACTIVATED = 3  # the band has no owner yet: activate it first
    ALREADY_ACTIVATED = 4  # the band already has an owner: factory reset to re-activate
    NOT_OWNER = 5  # authenticate as the owner (challenge/proof) on this connection first
    AUTH_FAILED = 6  # the ownership proof did not verify (or no challenge was pending)
    NOT_FOUND = 7  # no such item (e.g. alarm id)
    LIMIT_REACHED = 8  # no room for another item
    BUSY = 9  # another request is in progress: wait for its result
    RATE_LIMITED = 10  # too many failed attempts: wait before trying again
    INSUFFICIENT_SECURITY = 11  # the link is not encrypted and authenticated


_UINT8 = Int(0, 0xFF)


@register_message
@dataclass(frozen=True, slots=True)
class ControlResult(ControlMessage):
    """The band's answer to a control-point request that returns nothing else.

    Indicated on the control point that received the request; ``request_type`` is the
    request's message type (0 when the request could not be decoded at all).
    """

    MESSAGE_TYPE: ClassVar[int] = 0x01
    SERVICE: ClassVar[str] = "common"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "request_type", _UINT8, doc="message type of the request answered"),
        Field(3, "status", EnumOf(ControlStatus)),
    )
    request_type: int
    status: ControlStatus


__all__ = [
    "ControlResult",
    "ControlStatus",
]
