"""The band's flash: sequence numbers, capacity drops, persistence and corruption."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim.band import flash_codec
from device_sim.band.flash import (
    Flash,
    FlashCapacityError,
    FlashCorruptError,
    FlashInUseError,
    FlashRecordError,
    FlashSeqError,
    RecordSink,
)
from device_sim.band.flash_codec import RECORD_SIZE, decode_records, encode_record
from protocol.errors import KmebandError, UsageError
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    ActivityClass,
    ActivityMinute,
    AlarmEvent,
    AlarmEventKind,
    GnssFix,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    SleepSummary,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
)

T0 = 1_767_225_600
HR = StreamId.HR_SAMPLES
ACT = StreamId.ACTIVITY_MINUTES


def hr(i: int, bpm: int = 70) -> HeartRateSample:
    return HeartRateSample(T0 + i, 60, bpm, 3)


def one_of_each() -> dict[StreamId, Record]:
    return {
        StreamId.ACTIVITY_MINUTES: ActivityMinute(T0, 60, 112, ActivityClass.WALK, 2, 98, True),
        StreamId.HR_SAMPLES: HeartRateSample(T0 + 1, -300, 143, 2),
        StreamId.SLEEP_EPOCHS: SleepEpoch(T0 + 30, 0, SleepStage.REM),
        StreamId.SLEEP_SUMMARIES: SleepSummary(
            T0, 60, T0 + 900, T0 + 27_000, T0 + 27_600, 91, 3, 240, 90, 100, 30
        ),
        StreamId.ALARM_EVENTS: AlarmEvent(
            T0 + 27_000, 60, 4, AlarmEventKind.SMART_FIRED, T0 + 27_900, SleepStage.LIGHT
        ),
        StreamId.GNSS_FIXES: GnssFix(T0 + 5, 60, 525_200_000, -1_340_000, 35, 7),
        StreamId.TELEMETRY: TelemetryEvent(T0 + 9, 60, TelemetryKind.RECORDS_DROPPED, 512, 2),
    }


# ----------------------------------------------------------------------- record codec


def test_every_record_type_round_trips_through_its_flash_layout() -> None:
    for stream, record in one_of_each().items():
        data = encode_record(stream, record)
        assert len(data) == RECORD_SIZE[stream]
        assert decode_records(stream, data * 2) == [record, record]


def test_flash_layouts_follow_the_stream_record_type_map() -> None:
    # one struct per stream, one struct item per field of the stream's record type
    assert set(RECORD_SIZE) == set(StreamId)
    for stream, record in one_of_each().items():
        assert type(record) is STREAM_RECORD_TYPE[stream]
        layout = flash_codec._FORMATS[stream]
        assert len(layout.unpack(encode_record(stream, record))) == len(fields(record)), stream


def test_alarm_event_without_sleep_stage_round_trips() -> None:
    ev = AlarmEvent(T0, 0, 1, AlarmEventKind.DISMISSED, T0, None)
    assert decode_records(StreamId.ALARM_EVENTS, encode_record(StreamId.ALARM_EVENTS, ev)) == [ev]


def test_wrong_record_type_for_stream_is_a_typed_error() -> None:
    flash = Flash(4096)
    with pytest.raises(FlashRecordError, match="holds HeartRateSample"):
        flash.append(HR, SleepEpoch(T0, 0, SleepStage.WAKE))
    assert flash.next_seq(HR) == 1


@pytest.mark.parametrize(
    "record",
    [
        HeartRateSample(T0, 60, 300, 3),  # bpm beyond a byte
        HeartRateSample(-5, 60, 70, 3),  # before 1970
        HeartRateSample(T0, 60, 70.5, 3),  # type: ignore[arg-type]
        HeartRateSample(T0, 99_999, 70, 3),  # offset beyond 16 bits
    ],
)
def test_out_of_range_fields_are_rejected_before_storing(record: HeartRateSample) -> None:
    flash = Flash(4096)
    with pytest.raises(FlashRecordError) as info:
        flash.append(HR, record)
    assert isinstance(info.value, UsageError)
    assert flash.count(HR) == 0


def test_invalid_enum_value_is_rejected_not_stored() -> None:
    flash = Flash(4096)
    bad = SleepEpoch(T0, 0, 9)  # type: ignore[arg-type]
    with pytest.raises(FlashRecordError):
        flash.append(StreamId.SLEEP_EPOCHS, bad)


# ----------------------------------------------------------------------- sequence numbers


def test_sequence_numbers_start_at_one_per_stream() -> None:
    flash = Flash()
    assert flash.first_seq(HR) == flash.next_seq(HR) == 1
    assert [flash.append(HR, hr(i)) for i in range(3)] == [1, 2, 3]
    assert flash.append(ACT, one_of_each()[ACT]) == 1
    assert flash.next_seq(HR) == 4
    assert flash.first_seq(HR) == 1


def test_flash_satisfies_the_record_sink_protocol() -> None:
    sink: RecordSink = Flash()
    assert sink.append(HR, hr(0)) == 1


def test_read_returns_a_range_with_its_sequence_numbers() -> None:
    flash = Flash()
    for i in range(10):
        flash.append(HR, hr(i))
    got = flash.read(HR, 4, 3)
    assert [(r.stream, r.seq, r.record) for r in got] == [(HR, s, hr(s - 1)) for s in (4, 5, 6)]
    assert flash.read(HR, 9, 100)[-1].seq == 10
    assert flash.read(HR, 11, 5) == []
    assert flash.read(ACT, 1, 5) == []
    with pytest.raises(UsageError):
        flash.read(HR, 1, 0)


def test_free_up_to_is_inclusive_idempotent_and_never_reuses_numbers() -> None:
    flash = Flash()
    for i in range(5):
        flash.append(HR, hr(i))
    assert flash.free_up_to(HR, 3) == 3
    assert flash.first_seq(HR) == 4
    assert flash.free_up_to(HR, 2) == 0  # a repeated acknowledgement
    assert [r.seq for r in flash.read(HR, 1, 10)] == [4, 5]
    assert flash.free_up_to(HR, 5) == 2
    assert flash.count(HR) == 0
    assert flash.first_seq(HR) == flash.next_seq(HR) == 6
    assert flash.append(HR, hr(9)) == 6
    assert flash.used_bytes == RECORD_SIZE[HR]


def test_freeing_beyond_the_newest_record_is_a_typed_error() -> None:
    flash = Flash()
    flash.append(HR, hr(0))
    with pytest.raises(FlashSeqError, match="newest record is 1"):
        flash.free_up_to(HR, 2)
    with pytest.raises(FlashSeqError):
        flash.free_up_to(ACT, 1)
    assert flash.count(HR) == 1


# ----------------------------------------------------------------------- capacity


def test_full_flash_drops_oldest_records_a_block_at_a_time_and_reports_them() -> None:
    drops: list[tuple[StreamId, int]] = []
    size = RECORD_SIZE[HR]
    flash = Flash(
        100 * size, erase_block_bytes=10 * size, on_drop=lambda s, n: drops.append((s, n))
    )
    for i in range(100):
        flash.append(HR, hr(i))
    assert drops == [] and flash.free_bytes == 0
    assert flash.append(HR, hr(100)) == 101
    # one erase block (10 records) plus room for the new one
    assert drops == [(HR, 11)]
    assert flash.dropped(HR) == 11
    assert flash.first_seq(HR) == 12
    assert flash.read(HR, 1, 1)[0].record == hr(11)
    assert flash.count(HR) + flash.dropped(HR) == 101


def test_drops_take_the_stream_whose_oldest_record_is_oldest() -> None:
    size = RECORD_SIZE[HR]
    flash = Flash(64 * size, erase_block_bytes=1)
    epoch = StreamId.SLEEP_EPOCHS
    flash.append(epoch, SleepEpoch(T0 + 10, 0, SleepStage.DEEP))  # newer than the first HR
    for i in range(1, 100):
        flash.append(HR, hr(i))
    # HR records older than T0 + 10 go first, then the epoch, then HR again
    assert flash.dropped(epoch) == 1
    assert flash.dropped(HR) > 9
    assert flash.count(epoch) == 0
    assert flash.first_seq(epoch) == flash.next_seq(epoch) == 2


def test_appending_from_the_drop_callback_is_safe_and_reported_in_turn() -> None:
    reported: list[tuple[StreamId, int]] = []
    size = RECORD_SIZE[HR]
    flash = Flash(50 * size, erase_block_bytes=8 * size)
    tel = StreamId.TELEMETRY

    def log_drop(stream: StreamId, n: int) -> None:
        reported.append((stream, n))
        flash.append(tel, TelemetryEvent(T0 + 10_000, 0, TelemetryKind.RECORDS_DROPPED, n, stream))

    flash.on_drop = log_drop
    for i in range(500):
        flash.append(HR, hr(i))
    total_reported = sum(n for _, n in reported)
    total_dropped = sum(flash.dropped(s) for s in StreamId)
    assert total_reported == total_dropped > 0
    assert flash.count(tel) >= 1
    assert flash.used_bytes <= flash.capacity_bytes


def test_invalid_capacity_and_erase_block_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        Flash(10)
    with pytest.raises(UsageError):
        Flash(1024, erase_block_bytes=600)


# ----------------------------------------------------------------------- persistence


def test_records_counters_and_seqs_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    records = one_of_each()
    with Flash.open(path, 4096) as flash:
        for stream, record in records.items():
            flash.append(stream, record)
            flash.append(stream, record)
        flash.free_up_to(StreamId.GNSS_FIXES, 2)
        flash.free_up_to(HR, 1)
    assert path.stat().st_mode & 0o777 == 0o600
    with Flash.open(path, 4096) as again:
        for stream, record in records.items():
            assert again.next_seq(stream) == 3
            assert [r.record for r in again.read(stream, 1, 10)] == [record] * again.count(stream)
        assert again.first_seq(HR) == 2
        assert again.count(StreamId.GNSS_FIXES) == 0
        assert again.append(StreamId.GNSS_FIXES, records[StreamId.GNSS_FIXES]) == 3


def test_unflushed_appends_are_not_in_the_file_until_flush(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    flash = Flash.open(path, 4096)
    flash.append(HR, hr(0))
    size_before = path.stat().st_size
    flash.flush()
    assert path.stat().st_size > size_before
    flash.append(HR, hr(1))
    flash._file.close()  # type: ignore[union-attr]  # simulate a crash: no final flush
    flash._file = None
    with Flash.open(path, 4096) as again:
        assert again.next_seq(HR) == 2


def test_dropped_counts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    size = RECORD_SIZE[HR]
    with Flash.open(path, 40 * size, erase_block_bytes=4 * size) as flash:
        for i in range(100):
            flash.append(HR, hr(i))
        dropped, first = flash.dropped(HR), flash.first_seq(HR)
    with Flash.open(path, 40 * size, erase_block_bytes=4 * size) as again:
        assert (again.dropped(HR), again.first_seq(HR), again.next_seq(HR)) == (dropped, first, 101)


def test_compaction_rewrites_only_live_data_and_keeps_state(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    size = RECORD_SIZE[HR]
    flash = Flash.open(path, 1000 * size)
    for round_ in range(6):
        for i in range(400):
            flash.append(HR, hr(round_ * 400 + i))
        flash.flush()
        flash.free_up_to(HR, flash.next_seq(HR) - 11)
        flash.flush()
    # freed space beyond half the capacity triggers a rewrite: the file stays bounded
    assert path.stat().st_size < 1000 * size
    assert not (tmp_path / ".band.flash.tmp").exists()
    flash.close()
    with Flash.open(path, 1000 * size) as again:
        assert again.first_seq(HR) == 2400 - 9
        assert again.next_seq(HR) == 2401
        assert again.read(HR, 1, 1)[0].record == hr(2390)


def test_reopening_with_too_small_a_capacity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    with Flash.open(path, 4096) as flash:
        for i in range(100):
            flash.append(HR, hr(i))
    with pytest.raises(FlashCapacityError, match="at least 800 bytes"):
        Flash.open(path, 512)
    with Flash.open(path, 4096) as again:  # the refusal released the file
        assert again.count(HR) == 100


def test_a_flash_file_cannot_be_opened_twice(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    with Flash.open(path, 4096), pytest.raises(FlashInUseError):
        Flash.open(path, 4096)
    Flash.open(path, 4096).close()


def test_closed_flash_refuses_use() -> None:
    flash = Flash()
    flash.close()
    with pytest.raises(UsageError, match="closed"):
        flash.append(HR, hr(0))


# ----------------------------------------------------------------------- corruption


def _written_flash(path: Path) -> bytes:
    with Flash.open(path, 4096) as flash:
        for i in range(20):
            flash.append(HR, hr(i))
        flash.flush()
        flash.append(ACT, one_of_each()[ACT])
    return path.read_bytes()


def _assert_refused(path: Path, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(FlashCorruptError, match=match) as info:
        Flash.open(path, 4096)
    assert isinstance(info.value, KmebandError)
    assert "move the file away" in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before  # never overwritten


def test_truncated_file_is_reported_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    data = _written_flash(path)
    path.write_bytes(data[:-3])
    _assert_refused(path, "truncated entry")


def test_truncated_header_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    path.write_bytes(_written_flash(path)[:10])
    _assert_refused(path, "truncated header")


def test_flipped_byte_is_caught_by_the_entry_checksum(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    data = bytearray(_written_flash(path))
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    _assert_refused(path, "checksum mismatch")


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    path.write_bytes(b"not a flash file at all, just text\n")
    _assert_refused(path, "wrong magic")


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    data = bytearray(_written_flash(path))
    struct.pack_into("<H", data, 8, 99)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[:12])))
    path.write_bytes(bytes(data))
    _assert_refused(path, "version 99 is not supported")


def test_inconsistent_sequence_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "band.flash"
    data = _written_flash(path)
    # append a well-formed segment that skips ahead while records are live
    body = struct.pack("<BQI", HR, 999, 1) + encode_record(HR, hr(0))
    head = struct.pack("<BI", 1, len(body))
    path.write_bytes(data + head + body + struct.pack("<I", zlib.crc32(head + body)))
    _assert_refused(path, "starts at seq 999")


# ----------------------------------------------------------------------- properties

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.sampled_from([HR, ACT]), st.integers(0, 10_000)),
        st.tuples(st.just("free"), st.sampled_from([HR, ACT]), st.integers(0, 40)),
        st.tuples(st.just("flush"), st.just(HR), st.just(0)),
        st.tuples(st.just("reopen"), st.just(HR), st.just(0)),
    ),
    max_size=120,
)


def _record(stream: StreamId, i: int) -> Record:
    if stream is HR:
        return hr(i, bpm=40 + i % 150)
    return ActivityMinute(T0 + 60 * i, 0, i % 256, ActivityClass.RUN, i % 4, i % 200, i % 2 == 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_model_no_silent_loss_monotonic_seqs_and_persistence(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, StreamId, int]]
) -> None:
    path = tmp_path_factory.mktemp("flash") / "band.flash"
    capacity = 30 * RECORD_SIZE[ACT]
    flash = Flash.open(path, capacity, erase_block_bytes=40, fsync=False)
    model: dict[StreamId, dict[int, Record]] = {HR: {}, ACT: {}}
    appended = {HR: 0, ACT: 0}
    freed = {HR: 0, ACT: 0}
    last_seq = {HR: 0, ACT: 0}
    try:
        for op, stream, arg in ops:
            if op == "append":
                rec = _record(stream, arg)
                seq = flash.append(stream, rec)
                assert seq == last_seq[stream] + 1  # monotonic, never reused
                last_seq[stream] = seq
                model[stream][seq] = rec
                appended[stream] += 1
            elif op == "free":
                target = flash.first_seq(stream) - 1 + arg
                if target >= flash.next_seq(stream):
                    with pytest.raises(FlashSeqError):
                        flash.free_up_to(stream, target)
                    continue
                before, first_before = flash.count(stream), flash.first_seq(stream)
                n = flash.free_up_to(stream, target)
                assert flash.count(stream) == before - n
                # free removes exactly the acknowledged prefix, never an unfreed record
                assert flash.first_seq(stream) == max(target + 1, first_before)
                assert n == max(0, target + 1 - first_before)
                freed[stream] += n
            elif op == "flush":
                flash.flush()
            else:
                flash.close()
                flash = Flash.open(path, capacity, erase_block_bytes=40, fsync=False)
            assert flash.used_bytes <= capacity
            for s in (HR, ACT):
                live = flash.read(s, 1, 10_000)
                # every record is live, freed or counted as dropped: no silent loss
                assert appended[s] == len(live) + freed[s] + flash.dropped(s)
                assert [r.seq for r in live] == list(range(flash.first_seq(s), flash.next_seq(s)))
                assert all(model[s][r.seq] == r.record for r in live)
                assert flash.next_seq(s) == last_seq[s] + 1
    finally:
        flash.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bpm=st.lists(st.integers(0, 255), min_size=1, max_size=200),
    free_to=st.integers(0, 200),
)
def test_persist_and_reopen_round_trip(
    tmp_path_factory: pytest.TempPathFactory, bpm: list[int], free_to: int
) -> None:
    path = tmp_path_factory.mktemp("flash") / "band.flash"
    with Flash.open(path, fsync=False) as flash:
        for i, b in enumerate(bpm):
            flash.append(HR, hr(i, b))
        flash.free_up_to(HR, min(free_to, len(bpm)))
        expected = flash.read(HR, 1, 1000)
    with Flash.open(path, fsync=False) as again:
        assert again.read(HR, 1, 1000) == expected
        assert again.next_seq(HR) == len(bpm) + 1
    os.remove(path)
