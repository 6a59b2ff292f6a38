"""Consent: the change log, the state and intervals it implies, the band-signed consent
record, and the one record filter that the firmware, the client and the ingest all use.

Semantics. Each category is withdrawn until its first grant. A change at UTC second ``T``
governs every record whose :func:`protocol.kme.records.record_time` is ``>= T`` until the
category's next change, so consented *intervals* are half-open ``[start, end)`` (``end``
None while still granted). Changes are kept in the band's log order; their times never
decrease (a band whose clock was set back logs at its last logged time), and of two
changes at the same second the later one wins. A ``min_policy_version`` makes a grant of
an older privacy-policy version count as no consent.

The consent record (:class:`ConsentRecord`) is what travels with every batch: the log
entries that decide consent over ``covers_from .. covers_to`` (inclusive), signed by the
band's Ed25519 key over ``CONSENT_RECORD_CONTEXT`` + its canonical CBOR without the
signature. It names no band, serial or account: the batch header binds it to a band, and
the batch names it by :meth:`ConsentRecord.digest`. Nothing here reads a clock; times are
passed in.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import cbor2
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.errors import KmebandError, UsageError
from protocol.kme.control.consent import ConsentFlag, ConsentLogEntry, ConsentSource, ConsentState
from protocol.kme.control.schema import (
    Bytes,
    ControlDecodeError,
    ControlEncodeError,
    ControlRecord,
    Field,
    Int,
    ListOf,
    RecordOf,
    register_record,
)
from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    ConsentCategory,
    Record,
    StoredRecord,
    StreamId,
    record_time,
)
from protocol.kme.strict_cbor import StrictCborError, loads_strict

#: Prefix of the bytes a band signs for a consent record (domain separation).
CONSENT_RECORD_CONTEXT: Final = b"KME-consent-record-v1\x00"
CONSENT_RECORD_VERSION: Final = 1
#: Most log entries one consent record carries (keeps it far below a batch's 16 KiB cap).
MAX_RECORD_ENTRIES: Final = 512
MAX_POLICY_VERSION: Final = 0xFFFF
_UTC = Int(0, 0xFFFF_FFFF_FFFF)
_FOREVER: Final = 2**62

#: The value a field takes when its extra consent is missing (FIELD_CONSENT).
FIELD_ABSENT_VALUE: Final[Mapping[str, object]] = {"avg_hr": 0}


class ConsentError(KmebandError):
    """Base of the consent errors."""


class ConsentLogError(ConsentError, UsageError):
    """A consent change that cannot join the log as given (see the message)."""


class ConsentRecordError(ConsentError, ValueError):
    """Bytes that are not a valid consent record, or a record that does not hold together."""


class ConsentSignatureError(ConsentError):
    """A consent record without a valid band signature: do not trust or upload under it."""


# ------------------------------------------------------------------------ change log


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One grant or withdrawal of one category, at a UTC second, by the band or the owner."""

    timestamp: int
    category: ConsentCategory
    granted: bool
    policy_version: int  # the privacy policy version shown when it was made (0..65535)
    source: ConsentSource
    tz_offset_min: int = 0

    def __post_init__(self) -> None:
        if type(self.timestamp) is not int or not 0 <= self.timestamp <= _UTC.maximum:
            raise ConsentLogError("a consent change's time must be UTC seconds >= 0")
        if not isinstance(self.category, ConsentCategory):
            raise ConsentLogError("a consent change needs a ConsentCategory")
        if type(self.granted) is not bool:
            raise ConsentLogError("a consent change's granted flag must be a bool")
        if (
            type(self.policy_version) is not int
            or not 0 <= self.policy_version <= MAX_POLICY_VERSION
        ):
            raise ConsentLogError("a policy version must be an integer 0..65535")
        if not isinstance(self.source, ConsentSource):
            raise ConsentLogError("a consent change needs a ConsentSource")

    def to_entry(self, index: int) -> ConsentLogEntry:
        """The band's log entry form (Consent Change Log characteristic)."""
        return ConsentLogEntry(
            index,
            self.category,
            self.granted,
            self.policy_version,
            self.timestamp,
            self.tz_offset_min,
            self.source,
        )

    @classmethod
    def from_entry(cls, entry: ConsentLogEntry) -> ConsentChange:
        return cls(
            entry.time,
            entry.category,
            entry.granted,
            entry.policy_version,
            entry.source,
            entry.tz_offset_min,
        )


