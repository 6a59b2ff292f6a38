"""A simulated KME Smart band: the firmware's state and simulation, ready for the radio.

:class:`SimulatedBand` puts together the band's identity, flash, consent store, profile
store, battery and firmware with a person model and sensor models (``signal`` fidelity) or
the summary model (``summary`` fidelity), and runs them on a :class:`~device_sim.clock.Clock`
in fixed blocks. Its radio side (advertising, GATT, pairing) is
:class:`device_sim.band.gatt_endpoint.BandGattEndpoint`, which :meth:`SimulatedBand.attach`
puts on a radio.

Time: :meth:`SimulatedBand.simulate_until` processes every whole block up to a simulated
instant as fast as the machine allows (a week of backlog in seconds); :meth:`run` keeps up
with the band's clock in the background (real, accelerated, or manual).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from device_sim.band.battery import Battery, BatteryLoad
from device_sim.band.consent_store import ConsentStore
from device_sim.band.factory import certify
from device_sim.band.firmware.core import Firmware
from device_sim.band.flash import DEFAULT_CAPACITY_BYTES, Flash
from device_sim.band.identity import BandIdentity
from device_sim.band.owner_store import OwnerStore
from device_sim.band.profile_store import ProfileStore
from device_sim.band.summary import SummaryModel
from device_sim.clock import Clock
from device_sim.person.physiology import Person
from device_sim.person.plan import SegmentKind
from device_sim.person.sensors import SensorModel
from protocol.errors import UsageError
from protocol.kme.consent import gate_record
from protocol.kme.control.consent import ConsentSource
from protocol.kme.records import (
    ConsentCategory,
    SleepEpoch,
    SleepStage,
    StreamId,
    TelemetryKind,
)

log = logging.getLogger(__name__)

FIDELITIES = ("signal", "summary")

#: The privacy-policy version simulated bands accept out of the box.
DEFAULT_POLICY_VERSION = 1

#: Categories a simulated band starts with granted (third-party sharing stays off).
DEFAULT_GRANTED: tuple[ConsentCategory, ...] = tuple(
    c for c in ConsentCategory if c != ConsentCategory.THIRD_PARTY_SHARING
)


@dataclass(frozen=True)
class BandConfig:
    """How to build a simulated band.

    ``scenario`` is a person-model preset (see
    :meth:`device_sim.person.physiology.Person.from_preset`);
    ``state_dir``, when given, keeps the band's flash, consent, profile, identity and bonds
    across restarts. ``granted`` lists the consent categories granted at first boot.
    """

    seed: int = 0
    scenario: str = "default_day"
    fidelity: str = "signal"
    tz_offset_min: int = 0
    flash_capacity: int = DEFAULT_CAPACITY_BYTES
    state_dir: Path | None = None
    block_s: int = 60
    name: str = "KME Smart"
    granted: tuple[ConsentCategory, ...] = DEFAULT_GRANTED
    policy_version: int = DEFAULT_POLICY_VERSION
    acc_hz: float = 25.0
    ppg_hz: float = 25.0
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fidelity not in FIDELITIES:
            raise UsageError(f"fidelity must be one of {FIDELITIES}, got {self.fidelity!r}")
        if self.block_s <= 0 or self.block_s % 60:
            raise UsageError("block_s must be a positive whole number of minutes (60, 120, ...)")
        if not -720 <= self.tz_offset_min <= 840 or self.tz_offset_min % 15:
            raise UsageError("tz_offset_min must be -720..840 in steps of 15 minutes")


class RadioActivity(Protocol):
    """What the band's battery model asks of its radio side (the GATT endpoint) per block."""

    @property
    def connected(self) -> bool:
        """Whether a central is connected now."""
        ...

    def take_bytes_sent(self) -> int:
        """Bytes sent on the air since the last call."""
        ...


