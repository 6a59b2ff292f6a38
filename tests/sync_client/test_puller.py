"""The puller against a fake band running protocol's band-side sync machine."""

from __future__ import annotations

import asyncio
import itertools
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_ingest.opening import open_batch
from protocol.kme.batch import BatchError, decode_batch_plaintext
from protocol.kme.record_sync import BandSyncSender
from protocol.kme.records import ConsentCategory, HeartRateSample, StoredRecord, StreamId
from sync_client.batcher import Batcher, BatchLimits, ServiceData
from sync_client.consent import AllowedIntervals
from sync_client.outbox import Outbox, QueuedBatch
from sync_client.puller import (
    Progress,
    Puller,
    PullLinkLostError,
    StreamResult,
    StreamSyncError,
)
from tests.sync_client.band_fakes import (
    DATA,
    INGEST_KEY,
    FakeBandClient,
    MemoryFlash,
    activity_minutes,
    queued_records,
)

BAND = b"\x42" * 32
T0 = 1_700_000_000
ALL_GRANTED = AllowedIntervals({c: ((0, None),) for c in ConsentCategory})


_SEEDS = itertools.count(1)


def make_batcher(max_records: int = 50) -> Batcher:
    # a fresh seed per batcher: batch ids must never repeat across reconnects
    rng = random.Random(next(_SEEDS))
    return Batcher(
        band=BAND,
        service=ServiceData("1.2.0", "KME-1", "linux", "0.1.0"),
        consent_record=b"band-signed consent record",
        recipient_key=INGEST_KEY.public_key(),
        limits=BatchLimits(max_records=max_records),
        random_bytes=rng.randbytes,
        clock=lambda: float(T0),
    )


def make_puller(
    client: FakeBandClient,
    outbox: Outbox,
    allowed: AllowedIntervals = ALL_GRANTED,
    **kwargs: object,
) -> Puller:
    puller = Puller(client, outbox, BAND, make_batcher(), allowed, timeout_s=1.0, **kwargs)  # type: ignore[arg-type]
    client.on_drop = puller.connection_lost
    return puller


def hr_samples(n: int) -> list[StoredRecord]:
    return [
        StoredRecord(StreamId.HR_SAMPLES, i + 1, HeartRateSample(T0 + 5 * i, 60, 60 + i % 40, 3))
        for i in range(n)
    ]


async def test_full_pull_queues_every_record_once_then_frees_the_band(tmp_path: Path) -> None:
    records = activity_minutes(180)
    flash = MemoryFlash({StreamId.ACTIVITY_MINUTES: records})
    sender = BandSyncSender(flash, 244)
    client = FakeBandClient(sender, flash)
    progress: list[Progress] = []
    with Outbox(tmp_path / "outbox.db") as outbox:
        puller = make_puller(client, outbox, on_progress=progress.append)
        result = await puller.pull_stream(StreamId.ACTIVITY_MINUTES)
        assert result.complete and result.error is None
        assert (result.received, result.queued, result.withheld) == (180, 180, 0)
        assert result.batches == 4  # 50-record limit
        assert result.acked_up_to == 180
        assert outbox.stored_up_to(BAND, StreamId.ACTIVITY_MINUTES) == 180
        assert queued_records(outbox) == records
    assert flash.freed[StreamId.ACTIVITY_MINUTES] == 180
    assert flash.records[StreamId.ACTIVITY_MINUTES] == []
    assert progress and progress[-1].records == 180
    assert [p.records for p in progress] == sorted(p.records for p in progress)
    assert progress[-1].bytes == result.air_bytes > 0


async def test_keep_on_band_acknowledges_nothing_and_does_not_fetch_twice(tmp_path: Path) -> None:
    records = activity_minutes(60)
    flash = MemoryFlash({StreamId.ACTIVITY_MINUTES: records})
    sender = BandSyncSender(flash, 100)
    with Outbox(tmp_path / "outbox.db") as outbox:
        first = await make_puller(
            FakeBandClient(sender, flash), outbox, keep_on_band=True
        ).pull_stream(StreamId.ACTIVITY_MINUTES)
        assert first.acked_up_to is None and first.queued == 60
        again = await make_puller(
            FakeBandClient(sender, flash), outbox, keep_on_band=True
        ).pull_stream(StreamId.ACTIVITY_MINUTES)
        assert again.complete and again.received == 0
        assert queued_records(outbox) == records
    assert flash.records[StreamId.ACTIVITY_MINUTES] == records
    assert StreamId.ACTIVITY_MINUTES not in flash.freed


