"""Record sync state machines: unit behaviour and end-to-end delivery properties.

The properties drive a band (BandSyncSender over an in-memory flash) and a client
(ClientSyncReceiver plus a store) through a lossy Data channel: chunks dropped, repeated
and swapped, links cut at random points, a client that sometimes loses what it had not
stored yet, and a band that keeps recording between syncs. Whatever happens, the client
ends with every record exactly once and in order, and the band never frees a record the
client had not stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_strategies import PAYLOAD_SIZES, STREAMS, stored_records

from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.record_sync import (
    AbortTransfer,
    AckRecords,
    ListStreams,
    StartTransfer,
    StreamList,
    TransferEnd,
)
from protocol.kme.control.schema import decode_control, encode_control
from protocol.kme.record_codec import encode_chunks, encode_empty_chunk
from protocol.kme.record_sync import (
    BandSyncSender,
    ClientSyncReceiver,
    FreeRecords,
    IndicateControl,
    NotifyData,
    ReceiverState,
    RecordsLostOnBand,
    RecordsReceived,
    RecordSyncUsageError,
    SyncError,
    TransferComplete,
    TransferFinished,
)
from protocol.kme.records import HeartRateSample, StoredRecord, StreamId

HR = StreamId.HR_SAMPLES
T0 = 1_709_506_800


class MemoryFlash:
    """A flash holding each stream as one contiguous list (seq numbers from 1)."""

    def __init__(self) -> None:
        self.records: dict[StreamId, list[StoredRecord]] = {s: [] for s in StreamId}
        self.first: dict[StreamId, int] = dict.fromkeys(StreamId, 1)
        self.next: dict[StreamId, int] = dict.fromkeys(StreamId, 1)
        self.lost: dict[StreamId, int] = dict.fromkeys(StreamId, 0)

    def add(self, stream: StreamId, records: Sequence[StoredRecord]) -> None:
        for stored in records:
            renumbered = StoredRecord(stream, self.next[stream], stored.record)
            self.records[stream].append(renumbered)
            self.next[stream] += 1

    def drop_oldest(self, stream: StreamId, n: int) -> None:
        del self.records[stream][:n]
        self.first[stream] += n
        self.lost[stream] += n

    def read(self, stream: StreamId, from_seq: int, max_records: int) -> list[StoredRecord]:
        start = max(from_seq, self.first[stream]) - self.first[stream]
        return self.records[stream][start : start + max_records]

    def first_seq(self, stream: StreamId) -> int:
        return self.first[stream]

    def next_seq(self, stream: StreamId) -> int:
        return self.next[stream]

    def dropped(self, stream: StreamId) -> int:
        return self.lost[stream]

    def free_up_to(self, stream: StreamId, seq: int) -> None:
        n = max(0, seq - self.first[stream] + 1)
        del self.records[stream][:n]
        self.first[stream] += n


def hr_records(n: int, first_seq: int = 1) -> list[StoredRecord]:
    return [
        StoredRecord(HR, first_seq + i, HeartRateSample(T0 + 5 * i, 60, 60 + i % 7, 3))
        for i in range(n)
    ]


def drain(sender: BandSyncSender) -> list[object]:
    out: list[object] = []
    while (event := sender.next_event()) is not None:
        out.append(event)
    return out


def data_of(events: list[object]) -> list[bytes]:
    return [e.payload for e in events if isinstance(e, NotifyData)]


def controls_of(events: list[object]) -> list[object]:
    return [decode_control(e.payload) for e in events if isinstance(e, IndicateControl)]


def feed_all(receiver: ClientSyncReceiver, events: list[object]) -> list[object]:
    out: list[object] = []
    for event in events:
        if isinstance(event, NotifyData):
            out += receiver.receive_data(event.payload)
        elif isinstance(event, IndicateControl):
            out += receiver.receive_control(event.payload)
    return out


def band_with(n: int, payload_size: int = 244, **kw: int) -> tuple[MemoryFlash, BandSyncSender]:
    flash = MemoryFlash()
    flash.add(HR, hr_records(n))
    return flash, BandSyncSender(flash, payload_size, **kw)


# ------------------------------------------------------------------------------- docs


def test_docs_list_every_schema_row_as_the_code_has_it() -> None:
    from protocol.kme.consent import ConsentRecord
    from protocol.kme.control.record_sync import StreamStatus
    from protocol.kme.control.schema import schema_rows

    text = (Path(__file__).resolve().parents[2] / "docs" / "records.md").read_text()
    for cls in (
        ListStreams,
        StreamList,
        StreamStatus,
        StartTransfer,
        TransferEnd,
        AckRecords,
        AbortTransfer,
        ConsentRecord,
    ):
        for key, name, description, required in schema_rows(cls):
            row = f"| {key} | `{name}` | {description} | {'yes' if required else 'no'} |"
            assert row in text, f"docs/records.md lacks {cls.__name__}.{name} as in the code"
        if hasattr(cls, "MESSAGE_TYPE") and cls.MESSAGE_TYPE:
            assert f"`0x{cls.MESSAGE_TYPE:02X}` {cls.__name__}" in text


# -------------------------------------------------------------------------- band side


def test_list_streams_reports_ranges_and_drops() -> None:
    flash, band = band_with(10)
    flash.drop_oldest(HR, 3)
    band.receive_control(encode_control(ListStreams()))
    (reply,) = controls_of(drain(band))
    assert isinstance(reply, StreamList)
    status = {s.stream: s for s in reply.streams}
    assert (status[HR].first_seq, status[HR].next_seq, status[HR].dropped) == (4, 11, 3)
    assert len(reply.streams) == len(StreamId)


def test_transfer_sends_start_chunks_end_and_end_marker() -> None:
    _, band = band_with(1000, read_batch=64)
    band.receive_control(encode_control(StartTransfer(HR, 1)))
    events = drain(band)
    controls = controls_of(events)
    assert controls[0] == ControlResult(StartTransfer.MESSAGE_TYPE, ControlStatus.OK)
    assert controls[-1] == TransferEnd(HR, 1000, 1000)
    assert isinstance(events[-1], TransferFinished) and not events[-1].aborted
    receiver = ClientSyncReceiver(HR, 1, 244)
    receiver.start_request()
    got = feed_all(receiver, events)
    records = [r for e in got if isinstance(e, RecordsReceived) for r in e.records]
    assert records == hr_records(1000)
    assert got[-1] == TransferComplete(HR, 1000, 1000)
    # batches of 64 still make full chunks: the same chunks as encoding everything at once
    assert data_of(events) == encode_chunks(
        HR, hr_records(1000), 244, start_of_transfer=True, end_of_stream=True
    )


def test_empty_transfer_is_one_empty_start_end_chunk() -> None:
    _, band = band_with(5)
    band.receive_control(encode_control(StartTransfer(HR, 6)))
    events = drain(band)
    assert data_of(events) == [encode_empty_chunk(HR, 6, start_of_transfer=True)]
    assert controls_of(events)[-1] == TransferEnd(HR, 0, None)


def test_max_records_limits_the_transfer() -> None:
    _, band = band_with(100)
    band.receive_control(encode_control(StartTransfer(HR, 11, max_records=20)))
    events = drain(band)
    assert controls_of(events)[-1] == TransferEnd(HR, 20, 30)
    receiver = ClientSyncReceiver(HR, 11, 244, max_records=20)
    receiver.start_request()
    assert feed_all(receiver, events)[-1] == TransferComplete(HR, 30, 20)


def test_second_start_while_busy_is_refused() -> None:
    _, band = band_with(100)
    band.receive_control(encode_control(StartTransfer(HR, 1)))
    band.next_event()
    band.receive_control(encode_control(StartTransfer(StreamId.SLEEP_EPOCHS, 1)))
    assert decode_control(band.next_event().payload) == ControlResult(  # type: ignore[union-attr]
        StartTransfer.MESSAGE_TYPE, ControlStatus.BUSY
    )


def test_start_beyond_next_seq_is_invalid() -> None:
    _, band = band_with(5)
    band.receive_control(encode_control(StartTransfer(HR, 7)))
    assert controls_of(drain(band)) == [
        ControlResult(StartTransfer.MESSAGE_TYPE, ControlStatus.INVALID_REQUEST)
    ]


def test_ack_frees_only_what_was_sent() -> None:
    _, band = band_with(50)
    band.receive_control(encode_control(AckRecords(HR, 10)))
    assert controls_of(drain(band)) == [
        ControlResult(AckRecords.MESSAGE_TYPE, ControlStatus.INVALID_REQUEST)
    ]
    band.receive_control(encode_control(StartTransfer(HR, 1, max_records=20)))
    drain(band)
    band.receive_control(encode_control(AckRecords(HR, 21)))
    assert not [e for e in drain(band) if isinstance(e, FreeRecords)]
    band.receive_control(encode_control(AckRecords(HR, 20)))
    assert FreeRecords(HR, 20) in drain(band)
    band.receive_control(encode_control(AckRecords(HR, 15)))  # repeated, lower: no-op, OK
    events = drain(band)
    assert not [e for e in events if isinstance(e, FreeRecords)]
    assert controls_of(events) == [ControlResult(AckRecords.MESSAGE_TYPE, ControlStatus.OK)]


def test_abort_stops_chunks_and_no_end_marker_follows() -> None:
    _, band = band_with(2000, payload_size=40)
    band.receive_control(encode_control(StartTransfer(HR, 1)))
    for _ in range(3):
        band.next_event()
    band.receive_control(encode_control(AbortTransfer(HR)))
    events = drain(band)
    assert not data_of(events)
    assert TransferEnd not in {type(c) for c in controls_of(events)}
    assert band.active_stream is None


def test_connection_lost_keeps_pending_frees_and_drops_the_transfer() -> None:
    _, band = band_with(300)
    band.receive_control(encode_control(StartTransfer(HR, 1)))
    drain(band)
    band.receive_control(encode_control(StartTransfer(HR, 301)))
    band.receive_control(encode_control(AckRecords(HR, 300)))
    band.connection_lost()
    events = drain(band)
    assert FreeRecords(HR, 300) in events
    assert not data_of(events)


@pytest.mark.parametrize("junk", [b"", b"\xff", encode_control(TransferEnd(HR, 1, 1))])
def test_malformed_or_unexpected_request_answered_not_raised(junk: bytes) -> None:
    _, band = band_with(1)
    band.receive_control(junk)
    (reply,) = controls_of(drain(band))
    assert isinstance(reply, ControlResult)
    assert reply.status in (ControlStatus.INVALID_REQUEST, ControlStatus.UNSUPPORTED)


def test_records_dropped_mid_transfer_end_the_transfer_early() -> None:
    flash, band = band_with(3000, read_batch=100)
    band.receive_control(encode_control(StartTransfer(HR, 1)))
    events = [band.next_event() for _ in range(4)]
    flash.drop_oldest(HR, 2000)  # the flash filled up while sending
    events += drain(band)
    receiver = ClientSyncReceiver(HR, 1, 244)
    receiver.start_request()
    got = feed_all(receiver, events)
    assert isinstance(got[-1], TransferComplete)
    resumed = ClientSyncReceiver(HR, receiver.next_seq, 244)
    band.receive_control(resumed.start_request())
    got = feed_all(resumed, drain(band))
    assert isinstance(got[0], RecordsLostOnBand) and got[0].first_seq == receiver.next_seq
    assert isinstance(got[-1], TransferComplete) and got[-1].last_seq == 3000


# ------------------------------------------------------------------------ client side


def chunks_for(records: list[StoredRecord], size: int = 80) -> list[bytes]:
    return encode_chunks(HR, records, size, start_of_transfer=True, end_of_stream=True)


def started(next_seq: int = 1, **kw: int) -> ClientSyncReceiver:
    receiver = ClientSyncReceiver(HR, next_seq, 244, **kw)
    receiver.start_request()
    return receiver


def end_marker(count: int, last: int | None) -> bytes:
    return encode_control(TransferEnd(HR, count, last))


def test_duplicates_are_dropped() -> None:
    chunks = chunks_for(hr_records(200))
    receiver = started()
    got: list[object] = []
    for chunk in [chunks[0], chunks[0], chunks[1], chunks[0], *chunks[1:], chunks[-1]]:
        got += receiver.receive_data(chunk)
    got += receiver.receive_control(end_marker(200, 200))
    records = [r for e in got if isinstance(e, RecordsReceived) for r in e.records]
    assert records == hr_records(200)
    assert got[-1] == TransferComplete(HR, 200, 200)


def test_gap_is_an_error_and_nothing_after_it_is_delivered() -> None:
    chunks = chunks_for(hr_records(200))
    receiver = started()
    receiver.receive_data(chunks[0])
    (error,) = receiver.receive_data(chunks[2])
    assert isinstance(error, SyncError) and "missing" in error.reason
    assert receiver.state is ReceiverState.FAILED
    assert receiver.receive_data(chunks[1]) == []


def test_lost_start_chunk_is_an_error() -> None:
    chunks = chunks_for(hr_records(200))
    receiver = started()
    (error,) = receiver.receive_data(chunks[1])
    assert isinstance(error, SyncError)


def test_reorder_is_an_error() -> None:
    chunks = chunks_for(hr_records(200))
    receiver = started()
    receiver.receive_data(chunks[0])
    assert isinstance(receiver.receive_data(chunks[2])[0], SyncError)


def test_bad_crc_is_an_error() -> None:
    chunk = bytearray(chunks_for(hr_records(10))[0])
    chunk[-1] ^= 1
    (error,) = started().receive_data(bytes(chunk))
    assert isinstance(error, SyncError) and "CRC" in error.reason


def test_oversized_chunk_is_an_error() -> None:
    chunk = chunks_for(hr_records(300), size=244)[0]
    receiver = ClientSyncReceiver(HR, 1, 100)
    receiver.start_request()
    (error,) = receiver.receive_data(chunk)
    assert isinstance(error, SyncError) and "payload" in error.reason


def test_other_streams_chunk_is_an_error() -> None:
    receiver = ClientSyncReceiver(StreamId.SLEEP_EPOCHS, 1, 244)
    receiver.start_request()
    (error,) = receiver.receive_data(chunks_for(hr_records(3))[0])
    assert isinstance(error, SyncError)


@pytest.mark.parametrize(("count", "last"), [(199, 200), (201, 201), (200, 199), (0, None)])
def test_end_marker_that_lies_is_an_error(count: int, last: int | None) -> None:
    receiver = started()
    for chunk in chunks_for(hr_records(200)):
        receiver.receive_data(chunk)
    (error,) = receiver.receive_control(end_marker(count, last))
    assert isinstance(error, SyncError)
    assert receiver.state is ReceiverState.FAILED


def test_end_marker_before_end_chunk_is_checked_when_data_arrives() -> None:
    chunks = chunks_for(hr_records(200))
    receiver = started()
    receiver.receive_data(chunks[0])
    assert receiver.receive_control(end_marker(100, 100)) == []
    assert any(isinstance(e, SyncError) for e in receiver.receive_data(chunks[1]))


def test_more_records_than_asked_is_an_error() -> None:
    receiver = started(max_records=10)
    (error,) = receiver.receive_data(chunks_for(hr_records(30))[0])
    assert isinstance(error, SyncError)


def test_band_refusing_the_start_is_an_error() -> None:
    receiver = started()
    result = ControlResult(StartTransfer.MESSAGE_TYPE, ControlStatus.BUSY)
    (error,) = receiver.receive_control(encode_control(result))
    assert isinstance(error, SyncError) and "BUSY" in error.reason


def test_ack_only_for_received_records_and_only_forward() -> None:
    receiver = started(next_seq=51)
    assert decode_control(receiver.stored_up_to(50)) == AckRecords(HR, 50)  # stored before
    with pytest.raises(RecordSyncUsageError):
        receiver.stored_up_to(51)
    receiver.receive_data(chunks_for(hr_records(20, first_seq=51))[0])
    receiver.stored_up_to(receiver.next_seq - 1)
    with pytest.raises(RecordSyncUsageError):
        receiver.stored_up_to(50)


def test_data_after_abort_is_ignored() -> None:
    receiver = started()
    assert decode_control(receiver.abort()) == AbortTransfer(HR)
    assert receiver.receive_data(chunks_for(hr_records(5))[0]) == []


def test_a_receiver_runs_one_transfer() -> None:
    receiver = started()
    with pytest.raises(RecordSyncUsageError):
        receiver.start_request()


# ------------------------------------------------------------------------- properties


@dataclass
class Client:
    """The sync client's store: what it holds durably, and what it has in memory."""

    stored: list[StoredRecord] = field(default_factory=list)
    next_seq: int = 1
    unacked: bool = False

    def store(self, records: list[StoredRecord]) -> None:
        for stored in records:
            assert stored.seq >= self.next_seq, "a record was delivered twice"
            self.stored.append(stored)
            self.next_seq = stored.seq + 1
        self.unacked = True


