"""One plan day of truth, computed at once in numpy (1 Hz, beats at 4 Hz resolution).

Loops here run over segments, sleep cycles or one-minute pieces, never over samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from device_sim.person.plan import Segment, SegmentKind
from device_sim.person.rng import rng_for, smooth_noise
from device_sim.person.sleep import EPOCH_S, hypnogram
from protocol.kme.records import ActivityClass, SleepStage

F64 = npt.NDArray[np.float64]

KINDS = list(SegmentKind)
K = {k: i for i, k in enumerate(KINDS)}
BEAT_HZ = 4

# Heart-rate lag (first-order): heart rate rises with a time constant of ~30 s at the
# onset of moderate exercise and recovers more slowly (~80 s fast phase; Cole 1999
# reports 12-40 bpm recovery in the first minute).
TAU_UP_S = 30.0
TAU_DOWN_S = 80.0
SKIN_TAU_S = 300.0

# Sleeping heart rate relative to the resting (awake, seated) level, by stage: NREM
# lowers it 5-15 %, deep sleep most; REM brings it near waking level (Trinder 2012).
_SLEEP_HR_FACTOR = {
    int(SleepStage.WAKE): 1.0,
    int(SleepStage.LIGHT): 0.92,
    int(SleepStage.DEEP): 0.87,
    int(SleepStage.REM): 0.97,
}
# Breathing rate (Hz) by kind; sleep 12-16 /min, running 30+ /min.
_RESP_HZ = {
    SegmentKind.SLEEP: 0.23,
    SegmentKind.DESK: 0.26,
    SegmentKind.HOME: 0.28,
    SegmentKind.WALK: 0.33,
    SegmentKind.RUN: 0.50,
    SegmentKind.RIDE: 0.26,
    SegmentKind.CHARGING: 0.27,
}
# Breathing in bed by stage (WAKE, LIGHT, DEEP, REM): rate factor and breath-to-breath
# variability (sd of the rate on a few-second scale), see docs/simulation.md.
_RESP_STAGE_FACTOR = np.array([1.05, 1.0, 0.95, 1.08])
_RESP_STAGE_SD = np.array([0.10, 0.05, 0.03, 0.20])
_RESP_IRREGULAR_S = 4.0
# Wrist skin temperature targets (°C): distal warming in sleep, cooling outdoors/exercise.
_SKIN_C = {
    SegmentKind.SLEEP: 34.6,
    SegmentKind.DESK: 33.2,
    SegmentKind.HOME: 33.0,
    SegmentKind.WALK: 32.2,
    SegmentKind.RUN: 31.6,
    SegmentKind.RIDE: 32.8,
}
ROOM_C = 23.5


@dataclass
class DayTruth:
    """One plan day's truth at 1 Hz, from its wake-up ``start`` (UTC) for ``n`` seconds."""

    index: int
    start: int
    n: int
    segments: list[Segment]
    kind: npt.NDArray[np.int8]
    activity: npt.NDArray[np.int8]
    stage: npt.NDArray[np.int8]
    worn: npt.NDArray[np.bool_]
    outdoors: npt.NDArray[np.bool_]
    cadence: npt.NDArray[np.float32]
    steps: npt.NDArray[np.float32]
    step_cum: F64  # n + 1 values: steps since start, at second boundaries
    hr_smooth: F64  # lagged heart rate without LF wander, bpm
    hr: npt.NDArray[np.float32]  # truth: lagged + LF wander
    hrv_scale: F64  # how much beat-to-beat variability remains (0..~1.3)
    resp_phase: F64  # n + 1 values, radians, at second boundaries
    skin_temp: F64
    beats: F64 | None = None
    track: F64 | None = None


@dataclass(frozen=True)
class Physique:
    """What the day computation needs to know about the person."""

    seed: int
    resting_hr: float
    hr_max: float
    rmssd_rest_ms: float
    height_m: float