async def test_records_outside_consent_are_withheld_and_fields_cleared(tmp_path: Path) -> None:
    records = activity_minutes(120)
    granted_from = records[30].record.start  # type: ignore[union-attr]
    hr_until = records[90].record.start  # type: ignore[union-attr]
    allowed = AllowedIntervals(
        {
            ConsentCategory.ACTIVITY: ((granted_from, None),),
            ConsentCategory.HEART_RATE: ((0, hr_until),),
        }
    )
    flash = MemoryFlash({StreamId.ACTIVITY_MINUTES: records})
    with Outbox(tmp_path / "outbox.db") as outbox:
        puller = make_puller(FakeBandClient(BandSyncSender(flash, 60), flash), outbox, allowed)
        result = await puller.pull_stream(StreamId.ACTIVITY_MINUTES)
        # heart-rate consent was withdrawn at record 91: no avg_hr leaves the phone any
        # more, not even of minutes recorded while it was granted
        assert (result.queued, result.withheld, result.fields_cleared) == (90, 30, 90)
        assert outbox.stats(BAND)[StreamId.ACTIVITY_MINUTES]["withheld"] == 30
        queued = queued_records(outbox)
    assert [r.seq for r in queued] == list(range(31, 121))
    assert all(r.record.avg_hr == 0 for r in queued)  # type: ignore[union-attr]
    # the whole range is handled (withheld ones too): the band may free all of it
    assert flash.freed[StreamId.ACTIVITY_MINUTES] == 120


async def pull_with_drops(
    outbox: Outbox, flash: MemoryFlash, sender: BandSyncSender, mtu: int, drops: list[int]
) -> list[StreamResult]:
    """Connect once per drop point, dropping there, then once more without a drop."""
    for drop_after in [*drops, None]:
        client = FakeBandClient(sender, flash, mtu=mtu, drop_after=drop_after)
        puller = make_puller(client, outbox)
        try:
            return await puller.pull_all([StreamId.ACTIVITY_MINUTES, StreamId.HR_SAMPLES])
        except PullLinkLostError:
            continue
    raise AssertionError("the last connection has no drop")


def count_notifications(records: dict[StreamId, list[StoredRecord]], mtu: int) -> int:
    flash = MemoryFlash(records)
    client = FakeBandClient(BandSyncSender(flash, mtu - 3), flash, mtu=mtu)
    with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp) / "o.db") as outbox:
        asyncio.run(make_puller(client, outbox).pull_all(list(records)))
    return client.notified


def test_a_drop_at_every_chunk_boundary_still_gives_every_record_exactly_once() -> None:
    records = {
        StreamId.ACTIVITY_MINUTES: activity_minutes(130),
        StreamId.HR_SAMPLES: hr_samples(40),
    }
    mtu = 23
    total = count_notifications(records, mtu)
    assert total > 10
    for k in range(total + 1):
        flash = MemoryFlash(records)
        sender = BandSyncSender(flash, mtu - 3)
        with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp) / "o.db") as outbox:
            results = asyncio.run(pull_with_drops(outbox, flash, sender, mtu, [k]))
            assert all(r.complete for r in results)
            assert queued_records(outbox) == [
                *records[StreamId.ACTIVITY_MINUTES],
                *records[StreamId.HR_SAMPLES],
            ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    n_activity=st.integers(0, 150),
    n_hr=st.integers(0, 60),
    mtu=st.sampled_from([23, 40, 100, 247]),
    drops=st.lists(st.integers(0, 40), max_size=6),
    keep=st.booleans(),
)
def test_resume_after_random_drops_is_exactly_once(
    n_activity: int, n_hr: int, mtu: int, drops: list[int], keep: bool
) -> None:
    records = {
        StreamId.ACTIVITY_MINUTES: activity_minutes(n_activity),
        StreamId.HR_SAMPLES: hr_samples(n_hr),
    }
    flash = MemoryFlash(records)
    sender = BandSyncSender(flash, mtu - 3)
    with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp) / "o.db") as outbox:
        for drop_after in [*drops, None]:
            client = FakeBandClient(sender, flash, mtu=mtu, drop_after=drop_after)
            puller = make_puller(client, outbox, keep_on_band=keep)
            try:
                asyncio.run(puller.pull_all(list(records)))
                break
            except PullLinkLostError:
                continue
        assert queued_records(outbox) == [
            *records[StreamId.ACTIVITY_MINUTES],
            *records[StreamId.HR_SAMPLES],
        ]
        for stream, recs in records.items():
            assert outbox.stored_up_to(BAND, stream) == len(recs)
            # the band frees only what the outbox holds, and nothing when told to keep it
            freed = flash.freed.get(stream, 0)
            assert freed <= len(recs)
            assert freed == (0 if keep else len(recs))


