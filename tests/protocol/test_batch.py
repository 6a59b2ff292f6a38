"""The batch header, columnar body and envelope framing: round-trips and strict rejection."""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from typing import Any

import cbor2
import pytest
from codec_reference import reference_batch_plaintext
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme.batch import (
    COLUMNS,
    HEADER_KEYS,
    HPKE_INFO_PREFIX,
    MAX_PLAINTEXT_LEN,
    SUITE_MLKEM768_X25519,
    SUITE_X25519,
    BatchError,
    BatchHeader,
    BatchMismatchError,
    MalformedBatchError,
    UnsupportedBatchError,
    band_pseudonym,
    consent_digest_of,
    decode_batch_plaintext,
    decode_envelope,
    decode_header,
    encode_batch_plaintext,
    encode_envelope,
    header_aad,
    hpke_info,
)
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    ActivityClass,
    ActivityMinute,
    AlarmEvent,
    AlarmEventKind,
    GnssFix,
    HeartRateSample,
    SleepEpoch,
    SleepStage,
    SleepSummary,
    StoredRecord,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
)

CONSENT = b"\xa1\x01\x02signed consent record bytes"

_time = st.integers(1_500_000_000, 2_200_000_000)
_tz = st.integers(-720, 840)
_minutes = st.integers(0, 1440)

RECORD_STRATEGIES: dict[StreamId, st.SearchStrategy[Any]] = {
    StreamId.ACTIVITY_MINUTES: st.builds(
        ActivityMinute,
        _time.map(lambda t: t - t % 60),
        _tz,
        st.integers(0, 255),
        st.sampled_from(ActivityClass),
        st.integers(0, 3),
        st.integers(0, 255),
        st.booleans(),
    ),
    StreamId.HR_SAMPLES: st.builds(
        HeartRateSample, _time, _tz, st.integers(0, 255), st.integers(0, 3)
    ),
    StreamId.SLEEP_EPOCHS: st.builds(
        SleepEpoch, _time.map(lambda t: t - t % 30), _tz, st.sampled_from(SleepStage)
    ),
    StreamId.SLEEP_SUMMARIES: st.builds(
        SleepSummary,
        _time,
        _tz,
        _time,
        _time,
        _time,
        st.integers(0, 100),
        _minutes,
        _minutes,
        _minutes,
        _minutes,
        _minutes,
    ),
    StreamId.ALARM_EVENTS: st.builds(
        AlarmEvent,
        _time,
        _tz,
        st.integers(0, 255),
        st.sampled_from(AlarmEventKind),
        _time,
        st.none() | st.sampled_from(SleepStage),
    ),
    StreamId.GNSS_FIXES: st.builds(
        GnssFix,
        _time,
        _tz,
        st.integers(-900_000_000, 900_000_000),
        st.integers(-1_800_000_000, 1_800_000_000),
        st.integers(-400, 9000),
        st.integers(0, 5000),
    ),
    StreamId.TELEMETRY: st.builds(
        TelemetryEvent,
        _time,
        _tz,
        st.sampled_from(TelemetryKind),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 2**16),
    ),
}


@st.composite
def stored_batches(draw: st.DrawFn) -> list[StoredRecord]:
    stream = draw(st.sampled_from(StreamId))
    records = draw(st.lists(RECORD_STRATEGIES[stream], min_size=1, max_size=40))
    first = draw(st.integers(0, 2**40))
    gaps = draw(st.lists(st.integers(1, 5), min_size=len(records), max_size=len(records)))
    seqs, seq = [], first
    for gap in gaps:
        seqs.append(seq)
        seq += gap
    return [StoredRecord(stream, s, r) for s, r in zip(seqs, records, strict=True)]


def header_for(records: list[StoredRecord], **changes: Any) -> BatchHeader:
    fields: dict[str, Any] = {
        "batch_id": bytes(range(16)),
        "band": band_pseudonym(b"k" * 32, "KME-TEST-0001"),
        "stream": records[0].stream,
        "first_seq": records[0].seq,
        "last_seq": records[-1].seq,
        "count": len(records),
        "consent_digest": consent_digest_of(CONSENT),
        "firmware_version": "1.4.2",
        "model": "KME Smart 1",
        "client_os": "Linux 6.8",
        "client_version": "kmeband 0.1.0",
        "created": 1_760_000_000,
    }
    fields.update(changes)
    return BatchHeader(**fields)


