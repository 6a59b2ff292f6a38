"""The firmware orchestrator: records from blocks, consent gating, determinism, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from firmware_synth import T0, ListSink, blocks, gait_acc, ppg_signal

from device_sim.band.firmware import Firmware, FirmwareConfig, FirmwareInputError
from protocol.errors import UsageError
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    ConsentCategory,
    HeartRateSample,
    StreamId,
    TelemetryKind,
)

FS = 25


def walk_then_rest(seconds: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = seconds * FS
    t = np.arange(n) / FS
    walking = (t >= 120) & (t < 360)
    acc = gait_acc(n, FS, 1.8, walking, rng)
    hr = np.where(walking, 100.0, 70.0)
    return acc, ppg_signal(hr, FS, rng)


def gnss_track(seconds: int) -> np.ndarray:
    t = T0 + np.arange(seconds, dtype=np.float64)
    return np.column_stack((t, 52.0 + t * 0, 4.0 + (t - T0) * 1e-5, t * 0 + 10, t * 0 + 5))


def run(blocks_, **kwargs) -> tuple[Firmware, ListSink]:
    sink = ListSink()
    fw = Firmware(sink, **kwargs)
    for b in blocks_:
        fw.process(b)
    fw.flush()
    return fw, sink


def test_minutes_steps_and_heart_rate_samples() -> None:
    acc, ppg = walk_then_rest()
    fw, sink = run(blocks(acc, ppg, FS, tz_offset_min=60))
    minutes = sink.of(StreamId.ACTIVITY_MINUTES)
    assert [m.start for m in minutes] == [T0 + 60 * i for i in range(10)]
    assert all(m.tz_offset_min == 60 and m.worn for m in minutes)
    walking = minutes[2:6]
    assert all(m.activity_class == ActivityClass.WALK for m in walking)
    assert all(100 <= m.steps <= 116 for m in walking)
    assert all(abs(m.avg_hr - 100) <= 2 for m in walking[1:])  # [0] holds the jump
    assert minutes[8].activity_class == ActivityClass.SEDENTARY
    assert abs(minutes[8].avg_hr - 70) <= 2
    assert abs(fw.total_steps - 240 * 1.8) <= 8
    hr = sink.of(StreamId.HR_SAMPLES)
    assert all(s.timestamp % 5 == 0 for s in hr)
    assert len(hr) == 600 // 5
    assert hr[0].bpm == 0 and hr[0].confidence == 0  # the first window needs 4 s before it
    assert all(s.bpm > 0 for s in hr[1:])
    assert sink.of(StreamId.TELEMETRY)[0].kind == TelemetryKind.BOOT


def test_hr_sample_interval_is_configurable() -> None:
    acc, ppg = walk_then_rest(240)
    _, sink = run(blocks(acc, ppg, FS), config=FirmwareConfig(hr_sample_interval_s=1))
    stamps = [s.timestamp for s in sink.of(StreamId.HR_SAMPLES)]
    assert stamps == list(range(T0, T0 + 240))
    assert stamps[0] == T0 and sink.of(StreamId.HR_SAMPLES)[0].bpm == 0  # warming up
    with pytest.raises(FirmwareInputError):
        FirmwareConfig(hr_sample_interval_s=0)


def test_same_blocks_give_identical_records_whatever_the_block_size() -> None:
    acc, ppg = walk_then_rest(480, seed=4)
    _, a = run(blocks(acc, ppg, FS, block_s=60))
    _, b = run(blocks(acc, ppg, FS, block_s=60))
    _, c = run(blocks(acc, ppg, FS, block_s=20))
    assert repr(a.records) == repr(b.records)
    assert repr(a.records) == repr(c.records)


def consent(*allowed: ConsentCategory, until: float | None = None):
    def is_allowed(category: ConsentCategory, t: float) -> bool:
        return category in allowed and (until is None or t < until)

    return is_allowed


def test_nothing_is_recorded_without_consent() -> None:
    acc, ppg = walk_then_rest(300)
    fw, sink = run(blocks(acc, ppg, FS, gnss=gnss_track(300)), is_allowed=consent())
    assert sink.records == []
    assert fw.dropped_without_consent[StreamId.ACTIVITY_MINUTES] == 5
    assert fw.dropped_without_consent[StreamId.GNSS_FIXES] == 0  # never even processed


def test_average_hr_needs_heart_rate_consent_and_gnss_needs_location() -> None:
    acc, ppg = walk_then_rest(300)
    _, sink = run(
        blocks(acc, ppg, FS, gnss=gnss_track(300)),
        is_allowed=consent(ConsentCategory.ACTIVITY, ConsentCategory.LOCATION),
    )
    minutes = sink.of(StreamId.ACTIVITY_MINUTES)
    assert len(minutes) == 5 and all(m.avg_hr == 0 for m in minutes)
    assert sink.of(StreamId.HR_SAMPLES) == []
    assert sink.of(StreamId.TELEMETRY) == []  # no UX programme consent
    fixes = sink.of(StreamId.GNSS_FIXES)
    assert len(fixes) == 300 and fixes[0].lat_e7 == 520_000_000


def test_consent_withdrawn_midway_stops_collection_at_that_time() -> None:
    acc, ppg = walk_then_rest(300)
    cut = T0 + 120
    _, sink = run(blocks(acc, ppg, FS), is_allowed=consent(*ConsentCategory, until=cut))
    assert [m.start for m in sink.of(StreamId.ACTIVITY_MINUTES)] == [T0, T0 + 60]
    assert max(s.timestamp for s in sink.of(StreamId.HR_SAMPLES)) < cut


def test_off_wrist_minutes_have_no_heart_rate() -> None:
    rng = np.random.default_rng(2)
    n = 300 * FS
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.003, (n, 3))
    _, sink = run(blocks(acc, rng.normal(0, 0.05, n), FS))
    minutes: list[ActivityMinute] = sink.of(StreamId.ACTIVITY_MINUTES)
    assert all(not m.worn and m.activity_class == ActivityClass.OFF_WRIST for m in minutes[1:])
    samples: list[HeartRateSample] = sink.of(StreamId.HR_SAMPLES)
    assert len(samples) <= 12  # only from a minute that looked worn, if any


def test_a_gap_closes_the_stream_and_a_block_from_the_past_is_refused() -> None:
    acc, ppg = walk_then_rest(240)
    bs = blocks(acc, ppg, FS)
    sink = ListSink()
    fw = Firmware(sink)
    fw.process(bs[0])
    fw.process(bs[1])
    later = dataclasses.replace(bs[2], t0=bs[2].t0 + 3600)
    fw.process(later)
    starts = [m.start for m in sink.of(StreamId.ACTIVITY_MINUTES)]
    assert starts == [T0, T0 + 60]  # closed at the gap, the new stream still pending
    with pytest.raises(FirmwareInputError) as info:
        fw.process(bs[0])
    assert isinstance(info.value, UsageError) and "time order" in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        {"acc_hz": 25.5},
        {"ppg_hz": 0.0},
        {"t0": T0 + 0.5},
        {"acc": np.zeros((10, 3), np.float32)},
        {"ppg": np.full(60 * FS, np.nan, np.float32)},
    ],
)
def test_bad_blocks_raise_typed_errors(change: dict) -> None:
    acc, ppg = walk_then_rest(60)
    block = dataclasses.replace(blocks(acc, ppg, FS)[0], **change)
    with pytest.raises(FirmwareInputError):
        Firmware(ListSink()).process(block)


def test_without_ppg_an_hour_lying_still_is_off_the_wrist() -> None:
    """van Hees et al. (2011): an hour with under 13 mg of spread and 50 mg of range on
    two axes is non-wear; a recording without PPG is judged by that, not by its
    missing pulse."""
    rng = np.random.default_rng(3)
    seconds = 5400
    n = seconds * FS
    table = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.002, (n, 3))
    _, sink = run(blocks(table, np.zeros(n), FS))
    minutes: list[ActivityMinute] = sink.of(StreamId.ACTIVITY_MINUTES)
    assert all(m.worn for m in minutes[:55])  # not an hour yet: nothing says "off"
    assert all(not m.worn for m in minutes[62:])
    cold = [
        dataclasses.replace(b, skin_temp_c=np.full_like(b.skin_temp_c, 22.0))
        for b in blocks(table, np.zeros(n), FS)
    ]
    _, sink = run(cold)
    assert not any(m.worn for m in sink.of(StreamId.ACTIVITY_MINUTES)[1:])
