"""The client's view of the band's consent: read it, turn it into intervals, filter, change it.

The band is the source of truth. Before every sync the client reads the Consent State
characteristic (current flags) and every page of the Consent Change Log (band-signed),
and turns the log into per-category intervals ``[start, end)`` of UTC seconds in which the
category was granted under an accepted privacy-policy version. A record is queued only
when its stream's category was granted at the record's own time (``record_time``) and is
still granted when the client syncs (a withdrawal stops all further upload); a field
that needs a further consent (``FIELD_CONSENT``, e.g. ``avg_hr``) is cleared to 0 when that
consent was not granted. Everything else is counted as withheld and dropped in memory: it
never reaches disk, sealed or not.

Withdrawal (read from the band, or made from this client) purges that category's queued
batches from the outbox.

Every batch carries a band-signed ``protocol.kme.consent.ConsentRecord``: after reading the
log the client asks the band (Consent Control Point, RequestConsentRecord) to sign the
record of the consent since its first log entry, and reads it from the Consent Record
characteristic. The cloud verifies it with the band's key and checks every record of the
batch against it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from protocol.errors import KmebandError
from protocol.kme.consent import ConsentRecord, ConsentRecordError
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import (
    ConsentLogEntry,
    ConsentLogPage,
    ConsentResult,
    ConsentState,
    RequestConsentRecord,
    SelectConsentLogPage,
    SetConsent,
)
from protocol.kme.control.schema import ControlDecodeError, decode_as, encode_control
from protocol.kme.profile import (
    KME_CONSENT_CHANGE_LOG,
    KME_CONSENT_CONTROL_POINT,
    KME_CONSENT_RECORD,
    KME_CONSENT_STATE,
)
from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    ConsentCategory,
    StoredRecord,
    StreamId,
    record_time,
)
from sync_client.link_activity import LinkActivity
from sync_client.outbox import Outbox

#: ``[start, end)`` in UTC seconds; ``end`` None while the grant still holds.
Interval = tuple[int, int | None]

#: Log pages read at most per sync: bounds the work a faulty band can cause.
MAX_LOG_PAGES = 4096


class ConsentClientError(KmebandError):
    """The band's consent could not be read or changed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class AllowedIntervals:
    """Per consent category, the sorted, disjoint intervals in which it was granted."""

    grants: Mapping[ConsentCategory, tuple[Interval, ...]]

    def allows(self, category: ConsentCategory, t: int) -> bool:
        """Was ``category`` granted at UTC second ``t``?"""
        intervals = self.grants.get(category, ())
        i = bisect_right([start for start, _ in intervals], t) - 1
        if i < 0:
            return False
        end = intervals[i][1]
        return end is None or t < end

    def may_upload(self, category: ConsentCategory, t: int) -> bool:
        """Granted at ``t`` and still granted now: a withdrawal stops every later upload."""
        return self.allows(category, t) and self.granted_now(category)

    def may_upload_span(self, category: ConsentCategory, first: int, last: int) -> bool:
        """:meth:`may_upload` for every second of ``first .. last`` (one interval holds it)."""
        if not self.granted_now(category):
            return False
        for start, end in self.grants.get(category, ()):
            if start <= first and (end is None or last < end):
                return True
        return False

    def granted_now(self, category: ConsentCategory) -> bool:
        """Does the last interval of ``category`` still hold?"""
        intervals = self.grants.get(category, ())
        return bool(intervals) and intervals[-1][1] is None


def allowed_intervals(
    entries: Iterable[ConsentLogEntry], *, min_policy_version: int = 0
) -> AllowedIntervals:
    """Fold the band's change log into granted intervals per category.

    Entries are applied in log-index order. A grant under a policy version older than
    ``min_policy_version`` does not count (the user has not accepted the current policy);
    a later grant under an accepted version opens a new interval at its own time. Any
    withdrawal, or a grant under an outdated version, closes the open interval.
    """
    open_since: dict[ConsentCategory, int] = {}
    grants: dict[ConsentCategory, list[Interval]] = {}
    for entry in sorted(entries, key=lambda e: e.index):
        category = entry.category
        valid_grant = entry.granted and entry.policy_version >= min_policy_version
        started = open_since.get(category)
        if valid_grant:
            if started is None:
                open_since[category] = entry.time
            continue
        if started is not None:
            del open_since[category]
            if entry.time > started:
                grants.setdefault(category, []).append((started, entry.time))
    for category, started in open_since.items():
        grants.setdefault(category, []).append((started, None))
    return AllowedIntervals({c: tuple(_merge(v)) for c, v in grants.items()})


