"""The fleet's arrival schedule: seeded, within its windows, ending with the closing sync."""

from __future__ import annotations

import pytest

from kmeband.fleet.schedule import (
    DAY_S,
    ArrivalPattern,
    EventKind,
    parse_mix,
    scenario_for,
)
from protocol.errors import UsageError


def test_same_seed_and_band_give_the_same_schedule_and_other_bands_differ() -> None:
    pattern = ArrivalPattern()
    assert pattern.events(3, 7, 2.0) == pattern.events(3, 7, 2.0)
    assert pattern.events(3, 7, 2.0) != pattern.events(3, 8, 2.0)
    assert pattern.events(3, 7, 2.0) != pattern.events(4, 7, 2.0)


def test_syncs_fall_in_the_day_or_night_windows_and_the_last_is_the_closing_sync() -> None:
    pattern = ArrivalPattern(opens_per_day=6, overnight_p=1.0, withdraw_p=0.0)
    for band in range(20):
        events = pattern.events(1, band, 3.0)
        assert events == sorted(events)
        assert events[-1].at == 3 * DAY_S and events[-1].kind is EventKind.SYNC
        for event in events[:-1]:
            hour = (event.at % DAY_S) / 3600
            assert 1.0 <= hour <= 5.0 or 7.0 <= hour <= 23.0
        # every night has its overnight sync (on charge)
        nights = {int(e.at // DAY_S) for e in events[:-1] if (e.at % DAY_S) / 3600 <= 5.0}
        assert nights == {0, 1, 2}


def test_the_rate_of_app_opens_follows_the_pattern() -> None:
    pattern = ArrivalPattern(opens_per_day=5, overnight_p=0.0, withdraw_p=0.0)
    syncs = sum(len(pattern.events(2, band, 10.0)) - 1 for band in range(40))
    assert 4.5 < syncs / 400 < 5.5


def test_no_opens_and_no_nights_leave_only_the_closing_sync() -> None:
    events = ArrivalPattern(opens_per_day=0, overnight_p=0, withdraw_p=0).events(1, 1, 1.0)
    assert [(e.at, e.kind) for e in events] == [(DAY_S, EventKind.SYNC)]


def test_withdrawals_happen_for_the_share_of_wearers_asked_for() -> None:
    pattern = ArrivalPattern(withdraw_p=0.5)
    withdrawing = sum(
        any(e.kind is EventKind.WITHDRAW_LOCATION for e in pattern.events(5, band, 1.0))
        for band in range(200)
    )
    assert 70 < withdrawing < 130


@pytest.mark.parametrize(
    "kwargs",
    [{"opens_per_day": -1}, {"day_start_h": 23, "day_end_h": 7}, {"overnight_p": 1.5}],
)
def test_a_bad_pattern_is_a_usage_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        ArrivalPattern(**kwargs)


def test_scenario_mix_is_parsed_checked_and_drawn_by_weight() -> None:
    mix = parse_mix("office_worker_week=3,athlete_week=1")
    assert mix == (("office_worker_week", 3.0), ("athlete_week", 1.0))
    drawn = [scenario_for(mix, 1, band) for band in range(400)]
    assert 250 < drawn.count("office_worker_week") < 350
    with pytest.raises(UsageError, match="unknown scenario"):
        parse_mix("couch_potato=1")
    with pytest.raises(UsageError, match="not a number"):
        parse_mix("athlete_week=lots")
