"""Sensor models: turn the person's truth into the band's raw signals (signal fidelity).

:class:`SensorModel` renders one :class:`~device_sim.signals.SensorBlock` per call, in
numpy, from a :class:`~device_sim.signals.TruthBlock` and the :class:`Person` it came from
(for beat times, step times, respiration, posture and the GNSS track):

- accelerometer (3 axes, ``acc_hz`` 12.5..100 Hz, ±8 g, 12-bit, in g): the 1 g gravity
  reading in the wrist's orientation (posture and arm angle), arm swing at half the step
  rate, a heel-strike transient at every true step (running much harder than walking),
  non-gait arm movements while seated or at home (gestures at 1-3 Hz that a naive peak
  counter takes for steps, typing), vehicle vibration, near-stillness in sleep with
  twitches and posture shifts (more in wake and light sleep), offset, gain error, noise.
- PPG (``ppg_hz``, arbitrary units, higher = more light absorbed): one pulse wave per true
  beat (so HRV is real) with a dicrotic notch between its systolic and diastolic waves
  (most of its power in the 2nd and 3rd harmonics, as on real wrist PPG), amplitude
  modulated by breathing and perfusion, a respiratory
  and very-low-frequency baseline, motion artefacts (about 5x the pulse when running,
  about 90 % of them predictable from the same wrist acceleration, the rest from
  sensor-skin coupling the accelerometer cannot see), and noise. Off the wrist: no pulse, the DC
  level drops to ambient (about 0) and only noise remains.
- skin temperature (1 Hz, 0.01 °C), battery voltage (ADC reading of the given cell
  voltage), GNSS fixes at 1 Hz only outdoors and only when ``gnss_allowed``.

Every random draw is keyed by absolute sample index or absolute time (see
:mod:`device_sim.person.rng`): the same seed gives byte-identical blocks, and
rendering ``[0, 120)`` gives the same samples as ``[0, 60)`` then ``[60, 120)``.
The levels and their sources are listed in docs/simulation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from device_sim.person.physiology import KIND_INDEX, Person, SegmentKind
from device_sim.person.rng import ChunkedNormal, rng_for, smooth_noise
from device_sim.signals import SensorBlock, TruthBlock
from protocol.errors import UsageError
from protocol.kme.records import SleepStage

__all__ = ["ACC_LSB_G", "ACC_RANGE_G", "SensorConfigError", "SensorModel"]

F64 = npt.NDArray[np.float64]

ACC_RANGE_G = 8.0
ACC_LSB_G = 2 * ACC_RANGE_G / 4096  # 12 bits over ±8 g: 3.9 mg
_ACC_NOISE_G = 0.0009  # ~180 µg/√Hz over the 12.5 Hz bandwidth at 25 Hz
_TREMOR_G = 0.002  # physiological tremor and pulse ballistics on a worn, still wrist

_WORN_DC = 50.0  # PPG level with skin under the sensor (tissue absorbs light)
_PULSE_AC = 1.0  # pulse amplitude at rest with warm skin
_PPG_NOISE = 0.04  # white noise relative to the resting pulse: ~28 dB SNR
_ARTEFACT_GAIN = 0.8  # pulse amplitudes per g of wrist acceleration (coherent part)
_ARTEFACT_QUAD = 0.3  # per g² of squared magnitude: the size of the jolt
# The part the accelerometer does not predict (sensor-skin coupling): see docs/simulation.md.
_COUPLING_S = 3.0  # knots of the slow coupling change (strap pressure, tissue)
_COUPLING_DEPTH = 0.3  # its size relative to the coherent gain
_CONTACT_S = 0.12  # knots of the broadband contact term: reaches across the HR band
_CONTACT_GAIN = 0.12  # its size per g of movement, relative to the coherent gain
_PULSE_DELAY_S = 0.22  # R peak to pulse arrival at the wrist
# Pulse morphology, in fractions of the beat: systolic peak, dicrotic notch, diastolic wave
_SYSTOLE_PHI = 0.15
_SYSTOLE_W = 0.045
_DIASTOLE_PHI = (0.52, 0.57)  # per wearer
_DIASTOLE_W = 0.08
_DIASTOLE_AMP = (0.45, 0.7)  # per wearer, relative to the systolic peak
_RUNOFF_AMP = 0.08  # the notch stays above the foot of the pulse
_RUNOFF_W = 0.1

_SK = KIND_INDEX
_N_KINDS = len(_SK)

# Wrist orientation at rest by kind (the 1 g reading, device frame: x along the forearm
# towards the hand, y across the wrist, z out of the face), and how far it wanders.
_ORIENT = np.zeros((_N_KINDS, 3))
_WANDER = np.zeros(_N_KINDS)
_WANDER_S = np.full(_N_KINDS, 60.0)
for _kind, _vec, _wander, _period in (
    (SegmentKind.DESK, (0.15, 0.10, 0.98), 0.15, 40.0),
    (SegmentKind.HOME, (-0.40, 0.20, 0.85), 0.45, 15.0),
    (SegmentKind.WALK, (-0.95, 0.15, 0.25), 0.10, 30.0),
    (SegmentKind.RUN, (-0.35, 0.30, 0.88), 0.10, 30.0),
    (SegmentKind.RIDE, (0.10, 0.20, 0.97), 0.12, 60.0),
    (SegmentKind.CHARGING, (0.0, 0.0, 1.0), 0.0, 60.0),
    (SegmentKind.SLEEP, (0.0, 0.0, 1.0), 0.0, 60.0),
):
    _ORIENT[_SK[_kind]] = np.array(_vec) / np.linalg.norm(_vec)
    _WANDER[_SK[_kind]] = _wander
    _WANDER_S[_SK[_kind]] = _period


@dataclass(frozen=True)
class _EventKind:
    """A stream of short non-gait wrist movements (gestures, twitches, posture shifts)."""

    name: str
    max_per_h: float
    dur_s: tuple[float, float]
    freq_hz: tuple[float, float]
    amp_g: tuple[float, float]


_GESTURE = _EventKind("gesture", 60.0, (1.0, 4.0), (1.0, 3.0), (0.10, 0.60))
_SLEEP_MOVE = _EventKind("sleep-move", 40.0, (1.0, 6.0), (0.5, 3.0), (0.03, 0.30))
_POSTURE = _EventKind("posture", 3.0, (2.0, 5.0), (0.5, 1.5), (0.25, 0.60))
_MAX_EVENT_S = 6.0

# Acceptance (events per hour actually happening) by segment kind, awake.
_GESTURE_RATE = np.zeros(_N_KINDS)
_GESTURE_RATE[_SK[SegmentKind.DESK]] = 45.0
_GESTURE_RATE[_SK[SegmentKind.HOME]] = 60.0
_GESTURE_RATE[_SK[SegmentKind.RIDE]] = 20.0
# In bed, by stage (WAKE, LIGHT, DEEP, REM): actigraphy sees most movement in wake.
_SLEEP_MOVE_RATE = np.array([40.0, 8.0, 1.0, 5.0])
_POSTURE_RATE = np.array([3.0, 2.0, 0.15, 0.6])


class SensorConfigError(UsageError):
    """A sensor model setting is out of the range the band supports."""


class SensorModel:
    """The band's sensors, seeded. ``render`` turns one truth block into a SensorBlock.

    ``seed`` fixes the device's own imperfections (accelerometer offsets and gains, where
    the PPG sensor sits) and all sensor noise. Rates: ``acc_hz`` 12.5..100 (default 25),
    ``ppg_hz`` 10..100 (default 25).
    """

    def __init__(self, seed: int, acc_hz: float = 25.0, ppg_hz: float = 25.0) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SensorConfigError("seed must be a non-negative integer")
        for name, value, lo, hi in (
            ("acc_hz", acc_hz, 12.5, 100.0),
            ("ppg_hz", ppg_hz, 10.0, 100.0),
        ):
            if not isinstance(value, int | float) or not lo <= float(value) <= hi:
                raise SensorConfigError(f"{name} must be from {lo:g} to {hi:g} Hz")
        self.seed = seed
        self.acc_hz = float(acc_hz)
        self.ppg_hz = float(ppg_hz)
        dev = rng_for(seed, "device")
        self._acc_offset = dev.normal(0.0, 0.02, 3)  # zero-g offset, ±40 mg class parts
        self._acc_gain = 1.0 + dev.normal(0.0, 0.01, 3)
        w = dev.normal(0.0, 1.0, 3)
        self._artefact_dir = w / np.linalg.norm(w)
        self._skin_offset = float(dev.normal(0.0, 0.2))
        v = dev.normal(0.0, 1.0, 3)  # drawn last: the draws above keep their values
        self._coupling_dir = v / np.linalg.norm(v)
        # pulse morphology of this wearer (vessel stiffness, where the wave reflects)
        shape = rng_for(seed, "ppg-shape")
        self._diastole_amp = float(shape.uniform(*_DIASTOLE_AMP))
        self._diastole_phi = float(shape.uniform(*_DIASTOLE_PHI))
        self._acc_noise = ChunkedNormal(seed, "acc-noise", width=3)
        self._acc_texture = ChunkedNormal(seed, "acc-texture", width=3)
        self._ppg_noise = ChunkedNormal(seed, "ppg-noise")
        self._temp_noise = ChunkedNormal(seed, "skin-noise")
        self._gnss_noise = ChunkedNormal(seed, "gnss-noise", width=3)
        self._events: dict[tuple[str, int], F64] = {}

    # ---- public -----------------------------------------------------------------------

    def render(
        self,
        truth: TruthBlock,
        person: Person,
        *,
        gnss_allowed: bool,
        battery_v: float,
    ) -> SensorBlock:
        """Raw signals over the truth block's span.

        ``gnss_allowed`` is the firmware's gate (location consent and the GNSS being on):
        without it no fix is produced. ``battery_v`` is the true cell voltage from the
        firmware's battery model; the block carries the ADC's reading of it.
        """
        if not isinstance(battery_v, int | float) or not math.isfinite(battery_v):
            raise SensorConfigError("battery_v must be a finite voltage")
        t0 = int(truth.t0)
        n_s = int(truth.duration_s)
        if n_s <= 0 or truth.hr_bpm.size != n_s or t0 != truth.t0:
            raise SensorConfigError("render needs a TruthBlock from Person.truth (whole seconds)")
        kinds = person.kinds(t0, n_s)
        acc, dyn, dyn_t = self._accelerometer(truth, person, kinds)
        ppg = self._ppg(truth, person, dyn, dyn_t)
        temp = self._skin_temperature(truth, person)
        gnss = self._gnss(truth, person) if gnss_allowed else None
        batt_noise = float(self._temp_noise.take(2 * t0 + 1, 2 * t0 + 2)[0, 0])
        return SensorBlock(
            t0=float(t0),
            duration_s=float(n_s),
            tz_offset_min=person.tz_offset_min,
            acc_hz=self.acc_hz,
            acc=acc,
            ppg_hz=self.ppg_hz,
            ppg=ppg,
            skin_temp_c=temp,
            battery_v=round(float(battery_v) + 0.002 * batt_noise, 3),
            gnss=gnss,
        )

    # ---- accelerometer ----------------------------------------------------------------

    def _accelerometer(
        self, truth: TruthBlock, person: Person, kinds: npt.NDArray[np.int8]
    ) -> tuple[npt.NDArray[np.float32], F64, F64]:
        hz = self.acc_hz
        t0 = int(truth.t0)
        i0 = round(t0 * hz)
        n = round(truth.duration_s * hz)
        t = (i0 + np.arange(n)) / hz
        sec = np.minimum((t - t0).astype(np.int64), truth.hr_bpm.size - 1)
        kind = kinds[sec]
        worn = truth.worn[sec]
        stage = truth.sleep_stage[sec]
        awake_worn = worn & (stage <= 0) & (kind != _SK[SegmentKind.SLEEP])

        # Orientation: per-kind rest pose that wanders; in bed, the posture of the last shift.
        wander = smooth_noise(self.seed, "orient-wander", t, 20.0, width=3)
        orient = _ORIENT[kind] + _WANDER[kind][:, None] * wander
        in_bed = kind == _SK[SegmentKind.SLEEP]
        if np.any(in_bed):
            orient[in_bed] = self._sleep_posture(person, t[in_bed])

        dyn = np.zeros((n, 3))
        self._gait(person, t, truth.activity[sec], orient, dyn)
        orient /= np.linalg.norm(orient, axis=1, keepdims=True)

        # Non-gait movements gated by what the person is doing when each one starts.
        self._add_events(_GESTURE, person, t, dyn, _gesture_rate(person))
        self._add_events(_SLEEP_MOVE, person, t, dyn, _stage_rate(person, _SLEEP_MOVE_RATE))
        self._add_events(_POSTURE, person, t, dyn, _stage_rate(person, _POSTURE_RATE))

        texture = self._acc_texture.take(i0, i0 + n)
        desk = kind == _SK[SegmentKind.DESK]
        if np.any(desk):
            # Typing: broadband wrist vibration, in bouts about 40 % of desk time.
            typing = desk & (smooth_noise(self.seed, "typing", t, 90.0)[:, 0] > 0.25)
            dyn[typing] += 0.012 * texture[typing]
        ride = kind == _SK[SegmentKind.RIDE]
        if np.any(ride):
            sway = smooth_noise(self.seed, "vehicle", t[ride], 8.0, width=3)
            dyn[ride] += 0.03 * texture[ride] + 0.06 * sway

        noise = self._acc_noise.take(i0, i0 + n)
        sigma = np.where(awake_worn, math.hypot(_ACC_NOISE_G, _TREMOR_G), _ACC_NOISE_G)
        raw = (orient + dyn) * self._acc_gain + self._acc_offset + sigma[:, None] * noise
        counts = np.clip(np.round(raw / ACC_LSB_G), -2048, 2047)
        acc = (counts * ACC_LSB_G).astype(np.float32)
        return acc, dyn * worn[:, None], t

    def _gait(
        self, person: Person, t: F64, activity: npt.NDArray[np.int8], orient: F64, dyn: F64
    ) -> None:
        """Arm swing and heel-strike transients at the true step times (in place)."""
        hz = self.acc_hz
        steps, numbers = person.numbered_step_times(float(t[0]) - 1.5, float(t[-1]) + 1.5)
        if steps.size < 2:
            return
        j = np.searchsorted(steps, t)
        inside = (j > 0) & (j < steps.size)
        jc = np.clip(j, 1, steps.size - 1)
        gap = steps[jc] - steps[jc - 1]
        env = (inside & (gap < 1.2)).astype(np.float64)
        if not np.any(env):
            return
        k = np.interp(t, steps, numbers)
        phase = math.pi * k  # one swing cycle per two steps
        running = activity == 4  # ActivityClass.RUN
        step_rate = 1.0 / np.maximum(gap, 0.25)
        vigour = np.clip(step_rate / 1.85, 0.6, 1.6) ** 2
        angle = env * np.where(running, 0.45, 0.30) * np.sin(phase)
        c, s = np.cos(angle), np.sin(angle)
        x, z = orient[:, 0].copy(), orient[:, 2].copy()
        orient[:, 0] = x * c + z * s
        orient[:, 2] = -x * s + z * c
        # Swing: tangential (fore-aft, across the wrist: y) at the stride rate, centripetal
        # (along the forearm: x) at the step rate; the body's vertical bounce at the step
        # rate along gravity.
        amp = np.where(running, 0.9, 0.25) * vigour * env
        unit = orient / np.linalg.norm(orient, axis=1, keepdims=True)
        dyn[:, 1] += amp * np.sin(phase + 0.4)
        dyn[:, 0] += 0.3 * amp * np.cos(2.0 * phase)
        dyn[:, 2] += 0.2 * amp * np.sin(phase - 0.6)
        bounce = np.where(running, 0.6, 0.18) * vigour * env * np.cos(2.0 * phase + 0.3)
        dyn += bounce[:, None] * unit
        # Heel strikes: a short pulse with a rebound, along the vertical (gravity) axis.
        first = np.ceil((steps - 0.08) * hz).astype(np.int64) - round(t[0] * hz)
        width = math.ceil(0.32 * hz) + 1
        idx = first[:, None] + np.arange(width)[None, :]
        tau = (idx + round(t[0] * hz)) / hz - steps[:, None]
        pulse = np.exp(-0.5 * (tau / 0.03) ** 2) - 0.45 * np.exp(-0.5 * ((tau - 0.09) / 0.05) ** 2)
        run_at_step = np.interp(steps, t, running.astype(np.float64)) > 0.5
        spread = 1.0 + 0.2 * smooth_noise(self.seed, "impact", steps, 0.7)[:, 0]
        strength = np.where(run_at_step, 2.0, 0.35) * spread
        ok = (idx >= 0) & (idx < t.size)
        impact = np.zeros(t.size)
        np.add.at(impact, idx[ok], (pulse * strength[:, None])[ok])
        dyn += impact[:, None] * unit

    def _sleep_posture(self, person: Person, t: F64) -> F64:
        """Orientation in bed: fixed between posture shifts, new after each one."""
        h0 = int(t.min() // 3600) - 1
        h1 = int(t.max() // 3600)
        times = np.concatenate([self._event_table(_POSTURE, h)[:, 0] for h in range(h0, h1 + 1)])
        if times.size:
            state = person.state_at(times)
            rate = _POSTURE_RATE[np.maximum(state.stage, 0)]
            u = np.concatenate([self._event_table(_POSTURE, h)[:, 6] for h in range(h0, h1 + 1)])
            keep = (state.kind == _SK[SegmentKind.SLEEP]) & (u * _POSTURE.max_per_h < rate)
            times = times[keep]
        hour_floor = (np.floor(t / 3600.0) - 1.0) * 3600.0
        j = np.searchsorted(times, t, side="right") - 1
        last = np.where(j >= 0, times[np.maximum(j, 0)] if times.size else 0.0, -np.inf)
        key = np.where(last >= hour_floor, np.round(last * 1000.0), -hour_floor - 1.0)
        out = np.empty((t.size, 3))
        for kv in np.unique(key):
            g = rng_for(self.seed, "posture-orient", int(kv)).normal(0.0, 1.0, 3)
            g[2] = abs(g[2]) + 0.3  # a sleeping wrist lies face-up more often than not
            out[key == kv] = g / np.linalg.norm(g)
        return out

    def _event_table(self, ev: _EventKind, hour: int) -> F64:
        """Candidate events of one hour: [start, dur, freq, amp, dir x, dir y, u, dir z]."""
        cached = self._events.get((ev.name, hour))
        if cached is None:
            rng = rng_for(self.seed, ev.name, hour)
            m = int(rng.poisson(ev.max_per_h))
            table = np.empty((m, 8))
            table[:, 0] = np.sort(rng.uniform(0, 3600, m)) + hour * 3600.0
            table[:, 1] = rng.uniform(*ev.dur_s, m)
            table[:, 2] = rng.uniform(*ev.freq_hz, m)
            log_lo, log_hi = math.log(ev.amp_g[0]), math.log(ev.amp_g[1])
            table[:, 3] = np.exp(rng.uniform(log_lo, log_hi, m))
            d = rng.normal(0.0, 1.0, (m, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            table[:, 4], table[:, 5], table[:, 7] = d[:, 0], d[:, 1], d[:, 2]
            table[:, 6] = rng.random(m)
            if len(self._events) > 24:
                self._events.pop(next(iter(self._events)))
            self._events[(ev.name, hour)] = table
            cached = table
        return cached

    def _add_events(self, ev: _EventKind, person: Person, t: F64, dyn: F64, rate_of: _Rate) -> None:
        lo, hi = float(t[0]) - _MAX_EVENT_S, float(t[-1])
        tables = [self._event_table(ev, h) for h in range(int(lo // 3600), int(hi // 3600) + 1)]
        tab = np.concatenate(tables)
        tab = tab[(tab[:, 0] + tab[:, 1] > t[0]) & (tab[:, 0] <= hi)]
        if tab.size == 0:
            return
        rate = rate_of(tab[:, 0])
        tab = tab[tab[:, 6] * ev.max_per_h < rate]
        if tab.size == 0:
            return
        hz = self.acc_hz
        base = round(t[0] * hz)
        first = np.ceil(tab[:, 0] * hz).astype(np.int64) - base
        count = np.ceil(tab[:, 1] * hz).astype(np.int64)
        owner = np.repeat(np.arange(len(tab)), count)
        offs = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
        idx = first[owner] + offs
        ok = (idx >= 0) & (idx < t.size)
        owner, idx = owner[ok], idx[ok]
        tau = (idx + base) / hz - tab[owner, 0]
        window = np.sin(np.pi * np.clip(tau / tab[owner, 1], 0.0, 1.0)) ** 2
        wave = tab[owner, 3] * window * np.sin(2 * np.pi * tab[owner, 2] * tau)
        vec = wave[:, None] * tab[owner][:, [4, 5, 7]]
        np.add.at(dyn, idx, vec)

    # ---- PPG --------------------------------------------------------------------------

    def _ppg(
        self, truth: TruthBlock, person: Person, dyn: F64, dyn_t: F64
    ) -> npt.NDArray[np.float32]:
        parts = self._ppg_parts(truth, person, dyn, dyn_t)
        out = parts["dc"] + parts["noise"] + parts["pulse"] + parts["baseline"]
        out += parts["coherent"] + parts["incoherent"]
        return out.astype(np.float32)

    def _ppg_parts(self, truth: TruthBlock, person: Person, dyn: F64, dyn_t: F64) -> dict[str, F64]:
        """The PPG's components, kept apart so that their levels can be checked."""
        hz = self.ppg_hz
        t0 = int(truth.t0)
        i0 = round(t0 * hz)
        n = round(truth.duration_s * hz)
        t = (i0 + np.arange(n)) / hz
        sec = np.minimum((t - t0).astype(np.int64), truth.hr_bpm.size - 1)
        worn = truth.worn[sec]
        zero = np.zeros(n)
        parts = {
            "dc": np.where(worn, _WORN_DC, 0.0),
            "noise": _PPG_NOISE * self._ppg_noise.take(i0, i0 + n)[:, 0],
            "pulse": zero,
            "baseline": zero,
            "coherent": zero,
            "incoherent": zero,
        }
        if not np.any(worn):
            return parts

        beats = person.beat_times(float(t[0]) - 4.0, float(t[-1]) + 4.0) + _PULSE_DELAY_S
        resp = person.respiration_phase(t)
        temp = person.skin_temperature(t0, int(truth.duration_s))[sec]
        if beats.size >= 2:
            j = np.clip(np.searchsorted(beats, t, side="right") - 1, 0, beats.size - 2)
            period = beats[j + 1] - beats[j]
            phi = (t - beats[j]) / period
            valid = (phi >= 0.0) & (phi < 1.0)
            wave = self._pulse_wave(phi)
            beat_var = 1.0 + 0.04 * smooth_noise(self.seed, "pulse-amp", beats[j], 0.9)[:, 0]
            perfusion = np.clip(1.0 + 0.12 * (temp - 33.0), 0.5, 1.5)
            exertion = np.clip((truth.hr_bpm[sec] - 60.0) / 120.0, 0.0, 1.0)
            amp = _PULSE_AC * perfusion * (1.0 - 0.35 * exertion) * beat_var
            amp = amp * (1.0 + 0.08 * np.sin(resp))  # respiratory amplitude modulation
            parts["pulse"] = np.where(worn & valid, amp * wave, 0.0)

        drift = smooth_noise(self.seed, "ppg-drift", t, 30.0)[:, 0]
        parts["baseline"] = np.where(worn, 0.25 * np.sin(resp + 0.5) + 0.8 * drift, 0.0)
        if hz == self.acc_hz and dyn.shape[0] == n:
            motion = dyn
        else:
            motion = np.stack([np.interp(t, dyn_t, dyn[:, a]) for a in range(3)], axis=1)
        coherent, incoherent = self._motion_artefact(motion, t)
        parts["coherent"] = np.where(worn, coherent, 0.0)
        parts["incoherent"] = np.where(worn, incoherent, 0.0)
        return parts

    def _pulse_wave(self, phi: F64) -> F64:
        """One pulse over its beat (``phi`` 0..1): a narrow systolic wave, the dicrotic
        notch, a broader diastolic (reflected) wave of this wearer's own height, and the
        run-off between them. The notch puts most of the pulse's power into its 2nd and
        3rd harmonics, as on real wrist PPG (fundamental share ~0.3 here; see
        docs/simulation.md)."""
        systolic = np.exp(-0.5 * ((phi - _SYSTOLE_PHI) / _SYSTOLE_W) ** 2)
        diastolic = np.exp(-0.5 * ((phi - self._diastole_phi) / _DIASTOLE_W) ** 2)
        mid = 0.5 * (_SYSTOLE_PHI + self._diastole_phi)
        runoff = np.exp(-0.5 * ((phi - mid) / _RUNOFF_W) ** 2)
        return np.asarray(
            systolic + self._diastole_amp * diastolic + _RUNOFF_AMP * runoff, dtype=np.float64
        )

    def _motion_artefact(self, motion: F64, t: F64) -> tuple[F64, F64]:
        """(coherent, incoherent) motion artefact from the wrist's dynamic acceleration.

        Coherent: what a fixed linear/quadratic map of the three axes predicts (the sensor
        pressed against the skin along a device-specific direction, and venous blood moved
        by the size of the jolt). Incoherent: the sensor-skin coupling changing with strap
        pressure and tissue, which the accelerometer does not see: a slow modulation of a
        second projection (so most of it stays at the gait's own frequencies, as in real
        recordings) and a broadband contact term, both in proportion to the movement.
        Levels and their sources: docs/simulation.md.
        """
        linear = motion @ self._artefact_dir
        magnitude = np.einsum("ij,ij->i", motion, motion)
        coherent = _ARTEFACT_GAIN * (linear + _ARTEFACT_QUAD * magnitude)
        modulation = smooth_noise(self.seed, "ppg-coupling", t, _COUPLING_S)[:, 0]
        gait_locked = _COUPLING_DEPTH * modulation * (motion @ self._coupling_dir)
        contact = smooth_noise(self.seed, "ppg-contact", t, _CONTACT_S)[:, 0]
        broadband = _CONTACT_GAIN * np.sqrt(magnitude) * contact
        return coherent, _ARTEFACT_GAIN * (gait_locked + broadband)

    # ---- skin temperature, GNSS ---------------------------------------------------------

    def _skin_temperature(self, truth: TruthBlock, person: Person) -> npt.NDArray[np.float32]:
        t0, n = int(truth.t0), int(truth.duration_s)
        true_c = person.skin_temperature(t0, n)
        noise = self._temp_noise.take(2 * t0, 2 * t0 + 2 * n)[::2, 0]
        measured = true_c + self._skin_offset + 0.05 * noise
        return (np.round(measured * 100.0) / 100.0).astype(np.float32)

    def _gnss(self, truth: TruthBlock, person: Person) -> npt.NDArray[np.float64] | None:
        if not np.any(truth.outdoors):
            return None
        t0, n = int(truth.t0), int(truth.duration_s)
        # A warm start takes ~15 s after stepping outside before the first fix.
        lookback = person.truth(t0 - _TTFF_S, _TTFF_S).outdoors
        out_all = np.concatenate([lookback, truth.outdoors]).astype(np.int64)
        csum = np.concatenate([[0], np.cumsum(out_all)])
        run_ok = (csum[_TTFF_S + 1 :] - csum[1 : n + 1]) == _TTFF_S
        fix = truth.outdoors & run_ok
        if not np.any(fix):
            return None
        secs = np.flatnonzero(fix)
        utc = (t0 + secs).astype(np.float64)
        track = person.gnss_track(t0, n)[secs]
        err = smooth_noise(self.seed, "gnss-err", utc, 20.0, width=3)
        white = self._gnss_noise.take(t0, t0 + n)[secs]
        north = 3.0 * err[:, 0] + 1.0 * white[:, 0]
        east = 3.0 * err[:, 1] + 1.0 * white[:, 1]
        lat = track[:, 0] + np.degrees(north / 6_371_000.0)
        lon = track[:, 1] + np.degrees(east / (6_371_000.0 * np.cos(np.radians(track[:, 0]))))
        alt = track[:, 2] + 8.0 * err[:, 2]
        accuracy = np.round(
            4.0 + 2.5 * np.abs(smooth_noise(self.seed, "gnss-dop", utc, 60.0)[:, 0])
        )
        return np.stack([utc, lat, lon, np.round(alt, 1), accuracy], axis=1)


_TTFF_S = 15


class _Rate:
    """Events per hour actually happening at given start times, from the person's truth."""

    def __init__(self, person: Person, table: F64, by: str) -> None:
        self._person = person
        self._table = table
        self._by = by

    def __call__(self, times: F64) -> F64:
        state = self._person.state_at(times)
        if self._by == "kind":
            awake = state.stage <= int(SleepStage.WAKE)
            return np.where(state.worn & awake, self._table[state.kind], 0.0)
        in_bed = state.kind == _SK[SegmentKind.SLEEP]
        return np.where(in_bed & state.worn, self._table[np.maximum(state.stage, 0)], 0.0)


def _gesture_rate(person: Person) -> _Rate:
    return _Rate(person, _GESTURE_RATE, "kind")


def _stage_rate(person: Person, table: F64) -> _Rate:
    return _Rate(person, table, "stage")