def _merge(intervals: list[Interval]) -> list[Interval]:
    """Sort and join overlapping intervals (a band clock set backwards can cause them)."""
    out: list[Interval] = []
    for start, end in sorted(intervals, key=lambda iv: iv[0]):
        if out:
            last_start, last_end = out[-1]
            if last_end is None or start <= last_end:
                merged_end = None if end is None or last_end is None else max(end, last_end)
                out[-1] = (last_start, merged_end)
                continue
        out.append((start, end))
    return out


def filter_record(record: StoredRecord, allowed: AllowedIntervals) -> StoredRecord | None:
    """``record`` as it may be queued (a field cleared without its consent), or None."""
    # Consent to cloud sync must hold both when the record was made and now: a withdrawal
    # stops every further upload of the category, also of records made before it.
    t = record_time(record.record)
    if not allowed.may_upload(STREAM_CONSENT[record.stream], t):
        return None
    for (stream, field), category in FIELD_CONSENT.items():
        needs = stream is record.stream and getattr(record.record, field)
        if needs and not allowed.may_upload(category, t):
            cleared = dataclasses.replace(cast(Any, record.record), **{field: 0})
            record = StoredRecord(record.stream, record.seq, cleared)
    return record


def all_may_upload(stream: StreamId, first: int, last: int, allowed: AllowedIntervals) -> bool:
    """May every record of ``stream`` timed ``first .. last`` go as it is (no field cleared)?

    The fast path for a chunk of records: one interval check instead of one per record.
    """
    if not allowed.may_upload_span(STREAM_CONSENT[stream], first, last):
        return False
    return all(
        allowed.may_upload_span(category, first, last)
        for (s, _field), category in FIELD_CONSENT.items()
        if s is stream
    )


@dataclass(frozen=True, slots=True)
class BandConsent:
    """Everything read from the band's Consent service before a sync.

    ``consent_record`` is the band-signed record each batch carries; ``allowed`` the
    intervals computed from the log.
    """

    state: ConsentState
    entries: tuple[ConsentLogEntry, ...]
    consent_record: bytes
    allowed: AllowedIntervals

    def withdrawn(self) -> frozenset[ConsentCategory]:
        """Categories currently not granted on the band."""
        return frozenset(f.category for f in self.state.flags if not f.granted)


#: The end of time for a consent record request: the band clamps it to its own clock.
_UNTIL_NOW = 0xFFFF_FFFF_FFFF


class ConsentGattPort(Protocol):
    """The part of a bleak ``BleakClient`` the consent exchange uses (a port, not a GATT client)."""

    async def read_gatt_char(self, char_specifier: Any, **kwargs: Any) -> bytearray: ...

    async def write_gatt_char(
        self, char_specifier: Any, data: Any, response: Any = ...
    ) -> None: ...

    async def start_notify(self, char_specifier: Any, callback: Any, **kwargs: Any) -> None: ...

    async def stop_notify(self, char_specifier: Any) -> None: ...


async def read_band_consent(
    client: ConsentGattPort,
    *,
    min_policy_version: int = 0,
    timeout_s: float = 10.0,
    activity: LinkActivity | None = None,
) -> BandConsent:
    """Read Consent State and every Consent Change Log page; compute the intervals.

    Each wait fails when nothing moved on the link for ``timeout_s`` (``activity``, shared
    with the rest of the connection, says when something last did).
    """
    activity = activity if activity is not None else LinkActivity(timeout_s)

    async def read(uuid: object) -> bytes:
        try:
            return bytes(await activity.wait(client.read_gatt_char(str(uuid))))
        except TimeoutError:
            raise ConsentClientError(
                "the band did not answer a consent read in time; move closer and sync again"
            ) from None

    try:
        state = decode_as(await read(KME_CONSENT_STATE), ConsentState)
    except ControlDecodeError as exc:
        raise ConsentClientError(f"the band's consent state is malformed ({exc})") from None
    pages: list[bytes] = []
    entries: list[ConsentLogEntry] = []
    next_index = 0
    while next_index < state.log_length:
        if len(pages) >= MAX_LOG_PAGES:
            raise ConsentClientError("the band's consent log is too long to read")
        select = encode_control(SelectConsentLogPage(next_index))
        try:
            await activity.wait(
                client.write_gatt_char(str(KME_CONSENT_CONTROL_POINT), select, response=True)
            )
        except TimeoutError:
            raise ConsentClientError(
                "the band did not take a consent log page request in time; move closer and "
                "sync again"
            ) from None
        raw = await read(KME_CONSENT_CHANGE_LOG)
        try:
            page = decode_as(raw, ConsentLogPage)
        except ControlDecodeError as exc:
            raise ConsentClientError(f"a consent log page is malformed ({exc})") from None
        if page.first_index != next_index or not page.entries:
            raise ConsentClientError(
                "the band's consent log pages do not follow on; sync again, and if it "
                "persists the band's firmware is faulty"
            )
        for offset, entry in enumerate(page.entries):
            if entry.index != next_index + offset:
                raise ConsentClientError("the band's consent log entries are out of order")
        pages.append(raw)
        entries.extend(page.entries)
        next_index += len(page.entries)
    if not pages:
        raise ConsentClientError(
            "the band has no consent log: nothing may be synced until consent is granted"
        )
    record = await _request_consent_record(client, entries[0].time, activity)
    allowed = allowed_intervals(entries, min_policy_version=min_policy_version)
    return BandConsent(state, tuple(entries), record, allowed)


