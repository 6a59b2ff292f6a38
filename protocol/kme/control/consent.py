"""KME control messages of the Consent service: state, signed change log, changes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from protocol.kme.control.common import ControlStatus
from protocol.kme.control.schema import (
    Bool,
    Bytes,
    ControlMessage,
    ControlRecord,
    EnumOf,
    Field,
    Int,
    ListOf,
    RecordOf,
    register_message,
    register_record,
)
from protocol.kme.records import ConsentCategory

_UINT16 = Int(0, 0xFFFF)
_UINT32 = Int(0, 0xFFFF_FFFF)
_UTC_SECONDS = Int(0, 0xFFFF_FFFF_FFFF)
_TZ_OFFSET_MIN = Int(-720, 840)


class ConsentSource(enum.IntEnum):
    """Who made a consent change."""

    BAND = 1  # on the band's own screen
    OWNER_CLIENT = 2  # by the owner's authenticated client
    FACTORY = 3  # factory defaults (everything withdrawn)


@register_record
@dataclass(frozen=True, slots=True)
class ConsentFlag(ControlRecord):
    """The current state of one consent category."""

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "category", EnumOf(ConsentCategory)),
        Field(1, "granted", Bool()),
        Field(2, "policy_version", _UINT16, doc="privacy policy version accepted"),
        Field(3, "changed_at", _UTC_SECONDS, doc="UTC seconds of the last change"),
        Field(4, "tz_offset_min", _TZ_OFFSET_MIN),
    )
    category: ConsentCategory
    granted: bool
    policy_version: int
    changed_at: int
    tz_offset_min: int


#: Entries per Consent Change Log page: the worst case still encodes in under 512 bytes.
MAX_LOG_PAGE_ENTRIES = 12


@register_record
@dataclass(frozen=True, slots=True)
class ConsentLogEntry(ControlRecord):
    """One logged consent change; ``index`` counts changes from 0 since activation."""

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "index", _UINT32),
        Field(1, "category", EnumOf(ConsentCategory)),
        Field(2, "granted", Bool()),
        Field(3, "policy_version", _UINT16),
        Field(4, "time", _UTC_SECONDS, doc="UTC seconds of the change, band clock"),
        Field(5, "tz_offset_min", _TZ_OFFSET_MIN),
        Field(6, "source", EnumOf(ConsentSource)),
    )
    index: int
    category: ConsentCategory
    granted: bool
    policy_version: int
    time: int
    tz_offset_min: int
    source: ConsentSource


@register_message
@dataclass(frozen=True, slots=True)
class ConsentState(ControlMessage):
    """Value of the Consent State characteristic: every category's current flag.

    ``log_length`` is the number of change-log entries, so a client can tell whether
    it has read the whole log.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x20
    SERVICE: ClassVar[str] = "consent"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "flags", ListOf(RecordOf(ConsentFlag), len(ConsentCategory))),
        Field(3, "log_length", _UINT32),
    )
    flags: tuple[ConsentFlag, ...]
    log_length: int


@register_message
@dataclass(frozen=True, slots=True)
class ConsentLogPage(ControlMessage):
    """Value of the Consent Change Log characteristic: a signed page of the change log.

    The page starts at the index chosen with :class:`SelectConsentLogPage` (0 after
    connecting) and holds as many entries as fit in 512 bytes. ``signature`` is the
    band's Ed25519 signature over :func:`unsigned_encoding` of this page, so the cloud
    can verify the consent history with the band's public key.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x21
    SERVICE: ClassVar[str] = "consent"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "first_index", _UINT32),
        Field(3, "total", _UINT32, doc="entries in the whole log"),
        Field(4, "entries", ListOf(RecordOf(ConsentLogEntry), MAX_LOG_PAGE_ENTRIES)),
        Field(5, "signature", Bytes(64, 64), required=False, doc="Ed25519, band key"),
    )
    first_index: int
    total: int
    entries: tuple[ConsentLogEntry, ...]
    signature: bytes | None = None


@register_message
@dataclass(frozen=True, slots=True)
class SelectConsentLogPage(ControlMessage):
    """Consent control point: choose the first log index the next log read returns.

    Answered by :class:`ControlResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x22
    SERVICE: ClassVar[str] = "consent"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "first_index", _UINT32),)
    first_index: int


@register_message
@dataclass(frozen=True, slots=True)
class SetConsent(ControlMessage):
    """Consent control point (owner only): grant or withdraw one category.

    The band logs the change with its own clock and answers :class:`ConsentResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x23
    SERVICE: ClassVar[str] = "consent"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "category", EnumOf(ConsentCategory)),
        Field(3, "granted", Bool()),
        Field(4, "policy_version", _UINT16, doc="privacy policy version shown to the user"),
    )
    category: ConsentCategory
    granted: bool
    policy_version: int


@register_message
@dataclass(frozen=True, slots=True)
class ConsentResult(ControlMessage):
    """Answer to :class:`SetConsent`; ``log_index`` is the new log entry's index."""

    MESSAGE_TYPE: ClassVar[int] = 0x24
    SERVICE: ClassVar[str] = "consent"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "status", EnumOf(ControlStatus)),
        Field(3, "log_index", _UINT32, required=False),
    )
    status: ControlStatus
    log_index: int | None = None


@register_message
@dataclass(frozen=True, slots=True)
class RequestConsentRecord(ControlMessage):
    """Ask the band to sign a consent record covering ``covers_from..covers_to`` (UTC, inclusive).

    Owner only. The band clamps ``covers_to`` to its clock's now (a record never speaks of
    the future) and answers :class:`ControlResult` (OK; INVALID_REQUEST when the range is
    then empty; LIMIT_REACHED when the record would not fit in one 512-byte value: ask for
    a shorter range); on OK the record (``protocol.kme.consent.
    ConsentRecord``) is then readable from the Consent Record characteristic on this
    connection. Batches carry it so the cloud can check their consent with the band's key.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x25
    SERVICE: ClassVar[str] = "consent"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "covers_from", _UTC_SECONDS, doc="UTC seconds, inclusive"),
        Field(3, "covers_to", _UTC_SECONDS, doc="UTC seconds, inclusive; clamped to now"),
    )
    covers_from: int
    covers_to: int


__all__ = [
    "MAX_LOG_PAGE_ENTRIES",
    "ConsentFlag",
    "ConsentLogEntry",
    "ConsentLogPage",
    "ConsentResult",
    "ConsentSource",
    "ConsentState",
    "RequestConsentRecord",
    "SelectConsentLogPage",
    "SetConsent",
]
