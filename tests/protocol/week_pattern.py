"""A seeded, realistic week of one band's records, for codec sizing and speed checks.

A working week shaped like a real wearer's: nights of sleep (low, slowly drifting heart
rate, no steps), desk work with sporadic steps, commutes and lunch walks, three evening
runs, an hour a day off the wrist while charging, and a daylight-saving change on day 5
(the time zone offset goes from +60 to +120 minutes). Heart rate is a random walk around
the activity's level, sampled every 5 s; sleep epochs cover the whole day (wake by day).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    HeartRateSample,
    SleepEpoch,
    SleepStage,
    StoredRecord,
    StreamId,
)

WEEK_START = 1_709_506_800  # 2024-03-03 23:00 UTC, Monday 00:00 at UTC+1
MINUTES = 7 * 24 * 60
DST_MINUTE = 4 * 24 * 60 + 2 * 60  # the offset changes at 02:00 local on day 5

# (first minute of day, last minute + 1, class, steps range, hr level, intensity)
_DAY_PLAN = [
    (0, 405, ActivityClass.SLEEP, (0, 0), 54, 0),
    (405, 450, ActivityClass.LIGHT, (0, 30), 72, 1),
    (450, 470, ActivityClass.WALK, (95, 118), 98, 2),
    (470, 720, ActivityClass.SEDENTARY, (0, 25), 70, 0),
    (720, 745, ActivityClass.WALK, (90, 115), 95, 2),
    (745, 1020, ActivityClass.SEDENTARY, (0, 25), 71, 0),
    (1020, 1040, ActivityClass.WALK, (95, 118), 97, 2),
    (1040, 1080, ActivityClass.LIGHT, (0, 40), 78, 1),
    (1080, 1120, ActivityClass.RUN, (155, 178), 150, 3),  # run days only, else LIGHT
    (1120, 1200, ActivityClass.LIGHT, (0, 40), 80, 1),
    (1200, 1260, ActivityClass.OFF_WRIST, (0, 0), 0, 0),  # charging
    (1260, 1380, ActivityClass.SEDENTARY, (0, 15), 68, 0),
    (1380, 1440, ActivityClass.SLEEP, (0, 0), 56, 0),
]
_RUN_DAYS = {1, 3, 5}


def _minute_plan(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    cls = np.empty(MINUTES, dtype=np.int64)
    steps = np.zeros(MINUTES, dtype=np.int64)
    level = np.empty(MINUTES, dtype=np.float64)
    intensity = np.empty(MINUTES, dtype=np.int64)
    for day in range(7):
        for lo, hi, kind, (s_lo, s_hi), hr, inten in _DAY_PLAN:
            a, b = day * 1440 + lo, day * 1440 + hi
            if kind == ActivityClass.RUN and day not in _RUN_DAYS:
                kind, s_lo, s_hi, hr, inten = ActivityClass.LIGHT, 0, 40, 80, 1
            cls[a:b] = kind
            level[a:b] = hr
            intensity[a:b] = inten
            if s_hi:
                drawn = rng.integers(s_lo, s_hi + 1, b - a)
                if s_lo == 0:  # sporadic: most desk or home minutes have no steps
                    drawn[rng.random(b - a) < 0.8] = 0
                steps[a:b] = drawn
    # movement breaks intensity ties now and then
    bump = (rng.random(MINUTES) < 0.05) & (intensity < 3) & (cls != ActivityClass.OFF_WRIST)
    intensity[bump] += 1
    return cls, steps, level, intensity


@cache
def week_records(seed: int = 7) -> dict[StreamId, list[StoredRecord]]:
    """Activity minutes, 5-second heart-rate samples and sleep epochs of one week.

    Cached: callers must not modify the lists.
    """
    rng = np.random.default_rng(seed)
    cls, steps, level, intensity = _minute_plan(rng)
    worn = cls != ActivityClass.OFF_WRIST
    drift = np.cumsum(rng.normal(0.0, 0.8, MINUTES))
    drift -= np.convolve(drift, np.ones(31) / 31, mode="same")  # keep it near the level
    minute_hr = np.where(worn, np.clip(np.round(level + drift), 40, 200), 0).astype(np.int64)
    no_reading = worn & (rng.random(MINUTES) < 0.01)
    minute_hr[no_reading] = 0
    minute_of = np.arange(MINUTES)
    tz = np.where(minute_of < DST_MINUTE, 60, 120)
    starts = WEEK_START + 60 * minute_of

    activity = [
        StoredRecord(
            StreamId.ACTIVITY_MINUTES,
            i,
            ActivityMinute(s, z, st, ActivityClass(c), it, h, bool(w)),
        )
        for i, (s, z, st, c, it, h, w) in enumerate(
            zip(
                starts.tolist(),
                tz.tolist(),
                steps.tolist(),
                cls.tolist(),
                intensity.tolist(),
                minute_hr.tolist(),
                worn.tolist(),
                strict=True,
            )
        )
    ]

    samples = MINUTES * 12
    per_sample_level = np.repeat(level + drift, 12) + rng.normal(0.0, 1.2, samples)
    sample_worn = np.repeat(worn, 12)
    bpm = np.where(sample_worn, np.clip(np.round(per_sample_level), 40, 220), 0).astype(np.int64)
    moving = np.repeat(cls, 12) >= ActivityClass.WALK
    confidence = np.where(moving, rng.integers(1, 4, samples), 3)
    confidence = np.where(sample_worn, confidence, 0)
    sample_tz = np.repeat(tz, 12)
    hr = [
        StoredRecord(StreamId.HR_SAMPLES, i, HeartRateSample(t, z, b, c))
        for i, (t, z, b, c) in enumerate(
            zip(
                (WEEK_START + 5 * np.arange(samples)).tolist(),
                sample_tz.tolist(),
                bpm.tolist(),
                confidence.tolist(),
                strict=True,
            )
        )
    ]

    epochs = MINUTES * 2
    asleep = np.repeat(cls == ActivityClass.SLEEP, 2)
    # ~90-minute cycles of light, deep, light, REM while asleep; wake otherwise
    cycle = (np.arange(epochs) % 180) / 180
    stage = np.select(
        [cycle < 0.35, cycle < 0.55, cycle < 0.75],
        [SleepStage.LIGHT, SleepStage.DEEP, SleepStage.LIGHT],
        SleepStage.REM,
    )
    stage = np.where(rng.random(epochs) < 0.03, SleepStage.WAKE, stage)
    stage = np.where(asleep, stage, SleepStage.WAKE)
    epoch_tz = np.repeat(tz, 2)
    sleep = [
        StoredRecord(StreamId.SLEEP_EPOCHS, i, SleepEpoch(t, z, SleepStage(s)))
        for i, (t, z, s) in enumerate(
            zip(
                (WEEK_START + 30 * np.arange(epochs)).tolist(),
                epoch_tz.tolist(),
                stage.tolist(),
                strict=True,
            )
        )
    ]
    return {
        StreamId.ACTIVITY_MINUTES: activity,
        StreamId.HR_SAMPLES: hr,
        StreamId.SLEEP_EPOCHS: sleep,
    }