async def _request_consent_record(
    client: ConsentGattPort, covers_from: int, activity: LinkActivity
) -> bytes:
    """Have the band sign the record of the consent since ``covers_from`` (to its now).

    Every batch of this sync carries it; the cloud checks it with the band's key. The band
    answers the request before it answers the read, so the read returns the fresh record
    (empty when the band refused: not the owner, or too long a history for one record).
    """
    request = encode_control(RequestConsentRecord(covers_from, _UNTIL_NOW))
    try:
        await activity.wait(
            client.write_gatt_char(str(KME_CONSENT_CONTROL_POINT), request, response=True)
        )
        raw = bytes(await activity.wait(client.read_gatt_char(str(KME_CONSENT_RECORD))))
    except TimeoutError:
        raise ConsentClientError(
            "the band did not answer the consent record request in time; sync again"
        ) from None
    if not raw:
        raise ConsentClientError(
            "the band would not sign a consent record (this client is not its owner, or its "
            "consent history is too long for one record); nothing can be uploaded without one"
        )
    try:
        ConsentRecord.decode(raw)
    except ConsentRecordError as exc:
        raise ConsentClientError(f"the band's consent record is malformed ({exc})") from None
    return raw


def purge_withdrawn(outbox: Outbox, band: bytes, consent: BandConsent) -> dict[int, int]:
    """Delete queued batches of every category withdrawn on the band; count per category."""
    purged: dict[int, int] = {}
    for category in sorted(consent.withdrawn()):
        n = outbox.purge_category(band, int(category))
        if n:
            purged[int(category)] = n
    return purged


async def set_consent(
    client: ConsentGattPort,
    category: ConsentCategory,
    granted: bool,
    policy_version: int,
    *,
    outbox: Outbox | None = None,
    band: bytes | None = None,
    timeout_s: float = 10.0,
    wait_indication: Callable[[], Awaitable[bytes]] | None = None,
) -> int | None:
    """Grant or withdraw ``category`` on the band (owner only); return the new log index.

    The band logs the change with its own clock. On withdrawal the category's queued
    batches are purged from ``outbox`` right away. ``wait_indication`` returns the next
    Consent Control Point indication (the caller subscribed to it); without it the answer
    is not awaited and None is returned.
    """
    message = encode_control(SetConsent(category, granted, policy_version))
    try:
        await asyncio.wait_for(
            client.write_gatt_char(str(KME_CONSENT_CONTROL_POINT), message, response=True),
            timeout_s,
        )
    except TimeoutError:
        raise ConsentClientError("the band did not take the consent change in time") from None
    log_index: int | None = None
    if wait_indication is not None:
        try:
            raw = await asyncio.wait_for(wait_indication(), timeout_s)
            answer = cast(
                ConsentResult | ControlResult, decode_as(raw, ConsentResult, ControlResult)
            )
        except TimeoutError:
            raise ConsentClientError(
                "the band did not confirm the consent change; read consent again to check"
            ) from None
        except ControlDecodeError as exc:
            raise ConsentClientError(f"the band's answer is malformed ({exc})") from None
        if answer.status is not ControlStatus.OK:
            hint = (
                "; authenticate as the owner first"
                if answer.status in (ControlStatus.NOT_OWNER, ControlStatus.AUTH_FAILED)
                else ""
            )
            raise ConsentClientError(
                f"the band refused the consent change ({answer.status.name}){hint}"
            )
        log_index = answer.log_index if isinstance(answer, ConsentResult) else None
    if not granted and outbox is not None and band is not None:
        outbox.purge_category(band, int(category))
    return log_index


__all__ = [
    "AllowedIntervals",
    "BandConsent",
    "ConsentClientError",
    "Interval",
    "allowed_intervals",
    "filter_record",
    "purge_withdrawn",
    "read_band_consent",
    "set_consent",
]
