"""The batcher: size and age limits, header fields per the classification table, no identifier."""

from __future__ import annotations

import itertools
import random

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_ingest.opening import open_batch
from protocol.batch import (
    HEADER_KEYS,
    band_pseudonym,
    consent_digest_of,
    decode_batch_plaintext,
    decode_envelope,
)
from protocol.classification import (
    DIRECT_IDENTIFIERS,
    HEADER_CLASSES,
    DataClass,
    classify_record_field,
)
from protocol.errors import UsageError
from protocol.records import STREAM_CONSENT, StreamId
from sync_client.batcher import Batcher, BatchLimits, ServiceData
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


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 400), max_records=st.integers(1, 120), span_min=st.integers(0, 300))
def test_cuts_respect_size_and_age_and_keep_every_record_in_order(
    n: int, max_records: int, span_min: int
) -> None:
    records = activity_minutes(n)
    b = batcher(BatchLimits(max_records=max_records, max_span_s=span_min * 60))
    runs = b.cut(records)
    assert [r for run in runs for r in run] == records
    for run in runs:
        assert 1 <= len(run) <= max_records
        assert run[-1].record.start - run[0].record.start <= span_min * 60  # type: ignore[union-attr]
    # maximal: a run is cut only when the next record would break a limit
    for run, following in itertools.pairwise(runs):
        assert not b.fits(run, following[0])


def test_sealed_batches_open_to_the_records_with_exact_header_fields() -> None:
    records = activity_minutes(130)
    b = batcher(BatchLimits(max_records=50))
    batches = b.seal(records)
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
    envelope = q.seal(records)[0].envelope
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
