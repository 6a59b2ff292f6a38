"""Every codec (flash, on-air chunks, cloud batch) accepts exactly the record domain."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.band.flash_codec import FlashRecordError, encode_record
from protocol.kme.batch import BatchError, encode_batch_plaintext
from protocol.kme.chunk_framing import ChunkValueError
from protocol.kme.record_codec import decode_payloads, encode_chunks
from protocol.kme.record_domain import RECORD_DOMAIN, domain_fault
from protocol.kme.records import (
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
    StoredRecord,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
)

_BASE: dict[StreamId, Record] = {
    StreamId.ACTIVITY_MINUTES: ActivityMinute(
        1_760_000_040, 60, 10, ActivityClass.WALK, 2, 90, True
    ),
    StreamId.HR_SAMPLES: HeartRateSample(1_760_000_000, 60, 70, 3),
    StreamId.SLEEP_EPOCHS: SleepEpoch(1_760_000_010, 60, SleepStage.DEEP),
    StreamId.SLEEP_SUMMARIES: SleepSummary(
        1_760_000_000, 60, 1_760_000_600, 1_760_028_000, 1_760_028_600, 90, 2, 200, 80, 90, 30
    ),
    StreamId.ALARM_EVENTS: AlarmEvent(
        1_760_000_000, 60, 3, AlarmEventKind.FIRED, 1_760_000_000, SleepStage.LIGHT
    ),
    StreamId.GNSS_FIXES: GnssFix(1_760_000_000, 60, 515_000_000, -1_000_000, 30, 8),
    StreamId.TELEMETRY: TelemetryEvent(1_760_000_000, 60, TelemetryKind.BOOT, 1, 2),
}

_FIELDS = [(stream, d) for stream, domains in RECORD_DOMAIN.items() for d in domains]


def _accepts(stream: StreamId, record: Record) -> dict[str, bool]:
    stored = [StoredRecord(stream, 7, record)]
    out: dict[str, bool] = {}
    try:
        encode_record(stream, record)
        out["flash"] = True
    except FlashRecordError:
        out["flash"] = False
    try:
        decoded = [
            r for c in decode_payloads(encode_chunks(stream, stored, 244)) for r in c.records
        ]
        assert decoded == stored  # what a codec accepts, it carries unchanged
        out["chunks"] = True
    except ChunkValueError:
        out["chunks"] = False
    try:
        encode_batch_plaintext(stored, b"consent")
        out["batch"] = True
    except BatchError:
        out["batch"] = False
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.data(), st.sampled_from(_FIELDS))
def test_every_codec_accepts_exactly_the_domain(data: Any, field: Any) -> None:
    stream, domain = field
    span = domain.high - domain.low
    value: object = data.draw(
        st.integers(domain.low - 2, domain.high + 2)
        | st.sampled_from([domain.low - 1, domain.low, domain.high, domain.high + 1])
        | st.integers(domain.low - span - 5, domain.high + span + 5)
    )
    if domain.optional and value == domain.low:
        value = None
    if domain.flag:
        value = bool(value) if value in (0, 1) else value
    elif domain.enum is not None and value is not None and domain.low <= value <= domain.high:  # type: ignore[operator]
        value = domain.enum(value)
    record = dataclasses.replace(_BASE[stream], **{domain.name: value})  # type: ignore[arg-type]
    inside = domain_fault(stream, [record]) is None
    assert _accepts(stream, record) == {"flash": inside, "chunks": inside, "batch": inside}


def test_values_every_codec_disagreed_on_are_refused_by_all() -> None:
    # before the record domain, the flash stored these and the batch refused them
    for stream, name, value in [
        (StreamId.GNSS_FIXES, "accuracy_m", 200_000),
        (StreamId.TELEMETRY, "value", 2**40),
        (StreamId.SLEEP_SUMMARIES, "light_min", 5000),
    ]:
        record = dataclasses.replace(_BASE[stream], **{name: value})  # type: ignore[arg-type]
        assert _accepts(stream, record) == {"flash": False, "chunks": False, "batch": False}
