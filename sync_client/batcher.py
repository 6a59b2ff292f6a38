"""Records of one stream -> sealed batches, cut by size and age limits.

A batch holds at most ``max_records`` records and covers at most ``max_span_s`` seconds
of record time (its "age": the span between its oldest and newest record), so a batch
rejected or purged later never takes more than a bounded slice of data with it, and a
batch body stays far below the ingest's inflate limit. Each batch gets a header with the
band pseudonym (never the serial), the service data the privacy policy names, and the
digest of the band-signed consent record that covers it; the body is encoded by
``protocol.kme.batch`` and sealed with HPKE by ``sync_client.sealing`` before anything is
written anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from protocol.errors import UsageError
from protocol.kme.batch import (
    MAX_RECORDS_PER_BATCH,
    SUITE_X25519,
    BatchError,
    BatchHeader,
    HpkeSuiteId,
    consent_digest_of,
    encode_batch_plaintext,
)
from protocol.kme.records import FIELD_CONSENT, STREAM_CONSENT, StoredRecord
from sync_client.outbox import QueuedBatch
from sync_client.sealing import RecipientPublicKey, seal_batch


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When to cut a batch: at ``max_records`` records or ``max_span_s`` of record time."""

    max_records: int = 2048
    max_span_s: int = 6 * 3600

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= MAX_RECORDS_PER_BATCH:
            raise UsageError(f"max_records must be 1..{MAX_RECORDS_PER_BATCH}")
        if self.max_span_s < 0:
            raise UsageError("max_span_s must be 0 or more seconds")

    def admits(self, count: int, first_time: int, t: int) -> bool:
        """May a record timed ``t`` join a batch of ``count`` records starting at ``first_time``?

        The one cutting rule: the puller applies it record by record as records arrive.
        """
        if count == 0:
            return True
        return count < self.max_records and abs(t - first_time) <= self.max_span_s


@dataclass(frozen=True, slots=True)
class ServiceData:
    """The service data every batch header carries (and nothing more, by policy)."""

    firmware_version: str
    model: str
    client_os: str
    client_version: str


class Batcher:
    """Cuts one band's records into batches and seals each to the ingest's key.

    ``random_bytes`` draws batch ids and ``clock`` gives the header's ``created`` time;
    both are injectable so tests are deterministic.
    """

    def __init__(
        self,
        *,
        band: bytes,
        service: ServiceData,
        consent_record: bytes,
        recipient_key: RecipientPublicKey,
        suite: HpkeSuiteId = SUITE_X25519,
        limits: BatchLimits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.band = band
        self.service = service
        self.consent_record = consent_record
        self.consent_digest = consent_digest_of(consent_record)
        self.recipient_key = recipient_key
        self.suite = suite
        self.limits = limits or BatchLimits()
        self._random_bytes = random_bytes
        self._clock = clock

    def header_for(self, records: Sequence[StoredRecord]) -> BatchHeader:
        """The header of a batch of ``records`` (which must respect the limits)."""
        if not records:
            raise BatchError("a batch needs at least one record")
        return BatchHeader(
            batch_id=self._random_bytes(16),
            band=self.band,
            stream=records[0].stream,
            first_seq=records[0].seq,
            last_seq=records[-1].seq,
            count=len(records),
            consent_digest=self.consent_digest,
            firmware_version=self.service.firmware_version,
            model=self.service.model,
            client_os=self.service.client_os,
            client_version=self.service.client_version,
            created=int(self._clock()),
        )

    def seal_one(
        self, records: Sequence[StoredRecord], *, fallback_of: bytes | None = None
    ) -> QueuedBatch:
        """Seal one run of records (already within the limits) as one batch."""
        header = self.header_for(records)
        plaintext = encode_batch_plaintext(records, self.consent_record)
        envelope = seal_batch(header, plaintext, self.recipient_key, self.suite)
        return QueuedBatch(
            batch_id=header.batch_id,
            band=self.band,
            stream=int(header.stream),
            category=int(STREAM_CONSENT[header.stream]),
            first_seq=header.first_seq,
            last_seq=header.last_seq,
            records=header.count,
            envelope=envelope,
            created=float(header.created),
            categories=categories_needed(records),
            fallback_of=fallback_of,
        )

    def seal_run(self, records: Sequence[StoredRecord]) -> list[QueuedBatch]:
        """Seal one run, plus a fallback without the fields that need a further consent.

        A run whose fields need more than the stream's consent (``avg_hr`` of activity
        minutes needs heart rate) is sealed twice: as it is, and with those fields
        cleared. The outbox offers the fallback only if the first is purged, so a
        withdrawal of the field's category drops the field but not the records.
        """
        primary = self.seal_one(records)
        if primary.categories == 1 << primary.category:
            return [primary]
        bare = [without_field_consent(r) for r in records]
        return [primary, self.seal_one(bare, fallback_of=primary.batch_id)]


def categories_needed(records: Sequence[StoredRecord]) -> int:
    """Bitmask (``1 << category``) of the consent categories ``records`` need.

    The stream's own category, plus each field's category when the field holds a value
    in any record (records of one stream).
    """
    if not records:
        raise BatchError("a batch needs at least one record")
    stream = records[0].stream
    mask = 1 << STREAM_CONSENT[stream]
    for (s, name), category in FIELD_CONSENT.items():
        if s is stream and any(getattr(r.record, name) for r in records):
            mask |= 1 << category
    return mask


def without_field_consent(record: StoredRecord) -> StoredRecord:
    """``record`` with every field that needs a further consent cleared to 0."""
    fields = {name: 0 for (s, name) in FIELD_CONSENT if s is record.stream}
    if not fields or not any(getattr(record.record, name) for name in fields):
        return record
    cleared = dataclasses.replace(cast(Any, record.record), **fields)
    return StoredRecord(record.stream, record.seq, cleared)


__all__ = [
    "BatchLimits",
    "Batcher",
    "ServiceData",
    "categories_needed",
    "without_field_consent",
]
