"""The band's live heart-rate channel: one Heart Rate Measurement a second, as a band streams.

A phone app watching a workout wants a value every second with the beat-to-beat intervals,
not the per-minute records the band stores. The stored records come from the firmware's
minute blocks (``signal`` fidelity) or the summary model; the live channel must exist each
second, whenever a central subscribes, so it is drawn from the person's own heart beats with
an optical sensor's error, in both fidelities:

* ``rr_intervals``: the intervals between the beats of the last second, in 1/1024 s
  (Heart Rate Service 3.1.1.5), each with the timing jitter of a wrist PPG upstroke;
* ``bpm``: 60 over the mean of the intervals of the last five seconds, with the small
  slow-moving offset of an optical sensor;
* ``sensor_contact``: detected while the band is worn; off the wrist there is no pulse, no
  RR interval and a bpm of 0;
* ``energy_expended_kj``: cumulative since the stream started (Keytel et al. 2005, heart
  rate, weight, age and sex), sent in every tenth measurement as the service recommends.

Everything is seeded by the band's seed and the second, so a stream is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from device_sim.person.physiology import Gender, Person
from protocol.ble.sig_codecs import HeartRateMeasurement, SensorContact, rr_interval_units

#: The window whose RR intervals give the displayed heart rate.
BPM_WINDOW_S = 5.0
#: How often the energy expended field is included (HRS recommends every tenth).
ENERGY_EVERY = 10
#: Wrist PPG beat-timing jitter (standard deviation, seconds): a few ms against ECG.
RR_JITTER_S = 0.008
#: The optical sensor's slowly varying bpm offset (standard deviation, bpm).
BPM_OFFSET_SD = 1.5
#: Resting energy expenditure, kJ/min (about 1.1 kcal/min).
RESTING_KJ_PER_MIN = 4.6


@dataclass
class LiveHeartRate:
    """Per-second Heart Rate Measurements for one band and its wearer."""

    person: Person
    seed: int
    _energy_j: float = 0.0
    _count: int = 0

    def reset_energy_expended(self) -> None:
        """Heart Rate Control Point op code 0x01: the cumulative energy starts again at 0."""
        self._energy_j = 0.0

    def measurement(self, t: float) -> HeartRateMeasurement:
        """The measurement the band sends for the second that ends at ``t`` (UTC)."""
        self._count += 1
        worn = bool(self.person.state_at(np.array([t - 0.5])).worn[0])
        if not worn:
            return HeartRateMeasurement(bpm=0, sensor_contact=SensorContact.NOT_DETECTED)
        rng = np.random.default_rng([self.seed, 0x4C49, math.floor(t)])
        beats = self.person.beat_times(t - BPM_WINDOW_S - 2.0, t)
        # Each detected beat carries the sensor's timing jitter, fixed per beat.
        jittered = beats + _beat_jitter(self.seed, beats)
        intervals = np.diff(jittered)
        window = intervals[jittered[1:] >= t - BPM_WINDOW_S]
        if len(window) == 0:
            return HeartRateMeasurement(bpm=0, sensor_contact=SensorContact.DETECTED)
        offset = BPM_OFFSET_SD * math.sin(2 * math.pi * (t / 97.0 + (self.seed % 7) / 7.0))
        bpm = max(25, min(240, round(60.0 / float(np.mean(window)) + offset)))
        latest = intervals[jittered[1:] >= t - 1.0]
        rr = tuple(rr_interval_units(float(s)) for s in latest if 0.25 <= s <= 2.5)
        self._energy_j += _keytel_j_per_s(self.person, bpm) * (1.0 + 0.02 * rng.standard_normal())
        energy = round(self._energy_j / 1000) if self._count % ENERGY_EVERY == 0 else None
        return HeartRateMeasurement(
            bpm=bpm,
            sensor_contact=SensorContact.DETECTED,
            energy_expended_kj=energy,
            rr_intervals=rr,
        )


def _beat_jitter(seed: int, beats: np.ndarray) -> np.ndarray:
    """The same jitter for the same beat, whichever second asks: a hash of its time.

    Fibonacci hashing in uint64 (whose wrap-around numpy defines) gives a uniform value per
    beat; a uniform spread of +-sqrt(3) SD has standard deviation ``RR_JITTER_S``.
    """
    keys = np.round(beats * 1000).astype(np.uint64) ^ np.uint64(seed & 0xFFFFFFFF)
    mixed = (keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)  # the top 53 bits
    uniform = (mixed.astype(np.float64) + 0.5) / float(1 << 53)
    return (uniform - 0.5) * 2 * math.sqrt(3) * RR_JITTER_S


def _keytel_j_per_s(person: Person, bpm: int) -> float:
    """Energy expenditure from heart rate (Keytel et al., J Sports Sci 2005), in J/s.

    The regression gives kJ/min; below it the body still spends its resting ~4.6 kJ/min.
    """
    p = person.profile
    if Gender(p.gender) is Gender.MALE:
        kj_min = -55.0969 + 0.6309 * bpm + 0.1988 * p.weight_kg + 0.2017 * p.age
    else:
        kj_min = -20.4022 + 0.4472 * bpm - 0.1263 * p.weight_kg + 0.074 * p.age
    return max(kj_min, RESTING_KJ_PER_MIN) * 1000.0 / 60.0