def interval_mask(
    n: int, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """True inside any of the intervals [starts, ends) of a length-n array."""
    mark = np.zeros(n + 1, dtype=np.int32)
    np.add.at(mark, np.clip(starts, 0, n), 1)
    np.add.at(mark, np.clip(ends, 0, n), -1)
    return np.cumsum(mark[:-1]) > 0


def compute_day(p: Physique, d: int, segments: list[Segment]) -> DayTruth:
    start = segments[0].start
    n = segments[-1].end - start
    seed = p.seed
    rng = rng_for(seed, "day-truth", d)
    lengths = np.array([s.end - s.start for s in segments], dtype=np.int64)
    seg_starts = np.array([s.start - start for s in segments], dtype=np.int64)
    kind = np.repeat(np.array([K[s.kind] for s in segments], dtype=np.int8), lengths)
    outdoors = np.repeat(np.array([s.outdoors for s in segments]), lengths)
    base_cad = np.repeat(np.array([s.cadence_spm for s in segments]), lengths)
    intensity = np.repeat(np.array([s.intensity for s in segments]), lengths)
    seg_start_rep = np.repeat(seg_starts, lengths)
    t_abs = start + np.arange(n, dtype=np.float64)

    # --- sleep stages -----------------------------------------------------------------
    stage = np.full(n, -1, dtype=np.int8)
    night_progress = np.zeros(n)
    for i, s in enumerate(segments):
        if s.kind is SegmentKind.SLEEP and s.sleep is not None:
            epochs = hypnogram(s.sleep, s.end - s.start, rng_for(seed, "hypnogram", d, i))
            a = int(seg_starts[i])
            stage[a : a + s.end - s.start] = np.repeat(epochs, EPOCH_S)[: s.end - s.start]
            night_progress[a : a + s.end - s.start] = np.linspace(0, 1, s.end - s.start)
    in_bed = kind == K[SegmentKind.SLEEP]
    asleep = in_bed & (stage > int(SleepStage.WAKE))

    # --- steps ------------------------------------------------------------------------
    is_walk = kind == K[SegmentKind.WALK]
    is_run = kind == K[SegmentKind.RUN]
    gait = is_walk | is_run
    wobble = smooth_noise(seed, "cadence", t_abs, 45.0)[:, 0]
    cadence = np.where(gait, base_cad * (1.0 + 0.025 * wobble), 0.0)
    # Outdoor walks stop at crossings now and then: ~1 stop per 6 min, 8-40 s.
    walk_time = int(np.count_nonzero(is_walk & outdoors))
    n_stops = int(rng.poisson(walk_time / 360.0))
    if n_stops:
        walk_idx = np.flatnonzero(is_walk & outdoors)
        st = walk_idx[rng.integers(0, walk_idx.size, n_stops)]
        cadence[interval_mask(n, st, st + rng.integers(8, 41, n_stops)) & is_walk] = 0.0
    # At home, people potter: short bursts of steps (~30 per hour of 4-25 s each).
    is_home = kind == K[SegmentKind.HOME]
    home_time = int(np.count_nonzero(is_home))
    n_bursts = int(rng.poisson(home_time / 120.0))
    if n_bursts:
        home_idx = np.flatnonzero(is_home)
        st = home_idx[rng.integers(0, home_idx.size, n_bursts)]
        burst = interval_mask(n, st, st + rng.integers(4, 26, n_bursts)) & is_home
        cadence[burst] = 95.0 + 8.0 * wobble[burst]
    step_cum = np.empty(n + 1)
    step_cum[0] = rng.random()
    np.cumsum(cadence / 60.0, out=step_cum[1:])
    step_cum[1:] += step_cum[0]
    steps = np.diff(np.floor(step_cum)).astype(np.float32)

    # --- activity ---------------------------------------------------------------------
    activity_of_kind = np.array(
        [
            ActivityClass.SLEEP,
            ActivityClass.SEDENTARY,
            ActivityClass.LIGHT,
            ActivityClass.WALK,
            ActivityClass.RUN,
            ActivityClass.SEDENTARY,
            ActivityClass.OFF_WRIST,
        ],
        dtype=np.int8,
    )
    activity = activity_of_kind[kind]
    activity[in_bed & ~asleep] = ActivityClass.SEDENTARY
    worn = kind != K[SegmentKind.CHARGING]

    # --- heart rate -------------------------------------------------------------------
    rest, hrr = p.resting_hr, p.hr_max - p.resting_hr
    awake_factor = np.array([1.0, 1.04, 1.0, 1.0, 1.0, 1.06, 1.0])[kind]
    target = rest * awake_factor
    target = np.where(kind == K[SegmentKind.HOME], rest + 0.08 * hrr, target)
    target = np.where(kind == K[SegmentKind.CHARGING], rest + 0.06 * hrr, target)
    moving = cadence > 0
    walk_frac = intensity * np.clip(cadence / np.maximum(base_cad, 1.0), 0.0, 1.2)
    target = np.where(is_walk, rest + hrr * np.where(moving, walk_frac, 0.12), target)
    target = np.where(is_home & moving, rest + 0.2 * hrr, target)
    # Running: the set intensity, plus cardiovascular drift (~+4 % HRR per 30 min).
    run_elapsed = (np.arange(n) - seg_start_rep) / 1800.0
    target = np.where(is_run, rest + hrr * np.minimum(0.97, intensity + 0.04 * run_elapsed), target)
    sleep_factor = np.array([_SLEEP_HR_FACTOR[s] for s in range(4)])[np.maximum(stage, 0)]
    # The nocturnal nadir comes in the second half of the night (circadian low ~04:00).
    circadian = 1.0 - 0.03 * np.sin(np.pi * night_progress)
    target = np.where(in_bed, rest * sleep_factor * circadian, target)
    effort = smooth_noise(seed, "effort", t_abs, 120.0)[:, 0]
    target = target * (1.0 + 0.02 * effort)
    hr_smooth = _lag_pieces(target, TAU_UP_S, TAU_DOWN_S, x0=rest * 0.95)
    exertion = np.clip((hr_smooth - rest) / hrr, 0.0, 1.0)
    stage_hrv = np.array([1.0, 1.0, 1.25, 0.9])[np.maximum(stage, 0)]
    hrv_scale = np.exp(-4.0 * exertion) * np.where(in_bed, stage_hrv, 1.0)
    lf = smooth_noise(seed, "hrv-lf", t_abs, 5.0)[:, 0]
    rr_ms = 60000.0 / hr_smooth + 0.7 * p.rmssd_rest_ms * hrv_scale * lf
    hr = (60000.0 / rr_ms).astype(np.float32)

    # --- respiration, skin temperature ------------------------------------------------
    resp_hz = np.array([_RESP_HZ[k] for k in KINDS])[kind]
    resp_hz = resp_hz * (1.0 + 0.08 * smooth_noise(seed, "resp", t_abs, 60.0)[:, 0])
    resp_hz = np.where(is_run, resp_hz * (0.8 + 0.4 * intensity), resp_hz)
    # In bed the breathing follows the sleep stage: slow and very regular in deep sleep,
    # irregular in REM (breath-to-breath changes on a few-second scale).
    bed_stage = np.maximum(stage, 0)
    irregular = smooth_noise(seed, "resp-irregular", t_abs, _RESP_IRREGULAR_S)[:, 0]
    stage_resp = _RESP_STAGE_FACTOR[bed_stage] * (1.0 + _RESP_STAGE_SD[bed_stage] * irregular)
    resp_hz = np.where(in_bed, resp_hz * np.clip(stage_resp, 0.5, 1.6), resp_hz)
    resp_phase = np.empty(n + 1)
    resp_phase[0] = 0.0
    np.cumsum(2.0 * np.pi * resp_hz, out=resp_phase[1:])
    skin_target = np.array([_SKIN_C.get(k, ROOM_C) for k in KINDS])[kind]
    skin_target = skin_target + 0.25 * smooth_noise(seed, "skin", t_abs, 600.0)[:, 0]
    skin = _lag_pieces(skin_target, SKIN_TAU_S, SKIN_TAU_S, x0=34.0)

    return DayTruth(
        index=d,
        start=start,
        n=n,
        segments=segments,
        kind=kind,
        activity=activity,
        stage=stage,
        worn=worn,
        outdoors=outdoors & worn,
        cadence=cadence.astype(np.float32),
        steps=steps,
        step_cum=step_cum,
        hr_smooth=hr_smooth,
        hr=hr,
        hrv_scale=hrv_scale,
        resp_phase=resp_phase,
        skin_temp=skin,
    )


def _lag_pieces(target: F64, tau_up: float, tau_down: float, x0: float, piece: int = 30) -> F64:
    """First-order response to ``target`` (per second), exact for a target held constant
    over ``piece``-second pieces (the per-piece mean is used); the time constant depends on
    whether the response is rising or falling. Loops over pieces, not samples."""
    n = target.size
    m = -(-n // piece)
    padded = np.empty(m * piece)
    padded[:n] = target
    padded[n:] = target[-1]
    means = padded.reshape(m, piece).mean(axis=1)
    a_up = math.exp(-piece / tau_up)
    a_down = math.exp(-piece / tau_down)
    starts = np.empty(m)
    x = float(x0)
    for k, tgt in enumerate(means.tolist()):
        starts[k] = x
        x = tgt + (x - tgt) * (a_up if tgt > x else a_down)
    rising = means > starts
    tau = np.where(rising, tau_up, tau_down)
    frac = np.arange(piece, dtype=np.float64)[None, :] / tau[:, None]
    out: F64 = means[:, None] + (starts - means)[:, None] * np.exp(-frac)
    return out.reshape(-1)[:n]


def compute_beats(p: Physique, day: DayTruth) -> F64:
    """UTC times of the ideal beats of a day: the lagged heart period plus LF wander,
    respiratory sinus arrhythmia and beat-to-beat jitter, all scaled by hrv_scale."""
    n = day.n
    step = 1.0 / BEAT_HZ
    tg = np.arange(n * BEAT_HZ, dtype=np.float64) * step  # seconds from day start
    sec = np.arange(n, dtype=np.float64) + 0.5
    hr = np.interp(tg, sec, day.hr_smooth)
    scale = np.interp(tg, sec, day.hrv_scale)
    lf = smooth_noise(p.seed, "hrv-lf", day.start + tg, 5.0)[:, 0]
    resp = np.interp(tg, np.arange(n + 1, dtype=np.float64), day.resp_phase)
    rmssd = p.rmssd_rest_ms
    # RSA amplitude A gives RMSSD ~ A at 0.25 Hz breathing; jitter adds sigma*sqrt(2).
    rr_ms = 60000.0 / hr + scale * (0.7 * rmssd * lf + 0.8 * rmssd * np.sin(resp))
    rr_ms = np.maximum(rr_ms, 250.0)
    phase = np.empty(tg.size + 1)
    rng = rng_for(p.seed, "beats", day.index)
    # Days are computed on their own: start half a beat in and drop a beat crowding the
    # day's end, so the interval across a day boundary stays within 0.8-1.8 beats.
    phase[0] = 0.5
    np.cumsum(step * 1000.0 / rr_ms, out=phase[1:])
    phase[1:] += phase[0]
    k = np.arange(math.floor(phase[0]) + 1, math.floor(phase[-1]) + 1, dtype=np.float64)
    j = np.searchsorted(phase, k, side="left")
    frac = (k - phase[j - 1]) / (phase[j] - phase[j - 1])
    beats = (j - 1 + frac) * step
    jitter_ms = (
        rng.standard_normal(beats.size) * 0.3 * rmssd * scale[np.minimum(j - 1, tg.size - 1)]
    )
    rr_here = rr_ms[np.minimum(j - 1, tg.size - 1)]
    beats = beats + np.clip(jitter_ms, -0.15 * rr_here, 0.15 * rr_here) / 1000.0
    if beats.size and beats[-1] > n - 0.3 * rr_ms[-1] / 1000.0:
        beats = beats[:-1]
    return day.start + beats


def compute_track(
    p: Physique, day: DayTruth, home: tuple[float, float, float], heading0: float
) -> F64:
    """True position per second (lat, lon, alt); NaN indoors. Each outdoor segment is an
    out-and-back route from home at the walking or running speed of its cadence."""
    n = day.n
    track = np.full((n, 3), np.nan)
    lat0, lon0, alt0 = home
    for i, s in enumerate(day.segments):
        if not s.outdoors:
            continue
        a, b = s.start - day.start, s.end - day.start
        t_abs = day.start + np.arange(a, b, dtype=np.float64)
        step_len = (0.65 if s.kind is SegmentKind.RUN else 0.41) * p.height_m
        speed = day.cadence[a:b].astype(np.float64) / 60.0 * step_len
        half = (b - a) // 2
        heading = heading0 + 1.3 * i + 0.8 * smooth_noise(p.seed, "heading", t_abs, 90.0)[:, 0]
        north = np.cumsum(speed[:half] * np.cos(heading[:half]))
        east = np.cumsum(speed[:half] * np.sin(heading[:half]))
        back = (b - a) - half
        # The way back retraces the way out.
        north = np.concatenate([north, north[::-1][:back] if half else np.zeros(back)])
        east = np.concatenate([east, east[::-1][:back] if half else np.zeros(back)])
        terrain = (
            8.0 * smooth_noise(p.seed, "terrain", np.round(north / 50.0) * 50 + east, 200.0)[:, 0]
        )
        track[a:b, 0] = lat0 + np.degrees(north / 6_371_000.0)
        track[a:b, 1] = lon0 + np.degrees(east / (6_371_000.0 * math.cos(math.radians(lat0))))
        track[a:b, 2] = alt0 + terrain
    return track
