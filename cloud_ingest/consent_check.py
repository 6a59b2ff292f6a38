"""Does a valid, band-signed consent record cover every record of a batch?

The batch body carries the encoded consent record; the header carries its SHA-256. The
ingest checks, in order: the digest matches; the band's signature verifies against the
public key registered at activation; the policy version is recent enough; every record's
time falls in an interval where its stream's category (and, for fields such as
``avg_hr``, the field's category) was granted; nothing falls after a withdrawal the
account recorded here. Verified records are cached by (band, digest): a band's consent
changes rarely, its batches come often.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

from protocol.batch import BatchBody, BatchHeader, consent_digest_of
from protocol.errors import KmebandError
from protocol.records import FIELD_CONSENT, STREAM_CONSENT, ConsentCategory, StreamId

#: Intervals [start, end) of UTC seconds; ``end`` None while the grant still holds.
Interval = tuple[int, int | None]

_MAX_CACHE = 10_000


class ConsentRejected(KmebandError):
    """The batch's consent record is invalid or does not cover its records."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VerifiedConsent:
    """A consent record whose signature verified: its grants per category, as intervals."""

    policy_version: int
    grants: dict[ConsentCategory, list[Interval]]


def verify_consent(
    consent_record: bytes,
    band_public_key: bytes,
    header: BatchHeader,
    body: BatchBody,
    *,
    min_policy_version: int,
    withdrawals: dict[ConsentCategory, int],
    cache: MutableMapping[tuple[bytes, bytes], object] | None = None,
) -> bytes:
    """Check the batch's consent; return the record's digest or raise ConsentRejected."""
    digest = consent_digest_of(consent_record)
    if digest != header.consent_digest:
        raise ConsentRejected(
            "consent_mismatch", "the consent record in the batch is not the one its header names"
        )
    key = (header.band, digest)
    verified = cache.get(key) if cache is not None else None
    if not isinstance(verified, VerifiedConsent):
        verified = decode_and_verify(consent_record, band_public_key)
        if cache is not None:
            if len(cache) >= _MAX_CACHE:
                cache.clear()
            cache[key] = verified
    if verified.policy_version < min_policy_version:
        raise ConsentRejected(
            "policy_outdated",
            f"the consent was given to privacy policy version {verified.policy_version}; this "
            f"ingest needs version {min_policy_version} or later: ask the user to accept it",
        )
    check_coverage(verified, header.stream, body, withdrawals)
    return digest


def decode_and_verify(consent_record: bytes, band_public_key: bytes) -> VerifiedConsent:
    """Decode the band-signed record and verify its signature with the registered key."""
    try:
        from cloud_ingest.consent_codec import verified_grants
    except ImportError as exc:
        raise ConsentRejected(
            "consent_unverifiable", "this ingest cannot read consent records yet; try later"
        ) from exc
    verified: VerifiedConsent = verified_grants(consent_record, band_public_key)
    return verified


def check_coverage(
    verified: VerifiedConsent,
    stream: StreamId,
    body: BatchBody,
    withdrawals: dict[ConsentCategory, int],
) -> None:
    """Every record's time inside a grant of each category it needs; never after a withdrawal."""
    times = body.times()
    category = STREAM_CONSENT[stream]
    _check_times(verified, category, times, withdrawals, "records", body.time_bounds)
    for (field_stream, field), field_category in FIELD_CONSENT.items():
        if field_stream is not stream:
            continue
        values = body.columns[field]
        # Only records that carry the field (non-zero) need its extra consent.
        carrying = [t for t, v in zip(times, values, strict=True) if v]
        if carrying:
            bounds = (min(carrying), max(carrying))
            _check_times(verified, field_category, carrying, withdrawals, f"field {field}", bounds)


def _check_times(
    verified: VerifiedConsent,
    category: ConsentCategory,
    times: Sequence[int],
    withdrawals: dict[ConsentCategory, int],
    what: str,
    bounds: tuple[int, int],
) -> None:
    withdrawn_at = withdrawals.get(category)
    intervals = _clip(verified.grants.get(category, []), withdrawn_at)
    name = category.name.lower()
    if not intervals:
        if withdrawn_at is not None:
            raise ConsentRejected(
                "consent_withdrawn",
                f"consent for {name} was withdrawn on this account; no new {name} data is "
                "accepted until the user grants it again on the band",
            )
        raise ConsentRejected(
            "consent_not_covering",
            f"the consent record grants no {name} consent for these {what}",
        )
    low, high = bounds
    if any(start <= low and (end is None or high < end) for start, end in intervals):
        return  # the common case: one grant covers the whole batch
    starts = [start for start, _ in intervals]
    for t in times:
        i = bisect_right(starts, t) - 1
        if i < 0 or not (intervals[i][1] is None or t < intervals[i][1]):  # type: ignore[operator]
            raise ConsentRejected(
                "consent_not_covering",
                f"some {what} fall outside every interval with {name} consent; "
                "they must not be uploaded",
            )


def _clip(intervals: list[Interval], withdrawn_at: int | None) -> list[Interval]:
    if withdrawn_at is None:
        return sorted(intervals)
    clipped: list[Interval] = []
    for start, end in sorted(intervals):
        if end is not None and end <= withdrawn_at:
            continue
        # Only a grant given after the withdrawal here counts for new data.
        if start <= withdrawn_at:
            continue
        clipped.append((start, end))
    return clipped
