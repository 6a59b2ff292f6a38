"""The band's battery: charge drained by what is running, refilled on the charger.

A coulomb-counting model of a small Li-ion cell. The caller (the firmware) says how long
passed and what ran (:class:`BatteryLoad`); the battery never reads a clock. Currents are
typical of a wrist band built from common parts (all configurable in
:class:`PowerProfile`): a low-power accelerometer (~10 µA at 25 Hz), a PPG front end whose
LEDs dominate (a few mA while lit, so the duty cycle matters), a GNSS receiver (~20 mA),
BLE advertising and connection events (tens of µA on average) plus the airtime of the
bytes sent, an AMOLED screen (~8 mA) and a vibration motor (~60 mA). With the defaults a
180 mAh band with continuous heart rate (PPG lit 10 % of the time) lasts about 12 days,
in the range such bands are sold with; an hour of GNSS costs about 11 %.

Charging is constant-current (0.5 C) up to 80 %, then tapers linearly to 0.05 C at full,
as a CC/CV charger does. The open-circuit voltage follows a typical Li-ion curve; the
terminal voltage sags with the load current through the cell's internal resistance.

Low charge throttles the sensors (:class:`ThrottleLevel`, which the firmware reads and
obeys); at empty the band shuts down (its flash keeps its data) and powers on again once
the charger has brought it back to :attr:`PowerProfile.power_on_soc`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from protocol.errors import UsageError

#: Open-circuit voltage of a typical LiCoO2/graphite cell against state of charge.
_OCV_SOC = np.array([0.0, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
_OCV_V = np.array([3.30, 3.50, 3.58, 3.65, 3.70, 3.74, 3.77, 3.80, 3.85, 3.91, 3.98, 4.07, 4.18])

_MAX_STEP_S = 60.0  # integrate long intervals in steps so charge tapering and events stay exact


class ThrottleLevel(enum.IntEnum):
    """How much the firmware must cut back; it reads this after every advance."""

    NONE = 0  # everything as configured
    REDUCED = 1  # low battery: PPG at a lower duty cycle, no GNSS
    MINIMAL = 2  # critical: accelerometer only, no PPG, no GNSS, radio advertising slowly
    OFF = 3  # shut down: nothing runs, the flash keeps its data


class BatteryEvent(enum.IntEnum):
    """What changed during an advance (the firmware logs these as telemetry)."""

    LOW = 1  # entered REDUCED or MINIMAL
    SHUTDOWN = 2
    POWER_ON = 3
    CHARGE_START = 4
    CHARGE_STOP = 5
    FULL = 6


@dataclass(frozen=True)
class BatteryLoad:
    """What ran during an interval. Rates are averages over the interval."""

    acc_hz: float = 25.0  # accelerometer output data rate, 0 = off
    ppg_duty: float = 0.1  # fraction of time the PPG LEDs are lit, 0..1
    gnss_on: bool = False
    radio_connected: bool = False
    radio_advertising: bool = True
    bytes_sent: int = 0  # radio payload bytes sent during the interval
    screen_on_s: float = 0.0  # seconds of the interval the screen was lit
    vibration_s: float = 0.0  # seconds the motor ran
    on_charger: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= self.acc_hz <= 1600.0):
            raise UsageError("acc_hz must be between 0 and 1600 Hz")
        if not (0.0 <= self.ppg_duty <= 1.0):
            raise UsageError("ppg_duty must be a fraction between 0 and 1")
        for name in ("bytes_sent", "screen_on_s", "vibration_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise UsageError(f"{name} must be zero or more")


IDLE = BatteryLoad(acc_hz=0.0, ppg_duty=0.0, radio_advertising=False)


@dataclass(frozen=True)
class PowerProfile:
    """Currents (mA) and thresholds of the simulated band; defaults as in the module doc."""

    capacity_mah: float = 180.0
    base_ma: float = 0.1  # MCU in its low-power loop, RTC, regulators
    acc_ma_per_hz: float = 0.0004
    ppg_lit_ma: float = 4.0
    gnss_ma: float = 20.0
    advertising_ma: float = 0.03
    connected_ma: float = 0.06
    mah_per_kib_sent: float = 0.00005  # airtime of 1 KiB at ~5 mA TX, with protocol overhead
    screen_ma: float = 8.0
    vibration_ma: float = 60.0
    self_discharge_ma: float = 0.002  # while off
    internal_resistance_ohm: float = 0.6
    reduced_below_soc: float = 0.20
    minimal_below_soc: float = 0.05
    hysteresis_soc: float = 0.02  # throttling lifts only this far above its threshold
    power_on_soc: float = 0.03
    cutoff_v: float = 3.3

    def __post_init__(self) -> None:
        if not self.capacity_mah > 0:
            raise UsageError("battery capacity_mah must be greater than 0")
        if not 0 <= self.power_on_soc < self.minimal_below_soc < self.reduced_below_soc < 1:
            raise UsageError(
                "battery thresholds must satisfy 0 <= power_on < minimal < reduced < 1"
            )


@dataclass
class BatteryStep:
    """The result of one :meth:`Battery.advance`: events in order, and charge used."""

    events: list[BatteryEvent] = field(default_factory=list)
    drained_mah: float = 0.0
    charged_mah: float = 0.0


class Battery:
    """A band's battery, advanced by the caller with the time that passed and the load."""

    def __init__(self, soc: float = 1.0, profile: PowerProfile | None = None) -> None:
        if not 0.0 <= soc <= 1.0:
            raise UsageError("battery state of charge must be between 0 and 1")
        self.profile = profile or PowerProfile()
        self._charge_mah = soc * self.profile.capacity_mah
        self._on = soc > 0.0
        self._charging = False
        self._load_ma = 0.0
        self._throttle = ThrottleLevel.NONE
        self._throttle = self._throttle_for(self.soc) if self._on else ThrottleLevel.OFF

    # ------------------------------------------------------------------ state

    @property
    def soc(self) -> float:
        """State of charge, 0..1."""
        return self._charge_mah / self.profile.capacity_mah

    @property
    def percent(self) -> int:
        """State of charge as the Battery Level characteristic reports it (0..100)."""
        return round(self.soc * 100)

    @property
    def is_on(self) -> bool:
        return self._on

    @property
    def is_charging(self) -> bool:
        return self._charging

    @property
    def throttle(self) -> ThrottleLevel:
        return self._throttle

    @property
    def open_circuit_voltage(self) -> float:
        return float(np.interp(self.soc, _OCV_SOC, _OCV_V))

    @property
    def voltage(self) -> float:
        """Terminal voltage under the last load (sags by I·R; rises while charging)."""
        current_a = self._load_ma / 1000.0
        if self._charging:
            current_a -= self._charge_current_ma(self.soc) / 1000.0
        return self.open_circuit_voltage - current_a * self.profile.internal_resistance_ohm

    def deplete(self) -> BatteryStep:
        """A fault: the cell is empty now and the band shuts down (charging revives it)."""
        step = BatteryStep()
        self._charge_mah = 0.0
        self._load_ma = 0.0
        if self._on:
            self._on = False
            self._throttle = ThrottleLevel.OFF
            step.events.append(BatteryEvent.SHUTDOWN)
        return step

    def load_current_ma(self, load: BatteryLoad, seconds: float = 1.0) -> float:
        """Average current the band draws under ``load`` over an interval of ``seconds``."""
        p = self.profile
        ma = p.base_ma + load.acc_hz * p.acc_ma_per_hz + load.ppg_duty * p.ppg_lit_ma
        if load.gnss_on:
            ma += p.gnss_ma
        if load.radio_connected:
            ma += p.connected_ma
        elif load.radio_advertising:
            ma += p.advertising_ma
        if seconds > 0:
            on_fraction = min(load.screen_on_s, seconds) / seconds
            buzz_fraction = min(load.vibration_s, seconds) / seconds
            ma += on_fraction * p.screen_ma + buzz_fraction * p.vibration_ma
            ma += load.bytes_sent / 1024.0 * p.mah_per_kib_sent * 3600.0 / seconds
        return ma

    # ------------------------------------------------------------------ time

    def advance(self, seconds: float, load: BatteryLoad = IDLE) -> BatteryStep:
        """Let ``seconds`` pass under ``load``; return the events that happened.

        While the band is off the load is ignored (nothing runs) apart from
        self-discharge; on the charger it charges and powers on when it can.
        """
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise UsageError("battery advance takes a finite, non-negative number of seconds")
        step = BatteryStep()
        if load.on_charger != self._charging:
            self._charging = load.on_charger
            step.events.append(
                BatteryEvent.CHARGE_START if load.on_charger else BatteryEvent.CHARGE_STOP
            )
        # the average current is fixed by the whole interval's load (screen seconds etc.)
        load_ma = self.load_current_ma(load, seconds) if seconds > 0 else 0.0
        remaining = seconds
        while remaining > 0:
            dt = min(remaining, _MAX_STEP_S)
            remaining -= dt
            self._step(dt, load_ma, step)
        self._load_ma = load_ma if self._on else 0.0
        return step

    def _step(self, dt: float, load_ma: float, step: BatteryStep) -> None:
        p = self.profile
        drain_ma = load_ma if self._on else p.self_discharge_ma
        charge_ma = self._charge_current_ma(self.soc) if self._charging else 0.0
        was_full = self._charge_mah >= p.capacity_mah
        drained = drain_ma * dt / 3600.0
        charged = charge_ma * dt / 3600.0
        self._charge_mah = min(p.capacity_mah, max(0.0, self._charge_mah + charged - drained))
        step.drained_mah += drained
        step.charged_mah += charged
        if self._charging and not was_full and self._charge_mah >= p.capacity_mah:
            step.events.append(BatteryEvent.FULL)
        if self._on and (self._charge_mah <= 0.0 or self.open_circuit_voltage <= p.cutoff_v):
            self._on = False
            self._throttle = ThrottleLevel.OFF
            step.events.append(BatteryEvent.SHUTDOWN)
            return
        if not self._on:
            if self._charging and self.soc >= p.power_on_soc:
                self._on = True
                step.events.append(BatteryEvent.POWER_ON)
                self._throttle = self._throttle_for(self.soc)
            return
        new = self._throttle_for(self.soc)
        if new > self._throttle:
            step.events.append(BatteryEvent.LOW)
        self._throttle = new

    def _throttle_for(self, soc: float) -> ThrottleLevel:
        p = self.profile
        current = self._throttle if self._throttle is not ThrottleLevel.OFF else ThrottleLevel.NONE
        if soc < p.minimal_below_soc:
            return ThrottleLevel.MINIMAL
        if soc < p.reduced_below_soc:
            # coming back up from MINIMAL needs the hysteresis margin
            if current is ThrottleLevel.MINIMAL and soc < p.minimal_below_soc + p.hysteresis_soc:
                return ThrottleLevel.MINIMAL
            return ThrottleLevel.REDUCED
        if current >= ThrottleLevel.REDUCED and soc < p.reduced_below_soc + p.hysteresis_soc:
            return ThrottleLevel.REDUCED
        return ThrottleLevel.NONE

    def _charge_current_ma(self, soc: float) -> float:
        c = self.profile.capacity_mah
        if soc >= 1.0:
            return 0.0
        if soc < 0.8:
            return 0.5 * c
        # constant-voltage phase: the current tapers as the cell fills
        return c * (0.5 - (soc - 0.8) / 0.2 * 0.45)

    def __repr__(self) -> str:
        return (
            f"<Battery {self.percent}% {'on' if self._on else 'off'}"
            f"{' charging' if self._charging else ''} throttle={self._throttle.name}>"
        )
