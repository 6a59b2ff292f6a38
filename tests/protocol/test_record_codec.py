"""The record chunk codec: layout vector, round trips, size budget, and typed errors."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from codec_reference import reference_pack_chunks, reference_unpack_columns
from hypothesis import given, settings
from hypothesis import strategies as st
from record_strategies import PAYLOAD_SIZES, STREAMS, stored_records
from week_pattern import week_records

from protocol.errors import UsageError
from protocol.kme.chunk_framing import (
    CHUNK_OVERHEAD,
    CRC_SIZE,
    FLAG_END,
    FLAG_FRAGMENT,
    FLAG_START,
    HEADER_SIZE,
    ChunkCrcError,
    ChunkError,
    ChunkFormatError,
    ChunkFragmentError,
    ChunkTruncatedError,
    ChunkValueError,
    is_fragment,
)
from protocol.kme.record_codec import (
    ChunkAssembler,
    decode_chunk,
    decode_payloads,
    encode_chunks,
    encode_empty_chunk,
    pack_chunks,
)
from protocol.kme.record_domain import check_domain
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    AlarmEvent,
    AlarmEventKind,
    HeartRateSample,
    SleepEpoch,
    SleepStage,
    SleepSummary,
    StoredRecord,
    StreamId,
)

A = StreamId.ACTIVITY_MINUTES
T0 = 1_709_506_800  # 2024-03-03 23:00:00 UTC

#: The worked example of docs/records.md, section "Worked example".
VECTOR_RECORDS = [
    StoredRecord(A, 100, ActivityMinute(T0, 60, 0, ActivityClass.SEDENTARY, 0, 70, True)),
    StoredRecord(A, 101, ActivityMinute(T0 + 60, 60, 12, ActivityClass.SEDENTARY, 0, 72, True)),
    StoredRecord(A, 102, ActivityMinute(T0 + 120, 60, 104, ActivityClass.WALK, 2, 0, True)),
]
VECTOR_HEX = "31640000000300f000e5653c004219cd40e668039553b854"
EMPTY_END_HEX = "316700000000007a4e8986"
HR_VECTOR_RECORDS = [
    StoredRecord(StreamId.HR_SAMPLES, 500, HeartRateSample(T0, 60, 72, 3)),
    StoredRecord(StreamId.HR_SAMPLES, 501, HeartRateSample(T0 + 5, 60, 74, 3)),
    StoredRecord(StreamId.HR_SAMPLES, 502, HeartRateSample(T0 + 10, 60, 73, 2)),
]
HR_VECTOR_HEX = "02f401000003003c00f000e5654803000a0302cc02c860f5aa"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "records.md"


def _reseal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def _records(payloads: list[bytes]) -> list[StoredRecord]:
    return [r for chunk in decode_payloads(payloads) for r in chunk.records]


# ----------------------------------------------------------------------- test vectors


def test_worked_example_encodes_to_documented_bytes() -> None:
    payloads = encode_chunks(A, VECTOR_RECORDS, 244, start_of_transfer=True, end_of_stream=True)
    assert [p.hex() for p in payloads] == [VECTOR_HEX]


def test_worked_example_decodes_to_its_records() -> None:
    chunk = decode_chunk(bytes.fromhex(VECTOR_HEX))
    assert chunk.stream == A
    assert chunk.first_seq == 100
    assert chunk.next_seq == 103
    assert chunk.start_of_transfer and chunk.end_of_stream
    assert list(chunk.records) == VECTOR_RECORDS


def test_column_coded_vector() -> None:
    payloads = encode_chunks(StreamId.HR_SAMPLES, HR_VECTOR_RECORDS, 244)
    assert [p.hex() for p in payloads] == [HR_VECTOR_HEX]
    assert list(decode_chunk(bytes.fromhex(HR_VECTOR_HEX)).records) == HR_VECTOR_RECORDS


def test_vectors_are_the_ones_in_the_docs() -> None:
    text = DOCS.read_text()
    for vector in (VECTOR_HEX, EMPTY_END_HEX, HR_VECTOR_HEX):
        assert vector in text


def test_empty_end_marker_vector() -> None:
    data = encode_empty_chunk(A, 103, start_of_transfer=True)
    assert data.hex() == EMPTY_END_HEX
    chunk = decode_chunk(data)
    assert chunk.records == ()
    assert chunk.first_seq == chunk.next_seq == 103
    assert chunk.start_of_transfer and chunk.end_of_stream


# ------------------------------------------------------------------------ round trips


@settings(max_examples=80, deadline=None, derandomize=True)
@given(data=st.data(), stream=STREAMS, payload_size=PAYLOAD_SIZES)
def test_round_trip_any_stream_any_payload(
    data: st.DataObject, stream: StreamId, payload_size: int
) -> None:
    records = data.draw(stored_records(stream))
    start, end = data.draw(st.booleans()), data.draw(st.booleans())
    chunks = pack_chunks(stream, records, payload_size, start_of_transfer=start, end_of_stream=end)
    payloads = [p for c in chunks for p in c.payloads]
    assert all(len(p) <= payload_size for p in payloads)
    decoded = decode_payloads(payloads)
    assert [r for c in decoded for r in c.records] == records
    assert [(c.first_seq, c.count) for c in decoded] == [(c.first_seq, c.count) for c in chunks]
    for index, chunk in enumerate(decoded):
        assert chunk.stream == stream
        assert chunk.start_of_transfer == (start and index == 0)
        assert chunk.end_of_stream == (end and index == len(decoded) - 1)
        assert [r.seq for r in chunk.records] == list(range(chunk.first_seq, chunk.next_seq))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data(), stream=STREAMS)
def test_encoding_is_deterministic_and_bigger_payloads_never_cost_more_chunks(
    data: st.DataObject, stream: StreamId
) -> None:
    records = data.draw(stored_records(stream, contiguous=True))
    small = encode_chunks(stream, records, 100)
    assert small == encode_chunks(stream, records, 100)
    assert len(encode_chunks(stream, records, 244)) <= len(small)


def test_tz_change_and_gap_start_new_chunks() -> None:
    minute = VECTOR_RECORDS[0].record
    assert isinstance(minute, ActivityMinute)
    records = [
        StoredRecord(A, 0, minute),
        StoredRecord(A, 1, replace(minute, start=T0 + 60)),
        StoredRecord(A, 2, replace(minute, start=T0 + 120, tz_offset_min=120)),
        StoredRecord(A, 3, replace(minute, start=T0 + 600, tz_offset_min=120)),
        StoredRecord(A, 5, replace(minute, start=T0 + 660, tz_offset_min=120)),
    ]
    chunks = pack_chunks(A, records, 244)
    assert [(c.first_seq, c.count) for c in chunks] == [(0, 2), (2, 1), (3, 1), (5, 1)]
    assert _records(encode_chunks(A, records, 244)) == records


def test_sleep_summary_at_minimum_payload_is_fragmented_and_reassembled() -> None:
    summary = SleepSummary(T0, 60, T0 + 900, T0 + 27000, T0 + 27600, 91, 3, 260, 90, 100, 20)
    records = [StoredRecord(StreamId.SLEEP_SUMMARIES, 7, summary)]
    payloads = encode_chunks(StreamId.SLEEP_SUMMARIES, records, 20)
    assert len(payloads) > 1
    assert all(is_fragment(p) and len(p) <= 20 for p in payloads)
    assert payloads[-1][1] & 0x80 and not any(p[1] & 0x80 for p in payloads[:-1])
    assert _records(payloads) == records


def test_small_payloads_span_pieces_when_that_carries_more() -> None:
    hr = [
        StoredRecord(StreamId.HR_SAMPLES, i, HeartRateSample(T0 + 5 * i, 0, 70 + i % 3, 3))
        for i in range(200)
    ]
    payloads = encode_chunks(StreamId.HR_SAMPLES, hr, 20)
    # one sample per 20-byte chunk would cost 19 bytes; spanning pieces costs far less
    assert sum(map(len, payloads)) < 4 * len(hr)
    assert _records(payloads) == hr


# ------------------------------------------------- the vectorised codec vs the reference

COLUMN_STREAMS = st.sampled_from([s for s in StreamId if s != A])


def _outcome(decode: Callable[[], Sequence[StoredRecord]]) -> object:
    """The records a decoder returns, or the type and message of the error it raises."""
    try:
        return list(decode())
    except ChunkError as exc:
        return (type(exc), str(exc))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.data(), stream=STREAMS, payload_size=PAYLOAD_SIZES | st.integers(245, 512))
def test_packing_is_byte_identical_to_the_reference(
    data: st.DataObject, stream: StreamId, payload_size: int
) -> None:
    records = data.draw(stored_records(stream, max_size=150))
    start, end = data.draw(st.booleans()), data.draw(st.booleans())
    kwargs = {"start_of_transfer": start, "end_of_stream": end}
    assert pack_chunks(stream, records, payload_size, **kwargs) == reference_pack_chunks(
        stream, records, payload_size, **kwargs
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data(), stream=COLUMN_STREAMS)
def test_column_decoding_matches_the_reference_on_good_and_damaged_chunks(
    data: st.DataObject, stream: StreamId
) -> None:
    records = data.draw(stored_records(stream, max_size=60, contiguous=True).filter(bool))
    chunks = pack_chunks(stream, records, 512)
    chunk = b"".join(data.draw(st.sampled_from(chunks)).payloads)
    body = bytearray(chunk[:-CRC_SIZE])
    if data.draw(st.booleans()) and len(body) > HEADER_SIZE:
        # damage the section (header and CRC stay valid, so the column decoder sees it)
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(HEADER_SIZE, len(body) - 1))
            body[at] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            del body[data.draw(st.integers(HEADER_SIZE, len(body) - 1)) :]
    chunk = _reseal(bytes(body))
    first_seq = int.from_bytes(chunk[1:5], "little")
    count = int.from_bytes(chunk[5:7], "little")
    end = len(chunk) - CRC_SIZE

    def reference() -> list[StoredRecord]:
        # the wire decoder of old, then the record domain every decoded record must meet
        records = reference_unpack_columns(stream, first_seq, count, chunk, HEADER_SIZE, end)
        action = "the band sent a record no codec accepts; report it to the band's maker"
        check_domain(stream, [r.record for r in records], ChunkValueError, action)
        return records

    assert _outcome(lambda: list(decode_chunk(chunk).records)) == _outcome(reference)


def test_packing_a_week_is_byte_identical_to_the_reference() -> None:
    for stream, records in week_records(seed=5).items():
        for payload_size in (20, 64, 244, 512):
            kwargs = {"start_of_transfer": True, "end_of_stream": True}
            assert pack_chunks(stream, records, payload_size, **kwargs) == (
                reference_pack_chunks(stream, records, payload_size, **kwargs)
            )


def test_bad_records_raise_what_the_reference_raises() -> None:
    hr = StreamId.HR_SAMPLES
    good = HeartRateSample(T0, 60, 70, 3)
    cases = [
        [StoredRecord(hr, 0, good), StoredRecord(hr, -1, good)],
        [StoredRecord(hr, 0, good), StoredRecord(hr, 1, replace(good, tz_offset_min=2000))],
        [StoredRecord(hr, 0, good), StoredRecord(hr, 2**32, good)],
        [StoredRecord(hr, 0, good), StoredRecord(hr, 1, replace(good, bpm=70.0))],  # type: ignore[arg-type]
        [StoredRecord(hr, 0, good), StoredRecord(hr, 1, replace(good, bpm=2**64))],
        [StoredRecord(hr, 0, good), StoredRecord(hr, 1, replace(good, confidence=-1))],
        [StoredRecord(hr, 0, good), StoredRecord(hr, 1, SleepEpoch(T0, 0, SleepStage.REM))],
        [StoredRecord(hr, 0, good), StoredRecord(StreamId.SLEEP_EPOCHS, 1, good)],
    ]
    for records in cases:
        with pytest.raises(ChunkValueError) as fast:
            pack_chunks(hr, records, 244)
        with pytest.raises(ChunkValueError) as reference:
            reference_pack_chunks(hr, records, 244)
        assert str(fast.value) == str(reference.value)


# ---------------------------------------------------------------------- size budget


@pytest.mark.parametrize(("payload_size", "limit"), [(244, 1.2), (182, 1.2), (64, 1.3), (20, 2.0)])
def test_activity_minutes_of_a_realistic_week_cost_far_under_three_bytes(
    payload_size: int, limit: float
) -> None:
    minutes = week_records()[A]
    payloads = encode_chunks(A, minutes, payload_size, start_of_transfer=True, end_of_stream=True)
    per_minute = sum(map(len, payloads)) / len(minutes)
    assert per_minute <= limit <= 3.0
    assert _records(payloads) == minutes


def test_week_of_every_stream_round_trips() -> None:
    for stream, records in week_records(seed=3).items():
        assert _records(encode_chunks(stream, records, 244)) == records


# ------------------------------------------------------------------------- bad bytes


def test_corrupted_byte_fails_crc() -> None:
    data = bytearray.fromhex(VECTOR_HEX)
    data[10] ^= 0x04
    with pytest.raises(ChunkCrcError, match="CRC"):
        decode_chunk(bytes(data))


def test_short_input_is_truncated() -> None:
    with pytest.raises(ChunkTruncatedError):
        decode_chunk(bytes.fromhex(VECTOR_HEX)[: CHUNK_OVERHEAD - 1])


def test_cut_body_with_valid_crc_is_truncated() -> None:
    body = bytes.fromhex(VECTOR_HEX)[:-4]
    with pytest.raises(ChunkTruncatedError):
        decode_chunk(_reseal(body[:-2]))


def test_extra_bytes_after_last_record_rejected() -> None:
    body = bytes.fromhex(VECTOR_HEX)[:-4]
    with pytest.raises(ChunkFormatError):
        decode_chunk(_reseal(body + b"\x00"))


def test_count_that_lies_is_rejected() -> None:
    body = bytearray.fromhex(VECTOR_HEX)[:-4]
    body[5] = 5  # says 5 minutes, carries 3
    with pytest.raises(ChunkTruncatedError):
        decode_chunk(_reseal(bytes(body)))
    body[5] = 2  # says 2, carries 3
    with pytest.raises(ChunkFormatError):
        decode_chunk(_reseal(bytes(body)))


@pytest.mark.parametrize("head", [0x80 | 1, FLAG_FRAGMENT | 1, 0x0F, 0x00, 0x08])
def test_reserved_bits_or_unknown_stream_rejected(head: int) -> None:
    body = bytearray.fromhex(VECTOR_HEX)[:-4]
    body[0] = head
    with pytest.raises(ChunkFormatError):
        decode_chunk(_reseal(bytes(body)))


def test_decoded_enum_out_of_range_is_a_value_error() -> None:
    epochs = [
        StoredRecord(StreamId.SLEEP_EPOCHS, i, SleepEpoch(T0 + 30 * i, 0, SleepStage.DEEP))
        for i in range(2)
    ]
    (payload,) = encode_chunks(StreamId.SLEEP_EPOCHS, epochs, 244)
    body = bytearray(payload[:-4])
    stage_offset = CHUNK_OVERHEAD - 4 + 2 + 4  # header, tz, first start
    body[stage_offset] = 7  # the first stage is stored 1 byte wide: 7 is no stage
    with pytest.raises(ChunkValueError):
        decode_chunk(_reseal(bytes(body)))


def test_flags_are_where_the_docs_say() -> None:
    data = bytes.fromhex(VECTOR_HEX)
    assert data[0] == int(A) | FLAG_START | FLAG_END


# ------------------------------------------------------------------- bad records in


@pytest.mark.parametrize(
    "change",
    [
        {"steps": 256},
        {"steps": -1},
        {"intensity": 4},
        {"avg_hr": 256},
        {"tz_offset_min": 1081},
        {"start": -60},
        {"start": 2**32},
    ],
)
def test_out_of_range_activity_fields_rejected(change: dict[str, int]) -> None:
    minute = VECTOR_RECORDS[0].record
    bad = [StoredRecord(A, 0, replace(minute, **change))]  # type: ignore[arg-type]
    with pytest.raises(ChunkValueError) as info:
        encode_chunks(A, bad, 244)
    assert str(change[next(iter(change))]) not in str(info.value)  # no values in messages


def test_out_of_range_column_fields_rejected() -> None:
    bad = [StoredRecord(StreamId.HR_SAMPLES, 0, HeartRateSample(T0, 0, 300, 3))]
    with pytest.raises(ChunkValueError, match="bpm"):
        encode_chunks(StreamId.HR_SAMPLES, bad, 244)
    bad = [StoredRecord(StreamId.HR_SAMPLES, 0, HeartRateSample(T0, 0, 70, 4))]
    with pytest.raises(ChunkValueError, match="confidence"):
        encode_chunks(StreamId.HR_SAMPLES, bad, 244)


def test_float_field_rejected_not_truncated() -> None:
    bad = [StoredRecord(StreamId.HR_SAMPLES, 0, HeartRateSample(T0, 0, 70.5, 3))]  # type: ignore[arg-type]
    with pytest.raises(ChunkValueError):
        encode_chunks(StreamId.HR_SAMPLES, bad, 244)


def test_record_of_another_stream_rejected() -> None:
    with pytest.raises(ChunkValueError):
        encode_chunks(StreamId.HR_SAMPLES, VECTOR_RECORDS, 244)
    alarm = AlarmEvent(T0, 0, 1, AlarmEventKind.FIRED, T0, None)
    with pytest.raises(ChunkValueError):
        encode_chunks(StreamId.ALARM_EVENTS, [StoredRecord(A, 0, alarm)], 244)


@pytest.mark.parametrize("size", [19, 513, 0])
def test_payload_size_outside_att_limits_is_a_usage_error(size: int) -> None:
    with pytest.raises(UsageError):
        encode_chunks(A, VECTOR_RECORDS, size)


# ----------------------------------------------------------------------- fragments


def _summary_pieces() -> list[bytes]:
    summary = SleepSummary(T0, 60, T0 + 900, T0 + 27000, T0 + 27600, 91, 3, 260, 90, 100, 20)
    return encode_chunks(
        StreamId.SLEEP_SUMMARIES, [StoredRecord(StreamId.SLEEP_SUMMARIES, 0, summary)], 20
    )


def test_missing_piece_is_a_fragment_error() -> None:
    pieces = _summary_pieces()
    assembler = ChunkAssembler()
    assert assembler.feed(pieces[0]) is None
    with pytest.raises(ChunkFragmentError):
        assembler.feed(pieces[2])


def test_repeated_piece_is_ignored() -> None:
    pieces = _summary_pieces()
    assembler = ChunkAssembler()
    out = [assembler.feed(p) for p in [pieces[0], pieces[0], *pieces[1:]]]
    assert out[:-1] == [None] * (len(out) - 1)
    assert out[-1] is not None and decode_chunk(out[-1]).count == 1


def test_whole_chunk_inside_fragments_is_an_error() -> None:
    pieces = _summary_pieces()
    assembler = ChunkAssembler()
    assembler.feed(pieces[0])
    with pytest.raises(ChunkFragmentError):
        assembler.feed(bytes.fromhex(VECTOR_HEX))
    with pytest.raises(ChunkFragmentError):
        decode_payloads(pieces[:-1])


def test_every_chunk_error_is_a_kmeband_value_error() -> None:
    for cls in (ChunkCrcError, ChunkTruncatedError, ChunkFormatError, ChunkValueError):
        assert issubclass(cls, ChunkError) and issubclass(cls, ValueError)