@dataclass(frozen=True, slots=True)
class CategoryState:
    """One category at one instant: granted or not, under which policy, since when."""

    granted: bool
    policy_version: int
    since: int | None  # time of the deciding change; None if never changed


Interval = tuple[int, int | None]


class ConsentLog:
    """The ordered, append-only log of consent changes and what it implies at any time."""

    def __init__(self, changes: Iterable[ConsentChange] = ()) -> None:
        self._changes: list[ConsentChange] = []
        self._by_category: dict[ConsentCategory, list[ConsentChange]] = {
            c: [] for c in ConsentCategory
        }
        for change in changes:
            self.append(change)

    def append(self, change: ConsentChange) -> int:
        """Add a change at the end; returns its index. Times must not go backwards."""
        if not isinstance(change, ConsentChange):
            raise ConsentLogError("only ConsentChange values can join a consent log")
        if self._changes and change.timestamp < self._changes[-1].timestamp:
            raise ConsentLogError(
                "consent changes must be logged in time order; log a change made after a "
                "clock reset at the last logged time"
            )
        self._changes.append(change)
        self._by_category[change.category].append(change)
        return len(self._changes) - 1

    @property
    def changes(self) -> tuple[ConsentChange, ...]:
        return tuple(self._changes)

    def __len__(self) -> int:
        return len(self._changes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConsentLog) and self._changes == other._changes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ConsentLog({len(self._changes)} changes)"

    def _deciding(self, category: ConsentCategory, t: int) -> ConsentChange | None:
        changes = self._by_category[ConsentCategory(category)]
        index = bisect.bisect_right(changes, t, key=lambda c: c.timestamp)
        return changes[index - 1] if index else None

    def state_at(self, t: int) -> dict[ConsentCategory, CategoryState]:
        """Every category's state for a record at UTC second ``t``."""
        out: dict[ConsentCategory, CategoryState] = {}
        for category in ConsentCategory:
            change = self._deciding(category, t)
            if change is None:
                out[category] = CategoryState(False, 0, None)
            else:
                out[category] = CategoryState(
                    change.granted, change.policy_version, change.timestamp
                )
        return out

    def is_consented(
        self, category: ConsentCategory, t: int, min_policy_version: int | None = None
    ) -> bool:
        """Whether a record of ``category`` at UTC second ``t`` may be kept and uploaded."""
        change = self._deciding(category, t)
        return change is not None and _counts(change, min_policy_version)

    def intervals(
        self, category: ConsentCategory, min_policy_version: int | None = None
    ) -> list[Interval]:
        """The consented intervals ``[start, end)`` of ``category``, sorted and disjoint."""
        out: list[Interval] = []
        start: int | None = None
        changes = self._by_category[ConsentCategory(category)]
        for index, change in enumerate(changes):
            if index + 1 < len(changes) and changes[index + 1].timestamp == change.timestamp:
                continue  # a later change in the same second decides that second
            consented = _counts(change, min_policy_version)
            if consented and start is None:
                start = change.timestamp
            elif not consented and start is not None:
                out.append((start, change.timestamp))
                start = None
        if start is not None:
            out.append((start, None))
        return out

    def current_state(self) -> ConsentState:
        """The Consent State characteristic value: every category's latest flag."""
        flags = []
        for category in ConsentCategory:
            changes = self._by_category[category]
            if changes:
                last = changes[-1]
                flags.append(
                    ConsentFlag(
                        category,
                        last.granted,
                        last.policy_version,
                        last.timestamp,
                        last.tz_offset_min,
                    )
                )
            else:
                flags.append(ConsentFlag(category, False, 0, 0, 0))
        return ConsentState(tuple(flags), len(self._changes))

    def entries(self, first_index: int = 0) -> tuple[ConsentLogEntry, ...]:
        """The log as the band's entries, from ``first_index`` on."""
        return tuple(c.to_entry(i) for i, c in enumerate(self._changes) if i >= first_index)

    @classmethod
    def from_entries(cls, entries: Iterable[ConsentLogEntry]) -> ConsentLog:
        """Rebuild a log from its entries, which must be complete: indices 0, 1, 2, ..."""
        log = cls()
        for expected, entry in enumerate(entries):
            if entry.index != expected:
                raise ConsentLogError(
                    "consent log entries are missing or out of order; read the whole log"
                )
            log.append(ConsentChange.from_entry(entry))
        return log

    def encode(self) -> bytes:
        """Canonical CBOR of the whole log: an array of entry maps (keys as in control)."""
        items = ListOf(RecordOf(ConsentLogEntry), len(self._changes))
        try:
            raw = items.encode(self.entries(), "consent log")
        except ControlEncodeError as exc:
            raise ConsentLogError(str(exc)) from None
        return bytes(cbor2.dumps(raw, canonical=True))

    @classmethod
    def decode(cls, data: bytes) -> ConsentLog:
        raw = _load_canonical(data, "consent log")
        try:
            entries = ListOf(RecordOf(ConsentLogEntry), 1 << 20).decode(raw, "consent log")
            return cls.from_entries(entries)
        except (ControlDecodeError, ConsentLogError) as exc:
            raise ConsentRecordError(f"not a consent log: {exc}") from None

    def covering_entries(self, start: int, end: int) -> tuple[ConsentLogEntry, ...]:
        """The entries deciding consent for times ``start..end`` (inclusive): per category
        the last change at or before ``start``, then every change up to ``end``."""
        if end < start:
            raise ConsentLogError("a covered range must not end before it starts")
        deciding: set[int] = set()
        for index, change in enumerate(self._changes):
            if change.timestamp > start:
                break
            deciding -= {i for i in deciding if self._changes[i].category == change.category}
            deciding.add(index)
        return tuple(
            change.to_entry(i)
            for i, change in enumerate(self._changes)
            if i in deciding or start < change.timestamp <= end
        )


