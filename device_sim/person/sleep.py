"""Hypnograms: the sleep stage of every 30-second epoch of a period in bed.

Architecture follows the textbook picture of adult sleep (Carskadon & Dement, *Normal
human sleep*; Ohayon et al. 2004 meta-analysis): sleep cycles of about 90 minutes
(70-120), each descending through light sleep into deep (slow-wave) sleep and ending in
REM; deep sleep dominates the first cycles and fades, REM periods lengthen towards
morning. Over a healthy night that gives roughly 50-60 % light, 15-25 % deep and
20-25 % REM, with brief awakenings (often at cycle ends) and 85-95 % efficiency.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from device_sim.person.plan import SleepParams
from protocol.kme.records import SleepStage

EPOCH_S = 30

WAKE, LIGHT, DEEP, REM = (int(s) for s in SleepStage)


def hypnogram(params: SleepParams, in_bed_s: int, rng: np.random.Generator) -> npt.NDArray[np.int8]:
    """Stages of each 30 s epoch of a period in bed of ``in_bed_s`` seconds."""
    n = max(1, in_bed_s // EPOCH_S)
    stages = np.full(n, WAKE, dtype=np.int8)
    onset = round(params.latency_min * 60 / EPOCH_S)
    end = n - round(params.early_wake_min * 60 / EPOCH_S)
    onset = min(onset, max(0, end - 1))
    if end - onset < 10:  # too short to sleep at all
        return stages

    pos = onset
    k = 0
    while pos < end:
        cycle = int(np.clip(rng.normal(92, 12), 70, 120) * 60 / EPOCH_S)
        deep_frac = params.deep_scale * max(0.0, 0.45 - 0.13 * k)
        rem_frac = min(0.45, 0.08 + 0.09 * k)
        deep_frac = min(deep_frac, 0.9 - rem_frac)
        light = cycle * (1.0 - deep_frac - rem_frac)
        parts = (
            (LIGHT, 0.6 * light),
            (DEEP, cycle * deep_frac),
            (LIGHT, 0.4 * light),
            (REM, cycle * rem_frac),
        )
        for stage, length in parts:
            m = round(length)
            stages[pos : min(end, pos + m)] = stage
            pos += m
            if pos >= end:
                break
        if pos < end and rng.random() < 0.35:  # waking briefly after a REM period
            w = int(rng.integers(1, 5))
            stages[pos : min(end, pos + w)] = WAKE
            pos += w
        k += 1

    asleep_epochs = end - onset
    hours = asleep_epochs * EPOCH_S / 3600.0
    _overwrite_wake(stages, onset, end, rng.poisson(params.awakenings_per_h * hours), rng, 1, 6)
    _overwrite_wake(stages, onset, end, rng.poisson(params.long_wake_per_h * hours), rng, 10, 80)
    # Sleep onset is by definition asleep: keep the first epoch after latency light.
    stages[onset] = LIGHT
    return stages


def _overwrite_wake(
    stages: npt.NDArray[np.int8],
    lo: int,
    hi: int,
    count: int,
    rng: np.random.Generator,
    min_epochs: int,
    max_epochs: int,
) -> None:
    if count <= 0:
        return
    starts = rng.integers(lo + 1, hi, size=count)
    lengths = rng.integers(min_epochs, max_epochs + 1, size=count)
    mark = np.zeros(stages.size + 1, dtype=np.int32)
    np.add.at(mark, starts, 1)
    np.add.at(mark, np.minimum(starts + lengths, hi), -1)
    stages[np.cumsum(mark[:-1]) > 0] = WAKE