def hr_records(n: int, first_seq: int = 100) -> list[StoredRecord]:
    return [
        StoredRecord(
            StreamId.HR_SAMPLES, first_seq + i, HeartRateSample(1_760_000_000 + 5 * i, 120, 70, 3)
        )
        for i in range(n)
    ]


# -- pseudonym ----------------------------------------------------------------------------


def test_band_pseudonym_is_hmac_sha256_of_the_serial() -> None:
    # RFC 4231 test case 1: key 0x0b * 20, data "Hi There".
    expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert band_pseudonym(b"\x0b" * 20, "Hi There").hex() == expected


def test_band_pseudonym_differs_per_account_and_refuses_weak_keys() -> None:
    assert band_pseudonym(b"a" * 32, "S1") != band_pseudonym(b"b" * 32, "S1")
    with pytest.raises(BatchError, match="at least 16"):
        band_pseudonym(b"short", "S1")
    with pytest.raises(BatchError, match="serial is empty"):
        band_pseudonym(b"a" * 32, "")


# -- header ---------------------------------------------------------------------------


def test_header_round_trips_through_its_canonical_encoding() -> None:
    header = header_for(hr_records(3))
    encoded = header_aad(header)
    assert decode_header(encoded) == header
    assert encoded == cbor2.dumps(cbor2.loads(encoded), canonical=True)
    assert set(cbor2.loads(encoded)) == set(HEADER_KEYS.values())


HEADER_VECTOR = (
    "ad61760162667765312e342e3262696450000102030405060708090a0b0c0d0e0f626f73694c696e7578"
    "20362e38636170706d6b6d6562616e6420302e312e306462616e645820abcf38cb657156caf277d9efb2"
    "e7a84d7a62a59ae04bb85b8fadfd510b1ce548646c617374186665636f756e74036566697273741864"
    "656d6f64656c6b4b4d4520536d61727420316673747265616d0267636f6e73656e745820984a256490"
    "da1331630c444ac2218dd481c7d912a589562086ed6bd04e3a8a6f67637265617465641a68e77800"
)


def test_header_encoding_vector() -> None:
    # Pinned bytes (also in docs/ingest.md), so another implementation can check its
    # encoder: keys sorted by length, then bytewise (RFC 8949 core deterministic).
    header = header_for(hr_records(3))
    assert header_aad(header).hex() == HEADER_VECTOR
    info = hpke_info(bytes.fromhex(HEADER_VECTOR))
    assert info == HPKE_INFO_PREFIX + hashlib.sha256(bytes.fromhex(HEADER_VECTOR)).digest()
    assert len(info) == 48 and info.startswith(b"kmeband batch v1")


def test_non_canonical_header_is_rejected() -> None:
    header = header_for(hr_records(3))
    as_map = cbor2.loads(header_aad(header))
    # Same content, keys in reverse order: valid CBOR, not canonical.
    reordered = cbor2.dumps(dict(reversed(list(as_map.items()))))
    assert reordered != header_aad(header)
    with pytest.raises(MalformedBatchError, match="canonical"):
        decode_header(reordered)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_id": b"short"}, "batch id"),
        ({"band": b"x" * 31}, "pseudonym"),
        ({"consent_digest": b""}, "consent digest"),
        ({"first_seq": 200, "last_seq": 100}, "after"),
        ({"count": 0}, "count"),
        ({"count": 50, "first_seq": 0, "last_seq": 9}, "exceeds"),
        ({"model": "x" * 65}, "model"),
        ({"client_os": "line\nbreak"}, "client_os"),
        ({"created": -1}, "created"),
    ],
)
def test_invalid_headers_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedBatchError, match=message):
        header_for(hr_records(3), **change)


def test_unknown_format_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedBatchError, match="version 2"):
        header_for(hr_records(3), version=2)


def test_a_header_with_an_extra_field_is_rejected() -> None:
    as_map = cbor2.loads(header_aad(header_for(hr_records(3))))
    as_map["serial"] = "KME-TEST-0001"
    with pytest.raises(MalformedBatchError, match="exactly"):
        decode_header(cbor2.dumps(as_map, canonical=True))