def _counts(change: ConsentChange, min_policy_version: int | None) -> bool:
    return change.granted and (
        min_policy_version is None or change.policy_version >= min_policy_version
    )


# ------------------------------------------------------------------- the filter


def filter_records(
    records: Sequence[StoredRecord],
    log: ConsentLog,
    min_policy_version: int | None = None,
) -> tuple[list[StoredRecord], int]:
    """Apply consent to records: ``(allowed, withheld_count)``.

    A record whose stream's category (STREAM_CONSENT) was not consented at its
    record_time is withheld. A field needing further consent (FIELD_CONSENT) that was not
    consented then is cleared to its absent value (avg_hr -> 0). Order is kept.
    """
    if not records:
        return [], 0
    times = np.fromiter((record_time(s.record) for s in records), np.int64, len(records))
    cache: dict[ConsentCategory, np.ndarray[Any, np.dtype[np.bool_]]] = {}

    def consented(category: ConsentCategory) -> np.ndarray[Any, np.dtype[np.bool_]]:
        if category not in cache:
            cache[category] = _inside(times, log.intervals(category, min_policy_version))
        return cache[category]

    keep = np.zeros(len(records), dtype=np.bool_)
    streams = np.fromiter((int(s.stream) for s in records), np.int64, len(records))
    for stream, category in STREAM_CONSENT.items():
        mine = streams == int(stream)
        if mine.any():
            keep |= mine & consented(category)
    clear: dict[int, list[str]] = {}
    for (stream, name), category in FIELD_CONSENT.items():
        mine = keep & (streams == int(stream)) & ~consented(category)
        for index in np.flatnonzero(mine).tolist():
            clear.setdefault(index, []).append(name)
    allowed = [records[i] for i in np.flatnonzero(keep).tolist()]
    if clear:
        allowed = [
            _cleared(stored, clear[i]) if i in clear else stored
            for i, stored in zip(np.flatnonzero(keep).tolist(), allowed, strict=True)
        ]
    return allowed, len(records) - len(allowed)


