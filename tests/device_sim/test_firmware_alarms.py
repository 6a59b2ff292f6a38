"""Alarm settings, occurrences in local time, smart windows, snooze, dismiss, missed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.band.firmware.alarms import Alarm, AlarmError, AlarmScheduler
from device_sim.band.firmware.scoring import AlarmOutcome
from device_sim.band.firmware.sleep import EpochFeatures, SleepConfig, SleepTracker
from protocol.errors import UsageError
from protocol.kme.records import AlarmEventKind, SleepStage

T0 = 1_767_225_600  # Thursday 2026-01-01 00:00 UTC
H = 3600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": 256},
        {"id": -1},
        {"hour": 24},
        {"minute": 60},
        {"weekdays": 128},
        {"smart_window_min": 61},
        {"smart_window_min": -5},
        {"enabled": 1},
    ],
)
def test_invalid_alarms_raise_a_typed_error(kwargs: dict) -> None:
    base = {"id": 1, "hour": 7, "minute": 0}
    with pytest.raises(AlarmError) as info:
        Alarm(**{**base, **kwargs})
    assert isinstance(info.value, UsageError)
    assert "alarm" in str(info.value) or "window" in str(info.value) or "mask" in str(info.value)


@given(
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(1, 127),
    st.integers(-720, 840),
    st.integers(0, 14 * 86400),
)
def test_next_occurrence_is_on_an_allowed_local_weekday_at_the_set_time(
    hour: int, minute: int, mask: int, tz: int, after: int
) -> None:
    alarm = Alarm(1, hour, minute, mask)
    t = alarm.next_occurrence(T0 + after, tz)
    assert t is not None
    assert T0 + after < t <= T0 + after + 7 * 86400
    local = t + tz * 60
    assert (local % 86400) == hour * 3600 + minute * 60
    weekday = (local // 86400 + 3) % 7
    assert (mask >> weekday) & 1


def test_local_time_uses_the_tz_offset() -> None:
    alarm = Alarm(1, 7, 0)
    assert alarm.next_occurrence(T0, 0) == T0 + 7 * H
    assert alarm.next_occurrence(T0, 120) == T0 + 5 * H  # 07:00 at UTC+2 is 05:00 UTC
    assert Alarm(1, 7, 0, enabled=False).next_occurrence(T0, 0) is None


def test_weekday_mask_skips_days() -> None:
    saturday_only = Alarm(1, 9, 0, weekdays=1 << 5)
    assert saturday_only.next_occurrence(T0, 0) == T0 + 2 * 86400 + 9 * H


def run(scheduler: AlarmScheduler, start: int, end: int, stage_at) -> list:
    events = []
    for now in range(start, end, 30):
        events += scheduler.tick(now, stage_at(now))
    return events


def test_plain_alarm_fires_at_the_set_time_and_dismiss_schedules_the_next_day() -> None:
    s = AlarmScheduler()
    s.set_alarm(Alarm(3, 7, 0), T0)
    events = run(s, T0 + 6 * H, T0 + 7 * H + 60, lambda t: SleepStage.LIGHT)
    assert [(e.kind, e.timestamp) for e in events] == [(AlarmEventKind.FIRED, T0 + 7 * H)]
    assert s.ringing() == [3]
    d = s.dismiss(3, T0 + 7 * H + 40)
    assert d.kind == AlarmEventKind.DISMISSED and d.set_time == T0 + 7 * H
    assert s.next_set_time(3) == T0 + 86400 + 7 * H
    with pytest.raises(AlarmError):
        s.dismiss(3, T0 + 7 * H + 50)


def test_smart_alarm_fires_at_first_light_epoch_inside_the_window_never_before() -> None:
    s = AlarmScheduler()
    s.set_alarm(Alarm(1, 7, 0, smart_window_min=30), T0)
    light_at = T0 + 6 * H + 40 * 60  # 06:40

    def stage(t: int) -> SleepStage:
        # light sleep before the window too: it must not fire there
        if t < T0 + 6 * H + 20 * 60:
            return SleepStage.LIGHT
        return SleepStage.LIGHT if t >= light_at else SleepStage.DEEP

    events = run(s, T0 + 5 * H, T0 + 8 * H, stage)
    assert events[0].kind == AlarmEventKind.SMART_FIRED
    assert events[0].timestamp == light_at
    assert events[0].sleep_stage == SleepStage.LIGHT
    assert events[0].set_time == T0 + 7 * H


def test_smart_alarm_without_light_sleep_fires_at_the_set_time() -> None:
    s = AlarmScheduler()
    s.set_alarm(Alarm(1, 7, 0, smart_window_min=30), T0)
    events = run(s, T0 + 6 * H, T0 + 7 * H + 30, lambda t: SleepStage.DEEP)
    assert [(e.kind, e.timestamp) for e in events] == [(AlarmEventKind.FIRED, T0 + 7 * H)]


def test_snooze_rings_again_after_the_snooze_time() -> None:
    s = AlarmScheduler()
    s.set_alarm(Alarm(1, 7, 0), T0)
    run(s, T0 + 7 * H - 60, T0 + 7 * H + 30, lambda t: None)
    snooze = s.snooze(1, T0 + 7 * H + 20)
    assert snooze.kind == AlarmEventKind.SNOOZED
    events = run(s, T0 + 7 * H + 30, T0 + 7 * H + 12 * 60, lambda t: None)
    assert [(e.kind, e.timestamp) for e in events] == [
        (AlarmEventKind.FIRED, T0 + 7 * H + 20 + 9 * 60)
    ]


def test_unanswered_alarm_snoozes_itself_then_gives_up() -> None:
    s = AlarmScheduler()
    s.set_alarm(Alarm(1, 7, 0), T0)
    events = run(s, T0 + 7 * H - 60, T0 + 9 * H, lambda t: None)
    kinds = [e.kind for e in events]
    fired, snoozed = AlarmEventKind.FIRED, AlarmEventKind.SNOOZED
    assert kinds == [fired, snoozed] * 3 + [fired, AlarmEventKind.DISMISSED]
    assert s.ringing() == []


def test_an_occurrence_passed_while_off_is_missed_and_one_shot_disables() -> None:
    s = AlarmScheduler()
    s.set_alarm(Alarm(9, 7, 0, weekdays=0), T0)
    s.tick(T0 + 6 * H, None)
    events = s.tick(T0 + 8 * H, None)  # the band was off from 06:00 to 08:00
    assert [e.kind for e in events] == [AlarmEventKind.MISSED]
    assert s.alarms[0].enabled is False
    assert s.next_set_time(9) is None


def test_tz_change_moves_a_pending_alarm_to_the_new_local_time() -> None:
    s = AlarmScheduler(tz_offset_min=0)
    s.set_alarm(Alarm(1, 7, 0), T0)
    s.set_tz_offset(60, T0 + H)
    assert s.next_set_time(1) == T0 + 6 * H
    s.remove_alarm(1)
    with pytest.raises(AlarmError):
        s.remove_alarm(1)


# -- what the smart alarm may act on: the sleep tracker's confident stage ----------------


def still_epoch(i: int, hr: float) -> EpochFeatures:
    return EpochFeatures(T0 + 30 * i, 0.0, 0, hr, 0.5, True, 0.0)


def confident_stages(hrs: list[float]) -> list[SleepStage | None]:
    tracker = SleepTracker()
    out = []
    for i, hr in enumerate(hrs):
        tracker.add(still_epoch(i, hr), 0)
        out.append(tracker.confident_stage())
    return out


def test_confident_light_needs_a_sustained_run_of_sure_epochs() -> None:
    light, rem = 57.0, 57.0 * 1.055  # REM brings the heart rate ~5 % above light sleep
    stages = confident_stages([light] * 80 + [rem] * 20 + [light] * 20)
    assert stages[79] == SleepStage.LIGHT  # a quiet wrist, a steady low rate: light sleep
    assert SleepStage.LIGHT not in stages[80:100]  # never while the rate sits at REM level
    back = stages[100:].index(SleepStage.LIGHT)
    assert back >= SleepConfig().alarm_sure_epochs - 1


def test_light_sleep_with_a_rising_heart_rate_is_not_acted_on() -> None:
    light = 57.0
    steady = confident_stages([light] * 80 + [light] * 3)
    rising = confident_stages([light] * 80 + [light * 1.035] * 3)
    assert steady[80] == SleepStage.LIGHT
    assert rising[80] is None  # on its way into REM (or awake): wait and see


def test_beat_to_beat_variability_tells_rem_from_light_where_the_rate_cannot() -> None:
    # the rate wanders 2-3 % within a stage: here it sits between light and REM levels
    def stages(rmssd_ms: float) -> list[SleepStage | None]:
        tracker = SleepTracker()
        out = []
        for i in range(120):
            hr, rmssd = (57.0, 40.0) if i < 80 else (57.0 * 1.03, rmssd_ms)
            tracker.add(EpochFeatures(T0 + 30 * i, 0.0, 0, hr, 0.5, True, 0.0, rmssd), 0)
            out.append(tracker.current_stage())
        return out

    low, same = stages(40.0 * 0.86), stages(40.0)  # REM's RMSSD is ~14 % under light's
    assert low[110:].count(SleepStage.REM) > same[110:].count(SleepStage.REM)
    assert same[110:].count(SleepStage.LIGHT) > low[110:].count(SleepStage.LIGHT)


def test_no_confident_stage_outside_a_sleep_period() -> None:
    tracker = SleepTracker()
    for i in range(10):
        tracker.add(EpochFeatures(T0 + 30 * i, 0.05, 20, 90.0, 3.0, True, 0.5), 0)
        assert tracker.confident_stage() is None


# -- how the accuracy bench counts a smart alarm -------------------------------------------


@pytest.mark.parametrize(
    ("fired_at", "light", "stage", "ok"),
    [
        (T0 + 600, True, SleepStage.LIGHT, True),
        (T0 + 600, True, SleepStage.WAKE, True),  # already awake: wakes no one from sleep
        (T0 + 600, True, SleepStage.REM, False),
        (T0 + 1800, True, SleepStage.DEEP, False),  # at the set time, but light was missed
        (T0 + 1800, False, SleepStage.REM, True),  # no light sleep to find: the set time
        (T0 - 30, True, SleepStage.LIGHT, False),  # before the window opened
        (T0 + 1830, True, SleepStage.LIGHT, False),  # after the set time
        (None, False, -1, False),  # never rang
    ],
)
def test_alarm_outcome_counts_the_issue_target(
    fired_at: int | None, light: bool, stage: int, ok: bool
) -> None:
    outcome = AlarmOutcome(fired_at, T0, light, int(stage), T0 + 1800)
    assert outcome.ok is ok