# -- body -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(stored_batches())
def test_body_round_trips_every_stream(records: list[StoredRecord]) -> None:
    header = header_for(records)
    body = decode_batch_plaintext(header, encode_batch_plaintext(records, CONSENT))
    assert body.records() == records
    assert body.consent_record == CONSENT
    assert body.count == len(records)
    assert list(body.seqs) == [r.seq for r in records]


@settings(max_examples=150, deadline=None)
@given(stored_batches())
def test_body_is_byte_identical_to_the_reference_encoder(records: list[StoredRecord]) -> None:
    assert encode_batch_plaintext(records, CONSENT) == reference_batch_plaintext(records, CONSENT)


def _encode_outcome(encode: Any, records: list[StoredRecord]) -> object:
    try:
        return encode(records, CONSENT)
    except BatchError as exc:
        return (type(exc), str(exc))


def test_odd_values_take_the_reference_path() -> None:
    hr = StreamId.HR_SAMPLES
    sample = HeartRateSample(1_760_000_000, 120, 70, 3)
    stored = [StoredRecord(hr, 5, sample)]
    cases = [
        [StoredRecord(hr, 5, dataclasses.replace(sample, bpm=70.9))],  # int() truncates
        [StoredRecord(hr, 5, dataclasses.replace(sample, bpm=None))],  # None counts as -1
        [StoredRecord(hr, 5, dataclasses.replace(sample, bpm=True))],
        [StoredRecord(hr, 5, dataclasses.replace(sample, timestamp=2**70))],
        [*stored, StoredRecord(hr, 2**63 + 9, sample)],  # past int64: does not fit
        [StoredRecord(hr, -(2**62) - 1, sample), *stored],  # differences past int64's reach
        [StoredRecord(hr, -3, sample), *stored],
        [*stored, StoredRecord(hr, 5, sample)],
        [*stored, StoredRecord(StreamId.SLEEP_EPOCHS, 6, sample)],
    ]
    for records in cases:
        expected = _encode_outcome(reference_batch_plaintext, records)
        assert _encode_outcome(encode_batch_plaintext, records) == expected


def test_body_is_deterministic() -> None:
    records = hr_records(50)
    assert encode_batch_plaintext(records, CONSENT) == encode_batch_plaintext(records, CONSENT)


def test_body_columns_match_the_record_dataclasses() -> None:
    for stream, specs in COLUMNS.items():
        record_type = STREAM_RECORD_TYPE[stream]
        assert [s.field for s in specs] == [f.name for f in dataclasses.fields(record_type)]


def test_encoder_refuses_mixed_unordered_or_out_of_range_records() -> None:
    records = hr_records(3)
    with pytest.raises(BatchError, match="at least one"):
        encode_batch_plaintext([], CONSENT)
    with pytest.raises(BatchError, match="increasing"):
        encode_batch_plaintext([records[1], records[0]], CONSENT)
    other = StoredRecord(StreamId.SLEEP_EPOCHS, 500, SleepEpoch(1_760_000_000, 0, SleepStage.REM))
    with pytest.raises(BatchError, match="one stream"):
        encode_batch_plaintext([*records, other], CONSENT)
    wild = StoredRecord(StreamId.HR_SAMPLES, 9, HeartRateSample(1_760_000_000, 0, 999, 3))
    with pytest.raises(BatchError, match="bpm"):
        encode_batch_plaintext([wild], CONSENT)
    with pytest.raises(BatchError, match="consent record"):
        encode_batch_plaintext(records, b"")


def _body(columns: dict[str, Any], consent: Any = CONSENT) -> bytes:
    return zlib.compress(cbor2.dumps({"consent": consent, "records": columns}, canonical=True))


def _columns(records: list[StoredRecord]) -> dict[str, Any]:
    plain = cbor2.loads(zlib.decompress(encode_batch_plaintext(records, CONSENT)))
    return dict(plain["records"])


def test_body_that_disagrees_with_its_header_is_rejected() -> None:
    records = hr_records(5)
    plaintext = encode_batch_plaintext(records, CONSENT)
    with pytest.raises(BatchMismatchError, match="range"):
        decode_batch_plaintext(header_for(records, first_seq=99, count=5), plaintext)
    with pytest.raises(MalformedBatchError, match="wrong length"):
        decode_batch_plaintext(header_for(records, count=4), plaintext)
    with pytest.raises(MalformedBatchError, match="columns"):
        decode_batch_plaintext(header_for(records, stream=StreamId.SLEEP_EPOCHS), plaintext)