def _inside(
    times: np.ndarray[Any, np.dtype[np.int64]], intervals: list[Interval]
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    if not intervals:
        return np.zeros(times.shape, dtype=np.bool_)
    starts = np.array([s for s, _ in intervals], dtype=np.int64)
    ends = np.array([_FOREVER if e is None else e for _, e in intervals], dtype=np.int64)
    index = np.searchsorted(starts, times, side="right") - 1
    safe = np.maximum(index, 0)
    result: np.ndarray[Any, np.dtype[np.bool_]] = (index >= 0) & (times < ends[safe])
    return result


def gate_record(
    stream: StreamId, record: Record, is_allowed: Callable[[ConsentCategory, float], bool]
) -> Record | None:
    """The band's consent gate for one record it is about to store, whatever produced it.

    ``None`` when the stream's category (STREAM_CONSENT) is not allowed at the record's
    time; otherwise the record with every field whose own consent (FIELD_CONSENT) is not
    allowed then set to its absent value (``avg_hr`` -> 0). The same rule as
    :func:`filter_records`, one record at a time, for the band's flash.
    """
    t = float(record_time(record))
    if not is_allowed(STREAM_CONSENT[stream], t):
        return None
    absent = {
        name: FIELD_ABSENT_VALUE.get(name, 0)
        for (s, name), category in FIELD_CONSENT.items()
        if s == stream and not is_allowed(category, t)
    }
    return dataclasses.replace(record, **absent) if absent else record  # type: ignore[arg-type]


def _cleared(stored: StoredRecord, names: list[str]) -> StoredRecord:
    absent = {name: FIELD_ABSENT_VALUE.get(name, 0) for name in names}
    return dataclasses.replace(stored, record=dataclasses.replace(stored.record, **absent))  # type: ignore[arg-type]


# ------------------------------------------------------------- the consent record


def _load_canonical(data: bytes, what: str) -> object:
    try:
        # untrusted (the ingest decodes records it receives): only the types records use
        raw = loads_strict(bytes(data))
    except StrictCborError:
        raise ConsentRecordError(f"{what}: not a well-formed CBOR item") from None
    try:
        canonical = cbor2.dumps(raw, canonical=True)
    except Exception:
        raise ConsentRecordError(f"{what}: holds values CBOR cannot re-encode") from None
    if canonical != bytes(data):
        raise ConsentRecordError(f"{what}: not in canonical CBOR form")
    return raw


@register_record
@dataclass(frozen=True, slots=True)
class ConsentRecord(ControlRecord):
    """A band-signed statement of the consent that governs ``covers_from..covers_to``.

    ``entries`` are the band's log entries that decide consent over that range (see
    :meth:`ConsentLog.covering_entries`); ``issued_at`` is the band's clock when it signed.
    Build one with :meth:`covering`, then :meth:`sign` it with the band key.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "version", Int(CONSENT_RECORD_VERSION, CONSENT_RECORD_VERSION)),
        Field(1, "covers_from", _UTC, doc="UTC seconds, inclusive"),
        Field(2, "covers_to", _UTC, doc="UTC seconds, inclusive"),
        Field(3, "issued_at", _UTC, doc="UTC seconds, band clock at signing"),
        Field(4, "entries", ListOf(RecordOf(ConsentLogEntry), MAX_RECORD_ENTRIES)),
        Field(5, "signature", Bytes(64, 64), required=False, doc="Ed25519, band key"),
    )
    covers_from: int
    covers_to: int
    issued_at: int
    entries: tuple[ConsentLogEntry, ...]
    signature: bytes | None = None
    version: int = CONSENT_RECORD_VERSION

    @classmethod
    def covering(cls, log: ConsentLog, start: int, end: int, issued_at: int) -> ConsentRecord:
        """The unsigned record for records timed ``start..end`` (inclusive) under ``log``."""
        if issued_at < end:
            raise ConsentLogError("a consent record cannot cover time after it was issued")
        entries = log.covering_entries(start, end)
        if len(entries) > MAX_RECORD_ENTRIES:
            raise ConsentLogError(
                f"more than {MAX_RECORD_ENTRIES} consent changes in one range; "
                "cover a shorter time range"
            )
        return cls(start, end, issued_at, entries)

    def _raw(self, with_signature: bool) -> dict[int, Any]:
        record = self if with_signature else dataclasses.replace(self, signature=None)
        try:
            raw: dict[int, Any] = RecordOf(ConsentRecord).encode(record, "consent record")
        except ControlEncodeError as exc:
            raise ConsentRecordError(str(exc)) from None
        return raw

    def signed_bytes(self) -> bytes:
        """What the band signs: the context string and the canonical CBOR sans signature."""
        return CONSENT_RECORD_CONTEXT + bytes(cbor2.dumps(self._raw(False), canonical=True))

    def encode(self) -> bytes:
        """Canonical CBOR of the record, signature included: the bytes a batch carries."""
        return bytes(cbor2.dumps(self._raw(True), canonical=True))

    def digest(self) -> bytes:
        """SHA-256 of :meth:`encode`: the ``consent_digest`` a batch header names."""
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode(cls, data: bytes) -> ConsentRecord:
        """Decode and check structure (not the signature: call :meth:`verify`)."""
        raw = _load_canonical(data, "consent record")
        try:
            record: ConsentRecord = RecordOf(ConsentRecord).decode(raw, "consent record")
        except ControlDecodeError as exc:
            raise ConsentRecordError(str(exc)) from None
        record.check()
        return record

    def check(self) -> None:
        """Raise ConsentRecordError unless range, entry order and times hold together."""
        if self.covers_to < self.covers_from or self.issued_at < self.covers_to:
            raise ConsentRecordError("consent record: covered range or issue time is wrong")
        indices = [e.index for e in self.entries]
        times = [e.time for e in self.entries]
        if indices != sorted(set(indices)) or times != sorted(times):
            raise ConsentRecordError("consent record: entries are not in log order")
        if any(t > self.covers_to for t in times):
            raise ConsentRecordError("consent record: an entry is after the covered range")

    def sign(self, private_key_bytes: bytes) -> ConsentRecord:
        """This record signed with the band's 32-byte Ed25519 private key (deterministic)."""
        self.check()
        key = _private_key(private_key_bytes)
        return dataclasses.replace(self, signature=key.sign(self.signed_bytes()))

    def verify(self, public_key_bytes: bytes) -> None:
        """Raise ConsentSignatureError unless the band's key signed exactly this record."""
        if self.signature is None:
            raise ConsentSignatureError("the consent record is not signed; ask the band again")
        if type(public_key_bytes) is not bytes or len(public_key_bytes) != 32:
            raise ConsentSignatureError("a band public key is 32 bytes (Ed25519)")
        try:
            Ed25519PublicKey.from_public_bytes(public_key_bytes).verify(
                self.signature, self.signed_bytes()
            )
        except (InvalidSignature, ValueError):
            raise ConsentSignatureError(
                "the consent record's signature does not verify with this band's key; "
                "do not upload or accept data under it"
            ) from None

    def log(self) -> ConsentLog:
        """The covering entries as a log (valid for times inside the covered range)."""
        return ConsentLog(ConsentChange.from_entry(e) for e in self.entries)

    def covers(self, t: int) -> bool:
        return self.covers_from <= t <= self.covers_to


def _private_key(private_key_bytes: bytes) -> Ed25519PrivateKey:
    if type(private_key_bytes) is not bytes or len(private_key_bytes) != 32:
        raise ConsentLogError("a band private key is 32 bytes (Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(private_key_bytes)


__all__ = [
    "CONSENT_RECORD_CONTEXT",
    "CONSENT_RECORD_VERSION",
    "FIELD_ABSENT_VALUE",
    "MAX_RECORD_ENTRIES",
    "CategoryState",
    "ConsentChange",
    "ConsentError",
    "ConsentLog",
    "ConsentLogError",
    "ConsentRecord",
    "ConsentRecordError",
    "ConsentSignatureError",
    "ConsentSource",
    "filter_records",
    "gate_record",
]
