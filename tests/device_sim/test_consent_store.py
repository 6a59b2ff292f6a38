"""The band's consent store: flags, the change log, time gating, persistence, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.band.consent_store import (
    ConsentCategoryError,
    ConsentError,
    ConsentStore,
    PolicyVersionError,
)
from device_sim.band.state_file import StateFileCorruptError
from device_sim.clock import ManualClock
from protocol.errors import UsageError
from protocol.kme.control.consent import ConsentFlag, ConsentSource
from protocol.kme.records import ConsentCategory

T0 = 1_767_225_600
LOC = ConsentCategory.LOCATION
HR = ConsentCategory.HEART_RATE


def test_everything_starts_withdrawn() -> None:
    store = ConsentStore(ManualClock(T0))
    assert all(not f.granted and f.policy_version == 0 for f in store.flags())
    assert [f.category for f in store.flags()] == list(ConsentCategory)
    assert not store.is_allowed(LOC, T0 + 10)
    assert len(store) == 0


def test_grant_and_withdraw_are_logged_with_clock_time_and_source() -> None:
    clock = ManualClock(T0 + 0.7)
    store = ConsentStore(clock)
    e1 = store.set(LOC, True, 3, source=ConsentSource.BAND, tz_offset_min=60)
    clock.jump(100)
    e2 = store.withdraw(LOC)
    assert (e1.index, e1.time, e1.granted, e1.source, e1.tz_offset_min) == (
        0, T0, True, ConsentSource.BAND, 60,
    )  # fmt: skip
    assert (e2.index, e2.time, e2.granted, e2.policy_version) == (1, T0 + 100, False, 3)
    assert e2.source is ConsentSource.OWNER_CLIENT
    assert store.log() == [e1, e2]
    assert store.log(1, 5) == [e2]
    assert store.flag(LOC) == ConsentFlag(LOC, False, 3, T0 + 100, 0)


def test_is_allowed_answers_for_the_time_a_record_was_measured() -> None:
    clock = ManualClock(T0)
    store = ConsentStore(clock)
    store.grant(HR, 1)
    clock.jump(3600)
    store.withdraw(HR)
    clock.jump(3600)
    store.grant(HR, 2)
    assert not store.is_allowed(HR, T0 - 1)
    assert store.is_allowed(HR, T0)
    assert store.is_allowed(HR, T0 + 3599.9)
    assert not store.is_allowed(HR, T0 + 3600)
    assert store.is_allowed(HR, T0 + 7200)
    assert not store.is_allowed(LOC, T0 + 7200)  # categories are independent
    assert store.intervals(HR) == [(T0, T0 + 3600), (T0 + 7200, None)]
    assert store.is_granted(HR)


def test_latest_logged_change_wins_when_the_clock_was_set_back() -> None:
    clock = ManualClock(T0 + 1000)
    store = ConsentStore(clock)
    store.grant(LOC, 1)
    clock.jump(-500)  # clock fault
    store.withdraw(LOC)
    assert not store.is_allowed(LOC, T0 + 2000)
    assert not store.is_allowed(LOC, T0 + 600)
    assert not store.is_granted(LOC)


def test_firmware_gate_signature_and_listener() -> None:
    store = ConsentStore(ManualClock(T0))
    seen = []
    unsubscribe = store.subscribe(seen.append)
    gate = store.is_allowed  # Firmware(sink, is_allowed=store.is_allowed)
    store.grant(ConsentCategory.UX_PROGRAM, 1)
    assert gate(ConsentCategory.UX_PROGRAM, float(T0))
    unsubscribe()
    store.withdraw(ConsentCategory.UX_PROGRAM)
    assert [e.index for e in seen] == [0]


def test_factory_reset_erases_the_state_and_the_log(tmp_path: Path) -> None:
    store = ConsentStore.open(tmp_path / "consent.bin", ManualClock(T0))
    store.grant(LOC, 2)
    store.grant(HR, 2)
    store.factory_reset()
    assert not any(f.granted for f in store.flags())
    assert len(store) == 0 and store.log() == []
    assert not store.is_allowed(LOC, T0)  # not even for the past
    reopened = ConsentStore.open(tmp_path / "consent.bin", ManualClock(T0))
    assert len(reopened) == 0
    assert reopened.grant(HR, 3).index == 0


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((99, True, 1), ConsentCategoryError, "99 is not a consent category"),
        (("location", True, 1), ConsentCategoryError, "must be a ConsentCategory"),
        ((True, True, 1), ConsentCategoryError, "must be a ConsentCategory"),
        ((LOC, True, 0), PolicyVersionError, "from 1 to 65535"),
        ((LOC, True, 70_000), PolicyVersionError, "from 1 to 65535"),
        ((LOC, True, "3"), PolicyVersionError, "whole number"),
        ((LOC, 1, 3), ConsentError, "granted must be True"),
    ],
)
def test_invalid_changes_are_typed_errors_and_change_nothing(
    args: tuple[object, ...], error: type[Exception], match: str
) -> None:
    store = ConsentStore(ManualClock(T0))
    with pytest.raises(error, match=match) as info:
        store.set(*args)  # type: ignore[arg-type]
    assert isinstance(info.value, UsageError)
    assert len(store) == 0


def test_a_grant_cannot_go_back_to_an_older_policy() -> None:
    store = ConsentStore(ManualClock(T0))
    store.grant(LOC, 5)
    store.withdraw(LOC)
    with pytest.raises(PolicyVersionError, match="already accepted under policy version 5"):
        store.grant(LOC, 4)
    store.grant(LOC, 6)
    assert store.flag(LOC).policy_version == 6


def test_bad_timezone_and_unset_clock_are_refused() -> None:
    store = ConsentStore(ManualClock(T0))
    with pytest.raises(ConsentError, match="tz_offset_min"):
        store.grant(LOC, 1, tz_offset_min=2000)
    with pytest.raises(ConsentError, match="clock is not set"):
        ConsentStore(ManualClock(-5.0)).grant(LOC, 1)
    with pytest.raises(ConsentCategoryError):
        store.is_allowed(0, T0)  # type: ignore[arg-type]


def test_log_survives_a_restart_in_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "consent.bin"
    clock = ManualClock(T0)
    store = ConsentStore.open(path, clock)
    store.grant(LOC, 2, source=ConsentSource.BAND)
    clock.jump(60)
    store.withdraw(LOC)
    store.grant(HR, 3)
    assert path.stat().st_mode & 0o777 == 0o600
    again = ConsentStore.open(path, clock)
    assert again.log() == store.log()
    assert again.flags() == store.flags()
    assert again.is_allowed(LOC, T0 + 30) and not again.is_allowed(LOC, T0 + 60)


def test_corrupt_consent_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "consent.bin"
    ConsentStore.open(path, ManualClock(T0)).grant(LOC, 1)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(StateFileCorruptError, match="move the file away"):
        ConsentStore.open(path, ManualClock(T0))
    assert path.read_bytes() == bytes(data)


changes = st.lists(
    st.tuples(st.sampled_from(list(ConsentCategory)), st.booleans(), st.integers(-50, 400)),
    max_size=30,
)


@given(changes=changes, probes=st.lists(st.integers(-100, 8000), max_size=20))
def test_is_allowed_matches_the_definition_on_any_history(
    changes: list[tuple[ConsentCategory, bool, int]], probes: list[int]
) -> None:
    clock = ManualClock(T0)
    store = ConsentStore(clock)
    for category, granted, step in changes:
        clock.jump(step)  # may go back: clock faults
        store.set(category, granted, 1)
    for category in ConsentCategory:
        for p in probes:
            t = T0 + p
            # definition: the latest-logged change stamped at or before t decides
            deciding = [e for e in store.log() if e.category is category and e.time <= t]
            expected = bool(deciding) and deciding[-1].granted
            assert store.is_allowed(category, t) is expected
