"""Hypothesis strategies for records of every stream, as the band's flash would hold them.

Runs are mostly regular (consecutive minutes, 5-second samples) with occasional gaps,
sequence jumps and time-zone changes, so that both the compact paths and the chunk breaks
get exercised; field values span each field's whole legal range.
"""

from __future__ import annotations

from hypothesis import strategies as st

from protocol.kme.record_domain import field_domain
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

TZ = st.sampled_from([-600, -300, 0, 60, 120, 330, 345, 840]) | st.integers(-1080, 1080)
BASE_TIME = st.integers(0, 4_000_000_000)
INTERVAL = {StreamId.ACTIVITY_MINUTES: 60, StreamId.SLEEP_EPOCHS: 30, StreamId.HR_SAMPLES: 5}


def _in(stream: StreamId, name: str, values: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """``values`` clamped into the field's domain (protocol.kme.record_domain)."""
    domain = field_domain(stream, name)
    return values.map(lambda v: min(max(v, domain.low), domain.high))


def _hr_value() -> st.SearchStrategy[int]:
    return st.integers(55, 80) | st.just(0) | st.integers(0, 255)


def _fields(stream: StreamId, t: int, tz: int) -> st.SearchStrategy[Record]:
    """A record of ``stream`` at time ``t`` (derived times stay near it)."""
    if stream == StreamId.ACTIVITY_MINUTES:
        return st.builds(
            ActivityMinute,
            st.just(t),
            st.just(tz),
            st.integers(0, 3).map(lambda x: 0 if x < 2 else x * 40) | st.integers(0, 255),
            st.sampled_from(ActivityClass),
            st.integers(0, 3),
            _hr_value(),
            st.booleans(),
        )
    if stream == StreamId.HR_SAMPLES:
        return st.builds(HeartRateSample, st.just(t), st.just(tz), _hr_value(), st.integers(0, 3))
    if stream == StreamId.SLEEP_EPOCHS:
        return st.builds(SleepEpoch, st.just(t), st.just(tz), st.sampled_from(SleepStage))
    if stream == StreamId.SLEEP_SUMMARIES:
        near = st.integers(0, 50_000).map(lambda d: t + d)
        minutes = st.integers(0, 0xFFFF)
        return st.builds(
            SleepSummary,
            st.just(t),
            st.just(tz),
            _in(stream, "sleep_onset", near),
            _in(stream, "final_wake", near),
            _in(stream, "out_of_bed", near),
            st.integers(0, 100),
            _in(stream, "awakenings", minutes),
            _in(stream, "light_min", minutes),
            _in(stream, "deep_min", minutes),
            _in(stream, "rem_min", minutes),
            _in(stream, "wake_min", minutes),
        )
    if stream == StreamId.ALARM_EVENTS:
        return st.builds(
            AlarmEvent,
            st.just(t),
            st.just(tz),
            st.integers(0, 255),
            st.sampled_from(AlarmEventKind),
            _in(stream, "set_time", st.integers(-3600, 3600).map(lambda d: t + d)),
            st.none() | st.sampled_from(SleepStage),
        )
    if stream == StreamId.GNSS_FIXES:
        return st.builds(
            GnssFix,
            st.just(t),
            st.just(tz),
            st.integers(-900_000_000, 900_000_000),
            st.integers(-1_800_000_000, 1_800_000_000),
            _in(stream, "alt_m", st.integers(-500, 9000) | st.integers(-(2**31), 2**31 - 1)),
            _in(stream, "accuracy_m", st.integers(0, 100) | st.integers(0, 2**32 - 1)),
        )
    return st.builds(
        TelemetryEvent,
        st.just(t),
        st.just(tz),
        st.sampled_from(TelemetryKind),
        st.integers(0, 100) | st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 7) | st.integers(-(2**31), 2**31 - 1),
    )


@st.composite
def stored_records(
    draw: st.DrawFn,
    stream: StreamId,
    *,
    max_size: int = 120,
    first_seq: int | None = None,
    contiguous: bool = False,
) -> list[StoredRecord]:
    """Records of one stream in sequence order.

    With ``contiguous`` the sequence numbers have no gaps (what one transfer carries).
    """
    n = draw(st.integers(0, max_size))
    seq = draw(st.integers(0, 2**32 - 1 - 2 * max_size - 10)) if first_seq is None else first_seq
    t = draw(BASE_TIME)
    tz = draw(TZ)
    step = INTERVAL.get(stream, 0)
    out: list[StoredRecord] = []
    for _ in range(n):
        out.append(StoredRecord(stream, seq, draw(_fields(stream, t, tz))))
        seq += 1
        event = draw(st.integers(0, 40))
        if event == 0 and not contiguous:
            seq += draw(st.integers(1, 5))  # a block freed or dropped between two records
        elif event == 1:
            tz = draw(TZ)
        elif event == 2:
            t += draw(st.integers(1, 100_000))  # band off for a while
        elif event == 3:
            t -= draw(st.integers(0, 300))  # clock set back
        t = min(max(0, t + (step or draw(st.integers(0, 600)))), 4_200_000_000)
    return out


STREAMS = st.sampled_from(list(StreamId))
PAYLOAD_SIZES = st.integers(20, 244)
