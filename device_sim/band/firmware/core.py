"""The band's firmware: sensor blocks in, typed records out, gated by consent.

:class:`Firmware` takes one :class:`~device_sim.signals.SensorBlock` at a time and runs the
estimators (steps, heart rate, activity minutes, sleep, alarms). Each estimator reports
per-second values with its own latency (filter delays, an 8-second heart-rate window, a
step run that confirms a few seconds late); a small ledger of pending seconds collects them
and closes 30-second epochs and minutes once every estimator has covered them. Closed
epochs feed the sleep tracker and the alarms; closed minutes become ActivityMinute and
HeartRateSample records.

Records go to a :class:`RecordSink` (the flash implements it) only if the consent gate
allows their category at their time; fields with a consent of their own are cleared
otherwise. GNSS fixes are not even looked at without location consent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from device_sim.band.firmware.activity import ActivityConfig, MinuteSeconds, summarise_minute
from device_sim.band.firmware.alarms import Alarm, AlarmScheduler, AlarmTimings
from device_sim.band.firmware.beats import BeatConfig, BeatDetector
from device_sim.band.firmware.breathing import BreathConfig, BreathDetector
from device_sim.band.firmware.dsp import F64, FirmwareInputError
from device_sim.band.firmware.heart_rate import HeartRateConfig, HeartRateEstimator
from device_sim.band.firmware.sleep import (
    EPOCH_S,
    EpochFeatures,
    SleepConfig,
    SleepOutput,
    SleepTracker,
)
from device_sim.band.firmware.steps import StepCounter, StepCounterConfig
from device_sim.signals import SensorBlock
from protocol.kme.consent import gate_record
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    AlarmEvent,
    ConsentCategory,
    GnssFix,
    HeartRateSample,
    Record,
    SleepStage,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
)

MINUTE_S = 60
# the stage of an epoch is known a few seconds after it ends (heart-rate window, filters)
ALARM_DECISION_LATENCY_S = 5
# an epoch's RMSSD needs this many successive beat intervals (of ~30 in 30 s at rest)
MIN_EPOCH_INTERVALS = 10
_FIELDS = (
    "covered",
    "steps",
    "move",
    "tilt",
    "bpm",
    "confidence",
    "pulse",
    "ssd_sum",  # squared successive beat-interval differences (ms²), per second
    "ssd_count",
    "breaths",  # breaths ending in the second, and sums of their log intervals (and squared)
    "breath_log_sum",
    "breath_log_sq",
    "ppg_live",  # the PPG varied within the second (a recording without PPG has none)
    "temp",  # skin temperature, °C
    # per axis: the second's mean and mean square of acceleration, its lowest and highest
    # sample (non-wear by the accelerometer over an hour: van Hees et al. 2011)
    *(f"{stat}{axis}" for stat in ("mean", "sq", "lo", "hi") for axis in range(3)),
)
# van Hees et al. (2011, 2013): an hour in which at least two axes have a standard
# deviation under 13 mg and a range under 50 mg is an hour off the wrist
NONWEAR_EPOCHS = 120
NONWEAR_MIN_COVERED_S = 3420  # 95 % of the hour
NONWEAR_SD_G = 0.013
NONWEAR_RANGE_G = 0.05
COOL_SKIN_C = 27.0  # a band reading under this is not on skin (room, charger)


class RecordSink(Protocol):
    """Where the firmware's records go; returns the stream sequence number given."""

    def append(self, stream: StreamId, record: Record) -> int: ...


ConsentGate = Callable[[ConsentCategory, float], bool]


def allow_all(category: ConsentCategory, t: float) -> bool:
    """A consent gate that allows everything (for tests and trace analysis)."""
    return True