@pytest.mark.parametrize(
    "fault",
    ["crc", "out_of_order", "oversized", "truncated"],
)
async def test_bad_chunk_stops_only_that_stream_and_acknowledges_nothing_unstored(
    tmp_path: Path, fault: str
) -> None:
    activity = activity_minutes(200)
    records = {StreamId.ACTIVITY_MINUTES: activity, StreamId.HR_SAMPLES: hr_samples(30)}
    flash = MemoryFlash(records)
    sender = BandSyncSender(flash, 20)
    held: list[bytes] = []

    def tamper(n: int, payload: bytes) -> bytes:
        if fault == "crc" and n == 3:
            return payload[:-1] + bytes([payload[-1] ^ 0x01])
        if fault == "oversized" and n == 3:
            return payload + b"\x00"
        if fault == "truncated" and n == 3:
            return payload[:3]
        if fault == "out_of_order" and n == 3:
            held.append(payload)
            return payload_of_next[0]
        return payload

    payload_of_next: list[bytes] = []
    if fault == "out_of_order":
        # record the clean stream's 5th chunk to replay it in 4th place
        clean = MemoryFlash(records)
        clean_client = FakeBandClient(BandSyncSender(clean, 20), clean, mtu=23)
        captured: list[bytes] = []
        clean_client.tamper = lambda n, p: (captured.append(p), p)[1]
        with Outbox(tmp_path / "clean.db") as clean_outbox:
            await make_puller(clean_client, clean_outbox).pull_stream(StreamId.ACTIVITY_MINUTES)
        payload_of_next.append(captured[4])

    client = FakeBandClient(sender, flash, mtu=23, tamper=tamper)
    with Outbox(tmp_path / "outbox.db") as outbox:
        results = await make_puller(client, outbox).pull_all(list(records))
        activity_result, hr_result = results
        assert activity_result.error is not None and not activity_result.complete
        assert hr_result.complete and hr_result.error is None
        stored = outbox.stored_up_to(BAND, StreamId.ACTIVITY_MINUTES)
        assert stored < len(activity)
        queued = [r for r in queued_records(outbox) if r.stream is StreamId.ACTIVITY_MINUTES]
        assert queued == activity[:stored]
        assert len([r for r in queued_records(outbox) if r.stream is StreamId.HR_SAMPLES]) == 30
    # the band was told to free no record the outbox does not hold
    assert flash.freed.get(StreamId.ACTIVITY_MINUTES, 0) <= stored
    assert flash.freed[StreamId.HR_SAMPLES] == 30


async def test_repeated_chunks_are_dropped_not_stored_twice(tmp_path: Path) -> None:
    activity = activity_minutes(300)
    flash = MemoryFlash({StreamId.ACTIVITY_MINUTES: activity})
    client = FakeBandClient(BandSyncSender(flash, 244), flash, mtu=247)
    real_start = client.start_notify

    async def start_notify(uuid: object, callback: Callable[..., None], **kw: object) -> None:
        if str(uuid) == DATA:

            def twice(characteristic: object, data: bytearray) -> None:
                callback(characteristic, data)
                callback(characteristic, data)

            await real_start(uuid, twice)
        else:
            await real_start(uuid, callback)

    client.start_notify = start_notify  # type: ignore[method-assign]
    with Outbox(tmp_path / "outbox.db") as outbox:
        result = await make_puller(client, outbox).pull_stream(StreamId.ACTIVITY_MINUTES)
        assert result.complete and result.received == 300
        assert queued_records(outbox) == activity


