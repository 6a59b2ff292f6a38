"""Does a valid, band-signed consent record cover every record of a batch?

The batch body carries the encoded consent record; the header carries its SHA-256. The
ingest checks, in order: the digest matches; the band's signature verifies against the
public key registered at activation; every record's time is inside the record's covered
range and in an interval where its stream's category (and, for fields such as
``avg_hr``, the field's category) was granted under a recent enough privacy policy;
nothing falls after a withdrawal the account recorded here. Verified records are cached
by (band, key, digest): a band's consent changes rarely, its batches come often.

The record itself is ``protocol.kme.consent.ConsentRecord``: the band's log entries deciding
consent over ``covers_from..covers_to``, signed with the band's Ed25519 key.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protocol.errors import KmebandError
from protocol.kme.batch import BatchBody, BatchHeader, consent_digest_of
from protocol.kme.consent import ConsentError, ConsentRecord, ConsentSignatureError
from protocol.kme.records import FIELD_CONSENT, STREAM_CONSENT, ConsentCategory, StreamId

#: Intervals [start, end) of UTC seconds; ``end`` None while the grant still holds.
Interval = tuple[int, int | None]
#: Record times as decoded (an ``array``) or picked out by numpy.
Times = Sequence[int] | npt.NDArray[np.int64]

_MAX_CACHE = 10_000


class ConsentRejected(KmebandError):
    """The batch's consent record is invalid or does not cover its records."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class VerifiedConsent:
    """A consent record whose band signature verified, with its intervals per category."""

    def __init__(self, record: ConsentRecord) -> None:
        self.covers_from = record.covers_from
        self.covers_to = record.covers_to
        self._log = record.log()
        self._intervals: dict[tuple[ConsentCategory, int | None], list[Interval]] = {}

    def intervals(
        self, category: ConsentCategory, min_policy_version: int | None
    ) -> list[Interval]:
        """Consented ``[start, end)`` intervals, counting only grants of recent policies."""
        key = (category, min_policy_version)
        if key not in self._intervals:
            self._intervals[key] = self._log.intervals(category, min_policy_version)
        return self._intervals[key]


def verify_consent(
    consent_record: bytes,
    band_public_key: bytes,
    header: BatchHeader,
    body: BatchBody,
    *,
    min_policy_version: int,
    withdrawals: dict[ConsentCategory, int],
    cache: MutableMapping[tuple[bytes, bytes, bytes], object] | None = None,
) -> bytes:
    """Check the batch's consent; return the record's digest or raise ConsentRejected."""
    digest = consent_digest_of(consent_record)
    if digest != header.consent_digest:
        raise ConsentRejected(
            "consent_mismatch", "the consent record in the batch is not the one its header names"
        )
    key = (header.band, band_public_key, digest)
    verified = cache.get(key) if cache is not None else None
    if not isinstance(verified, VerifiedConsent):
        verified = decode_and_verify(consent_record, band_public_key)
        if cache is not None:
            if len(cache) >= _MAX_CACHE:
                cache.clear()
            cache[key] = verified
    check_coverage(verified, header.stream, body, withdrawals, min_policy_version)
    return digest


def decode_and_verify(consent_record: bytes, band_public_key: bytes) -> VerifiedConsent:
    """Decode the band-signed record and verify its signature with the registered key."""
    try:
        record = ConsentRecord.decode(consent_record)
        record.verify(band_public_key)
    except ConsentSignatureError as exc:
        raise ConsentRejected(
            "consent_invalid",
            "the consent record's signature does not verify with the key registered for "
            "this band; re-register the band or send its own signed record",
        ) from exc
    except ConsentError as exc:
        raise ConsentRejected(
            "consent_invalid", "the consent record is malformed; ask the band for a new one"
        ) from exc
    return VerifiedConsent(record)


def check_coverage(
    verified: VerifiedConsent,
    stream: StreamId,
    body: BatchBody,
    withdrawals: dict[ConsentCategory, int],
    min_policy_version: int,
) -> None:
    """Every record's time inside a grant of each category it needs; never after a withdrawal."""
    low, high = body.time_bounds
    if low < verified.covers_from or high > verified.covers_to:
        raise ConsentRejected(
            "consent_not_covering",
            "the consent record does not cover the time range of these records; send the "
            "record the band signed for them",
        )
    times = body.times()
    category = STREAM_CONSENT[stream]
    check = _Check(verified, withdrawals, min_policy_version)
    check.times(category, times, "records", body.time_bounds)
    for (field_stream, field), field_category in FIELD_CONSENT.items():
        if field_stream is not stream:
            continue
        values = body.columns[field]
        # Only records that carry the field (non-zero) need its extra consent; numpy
        # views of the columns pick them without Python work per record.
        carrying = _as_numpy(times)[_as_numpy(values) != 0]
        if carrying.size:
            bounds = (int(carrying.min()), int(carrying.max()))
            check.times(field_category, carrying, f"field {field}", bounds)


def _as_numpy(column: array[int]) -> npt.NDArray[np.int64]:
    """A zero-copy numpy view of an ``array`` column (same typecode letters)."""
    return np.frombuffer(column, dtype=np.dtype(column.typecode))


@dataclass(frozen=True)
class _Check:
    verified: VerifiedConsent
    withdrawals: dict[ConsentCategory, int]
    min_policy_version: int

    def times(
        self,
        category: ConsentCategory,
        times: Times,
        what: str,
        bounds: tuple[int, int],
    ) -> None:
        name = category.name.lower()
        withdrawn_at = self.withdrawals.get(category)
        intervals = _clip(self.verified.intervals(category, self.min_policy_version), withdrawn_at)
        if _covered(intervals, times, bounds):
            return
        if withdrawn_at is not None and _covered(
            self.verified.intervals(category, self.min_policy_version), times, bounds
        ):
            raise ConsentRejected(
                "consent_withdrawn",
                f"consent for {name} was withdrawn on this account; no new {name} data is "
                "accepted until the user grants it again on the band",
            )
        if _covered(_clip(self.verified.intervals(category, None), withdrawn_at), times, bounds):
            raise ConsentRejected(
                "policy_outdated",
                f"the {name} consent was given to a privacy policy older than version "
                f"{self.min_policy_version}; ask the user to accept the current policy",
            )
        raise ConsentRejected(
            "consent_not_covering",
            f"some {what} fall outside every interval with {name} consent; "
            "they must not be uploaded",
        )


def _covered(intervals: list[Interval], times: Times, bounds: tuple[int, int]) -> bool:
    if not intervals:
        return False
    low, high = bounds
    if any(start <= low and (end is None or high < end) for start, end in intervals):
        return True  # the common case: one grant covers the whole batch
    starts = [start for start, _ in intervals]
    for t in times:
        i = bisect_right(starts, t) - 1
        if i < 0:
            return False
        end = intervals[i][1]
        if end is not None and t >= end:
            return False
    return True


def _clip(intervals: list[Interval], withdrawn_at: int | None) -> list[Interval]:
    # After a withdrawal recorded here, only a grant given after it counts for new data.
    if withdrawn_at is None:
        return intervals
    return [(start, end) for start, end in intervals if start > withdrawn_at]
