"""The batcher: size and age limits, header fields per the classification table, no identifier."""

from __future__ import annotations

import random

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_ingest.opening import open_batch
from protocol.errors import UsageError
from protocol.kme.batch import (
    HEADER_KEYS,
    band_pseudonym,
    consent_digest_of,
    decode_batch_plaintext,
    decode_envelope,
)
from protocol.kme.classification import (
    DIRECT_IDENTIFIERS,
    HEADER_CLASSES,
    DataClass,
    classify_record_field,
)
from protocol.kme.records import (
    STREAM_CONSENT,
    ConsentCategory,
    SleepEpoch,
    SleepStage,
    StoredRecord,
    StreamId,
)
from sync_client.batcher import (
    Batcher,
    BatchLimits,
    ServiceData,
    categories_needed,
    without_field_consent,
)
from tests.sync_client.band_fakes import INGEST_KEY, activity_minutes

SERIAL = "KME1-SERIAL-000123"
ACCOUNT_KEY = bytes(range(100, 132))
CONSENT = b"band-signed consent record"


def batcher(limits: BatchLimits, seed: int = 7) -> Batcher:
    return Batcher(
        band=band_pseudonym(ACCOUNT_KEY, SERIAL),
        service=ServiceData("1.2.0", "KME-1", "linux", "0.1.0"),
        consent_record=CONSENT,
        recipient_key=INGEST_KEY.public_key(),
        limits=limits,
        random_bytes=random.Random(seed).randbytes,
        clock=lambda: 1_700_000_123.9,
    )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    count=st.integers(0, 200),
    max_records=st.integers(1, 120),
    span=st.integers(0, 5000),
    gap=st.integers(-6000, 6000),
)
def test_a_record_joins_a_batch_exactly_while_both_limits_hold(
    count: int, max_records: int, span: int, gap: int
) -> None:
    limits = BatchLimits(max_records=max_records, max_span_s=span)
    first = 1_700_000_000
    expected = count == 0 or (count < max_records and abs(gap) <= span)
    assert limits.admits(count, first, first + gap) == expected


def test_sealed_batches_open_to_the_records_with_exact_header_fields() -> None:
    records = activity_minutes(130)
    b = batcher(BatchLimits(max_records=50))
    batches = [b.seal_one(records[i : i + 50]) for i in range(0, 130, 50)]
    assert [q.records for q in batches] == [50, 50, 30]
    opened = []
    for q in batches:
        header, plaintext = open_batch(q.envelope, INGEST_KEY)
        body = decode_batch_plaintext(header, plaintext)
        opened.extend(body.records())
        assert body.consent_record == CONSENT
        assert header.consent_digest == consent_digest_of(CONSENT)
        assert header.band == band_pseudonym(ACCOUNT_KEY, SERIAL) == q.band
        assert (header.first_seq, header.last_seq, header.count) == (
            q.first_seq,
            q.last_seq,
            q.records,
        )
        assert header.batch_id == q.batch_id and len(q.batch_id) == 16
        assert header.created == 1_700_000_123
        assert (header.firmware_version, header.model) == ("1.2.0", "KME-1")
        assert (header.client_os, header.client_version) == ("linux", "0.1.0")
        assert q.category == STREAM_CONSENT[StreamId.ACTIVITY_MINUTES]
    assert opened == records
    assert len({q.batch_id for q in batches}) == 3


def test_every_encoded_field_is_classified_and_none_is_a_direct_identifier() -> None:
    records = activity_minutes(10)
    q = batcher(BatchLimits())
    envelope = q.seal_one(records).envelope
    parsed = decode_envelope(envelope)
    header_map = cbor2.loads(parsed.header_bytes)
    by_key = {key: name for name, key in HEADER_KEYS.items()}
    assert set(header_map) == set(by_key)
    for key in header_map:
        name = by_key[key]
        assert HEADER_CLASSES[name].data_class is not DataClass.DIRECT_IDENTIFIER
        assert name not in DIRECT_IDENTIFIERS
    assert HEADER_CLASSES["band"].data_class is DataClass.PSEUDONYMOUS_ID
    _, plaintext = open_batch(envelope, INGEST_KEY)
    body = decode_batch_plaintext(parsed.header, plaintext)
    for column in body.columns:
        fc = classify_record_field(StreamId.ACTIVITY_MINUTES, column)
        assert fc.data_class is not DataClass.DIRECT_IDENTIFIER
        assert column not in DIRECT_IDENTIFIERS
    # the serial appears nowhere in what leaves the phone
    assert SERIAL.encode() not in envelope
    assert SERIAL.encode() not in plaintext


def test_limits_are_checked() -> None:
    with pytest.raises(UsageError):
        BatchLimits(max_records=0)
    with pytest.raises(UsageError):
        BatchLimits(max_span_s=-1)


ACTIVITY, HEART_RATE = ConsentCategory.ACTIVITY, ConsentCategory.HEART_RATE


def test_a_run_with_avg_hr_is_sealed_with_a_fallback_that_clears_it() -> None:
    records = activity_minutes(20, avg_hr=0)
    records[7] = activity_minutes(8, avg_hr=88)[7]  # one minute with a heart rate
    b = batcher(BatchLimits())
    primary, fallback = b.seal_run(records)
    assert primary.categories == (1 << ACTIVITY) | (1 << HEART_RATE) == primary.needs
    assert fallback.categories == 1 << ACTIVITY and fallback.fallback_of == primary.batch_id
    assert (fallback.first_seq, fallback.last_seq, fallback.records) == (1, 20, 20)
    assert fallback.batch_id != primary.batch_id
    header, plaintext = open_batch(primary.envelope, INGEST_KEY)
    assert list(decode_batch_plaintext(header, plaintext).records()) == records
    header, plaintext = open_batch(fallback.envelope, INGEST_KEY)
    bare = list(decode_batch_plaintext(header, plaintext).records())
    assert [r.record.avg_hr for r in bare] == [0] * 20  # type: ignore[union-attr]
    assert bare == [without_field_consent(r) for r in records]
    assert [r.seq for r in bare] == [r.seq for r in records]


def test_a_run_without_field_values_needs_only_its_streams_consent() -> None:
    records = activity_minutes(20, avg_hr=0)
    (only,) = batcher(BatchLimits()).seal_run(records)
    assert only.categories == 1 << ACTIVITY and only.fallback_of is None
    assert categories_needed(records) == 1 << ACTIVITY
    assert categories_needed(activity_minutes(3)) == (1 << ACTIVITY) | (1 << HEART_RATE)
    sleep = [StoredRecord(StreamId.SLEEP_EPOCHS, 1, SleepEpoch(1_700_000_000, 0, SleepStage.REM))]
    assert categories_needed(sleep) == 1 << STREAM_CONSENT[StreamId.SLEEP_EPOCHS]
