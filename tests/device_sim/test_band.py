"""The simulated band as a whole: simulation, consent gating, persistence, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim.band.firmware.alarms import Alarm
from device_sim.band.simulated_band import BandConfig, SimulatedBand, band_address
from device_sim.clock import ManualClock
from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp_bond import Bond
from protocol.ble.smp_pdu import DeviceAddress
from protocol.errors import UsageError
from protocol.kme.records import ConsentCategory, StreamId


def test_summary_week_fills_the_streams_and_the_battery_survives_with_charging() -> None:
    clock = ManualClock()
    band = SimulatedBand(
        BandConfig(seed=3, scenario="office_worker_week", fidelity="summary"), clock
    )
    assert band.simulate_until(clock.now() + 2 * 86400) == 2 * 1440
    assert band.flash.count(StreamId.ACTIVITY_MINUTES) == 2 * 1440
    assert band.flash.count(StreamId.SLEEP_EPOCHS) > 600
    assert band.battery.is_on


def test_signal_hours_are_deterministic_per_seed() -> None:
    def run(seed: int) -> list[object]:
        clock = ManualClock()
        band = SimulatedBand(BandConfig(seed=seed), clock)
        band.simulate_until(clock.now() + 1800)
        return [r.record for r in band.flash.read(StreamId.HR_SAMPLES, 1, 10_000)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_no_location_consent_no_gnss_records() -> None:
    clock = ManualClock()
    granted = tuple(c for c in ConsentCategory if c != ConsentCategory.LOCATION)
    config = BandConfig(seed=2, scenario="athlete_week", fidelity="summary", granted=granted)
    band = SimulatedBand(config, clock)
    band.simulate_until(clock.now() + 86400)
    assert band.flash.count(StreamId.GNSS_FIXES) == 0
    with_gnss = SimulatedBand(
        BandConfig(seed=2, scenario="athlete_week", fidelity="summary"), clock
    )
    with_gnss.simulate_until(clock.now() + 86400)
    assert with_gnss.flash.count(StreamId.GNSS_FIXES) > 0


def test_state_survives_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    config = BandConfig(seed=4, fidelity="summary", state_dir=tmp_path / "band")
    band = SimulatedBand(config, clock)
    band.simulate_until(clock.now() + 3600)
    band.set_consent(ConsentCategory.SLEEP, False)
    count = band.flash.count(StreamId.ACTIVITY_MINUTES)
    band.close()
    again = SimulatedBand(config, clock)
    assert again.flash.count(StreamId.ACTIVITY_MINUTES) == count
    assert not again.consent.is_granted(ConsentCategory.SLEEP)
    assert again.identity == band.identity
    again.close()


def test_bad_config_is_a_typed_error() -> None:
    with pytest.raises(UsageError, match="fidelity"):
        BandConfig(fidelity="hifi")
    with pytest.raises(UsageError, match="15 minutes"):
        BandConfig(tz_offset_min=7)
    assert band_address(1) != band_address(2)
    assert int(band_address(1)[:2], 16) & 0xC0 == 0xC0


def test_summary_bands_run_their_alarms_on_the_estimated_stages() -> None:
    from device_sim.band.firmware.alarms import Alarm
    from protocol.kme.records import AlarmEventKind, SleepStage

    clock = ManualClock()
    band = SimulatedBand(
        BandConfig(seed=3, scenario="office_worker_week", fidelity="summary"), clock
    )
    band.firmware.set_alarm(Alarm(0, 7, 0, weekdays=0x7F, smart_window_min=30), clock.now())
    band.simulate_until(clock.now() + 3 * 86400)
    events = [r.record for r in band.flash.read(StreamId.ALARM_EVENTS, 1, 1000)]
    smart = [e for e in events if e.kind == AlarmEventKind.SMART_FIRED]
    assert smart and all(e.sleep_stage in (SleepStage.LIGHT, SleepStage.WAKE) for e in smart)
    assert all(e.timestamp >= e.set_time - 30 * 60 for e in events)  # never before the window


def test_one_boot_event_and_flash_drops_are_logged_as_telemetry() -> None:
    from protocol.kme.records import TelemetryKind

    clock = ManualClock()
    signal = SimulatedBand(BandConfig(seed=6), clock)
    signal.simulate_until(clock.now() + 600)
    kinds = [r.record.kind for r in signal.flash.read(StreamId.TELEMETRY, 1, 100)]
    assert kinds.count(TelemetryKind.BOOT) == 1

    small = SimulatedBand(BandConfig(seed=6, fidelity="summary", flash_capacity=64 * 1024), clock)
    small.simulate_until(clock.now() + 2 * 86400)
    dropped = {s: small.flash.dropped(s) for s in StreamId if small.flash.dropped(s)}
    assert dropped  # the flash did fill up
    events = [
        r.record
        for r in small.flash.read(StreamId.TELEMETRY, 1, 10_000)
        if r.record.kind == TelemetryKind.RECORDS_DROPPED
    ]
    assert events and all(e.value > 0 and StreamId(e.detail) in dropped for e in events)


@pytest.mark.parametrize("fidelity", ["summary", "signal"])
def test_without_heart_rate_consent_no_stored_minute_keeps_its_heart_rate(fidelity: str) -> None:
    # one consent gate for every record the band stores: the per-field rule (avg_hr needs
    # heart-rate consent) holds for the summary model's records as for the firmware's
    clock = ManualClock()
    granted = tuple(c for c in ConsentCategory if c != ConsentCategory.HEART_RATE)
    band = SimulatedBand(BandConfig(seed=3, fidelity=fidelity, granted=granted), clock)
    band.simulate_until(clock.now() + 1800)
    minutes = band.flash.read(StreamId.ACTIVITY_MINUTES, 0, 10_000)
    assert minutes
    assert all(m.record.avg_hr == 0 for m in minutes)  # type: ignore[union-attr]
    assert band.flash.count(StreamId.HR_SAMPLES) == 0


def test_factory_reset_erases_the_wearer_and_the_owner_and_stays_erased(tmp_path: Path) -> None:
    clock = ManualClock()
    config = BandConfig(seed=4, fidelity="summary", state_dir=tmp_path / "band")
    band = SimulatedBand(config, clock)
    band.simulate_until(clock.now() + 3 * 3600)
    band.profile.update(height_cm=191)
    band.firmware.set_alarm(Alarm(1, 7, 0, 0, 0, True), clock.now())
    band.owner.activate(b"\x01" * 32, b"\x02" * 16)
    address = "C0:11:22:33:44:55"
    band.owner.add_bond(
        address,
        Bond(
            DeviceAddress.parse(address),
            b"\x03" * 16,
            SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS,
        ),
    )
    assert band.flash.count(StreamId.ACTIVITY_MINUTES) > 0
    next_seq = band.flash.next_seq(StreamId.ACTIVITY_MINUTES)
    disconnects: list[str] = []
    band.on_factory_reset(lambda: disconnects.append("links"))
    identity = band.identity.public_key_bytes

    band.factory_reset()
    assert disconnects == ["links"]
    band.simulate_until(clock.now() + 3600)  # nothing is recorded without a new owner's consent
    for check in (band, None):
        if check is None:
            band.close()
            check = SimulatedBand(config, clock)  # the erase is on disk too
        assert all(check.flash.count(s) == 0 for s in StreamId)
        assert check.flash.next_seq(StreamId.ACTIVITY_MINUTES) == next_seq
        assert len(check.consent) == 0 and not any(f.granted for f in check.consent.flags())
        assert check.profile.profile.height_cm != 191
        assert check.firmware.alarms == []
        assert not check.activated and check.owner.bonds == {}
        assert check.identity.public_key_bytes == identity
    check.close()
