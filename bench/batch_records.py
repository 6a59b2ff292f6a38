"""Realistic record runs for the batch benches: seeded, vectorised, one stream at a time.

Heart rate drifts like a pulse does (a bounded random walk with bursts of exercise), steps
come in walks between long idle stretches, sleep stages come in runs of minutes, GNSS
fixes trace a walk. Good enough to make compression figures honest; not physiology.
"""

from __future__ import annotations

import numpy as np

from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    GnssFix,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    StoredRecord,
    StreamId,
)

START = 1_760_000_000 - 1_760_000_000 % 86_400  # a UTC midnight
TZ = 120  # CEST


def _walk(
    rng: np.random.Generator, n: int, start: float, step: float, lo: float, hi: float
) -> np.ndarray:
    values = start + np.cumsum(rng.normal(0.0, step, n))
    return np.clip(values, lo, hi)


def realistic_records(
    stream: StreamId, n: int, *, seed: int = 1, first_seq: int = 1, start: int = START
) -> list[StoredRecord]:
    """``n`` records of ``stream`` with consecutive sequence numbers from ``first_seq``."""
    rng = np.random.default_rng(seed)
    records: list[Record]
    if stream is StreamId.HR_SAMPLES:
        times = start + np.cumsum(rng.choice([5, 5, 5, 5, 6, 10, 60], n))
        bpm = _walk(rng, n, 68, 1.5, 45, 185).round().astype(int)
        confidence = rng.choice([3, 3, 3, 3, 2, 1, 0], n)
        bpm[confidence == 0] = 0
        records = [
            HeartRateSample(int(t), TZ, int(b), int(c))
            for t, b, c in zip(times, bpm, confidence, strict=True)
        ]
    elif stream is StreamId.ACTIVITY_MINUTES:
        times = start + 60 * np.arange(n)
        walking = (_walk(rng, n, 0, 0.35, -3, 3) > 1.2).astype(int)
        steps = np.where(walking == 1, rng.integers(70, 125, n), rng.poisson(1.5, n))
        steps = np.clip(steps, 0, 255)
        cls = np.where(walking == 1, ActivityClass.WALK, ActivityClass.SEDENTARY)
        cls = np.where((steps > 0) & (walking == 0), ActivityClass.LIGHT, cls)
        hr = np.where(walking == 1, rng.integers(95, 125, n), rng.integers(58, 78, n))
        records = [
            ActivityMinute(int(t), TZ, int(s), ActivityClass(int(c)), int(w * 2), int(h), True)
            for t, s, c, w, h in zip(times, steps, cls, walking, hr, strict=True)
        ]
    elif stream is StreamId.SLEEP_EPOCHS:
        times = start + 30 * np.arange(n)
        run_lengths = rng.integers(6, 40, n)
        run_stages = rng.choice([1, 1, 1, 2, 2, 3, 0], n)
        stages = np.repeat(run_stages, run_lengths)[:n]
        records = [
            SleepEpoch(int(t), TZ, SleepStage(int(s))) for t, s in zip(times, stages, strict=True)
        ]
    elif stream is StreamId.GNSS_FIXES:
        times = start + np.cumsum(rng.choice([1, 1, 1, 2, 5], n))
        lat = (_walk(rng, n, 52.52, 0.00001, -90, 90) * 1e7).round().astype(int)
        lon = (_walk(rng, n, 13.40, 0.00001, -180, 180) * 1e7).round().astype(int)
        alt = _walk(rng, n, 34, 0.3, -100, 9000).round().astype(int)
        acc = rng.integers(3, 15, n)
        records = [
            GnssFix(int(t), TZ, int(a), int(o), int(h), int(c))
            for t, a, o, h, c in zip(times, lat, lon, alt, acc, strict=True)
        ]
    else:
        raise ValueError(f"no realistic generator for {stream.name}")
    return [StoredRecord(stream, first_seq + i, r) for i, r in enumerate(records)]