def test_body_with_repeated_sequence_numbers_is_rejected() -> None:
    records = hr_records(3)
    columns = _columns(records)
    columns["seq"] = (
        (100).to_bytes(8, "little") + (0).to_bytes(8, "little") + (2).to_bytes(8, "little")
    )
    with pytest.raises(MalformedBatchError, match="increasing"):
        decode_batch_plaintext(header_for(records, last_seq=102), _body(columns))


def test_body_with_out_of_range_values_is_rejected() -> None:
    records = hr_records(2)
    columns = _columns(records)
    columns["confidence"] = bytes([3, 9])
    with pytest.raises(MalformedBatchError, match="confidence"):
        decode_batch_plaintext(header_for(records), _body(columns))


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"not zlib at all",
        zlib.compress(b"\xff\xfe not cbor"),
        zlib.compress(cbor2.dumps([1, 2, 3])),
        zlib.compress(cbor2.dumps({"consent": b"", "records": {}})),
        zlib.compress(cbor2.dumps({"consent": "text", "records": {}})),
        zlib.compress(cbor2.dumps({"consent": CONSENT, "records": {"seq": "x"}})),
        zlib.compress(b"\x9f" * 100_000),  # deeply nested indefinite arrays
    ],
)
def test_malformed_bodies_raise_typed_errors(plaintext: bytes) -> None:
    with pytest.raises(MalformedBatchError):
        decode_batch_plaintext(header_for(hr_records(2)), plaintext)


def test_truncated_body_is_rejected() -> None:
    records = hr_records(200)
    plaintext = encode_batch_plaintext(records, CONSENT)
    with pytest.raises(MalformedBatchError, match="truncated"):
        decode_batch_plaintext(header_for(records), plaintext[:-3])
    with pytest.raises(MalformedBatchError, match="after it"):
        decode_batch_plaintext(header_for(records), plaintext + b"\x00")


def test_decompression_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\x00" * (MAX_PLAINTEXT_LEN + 1), 9)
    assert len(bomb) < 10_000
    with pytest.raises(MalformedBatchError, match="4 MiB"):
        decode_batch_plaintext(header_for(hr_records(2)), bomb)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_batch_errors(data: bytes) -> None:
    header = header_for(hr_records(2))
    for decode in (
        decode_envelope,
        decode_header,
        lambda d: decode_batch_plaintext(header, d),
        lambda d: decode_batch_plaintext(header, zlib.compress(d)),
    ):
        with pytest.raises(BatchError):
            decode(data)


# -- envelope -------------------------------------------------------------------------


def test_envelope_framing_round_trips() -> None:
    header = header_for(hr_records(2))
    for suite, enc_len in ((SUITE_X25519, 32), (SUITE_MLKEM768_X25519, 1120)):
        framed = encode_envelope(suite, header, b"e" * enc_len, b"c" * 40)
        assert cbor2.loads(framed) == [
            1,
            list(suite),
            header_aad(header),
            b"e" * enc_len,
            b"c" * 40,
        ]
        parsed = decode_envelope(framed)
        assert (parsed.suite, parsed.header, parsed.enc) == (suite, header, b"e" * enc_len)
        assert parsed.header_bytes == header_aad(header)


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ([1, [32, 1, 2], b"h", b"e" * 32], MalformedBatchError, "5 items"),
        ([2, [32, 1, 2], b"h", b"e" * 32, b"c" * 16], UnsupportedBatchError, "version 2"),
        ([1, [32, 1, 1], b"h", b"e" * 32, b"c" * 16], UnsupportedBatchError, "suite"),
        ([1, [32, 1], b"h", b"e" * 32, b"c" * 16], MalformedBatchError, "suite"),
        ([1, [32, 1, 2], b"h", b"e" * 31, b"c" * 16], MalformedBatchError, "encapsulated"),
        ([1, [32, 1, 2], b"h", b"e" * 32, b"c" * 15], MalformedBatchError, "ciphertext"),
        ([1, [32, 1, 2], "h", b"e" * 32, b"c" * 16], MalformedBatchError, "header"),
    ],
)
def test_malformed_envelopes_are_rejected(raw: list[Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        decode_envelope(cbor2.dumps(raw))