@dataclass(frozen=True)
class FirmwareConfig:
    """Everything tunable in the firmware."""

    hr_sample_interval_s: int = 5
    gnss_interval_s: int = 1
    step_confirm_lag_s: int = 12  # a step run confirms at most this late
    gap_flush_s: int = 300  # a data gap this long ends an open sleep period
    steps: StepCounterConfig = field(default_factory=StepCounterConfig)
    heart_rate: HeartRateConfig = field(default_factory=HeartRateConfig)
    beats: BeatConfig = field(default_factory=BeatConfig)
    breathing: BreathConfig = field(default_factory=BreathConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)
    sleep: SleepConfig = field(default_factory=SleepConfig)
    alarms: AlarmTimings = field(default_factory=AlarmTimings)

    def __post_init__(self) -> None:
        if not 1 <= self.hr_sample_interval_s <= 3600:
            raise FirmwareInputError("hr_sample_interval_s must be 1..3600 seconds")
        if not 1 <= self.gnss_interval_s <= 3600:
            raise FirmwareInputError("gnss_interval_s must be 1..3600 seconds")


class _PendingSeconds:
    """Per-second estimates not yet closed into epochs, from second ``base`` on."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.data = {name: np.zeros(0) for name in _FIELDS}

    def ensure(self, until: int) -> None:
        missing = until - self.base - len(self.data["covered"])
        if missing > 0:
            for name in _FIELDS:
                self.data[name] = np.concatenate((self.data[name], np.zeros(missing)))

    def put(self, name: str, start: int, values: F64) -> None:
        if len(values) == 0:
            return
        if start < self.base:  # late values for closed seconds are dropped
            values = values[self.base - start :]
            start = self.base
        self.ensure(start + len(values))
        self.data[name][start - self.base : start - self.base + len(values)] = values

    def add(self, name: str, start: int, values: F64) -> None:
        """Add ``values`` to seconds from ``start`` (closed seconds are dropped)."""
        if len(values) == 0:
            return
        if start < self.base:
            values = values[self.base - start :]
            start = self.base
        self.ensure(start + len(values))
        self.data[name][start - self.base : start - self.base + len(values)] += values

    def add_steps(self, times: F64) -> None:
        if len(times) == 0:
            return
        # a step confirmed after its second closed is counted in the oldest open second
        secs = np.maximum(np.floor(times).astype(np.int64), self.base)
        self.ensure(int(secs.max()) + 1)
        np.add.at(self.data["steps"], secs - self.base, 1.0)

    def take(self, until: int) -> dict[str, F64]:
        n = until - self.base
        self.ensure(until)
        out = {name: arr[:n] for name, arr in self.data.items()}
        self.data = {name: arr[n:] for name, arr in self.data.items()}
        self.base = until
        return out


class Firmware:
    """The band's estimators and record emission, one sensor block at a time.

    ``sink`` receives records; ``is_allowed(category, t)`` is the consent gate;
    ``tz_offset_min`` is the band's local offset from UTC, carried on every record.
    """

    def __init__(
        self,
        sink: RecordSink,
        is_allowed: ConsentGate = allow_all,
        tz_offset_min: int = 0,
        config: FirmwareConfig | None = None,
    ) -> None:
        self.sink = sink
        self.is_allowed = is_allowed
        self.config = config or FirmwareConfig()
        self._tz = tz_offset_min
        self._alarms = AlarmScheduler(self.config.alarms, tz_offset_min)
        self._sleep = SleepTracker(self.config.sleep)
        self._steps: StepCounter | None = None
        self._hr: HeartRateEstimator | None = None
        self._beats: BeatDetector | None = None
        self._breaths: BreathDetector | None = None
        self._rates: tuple[int, int] | None = None
        self._pending: _PendingSeconds | None = None
        self._stream_end: float | None = None  # UTC end of the last block
        self._booted = False
        self._rest_minutes: deque[tuple[int, int]] = deque()
        self._last_hr: tuple[int, int] = (0, 0)
        self._last_gravity: F64 | None = None
        # per closed epoch: seconds, per-axis sums of means and mean squares, lows, highs
        self._wear_hist: deque[tuple[int, F64, F64, F64, F64]] = deque(maxlen=NONWEAR_EPOCHS)
        self.total_steps = 0
        self.dropped_without_consent: dict[StreamId, int] = dict.fromkeys(StreamId, 0)

    # -- public state --------------------------------------------------------------------
    @property
    def tz_offset_min(self) -> int:
        return self._tz

    def set_tz_offset(self, tz_offset_min: int, now: float) -> None:
        """The wearer's local time changed (travel, DST); alarms follow local time."""
        self._tz = tz_offset_min
        self._alarms.set_tz_offset(tz_offset_min, now)

    @property
    def current_hr(self) -> tuple[int, int]:
        """Latest (bpm, confidence); bpm 0 when there is no reading."""
        return self._last_hr

    @property
    def resting_hr(self) -> int | None:
        """Resting heart rate: a low percentile of quiet, awake minutes of the last day."""
        if len(self._rest_minutes) < 30:
            return None
        return round(float(np.percentile([hr for _, hr in self._rest_minutes], 10)))

    @property
    def asleep(self) -> bool:
        return self._sleep.asleep_period

    # -- alarms --------------------------------------------------------------------------
    @property
    def alarms(self) -> list[Alarm]:
        return self._alarms.alarms

    def set_alarm(self, alarm: Alarm, now: float) -> None:
        self._alarms.set_alarm(alarm, now)

    def remove_alarm(self, alarm_id: int) -> None:
        self._alarms.remove_alarm(alarm_id)

    def snooze(self, alarm_id: int, now: float) -> None:
        self._emit(StreamId.ALARM_EVENTS, self._alarms.snooze(alarm_id, now))

    def dismiss(self, alarm_id: int, now: float) -> None:
        self._emit(StreamId.ALARM_EVENTS, self._alarms.dismiss(alarm_id, now))

    def ringing_alarms(self) -> list[int]:
        return self._alarms.ringing()

    # -- telemetry -----------------------------------------------------------------------
    def telemetry(self, kind: TelemetryKind, t: float, value: int = 0, detail: int = 0) -> None:
        """Record a device event (User Experience Improvement Program consent only)."""
        self._emit(StreamId.TELEMETRY, TelemetryEvent(int(t), self._tz, kind, value, detail))

    # -- processing ----------------------------------------------------------------------
    def process(self, block: SensorBlock) -> None:
        """Run every estimator over one block and emit the records it completes."""
        acc_rate, ppg_rate = self._check(block)
        t0 = round(block.t0)
        if block.tz_offset_min != self._tz:
            # blocks carry the band's local offset (a trace's header, the Current Time set)
            self.set_tz_offset(block.tz_offset_min, t0)
        self.boot(t0)
        if self._rates != (acc_rate, ppg_rate) and self._rates is not None:
            self._end_stream(force_sleep=False)
        if self._stream_end is not None and t0 != self._stream_end:
            if t0 < self._stream_end:
                raise FirmwareInputError(
                    "sensor block starts before the previous one ended; feed blocks in time "
                    "order (after a clock change, make a new Firmware or call flush())"
                )
            self._end_stream(force_sleep=t0 - self._stream_end >= self.config.gap_flush_s)
        if self._steps is None or self._hr is None or self._pending is None:
            self._start_stream(t0, acc_rate, ppg_rate)
        assert self._steps is not None and self._hr is not None and self._pending is not None
        pending = self._pending
        duration = round(block.duration_s)
        pending.put("covered", t0, np.ones(duration))
        pending.put("tilt", t0, self._tilt(block, acc_rate, duration))
        self._wear_seconds(block, t0, duration, acc_rate, ppg_rate)

        acc = np.asarray(block.acc, dtype=np.float64)
        step_out = self._steps.push(acc)
        pending.put("move", step_out.motion_start, step_out.motion)
        pending.add_steps(step_out.step_times)
        hr_out = self._hr.push(np.asarray(block.ppg, dtype=np.float64), acc)
        pending.put("bpm", hr_out.start, hr_out.bpm)
        pending.put("confidence", hr_out.start, hr_out.confidence)
        pending.put("pulse", hr_out.start, hr_out.pulse)
        if len(hr_out.bpm):
            self._last_hr = (round(hr_out.bpm[-1]), int(hr_out.confidence[-1]))
        assert self._beats is not None
        beat_out = self._beats.push(np.asarray(block.ppg, dtype=np.float64))
        pending.add("ssd_sum", beat_out.start, beat_out.ssd_sum)
        pending.add("ssd_count", beat_out.start, beat_out.ssd_count)
        assert self._breaths is not None
        breath_out = self._breaths.push(np.asarray(block.ppg, dtype=np.float64))
        pending.add("breaths", breath_out.start, breath_out.count)
        pending.add("breath_log_sum", breath_out.start, breath_out.log_sum)
        pending.add("breath_log_sq", breath_out.start, breath_out.log_sq)

        self._stream_end = t0 + duration
        self._gnss(block)
        ready = min(
            step_out.motion_start + len(step_out.motion) - self.config.step_confirm_lag_s,
            hr_out.start + len(hr_out.bpm),
        )
        self._close_until(ready - ready % MINUTE_S)

    def flush(self) -> None:
        """The data ends here (band off or end of a trace): close everything pending."""
        self._end_stream(force_sleep=True)

    def _check(self, block: SensorBlock) -> tuple[int, int]:
        rates = []
        for name, hz in (("acc_hz", block.acc_hz), ("ppg_hz", block.ppg_hz)):
            if not (hz >= 8 and float(hz).is_integer()):
                raise FirmwareInputError(
                    f"{name} must be a whole number of samples per second (8 Hz or more), "
                    f"got {hz!r}: resample the input"
                )
            rates.append(int(hz))
        duration = block.duration_s
        if not (duration > 0 and float(duration).is_integer() and float(block.t0).is_integer()):
            raise FirmwareInputError(
                "sensor blocks must start on a whole UTC second and last whole seconds"
            )
        n = int(duration)
        if block.acc.shape != (n * rates[0], 3) or block.ppg.shape != (n * rates[1],):
            raise FirmwareInputError(
                "sensor block arrays do not match their rates and duration: acc must be "
                "(duration*acc_hz, 3) and ppg (duration*ppg_hz,)"
            )
        if not (np.isfinite(block.acc).all() and np.isfinite(block.ppg).all()):
            raise FirmwareInputError("sensor block holds NaN or infinite samples; clean the input")
        return rates[0], rates[1]

    def _start_stream(self, t0: int, acc_rate: int, ppg_rate: int) -> None:
        cfg = self.config
        if self._rates != (acc_rate, ppg_rate) or self._steps is None or self._hr is None:
            self._steps = StepCounter(acc_rate, cfg.steps)
            self._hr = HeartRateEstimator(ppg_rate, acc_rate, cfg.heart_rate)
            self._beats = BeatDetector(ppg_rate, cfg.beats)
            self._breaths = BreathDetector(ppg_rate, cfg.breathing)
            self._rates = (acc_rate, ppg_rate)
        self._steps.reset(t0)
        self._hr.reset(t0)
        assert self._beats is not None
        self._beats.reset(t0)
        assert self._breaths is not None
        self._breaths.reset(t0)
        self._pending = _PendingSeconds(t0 - t0 % MINUTE_S)
        self._last_gravity = None
        self._wear_hist.clear()  # after a gap the hour before says nothing of now

    def _wear_seconds(
        self, block: SensorBlock, t0: int, duration: int, acc_rate: int, ppg_rate: int
    ) -> None:
        """Per-second evidence of wear that does not need a pulse: whether the PPG carries
        a signal at all, the skin temperature, and the accelerometer's spread."""
        assert self._pending is not None
        pending = self._pending
        ppg = np.asarray(block.ppg, dtype=np.float64).reshape(duration, ppg_rate)
        pending.put("ppg_live", t0, (np.ptp(ppg, axis=1) > 0).astype(np.float64))
        temp = np.asarray(block.skin_temp_c, dtype=np.float64)[:duration]
        if len(temp) == duration:
            pending.put("temp", t0, temp)
        acc = np.asarray(block.acc, dtype=np.float64).reshape(duration, acc_rate, 3)
        stats = {
            "mean": acc.mean(axis=1),
            "sq": (acc * acc).mean(axis=1),
            "lo": acc.min(axis=1),
            "hi": acc.max(axis=1),
        }
        for stat, values in stats.items():
            for axis in range(3):
                pending.put(f"{stat}{axis}", t0, values[:, axis])

    def _epoch_acc_stats(self, ep: dict[str, F64]) -> tuple[F64, F64, F64, F64]:
        """Per epoch and axis: sums of the seconds' means and mean squares, the lowest and
        the highest sample (covered seconds only)."""
        cov = ep["covered"] > 0

        def axes(stat: str) -> F64:
            return np.stack([ep[f"{stat}{a}"] for a in range(3)], axis=2)  # (epochs, s, 3)

        c = cov[:, :, None]
        return (
            np.where(c, axes("mean"), 0.0).sum(axis=1),
            np.where(c, axes("sq"), 0.0).sum(axis=1),
            np.where(c, axes("lo"), np.inf).min(axis=1),
            np.where(c, axes("hi"), -np.inf).max(axis=1),
        )

    def _worn_by_motion(
        self, stats: tuple[F64, F64, F64, F64], i: int, covered: int, temp: float, needed: bool
    ) -> bool:
        """Worn unless the last hour's acceleration lay still as a table's (van Hees et al.
        2011) or the skin temperature reads like a room's. For recordings without PPG:
        the hour is always kept, the test only run when ``needed``."""
        if covered > 0:
            self._wear_hist.append((covered, stats[0][i], stats[1][i], stats[2][i], stats[3][i]))
        if not needed:
            return True
        n = sum(h[0] for h in self._wear_hist)
        still = False
        if n >= NONWEAR_MIN_COVERED_S:
            mean = sum(h[1] for h in self._wear_hist) / n
            sq = sum(h[2] for h in self._wear_hist) / n
            sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
            lo = np.min([h[3] for h in self._wear_hist], axis=0)
            hi = np.max([h[4] for h in self._wear_hist], axis=0)
            quiet = (sd < NONWEAR_SD_G) & (hi - lo < NONWEAR_RANGE_G)
            still = int(quiet.sum()) >= 2
        cool = covered > 0 and temp < COOL_SKIN_C
        return not (still or cool)

    def _tilt(self, block: SensorBlock, rate: int, duration: int) -> F64:
        """How far the wrist's orientation moved each second (g, summed over axes).

        A seated, awake wrist drifts slowly; a sleeping one stays put between posture
        shifts. The band-passed magnitude misses that slow drift, so actigraphy needs it.
        """
        gravity = np.asarray(block.acc, dtype=np.float64).reshape(duration, rate, 3).mean(axis=1)
        previous = gravity[:1] if self._last_gravity is None else self._last_gravity
        self._last_gravity = gravity[-1:]
        moved = np.abs(np.diff(np.concatenate((previous, gravity)), axis=0)).sum(axis=1)
        return np.asarray(moved, dtype=np.float64)

    def _end_stream(self, force_sleep: bool) -> None:
        """Close every pending second of the current stream (a gap or the end of data)."""
        if self._pending is not None and self._stream_end is not None:
            end = int(self._stream_end)
            self._close_until(end + (-end) % MINUTE_S)
            self._pending = None
        if force_sleep:
            self._sleep_output(self._sleep.flush(self._tz))

    def _gnss(self, block: SensorBlock) -> None:
        fixes = block.gnss
        if fixes is None or len(fixes) == 0:
            return
        for row in fixes.tolist():  # at most one fix per second, outdoors only
            t = row[0]
            if int(t) % self.config.gnss_interval_s:
                continue
            if not self.is_allowed(ConsentCategory.LOCATION, t):
                continue  # without location consent a fix is not even kept
            self._emit(
                StreamId.GNSS_FIXES,
                GnssFix(
                    int(t),
                    self._tz,
                    round(row[1] * 1e7),
                    round(row[2] * 1e7),
                    round(row[3]),
                    round(row[4]),
                ),
            )

    # -- closing epochs and minutes ------------------------------------------------------
    def _close_until(self, until: int) -> None:
        pending = self._pending
        if pending is None or until <= pending.base:
            return
        first = pending.base
        sec = pending.take(until)
        n_epochs = (until - first) // EPOCH_S
        ep = {k: v.reshape(n_epochs, EPOCH_S) for k, v in sec.items()}
        valid = (ep["bpm"] > 0) & (ep["confidence"] >= 1)
        n_valid = valid.sum(axis=1)
        hr_sum = np.where(valid, ep["bpm"], 0.0).sum(axis=1)
        hr_mean = np.where(n_valid >= 5, hr_sum / np.maximum(n_valid, 1), 0.0)
        hr_sq = np.where(valid, (ep["bpm"] - hr_mean[:, None]) ** 2, 0.0).sum(axis=1)
        hr_sd = np.sqrt(hr_sq / np.maximum(n_valid, 1))
        covered_n = ep["covered"].sum(axis=1)
        move = (ep["move"] * ep["covered"]).sum(axis=1) / np.maximum(covered_n, 1)
        tilt = ep["tilt"].sum(axis=1)
        steps = ep["steps"].sum(axis=1)
        pulse = (ep["pulse"] * ep["covered"]).sum(axis=1) / np.maximum(covered_n, 1)
        live = (ep["ppg_live"] * ep["covered"]).sum(axis=1) / np.maximum(covered_n, 1)
        temp = (ep["temp"] * ep["covered"]).sum(axis=1) / np.maximum(covered_n, 1)
        acc_stats = self._epoch_acc_stats(ep)
        breaths = ep["breaths"].sum(axis=1)
        breath_sum = ep["breath_log_sum"].sum(axis=1)
        breath_sq = ep["breath_log_sq"].sum(axis=1)
        ssd_n = ep["ssd_count"].sum(axis=1)
        rmssd = np.where(
            ssd_n >= MIN_EPOCH_INTERVALS,
            np.sqrt(ep["ssd_sum"].sum(axis=1) / np.maximum(ssd_n, 1)),
            0.0,
        )
        worn_acc = np.ones(n_epochs, dtype=bool)
        act = self.config.activity
        for i in range(n_epochs):  # one iteration per 30-second epoch
            start = first + i * EPOCH_S
            stage: SleepStage | None = None
            sure: SleepStage | None = None
            # the minute's record needs it when either of its epochs lacks PPG
            needed = bool(live[i] < act.ppg_live_fraction or live[i ^ 1] < act.ppg_live_fraction)
            worn_acc[i] = self._worn_by_motion(
                acc_stats, i, int(covered_n[i]), float(temp[i]), needed
            )
            if covered_n[i] > 0:
                if live[i] >= act.ppg_live_fraction:  # the pulse says whether it is on skin
                    worn = bool(pulse[i] >= act.worn_pulse_fraction or steps[i] >= 10)
                else:  # no PPG in the recording: never "off the wrist" for that alone
                    worn = bool(worn_acc[i] or steps[i] >= 10)
                features = EpochFeatures(
                    start,
                    float(move[i]),
                    int(steps[i]),
                    float(hr_mean[i]),
                    float(hr_sd[i]),
                    worn,
                    float(tilt[i]),
                    float(rmssd[i]) if worn else 0.0,  # off the wrist "beats" are noise
                    int(breaths[i]) if worn else 0,
                    float(breath_sum[i]),
                    float(breath_sq[i]),
                )
                self._sleep_output(self._sleep.add(features, self._tz))
                stage = self._sleep.current_stage()
                sure = self._sleep.confident_stage()
            self._alarm_tick(start + EPOCH_S + ALARM_DECISION_LATENCY_S, sure, stage)
            if i % 2 and covered_n[i - 1] + covered_n[i] > 0:
                lo = (i - 1) * EPOCH_S
                self._close_minute(
                    first + lo,
                    {k: v[lo : lo + MINUTE_S] for k, v in sec.items()},
                    bool(worn_acc[i - 1] or worn_acc[i]),
                )

    def _close_minute(self, start: int, sec: dict[str, F64], worn_by_motion: bool) -> None:
        cfg = self.config
        m = MinuteSeconds(
            start,
            sec["covered"],
            sec["steps"],
            sec["move"],
            sec["bpm"],
            sec["confidence"],
            sec["pulse"],
            sec["ppg_live"],
            worn_by_motion,
        )
        record = summarise_minute(m, self._sleep.asleep_period, self._tz, cfg.activity)
        self.total_steps += round(float(sec["steps"].sum()))
        self._emit(StreamId.ACTIVITY_MINUTES, record)
        if record.activity_class == ActivityClass.SEDENTARY and record.avg_hr:
            self._rest_minutes.append((start, record.avg_hr))
            while self._rest_minutes and self._rest_minutes[0][0] < start - 86_400:
                self._rest_minutes.popleft()
        if not record.worn:
            return
        step = cfg.hr_sample_interval_s
        offsets = np.arange((-start) % step, MINUTE_S, step)
        for off in offsets.tolist():
            if not sec["covered"][off]:
                continue
            bpm = round(sec["bpm"][off])
            conf = int(sec["confidence"][off]) if bpm else 0
            self._emit(StreamId.HR_SAMPLES, HeartRateSample(start + off, self._tz, bpm, conf))

    def boot(self, t: float) -> None:
        """Log the BOOT telemetry event, once: at the first block, or when a summary band
        (which feeds no blocks) starts recording."""
        if not self._booted:
            self._booted = True
            self.telemetry(TelemetryKind.BOOT, t)

    def tick_alarms(self, now: float, stage: SleepStage | None) -> None:
        """Run the alarms up to ``now`` with the wearer's sleep stage as the band sees it
        (None: awake or not in bed). For summary fidelity, where no signals reach
        :meth:`process` and the stages come from the summary model's estimates."""
        self._alarm_tick(int(now), stage, stage)

    def _alarm_tick(self, now: int, sure: SleepStage | None, stage: SleepStage | None) -> None:
        for event in self._alarms.tick(now, sure, stage):
            self._emit(StreamId.ALARM_EVENTS, event)

    def _sleep_output(self, out: SleepOutput | None) -> None:
        if out is None:
            return
        for epoch in out.epochs:
            self._emit(StreamId.SLEEP_EPOCHS, epoch)
        if out.summary is not None:
            self._emit(StreamId.SLEEP_SUMMARIES, out.summary)

    # -- emission ------------------------------------------------------------------------
    def _emit(self, stream: StreamId, record: Record) -> int | None:
        gated = gate_record(stream, record, self.is_allowed)
        if gated is None:
            self.dropped_without_consent[stream] += 1
            return None
        return self.sink.append(stream, gated)


__all__ = [
    "ActivityMinute",
    "AlarmEvent",
    "ConsentGate",
    "Firmware",
    "FirmwareConfig",
    "RecordSink",
]