SESSION = st.fixed_dictionaries(
    {
        # per Data notification: 0 deliver, 1 drop, 2 repeat, 3 swap with the next
        "faults": st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), max_size=30),
        "cut_after": st.none() | st.integers(0, 40),
        "store_every": st.integers(1, 400),
        "keep_on_cut": st.booleans(),
        "max_records": st.none() | st.integers(1, 150),
        "new_records": st.integers(0, 30),
    }
)


def run_session(
    band: BandSyncSender,
    flash: MemoryFlash,
    client: Client,
    stream: StreamId,
    payload_size: int,
    plan: dict[str, object] | None,
) -> bool:
    """One connection: returns True when the transfer completed with nothing left."""
    faults: list[int] = list(plan["faults"]) if plan else []  # type: ignore[call-overload]
    cut_after = plan["cut_after"] if plan else None
    store_every: int = plan["store_every"] if plan else 50  # type: ignore[assignment]
    max_records = plan["max_records"] if plan else None
    receiver = ClientSyncReceiver(
        stream,
        client.next_seq,
        payload_size,
        max_records=max_records,  # type: ignore[arg-type]
    )
    if client.unacked and client.next_seq > 1:
        band.receive_control(receiver.stored_up_to(client.next_seq - 1))
        client.unacked = False
    band.receive_control(receiver.start_request())
    pending: list[StoredRecord] = []
    held: bytes | None = None
    notified = 0
    outcome = "open"

    def store_and_ack() -> None:
        if pending:
            client.store(pending)
            pending.clear()
            band.receive_control(receiver.stored_up_to(client.next_seq - 1))
            client.unacked = False

    def handle(events: list[object]) -> None:
        nonlocal outcome
        for event in events:
            if isinstance(event, RecordsReceived):
                pending.extend(event.records)
                if len(pending) >= store_every:
                    store_and_ack()
            elif isinstance(event, TransferComplete):
                store_and_ack()
                outcome = "complete"
            elif isinstance(event, SyncError):
                band.receive_control(receiver.abort())
                outcome = "error"

    while (event := band.next_event()) is not None:
        if isinstance(event, FreeRecords):
            stored_last = client.stored[-1].seq if client.stored else 0
            assert event.up_to_seq <= stored_last, "the band freed records the client lacks"
            flash.free_up_to(event.stream, event.up_to_seq)
        elif isinstance(event, IndicateControl):
            handle(receiver.receive_control(event.payload))
        elif isinstance(event, NotifyData):
            notified += 1
            if cut_after is not None and notified > cut_after:  # type: ignore[operator]
                band.connection_lost()
                if plan and plan["keep_on_cut"]:
                    client.store(pending)  # stored, but the ack cannot be sent any more
                pending.clear()
                return False
            fault = faults.pop(0) if faults else 0
            if fault == 3 and held is None:
                held = event.payload
                continue
            deliveries = {0: [event.payload], 1: [], 2: [event.payload] * 2, 3: [event.payload]}
            delivered = deliveries[fault]
            if held is not None:
                delivered.append(held)
                held = None
            for payload in delivered:
                handle(receiver.receive_data(payload))
    if outcome == "open":  # the client's wait times out: give up this transfer
        band.receive_control(receiver.abort())
        drain(band)
    return outcome == "complete" and receiver.received_count == 0 and not max_records


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    data=st.data(),
    stream=STREAMS,
    payload_size=PAYLOAD_SIZES,
    read_batch=st.integers(1, 300),
    sessions=st.lists(SESSION, max_size=6),
)
def test_every_record_arrives_exactly_once_in_order_and_only_stored_ones_are_freed(
    data: st.DataObject,
    stream: StreamId,
    payload_size: int,
    read_batch: int,
    sessions: list[dict[str, object]],
) -> None:
    flash = MemoryFlash()
    flash.add(stream, data.draw(stored_records(stream, max_size=150, contiguous=True)))
    band = BandSyncSender(flash, payload_size, read_batch=read_batch)
    client = Client()
    expected = list(flash.records[stream])
    for plan in sessions:
        run_session(band, flash, client, stream, payload_size, plan)
        more = data.draw(stored_records(stream, max_size=plan["new_records"]))  # type: ignore[arg-type]
        flash.add(stream, more)
        expected += flash.records[stream][len(flash.records[stream]) - len(more) :]
    for _ in range(10):  # then a good link: a few clean syncs finish the job
        if run_session(band, flash, client, stream, payload_size, None):
            break
    assert client.stored == expected
    assert flash.records[stream] == []  # everything acknowledged was freed, nothing else
