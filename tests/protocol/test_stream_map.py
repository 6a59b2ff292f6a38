"""One stream -> record-type map (protocol.kme.records.STREAM_RECORD_TYPE) and the tables
derived from it: each per-stream table must cover exactly the streams and agree with the
map, or a record of the wrong type would be coded without complaint."""

from __future__ import annotations

from dataclasses import fields

from week_pattern import week_records

from protocol.kme.batch import COLUMNS
from protocol.kme.column_codec import COLUMN_CODECS
from protocol.kme.record_codec import decode_payloads, encode_chunks
from protocol.kme.records import STREAM_RECORD_TYPE, StreamId


def test_every_stream_has_exactly_one_record_type() -> None:
    assert set(STREAM_RECORD_TYPE) == set(StreamId)
    assert len(set(STREAM_RECORD_TYPE.values())) == len(StreamId)


def test_batch_columns_are_the_record_fields_of_each_stream() -> None:
    assert set(COLUMNS) == set(StreamId)
    for stream, specs in COLUMNS.items():
        names = [f.name for f in fields(STREAM_RECORD_TYPE[stream])]
        assert [spec.field for spec in specs] == names, stream.name


def test_column_codecs_cover_every_stream_but_activity_minutes() -> None:
    assert set(COLUMN_CODECS) == set(StreamId) - {StreamId.ACTIVITY_MINUTES}
    for stream, codec in COLUMN_CODECS.items():
        names = {f.name for f in fields(STREAM_RECORD_TYPE[stream])}
        # summary and alarm columns carry some fields as offsets, under the field's name
        assert {c.name for c in codec.columns} <= names, stream.name


def test_decoded_chunks_hold_the_record_type_of_their_stream() -> None:
    for stream, records in week_records(seed=11).items():
        decoded = decode_payloads(encode_chunks(stream, records, 244))
        got = {type(stored.record) for chunk in decoded for stored in chunk.records}
        assert got == {STREAM_RECORD_TYPE[stream]}, stream.name