async def test_a_band_that_goes_silent_times_out_and_keeps_what_arrived(tmp_path: Path) -> None:
    activity = activity_minutes(100)
    flash = MemoryFlash({StreamId.ACTIVITY_MINUTES: activity})
    sender = BandSyncSender(flash, 20)
    client = FakeBandClient(sender, flash, mtu=23)
    client.drop_after = 5  # the band stops sending but the link stays up
    client._drop = lambda: None  # type: ignore[method-assign]
    with Outbox(tmp_path / "outbox.db") as outbox:
        puller = make_puller(client, outbox)
        puller.timeout_s = 0.05
        result = await puller.pull_stream(StreamId.ACTIVITY_MINUTES)
        assert result.error is not None and "stopped sending" in result.error
        stored = outbox.stored_up_to(BAND, StreamId.ACTIVITY_MINUTES)
        assert 0 < stored < 100
        assert queued_records(outbox) == activity[:stored]
    assert flash.freed.get(StreamId.ACTIVITY_MINUTES, 0) <= stored


async def pull_with_limits(
    records: list[StoredRecord], limits: BatchLimits, directory: Path
) -> list[list[StoredRecord]]:
    """Pull ``records`` with ``limits``; the records of every queued batch, in order."""
    flash = MemoryFlash({StreamId.ACTIVITY_MINUTES: records})
    client = FakeBandClient(BandSyncSender(flash, 100), flash)
    batcher = Batcher(
        band=BAND,
        service=ServiceData("1.2.0", "KME-1", "linux", "0.1.0"),
        consent_record=b"band-signed consent record",
        recipient_key=INGEST_KEY.public_key(),
        limits=limits,
        random_bytes=random.Random(5).randbytes,
        clock=lambda: float(T0),
    )
    with Outbox(directory / "o.db") as outbox:
        puller = Puller(client, outbox, BAND, batcher, ALL_GRANTED, timeout_s=1.0)  # type: ignore[arg-type]
        await puller.pull_stream(StreamId.ACTIVITY_MINUTES)
        return [opened(b) for b in outbox.due(limit=100_000, now=float("inf"))]


def opened(batch: QueuedBatch) -> list[StoredRecord]:
    header, plaintext = open_batch(batch.envelope, INGEST_KEY)
    return list(decode_batch_plaintext(header, plaintext).records())


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(1, 300), max_records=st.integers(1, 120), span_min=st.integers(0, 300))
def test_pulled_batches_respect_size_and_age_and_keep_every_record_in_order(
    n: int, max_records: int, span_min: int
) -> None:
    records = activity_minutes(n)
    limits = BatchLimits(max_records=max_records, max_span_s=span_min * 60)
    with tempfile.TemporaryDirectory() as tmp:
        runs = asyncio.run(pull_with_limits(records, limits, Path(tmp)))
    assert [r for run in runs for r in run] == records
    for run in runs:
        assert 1 <= len(run) <= max_records
        assert run[-1].record.start - run[0].record.start <= span_min * 60  # type: ignore[union-attr]
    # maximal: a batch is cut only when the next record would break a limit
    for run, following in itertools.pairwise(runs):
        first_time = run[0].record.start  # type: ignore[union-attr]
        assert not limits.admits(len(run), first_time, following[0].record.start)  # type: ignore[union-attr]


async def test_a_stream_that_cannot_be_sealed_stops_alone(tmp_path: Path) -> None:
    minutes = activity_minutes(60)
    samples = hr_samples(30)
    flash = MemoryFlash({StreamId.HR_SAMPLES: samples, StreamId.ACTIVITY_MINUTES: minutes})
    client = FakeBandClient(BandSyncSender(flash, 244), flash)
    with Outbox(tmp_path / "outbox.db") as outbox:
        puller = make_puller(client, outbox)
        seal_run = puller.batcher.seal_run

        def refuse_hr(records: list[StoredRecord]) -> object:
            if records[0].stream is StreamId.HR_SAMPLES:
                raise BatchError("record field 'bpm' is outside its allowed range")
            return seal_run(records)

        puller.batcher.seal_run = refuse_hr  # type: ignore[method-assign,assignment]
        hr, activity = await puller.pull_all([StreamId.HR_SAMPLES, StreamId.ACTIVITY_MINUTES])
        assert isinstance(hr.failure, StreamSyncError) and "HR_SAMPLES" in str(hr.failure)
        assert hr.acked_up_to is None and hr.queued == 0
        assert outbox.stored_up_to(BAND, StreamId.HR_SAMPLES) == 0
        assert activity.complete and activity.failure is None and activity.acked_up_to == 60
        assert queued_records(outbox) == minutes
    assert flash.records[StreamId.HR_SAMPLES] == samples  # the band keeps what was not sealed
