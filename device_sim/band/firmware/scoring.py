"""QA only: scores the firmware's records against the person model's truth.

The firmware never imports this module (its estimates come from signals alone); the
accuracy test and ``bench/accuracy.py`` use it to drive a seeded person through the sensor
models and the firmware, block by block, and to compare what the band recorded with what
really happened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from device_sim.band.firmware.alarms import Alarm
from device_sim.band.firmware.core import Firmware, FirmwareConfig
from device_sim.person.physiology import KIND_INDEX, Person, SegmentKind
from device_sim.person.sensors import SensorModel
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    AlarmEvent,
    AlarmEventKind,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    StreamId,
)

BLOCK_S = 60
ALARM_LEAD_S = 12 * 3600
EPOCH_S = 30
ABSENT_SKIN_TEMP_C = 33.0  # what an import without a temperature column reads


class RecordList:
    """A record sink keeping every record, by stream."""

    def __init__(self) -> None:
        self.by_stream: dict[StreamId, list[Record]] = {s: [] for s in StreamId}

    def append(self, stream: StreamId, record: Record) -> int:
        self.by_stream[stream].append(record)
        return len(self.by_stream[stream]) - 1

    def minutes(self) -> list[ActivityMinute]:
        return [
            r for r in self.by_stream[StreamId.ACTIVITY_MINUTES] if isinstance(r, ActivityMinute)
        ]

    def hr_samples(self) -> list[HeartRateSample]:
        return [r for r in self.by_stream[StreamId.HR_SAMPLES] if isinstance(r, HeartRateSample)]

    def sleep_epochs(self) -> list[SleepEpoch]:
        return [r for r in self.by_stream[StreamId.SLEEP_EPOCHS] if isinstance(r, SleepEpoch)]

    def alarm_events(self) -> list[AlarmEvent]:
        return [r for r in self.by_stream[StreamId.ALARM_EVENTS] if isinstance(r, AlarmEvent)]


@dataclass
class Run:
    """One simulated span: truth per second, the firmware's records, the firmware."""

    t0: int
    seconds: int
    hr: npt.NDArray[np.float32]
    steps: npt.NDArray[np.float32]
    activity: npt.NDArray[np.int8]
    stage: npt.NDArray[np.int8]
    kind: npt.NDArray[np.int8]
    firmware: Firmware
    records: RecordList
    alarms: list[tuple[int, int]] = field(default_factory=list)  # (alarm id, set time)


