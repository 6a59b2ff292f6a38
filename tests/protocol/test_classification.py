"""The batch encoder against the data-classification table."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme.batch import (
    COLUMNS,
    HEADER_KEYS,
    BatchHeader,
    MalformedBatchError,
    band_pseudonym,
    consent_digest_of,
    decode_header,
    encode_batch_plaintext,
    header_aad,
)
from protocol.kme.classification import (
    BODY_CLASSES,
    DIRECT_IDENTIFIERS,
    HEADER_CLASSES,
    RECORD_CLASSES,
    DataClass,
    classify_header_field,
    classify_record_field,
    required_consents,
)
from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    STREAM_RECORD_TYPE,
    ConsentCategory,
    HeartRateSample,
    StoredRecord,
    StreamId,
)

CONSENT = b"signed consent record"
SERIAL = "KME-SERIAL-000042"


def _header(**changes: Any) -> BatchHeader:
    values: dict[str, Any] = {
        "batch_id": b"\x07" * 16,
        "band": band_pseudonym(b"\x01" * 32, SERIAL),
        "stream": StreamId.HR_SAMPLES,
        "first_seq": 1,
        "last_seq": 1,
        "count": 1,
        "consent_digest": consent_digest_of(CONSENT),
        "firmware_version": "1.0.0",
        "model": "KME Smart 1",
        "client_os": "Linux 6.8",
        "client_version": "kmeband 0.1.0",
        "created": 1_760_000_000,
    }
    values.update(changes)
    return BatchHeader(**values)


def test_every_header_field_is_classified_and_none_is_a_direct_identifier() -> None:
    header_fields = {f.name for f in dataclasses.fields(BatchHeader)}
    assert header_fields == set(HEADER_CLASSES) == set(HEADER_KEYS)
    for name in header_fields:
        assert classify_header_field(name).data_class is not DataClass.DIRECT_IDENTIFIER
        assert name not in DIRECT_IDENTIFIERS


def test_the_band_is_only_ever_a_pseudonym() -> None:
    assert classify_header_field("band").data_class is DataClass.PSEUDONYMOUS_ID
    assert SERIAL.encode() not in header_aad(_header())


def test_a_serial_cannot_be_put_in_the_header() -> None:
    with pytest.raises(TypeError):
        _header(serial=SERIAL)
    with pytest.raises(MalformedBatchError):
        _header(band=SERIAL.encode())  # a serial where the pseudonym goes: wrong length
    with pytest.raises(MalformedBatchError):
        _header(model=SERIAL.encode())  # type: ignore[arg-type]
    as_map = cbor2.loads(header_aad(_header()))
    as_map["serial"] = SERIAL
    with pytest.raises(MalformedBatchError):
        decode_header(cbor2.dumps(as_map, canonical=True))


def test_every_record_field_is_classified_with_the_consent_records_py_names() -> None:
    for stream, record_type in STREAM_RECORD_TYPE.items():
        names = [f.name for f in dataclasses.fields(record_type)]
        assert list(RECORD_CLASSES[stream]) == names
        for name in names:
            row = classify_record_field(stream, name)
            assert row.consent == FIELD_CONSENT.get((stream, name), STREAM_CONSENT[stream])
            assert row.data_class is not DataClass.DIRECT_IDENTIFIER
            assert name not in DIRECT_IDENTIFIERS


def test_location_and_health_fields_need_their_consent() -> None:
    assert classify_record_field(StreamId.GNSS_FIXES, "lat_e7").consent is ConsentCategory.LOCATION
    assert classify_record_field(StreamId.GNSS_FIXES, "lat_e7").data_class is DataClass.LOCATION
    avg_hr = classify_record_field(StreamId.ACTIVITY_MINUTES, "avg_hr")
    assert (avg_hr.data_class, avg_hr.consent) == (DataClass.HEALTH, ConsentCategory.HEART_RATE)
    assert required_consents(StreamId.ACTIVITY_MINUTES) == {
        ConsentCategory.ACTIVITY,
        ConsentCategory.HEART_RATE,
    }


@settings(max_examples=40, deadline=None)
@given(
    stream=st.sampled_from([StreamId.HR_SAMPLES]),
    bpm=st.lists(st.integers(0, 255), min_size=1, max_size=30),
)
def test_every_encoded_field_is_in_the_table(stream: StreamId, bpm: list[int]) -> None:
    records = [
        StoredRecord(stream, 10 + i, HeartRateSample(1_760_000_000 + i, 0, b, 3))
        for i, b in enumerate(bpm)
    ]
    header = _header(first_seq=10, last_seq=9 + len(bpm), count=len(bpm))
    encoded_header = cbor2.loads(header_aad(header))
    names_by_key = {key: name for name, key in HEADER_KEYS.items()}
    for key in encoded_header:
        assert names_by_key[key] in HEADER_CLASSES
    body = cbor2.loads(zlib.decompress(encode_batch_plaintext(records, CONSENT)))
    assert set(body) - {"records"} <= set(BODY_CLASSES)
    for column in body["records"]:
        classify_record_field(stream, column)  # raises KeyError if unclassified


def test_every_column_of_every_stream_is_in_the_table() -> None:
    for stream, specs in COLUMNS.items():
        for spec in specs:
            assert classify_record_field(stream, spec.field).data_class in set(DataClass) - {
                DataClass.DIRECT_IDENTIFIER
            }