def band_address(seed: int) -> str:
    """The band's static random Bluetooth address, derived from its seed."""
    raw = bytearray(
        hashlib.sha256(b"kmeband-address" + seed.to_bytes(8, "big", signed=True)).digest()[:6]
    )
    raw[0] |= 0xC0  # a static random address has its two top bits set
    return ":".join(f"{b:02X}" for b in raw)


class SimulatedBand:
    """One simulated band: state, firmware and simulation (radio side in band_gatt)."""

    def __init__(self, config: BandConfig, clock: Clock, *, start: float | None = None) -> None:
        """``start`` is when the band's recorded life begins (default: now, by the clock);
        give an earlier time to simulate a backlog with :meth:`simulate_until`."""
        self.config = config
        self.clock = clock
        self.address = band_address(config.seed)
        state = config.state_dir
        if state is not None:
            state.mkdir(parents=True, exist_ok=True)
            identity_path = state / "identity.bin"
            if identity_path.exists():
                self.identity = BandIdentity.load(identity_path)
            else:
                self.identity = BandIdentity.from_seed(config.seed)
                self.identity.save(identity_path)
            self.flash = Flash.open(
                state / "flash.bin", config.flash_capacity, on_drop=self._on_drop
            )
            consent_path = state / "consent.bin"
            first_boot = not consent_path.exists()
            self.consent = ConsentStore.open(consent_path, clock)
            self.profile = ProfileStore.open(state / "profile.bin")
        else:
            self.identity = BandIdentity.from_seed(config.seed)
            self.flash = Flash(config.flash_capacity, on_drop=self._on_drop)
            self.consent = ConsentStore(clock)
            self.profile = ProfileStore()
            first_boot = True
        #: the factory's certificate of the identity key (protocol.kme.attestation)
        self.certificate = certify(self.identity)
        begin = clock.now() if start is None else start
        if first_boot:
            for category in config.granted:
                self.consent.set(
                    category,
                    True,
                    config.policy_version,
                    source=ConsentSource.BAND,
                    tz_offset_min=config.tz_offset_min,
                    at=begin,
                )
        #: the owner key, account tag and bonds (owner.bin, bonds.bin in the state dir)
        self.owner = OwnerStore(state)
        #: the band's own clock drift from true UTC (set by Current Time writes)
        self.clock_offset_s = 0.0
        self._reset_listeners: list[Callable[[], None]] = []
        self.battery = Battery()
        self.firmware = self._new_firmware(config.tz_offset_min)
        start = int(begin) // config.block_s * config.block_s
        self.person = Person.from_preset(
            config.scenario, seed=config.seed, start_utc=start, tz_offset_min=config.tz_offset_min
        )
        self.sensors = SensorModel(config.seed, acc_hz=config.acc_hz, ppg_hz=config.ppg_hz)
        self.summary = SummaryModel(config.seed)
        self.simulated_until = float(start)
        #: the radio side, asked each block what it did (for the battery's drain)
        self.radio: RadioActivity | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"SimulatedBand(scenario={self.config.scenario!r}, fidelity={self.config.fidelity!r})"
        )

    # -- simulation ----------------------------------------------------------------------
    def simulate_until(self, t: float) -> int:
        """Process every whole block that ends at or before ``t``; returns blocks done."""
        block = self.config.block_s
        done = 0
        while self.simulated_until + block <= t:
            self._step(int(self.simulated_until), block)
            self.simulated_until += block
            done += 1
        if done:
            self.flash.flush()
        return done

    def _step(self, t0: int, duration: int) -> None:
        if not self.battery.is_on:
            return  # a dead band records nothing; its flash keeps what it had
        location = self.consent.is_allowed(ConsentCategory.LOCATION, t0)
        charging_s = sum(
            min(seg.end, t0 + duration) - max(seg.start, t0)
            for seg in self.person.segments(t0, t0 + duration)
            if seg.kind == SegmentKind.CHARGING
        )
        if self.config.fidelity == "summary":
            self.firmware.boot(t0)
            out = self.summary.records(self.person, t0, duration, location_allowed=location)
            gnss_on = False
            stages: dict[int, SleepStage] = {}
            for stream, record in out:
                gnss_on = gnss_on or stream == StreamId.GNSS_FIXES
                if isinstance(record, SleepEpoch):
                    stages[record.start] = record.stage
                # the same gate as the firmware's own records (stream and per-field consent)
                gated = gate_record(stream, record, self.consent.is_allowed)
                if gated is not None:
                    self.flash.append(stream, gated)
            # alarms see the summary model's estimated stage of each 30-second epoch
            for epoch in range(t0, t0 + duration, 30):
                self.firmware.tick_alarms(epoch + 30, stages.get(epoch))
        else:
            truth = self.person.truth(t0, duration)
            block = self.sensors.render(
                truth, self.person, gnss_allowed=location, battery_v=self.battery.voltage
            )
            gnss_on = block.gnss is not None and len(block.gnss) > 0
            self.firmware.process(block)
        load = BatteryLoad(
            acc_hz=self.config.acc_hz,
            gnss_on=gnss_on,
            radio_connected=self.radio is not None and self.radio.connected,
            bytes_sent=0 if self.radio is None else self.radio.take_bytes_sent(),
        )
        # the part of the block spent on the charger charges, the rest drains
        if charging_s:
            self.battery.advance(charging_s, BatteryLoad(acc_hz=0.0, ppg_duty=0.0, on_charger=True))
        if duration - charging_s:
            self.battery.advance(duration - charging_s, load)

    async def run(self) -> None:
        """Keep the simulation up with the clock until cancelled."""
        block = self.config.block_s
        while True:
            self.simulate_until(self.clock.now())
            await self.clock.sleep_until(self.simulated_until + block)

    def start(self) -> None:
        """Run :meth:`run` as a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop the background task and persist the flash."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flash.flush()

    def close(self) -> None:
        self.flash.close()

    # -- consent -------------------------------------------------------------------------
    def set_consent(
        self, category: ConsentCategory, granted: bool, *, policy_version: int | None = None
    ) -> None:
        """Change consent on the band itself (its own screen)."""
        version = policy_version or max(1, self.consent.flag(category).policy_version)
        self.consent.set(
            category,
            granted,
            version,
            source=ConsentSource.BAND,
            tz_offset_min=self.firmware.tz_offset_min,
        )

    # -- owner change --------------------------------------------------------------------
    @property
    def activated(self) -> bool:
        """Whether the band has an owner."""
        return self.owner.activated

    def factory_reset(self) -> None:
        """Erase everything the band knows of its wearer and owner, as docs/protocol.md says.

        Records of every stream (and their drop counts), the consent state and its change
        log, alarms, the user profile, the owner key and account tag, every bond and the
        firmware's running state; then every radio link drops (the listeners added with
        :meth:`on_factory_reset` do that) and the record-sync cursors are forgotten with
        them. Kept: the band's identity key and certificate, its clock and time zone.
        Nothing is recorded afterwards until a new owner grants consent.
        """
        self.flash.erase()
        self.consent.factory_reset()
        self.profile.reset()
        self.owner.clear()
        # a new firmware: alarms and whatever it was still aggregating of the old wearer
        self.firmware = self._new_firmware(self.firmware.tz_offset_min)
        log.info("factory reset")
        for listener in list(self._reset_listeners):
            listener()

    def on_factory_reset(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every factory reset (the radio side drops its links)."""
        self._reset_listeners.append(listener)

    # -- internals -----------------------------------------------------------------------
    def _new_firmware(self, tz_offset_min: int) -> Firmware:
        return Firmware(self.flash, self.consent.is_allowed, tz_offset_min=tz_offset_min)

    def _on_drop(self, stream: StreamId, count: int) -> None:
        # never silent: the flash counts drops per stream, and telemetry says so too (the
        # flash takes this append from inside its callback without dropping again)
        log.info("flash full: dropped %d oldest records of stream %d", count, int(stream))
        self.firmware.telemetry(
            TelemetryKind.RECORDS_DROPPED, self.simulated_until, value=count, detail=int(stream)
        )