def simulate(
    preset: str,
    seed: int,
    t0: int,
    seconds: int,
    alarms: list[tuple[int, int, int]] | None = None,
    config: FirmwareConfig | None = None,
    hz: float = 25.0,
    without_ppg: bool = False,
) -> Run:
    """Run a seeded person, the sensors and the firmware over ``[t0, t0 + seconds)``.

    ``alarms`` are (alarm id, UTC set time, smart window minutes), set before the span;
    ``hz`` is the accelerometer's and the PPG's sample rate. ``without_ppg`` feeds the
    firmware what an accelerometer-only recording gives it: the PPG flat at 0 and the
    skin temperature a constant (as the CSV import fills absent columns).
    """
    person = Person.from_preset(preset, seed=seed, start_utc=t0)
    sensors = SensorModel(seed, acc_hz=hz, ppg_hz=hz)
    sink = RecordList()
    fw = Firmware(sink, tz_offset_min=person.tz_offset_min, config=config)
    to_set = sorted(alarms or [], key=lambda a: a[1])
    set_times = [(alarm_id, set_time) for alarm_id, set_time, _ in to_set]
    cols: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("hr", "steps", "activity", "stage")
    }
    for start in range(t0, t0 + seconds, BLOCK_S):
        # the wearer sets each one-shot alarm the evening before
        while to_set and to_set[0][1] - ALARM_LEAD_S <= start:
            alarm_id, set_time, window = to_set.pop(0)
            local = set_time + person.tz_offset_min * 60
            hour, minute = divmod((local % 86_400) // 60, 60)
            fw.set_alarm(Alarm(alarm_id, hour, minute, 0, window), start)
        truth = person.truth(start, BLOCK_S)
        block = sensors.render(truth, person, gnss_allowed=False, battery_v=3.9)
        if without_ppg:
            block = dataclasses.replace(
                block,
                ppg=np.zeros_like(block.ppg),
                skin_temp_c=np.full_like(block.skin_temp_c, ABSENT_SKIN_TEMP_C),
            )
        fw.process(block)
        cols["hr"].append(truth.hr_bpm)
        cols["steps"].append(truth.steps)
        cols["activity"].append(truth.activity)
        cols["stage"].append(truth.sleep_stage)
    fw.flush()
    return Run(
        t0,
        seconds,
        np.concatenate(cols["hr"]),
        np.concatenate(cols["steps"]),
        np.concatenate(cols["activity"]),
        np.concatenate(cols["stage"]),
        person.kinds(t0, seconds),
        fw,
        sink,
        set_times,
    )


def step_totals(run: Run) -> tuple[float, float]:
    """(steps the band counted, true steps) over the run."""
    counted = sum(m.steps for m in run.records.minutes())
    return float(counted), float(run.steps.sum())


def desk_false_steps(run: Run) -> tuple[float, float]:
    """(steps counted in desk minutes without a true step, hours of such minutes)."""
    desk = (run.kind == KIND_INDEX[SegmentKind.DESK]).reshape(-1, 60).all(axis=1)
    no_steps = run.steps.reshape(-1, 60).sum(axis=1) == 0
    counted = np.zeros(len(desk))
    for m in run.records.minutes():
        i = (m.start - run.t0) // 60
        if 0 <= i < len(counted):
            counted[i] = m.steps
    sel = desk & no_steps
    return float(counted[sel].sum()), float(sel.sum() / 60)


def hr_errors(run: Run) -> dict[str, npt.NDArray[np.float64]]:
    """Absolute errors of valid HR samples: 'rest_walk' (awake at rest, light activity,
    walking, asleep) and 'run'; 'coverage' is the share of worn samples with a value."""
    samples = run.records.hr_samples()
    idx = np.array([s.timestamp - run.t0 for s in samples], dtype=np.int64)
    bpm = np.array([s.bpm for s in samples], dtype=np.float64)
    ok = (bpm > 0) & (idx >= 0) & (idx < run.seconds)
    err = np.abs(bpm[ok] - run.hr[idx[ok]])
    act = run.activity[idx[ok]]
    rest_walk = np.isin(
        act,
        [ActivityClass.SEDENTARY, ActivityClass.LIGHT, ActivityClass.WALK, ActivityClass.SLEEP],
    )
    worn = run.activity[idx[(idx >= 0) & (idx < run.seconds)]] != ActivityClass.OFF_WRIST
    return {
        "rest_walk": err[rest_walk],
        "run": err[act == ActivityClass.RUN],
        "coverage": np.array([ok.sum() / max(1, worn.sum())]),
    }


def sleep_epochs(run: Run) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(truth, estimate) stages of every epoch in bed by truth or by the band; WAKE where
    the other side has nothing."""
    truth = run.stage[EPOCH_S // 2 :: EPOCH_S].astype(np.int64)
    est = np.full(len(truth), -1, dtype=np.int64)
    for e in run.records.sleep_epochs():
        i = (e.start - run.t0) // EPOCH_S
        if 0 <= i < len(est):
            est[i] = int(e.stage)
    sel = (truth >= 0) | (est >= 0)
    return np.maximum(truth[sel], 0), np.maximum(est[sel], 0)


@dataclass(frozen=True)
class AlarmOutcome:
    """How one smart alarm went against the truth.

    The issue's target: on every night with light sleep inside the window the alarm fires
    in light sleep, never before the window opens. Counted here: every alarm must ring
    inside its window or at its set time (not before the window, not after the set time);
    when the window held true light sleep it must ring while the wearer is truly in light
    sleep or truly awake. Awake counts because the alarm's own rule is "the first light or
    wake epoch": ringing for someone already awake wakes no one from deep or REM sleep.
    ``stage_at_fire`` keeps the true stage, so a strict light-only count is also reported.
    """

    fired_at: int | None
    window_open: int
    light_in_window: bool
    stage_at_fire: int
    set_time: int | None = None

    @property
    def in_time(self) -> bool:
        """Rang inside the window or at the set time."""
        if self.fired_at is None or self.fired_at < self.window_open:
            return False
        return self.set_time is None or self.fired_at <= self.set_time

    @property
    def ok(self) -> bool:
        if not self.in_time:
            return False
        return not self.light_in_window or self.stage_at_fire in (
            SleepStage.LIGHT,
            SleepStage.WAKE,
        )


def alarm_outcomes(run: Run, window_min: int) -> list[AlarmOutcome]:
    events = run.records.alarm_events()
    out = []
    for alarm_id, set_time in run.alarms:
        opens = set_time - window_min * 60
        fires = [
            e.timestamp
            for e in events
            if e.alarm_id == alarm_id
            and e.kind in (AlarmEventKind.FIRED, AlarmEventKind.SMART_FIRED)
        ]
        first = min(fires) if fires else None
        window = run.stage[opens - run.t0 : set_time - run.t0]
        stage = -1
        if first is not None and 0 <= first - run.t0 < run.seconds:
            stage = int(run.stage[first - run.t0])
        light = bool(np.any(window == SleepStage.LIGHT))
        out.append(AlarmOutcome(first, opens, light, stage, set_time))
    return out


def smart_alarm_times(
    preset: str, seed: int, t0: int, seconds: int, before_final_wake_s: int
) -> list[int]:
    """Set times for a test alarm on each night of a span: a fixed time before the night's
    true final wake (whole minutes), so that the smart window lies in the night's last
    sleep cycle."""
    person = Person.from_preset(preset, seed=seed, start_utc=t0)
    stage = person.truth(t0, seconds).sleep_stage
    asleep = stage > 0
    in_bed = np.concatenate(([False], stage >= 0, [False]))
    edges = np.flatnonzero(np.diff(in_bed.astype(np.int8)))
    times = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        night = np.flatnonzero(asleep[a:b])
        if len(night) < 3 * 3600:
            continue
        last = a + int(night[-1])
        set_time = t0 + last - before_final_wake_s
        times.append(set_time - set_time % 60)
    return times
