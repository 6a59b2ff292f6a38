"""The battery model: drain, charging, voltage, throttling, shutdown and power-on."""

from __future__ import annotations

import pytest

from device_sim.band.battery import (
    IDLE,
    Battery,
    BatteryEvent,
    BatteryLoad,
    PowerProfile,
    ThrottleLevel,
)
from protocol.errors import UsageError

WEAR = BatteryLoad()  # 25 Hz accelerometer, PPG lit 10 %, advertising
DAY = 86_400.0


def test_normal_wear_lasts_about_twelve_days() -> None:
    battery = Battery()
    days = 0
    while battery.is_on and days < 30:
        battery.advance(DAY, WEAR)
        days += 1
    assert 10 <= days <= 14


def test_each_consumer_adds_its_drain() -> None:
    base = Battery().load_current_ma(IDLE)
    assert (
        Battery().load_current_ma(BatteryLoad(ppg_duty=0.5, radio_advertising=False, acc_hz=0))
        > base + 1.5
    )
    gnss = BatteryLoad(gnss_on=True)
    assert Battery().load_current_ma(gnss) - Battery().load_current_ma(WEAR) == pytest.approx(20.0)
    busy = BatteryLoad(screen_on_s=30, vibration_s=1, bytes_sent=200_000)
    assert Battery().load_current_ma(busy, 60.0) > Battery().load_current_ma(WEAR, 60.0) + 4.0


def test_an_hour_of_gnss_costs_about_eleven_percent() -> None:
    battery = Battery()
    step = battery.advance(3600.0, BatteryLoad(gnss_on=True))
    assert 0.10 < 1.0 - battery.soc < 0.13
    assert step.drained_mah == pytest.approx((1.0 - battery.soc) * 180.0)


def test_time_comes_from_the_caller_and_splitting_an_interval_changes_nothing() -> None:
    one, many = Battery(), Battery()
    one.advance(7200.0, WEAR)
    for _ in range(120):
        many.advance(60.0, WEAR)
    assert one.soc == pytest.approx(many.soc, abs=1e-12)


def test_voltage_follows_charge_and_sags_under_load() -> None:
    voltages = []
    for soc in (0.0, 0.1, 0.5, 0.9, 1.0):
        voltages.append(Battery(soc).open_circuit_voltage)
    assert voltages == sorted(voltages)
    assert voltages[0] == pytest.approx(3.30) and voltages[-1] == pytest.approx(4.18)
    battery = Battery(0.5)
    battery.advance(1.0, BatteryLoad(gnss_on=True, vibration_s=1.0))
    assert battery.voltage < battery.open_circuit_voltage - 0.03


def test_low_battery_throttles_then_shuts_down_keeping_events_in_order() -> None:
    battery = Battery(0.25)
    events: list[BatteryEvent] = []
    levels = []
    while battery.is_on:
        events += battery.advance(3600.0, BatteryLoad(gnss_on=True)).events
        levels.append(battery.throttle)
    assert events == [BatteryEvent.LOW, BatteryEvent.LOW, BatteryEvent.SHUTDOWN]
    assert levels == sorted(levels)
    assert ThrottleLevel.REDUCED in levels and ThrottleLevel.MINIMAL in levels
    assert battery.throttle is ThrottleLevel.OFF
    assert battery.soc == 0.0 and battery.percent == 0


def test_off_band_ignores_load_and_powers_on_when_charged() -> None:
    battery = Battery(0.0)
    assert not battery.is_on and battery.throttle is ThrottleLevel.OFF
    battery.advance(3600.0, BatteryLoad(gnss_on=True))
    assert battery.soc == 0.0 and not battery.is_on
    step = battery.advance(300.0, BatteryLoad(on_charger=True))  # 0.5 C: 4 %
    assert step.events[0] is BatteryEvent.CHARGE_START
    assert BatteryEvent.POWER_ON in step.events
    assert battery.is_on and battery.is_charging
    assert battery.throttle is ThrottleLevel.MINIMAL


def test_charging_is_cc_then_tapering_and_reports_full() -> None:
    battery = Battery(0.0)
    on_charger = BatteryLoad(on_charger=True, acc_hz=0, ppg_duty=0)
    battery.advance(1.5 * 3600, on_charger)
    assert battery.soc == pytest.approx(0.75, abs=0.02)  # 0.5 C for 1.5 h
    events = []
    minutes = 0
    while BatteryEvent.FULL not in events:
        events += battery.advance(60.0, on_charger).events
        minutes += 1
    assert battery.soc == 1.0
    assert 40 < minutes < 120  # the taper makes the last 25 % slower than the first
    assert battery.voltage > battery.open_circuit_voltage or battery._charge_current_ma(1.0) == 0
    assert battery.advance(60.0, WEAR).events == [BatteryEvent.CHARGE_STOP]


def test_throttle_lifts_only_past_the_hysteresis_margin_while_charging() -> None:
    battery = Battery(0.19)
    assert battery.throttle is ThrottleLevel.REDUCED
    charger = BatteryLoad(on_charger=True)
    while battery.soc < 0.205:
        battery.advance(5.0, charger)
    assert battery.throttle is ThrottleLevel.REDUCED  # above 20 % but within 2 %
    while battery.soc < 0.225:
        battery.advance(5.0, charger)
    assert battery.throttle is ThrottleLevel.NONE


@pytest.mark.parametrize(
    "make",
    [
        lambda: Battery(1.5),
        lambda: Battery().advance(-1.0),
        lambda: Battery().advance(float("inf")),
        lambda: BatteryLoad(ppg_duty=2.0),
        lambda: BatteryLoad(acc_hz=-1.0),
        lambda: BatteryLoad(bytes_sent=-5),
        lambda: BatteryLoad(screen_on_s=float("nan")),
        lambda: PowerProfile(capacity_mah=0),
        lambda: PowerProfile(minimal_below_soc=0.5),
    ],
)
def test_bad_arguments_are_usage_errors(make: object) -> None:
    with pytest.raises(UsageError):
        make()  # type: ignore[operator]
