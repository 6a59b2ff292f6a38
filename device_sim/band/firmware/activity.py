"""Per-minute activity: steps, intensity, activity class, average heart rate, worn flag.

Inputs are the firmware's own per-second estimates for one minute. Thresholds are on the
mean band-passed acceleration magnitude (g) and on steps per minute: walking cadence is
roughly 90-130 steps/min and running 140-190 (Tudor-Locke et al. 2018), so a minute with
most of its time at a running cadence is RUN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.band.firmware.dsp import F64
from protocol.kme.records import ActivityClass, ActivityMinute


@dataclass(frozen=True)
class ActivityConfig:
    """Thresholds of the minute classifier."""

    worn_pulse_fraction: float = 0.3  # share of seconds with a detected pulse
    ppg_live_fraction: float = 0.5  # share of seconds with a PPG signal for it to decide
    worn_steps: int = 20
    walk_steps: int = 50
    run_steps: int = 135
    run_move_g: float = 0.25
    light_move_g: float = 0.035
    light_steps: int = 10
    min_hr_seconds: int = 10
    min_hr_confidence: int = 1
    intensity_move_g: tuple[float, float, float] = (0.035, 0.12, 0.3)


@dataclass(frozen=True)
class MinuteSeconds:
    """The per-second estimates of one minute (arrays of 60; ``covered`` marks seconds
    with sensor data)."""

    start: int
    covered: F64
    steps: F64
    move: F64
    bpm: F64
    confidence: F64
    pulse: F64
    ppg_live: F64 | None = None  # 1 where the recording has a PPG signal at all
    # what the accelerometer and skin temperature say when there is no PPG to ask
    worn_without_ppg: bool = True


def summarise_minute(
    m: MinuteSeconds, asleep: bool, tz_offset_min: int, cfg: ActivityConfig
) -> ActivityMinute:
    covered = m.covered > 0
    n = max(1, int(covered.sum()))
    steps = round(float(m.steps.sum()))
    pulse_fraction = float(m.pulse[covered].sum()) / n
    live = 1.0 if m.ppg_live is None else float(m.ppg_live[covered].sum()) / n
    if live >= cfg.ppg_live_fraction:  # the PPG's pulse says whether it touches skin
        worn = pulse_fraction >= cfg.worn_pulse_fraction or steps >= cfg.worn_steps
    else:  # a recording without PPG: motion and temperature decide, never the absence
        worn = m.worn_without_ppg or steps >= cfg.worn_steps
    move = float(m.move[covered].mean()) if covered.any() else 0.0
    valid = (m.bpm > 0) & (m.confidence >= cfg.min_hr_confidence)
    avg_hr = round(float(m.bpm[valid].mean())) if valid.sum() >= cfg.min_hr_seconds else 0
    if not worn:
        return ActivityMinute(m.start, tz_offset_min, 0, ActivityClass.OFF_WRIST, 0, 0, False)
    intensity = int(np.searchsorted(cfg.intensity_move_g, move, side="right"))
    if asleep and steps < cfg.light_steps:
        cls = ActivityClass.SLEEP
    elif steps >= cfg.run_steps and move >= cfg.run_move_g:
        cls = ActivityClass.RUN
    elif steps >= cfg.walk_steps:
        cls = ActivityClass.WALK
    elif move >= cfg.light_move_g or steps >= cfg.light_steps:
        cls = ActivityClass.LIGHT
    else:
        cls = ActivityClass.SEDENTARY
    return ActivityMinute(
        m.start, tz_offset_min, min(steps, 255), cls, min(intensity, 3), avg_hr, True
    )
