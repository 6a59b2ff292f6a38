"""The band's User Data profile: ranges, change increment, persistence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.band.profile_store import (
    DEFAULT_PROFILE,
    Gender,
    ProfileError,
    ProfileStore,
    UserProfile,
)
from device_sim.band.state_file import StateFileCorruptError
from protocol.errors import UsageError


def test_update_validates_and_increments_the_change_increment() -> None:
    store = ProfileStore()
    assert store.profile.database_change_increment == 0
    p = store.update(height_cm=182, weight_kg=77.3)
    assert (p.height_cm, p.weight_kg, p.database_change_increment) == (182, 77.3, 1)
    assert store.update(gender=Gender.FEMALE).database_change_increment == 2
    assert store.profile.height_cm == 182


def test_change_increment_wraps_at_uint32() -> None:
    store = ProfileStore(UserProfile(30, dt.date(1996, 1, 1), Gender.MALE, 170, 70.0, 0, 2**32 - 1))
    assert store.update(age=31).database_change_increment == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("age", 0, "age must be between 1 and 120"),
        ("age", 30.5, "age must be a whole number"),
        ("age", True, "age must be a whole number"),
        ("height_cm", 20, "height_cm must be between 50 and 250"),
        ("weight_kg", 400.0, "weight_kg must be between 10 and 300"),
        ("weight_kg", float("nan"), "weight_kg must be between"),
        ("weight_kg", "70", "weight_kg must be a number"),
        ("gender", 7, "gender must be 0"),
        ("user_index", 255, "user_index must be between 0 and 254"),
        ("date_of_birth", "1990-01-01", "date_of_birth must be a datetime.date"),
        ("date_of_birth", dt.date(1800, 1, 1), "between the years 1900 and 2100"),
    ],
)
def test_invalid_values_are_typed_errors_naming_field_and_range(
    field: str, value: object, message: str
) -> None:
    store = ProfileStore()
    with pytest.raises(ProfileError, match=message) as info:
        store.update(**{field: value})
    assert isinstance(info.value, UsageError)
    assert store.profile == DEFAULT_PROFILE  # nothing changed


@pytest.mark.parametrize(
    ("field", "value"), [("weight_kg", 412.75), ("height_cm", 23), ("age", 137)]
)
def test_error_messages_never_echo_the_rejected_value(field: str, value: object) -> None:
    with pytest.raises(ProfileError) as info:
        ProfileStore().update(**{field: value})
    assert str(value) not in str(info.value)


def test_unknown_fields_and_direct_increment_writes_are_refused() -> None:
    store = ProfileStore()
    with pytest.raises(ProfileError, match="cannot update shoe_size"):
        store.update(shoe_size=44)
    with pytest.raises(ProfileError, match="set_change_increment"):
        store.update(database_change_increment=9)
    store.set_change_increment(9)
    assert store.profile.database_change_increment == 9
    with pytest.raises(ProfileError):
        store.set_change_increment(-1)


def test_weight_is_stored_at_the_uds_resolution() -> None:
    assert ProfileStore().update(weight_kg=70.0026).weight_kg == 70.005


def test_repr_hides_health_data() -> None:
    p = ProfileStore().update(weight_kg=83.5, height_cm=191)
    assert "83.5" not in repr(p) and "191" not in repr(p)
    assert "83.5" not in repr(ProfileStore(p))


def test_profile_persists_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "profile.bin"
    store = ProfileStore.open(path)
    assert store.profile == DEFAULT_PROFILE
    store.update(age=44, date_of_birth=dt.date(1982, 5, 17), weight_kg=81.25, user_index=3)
    assert path.stat().st_mode & 0o777 == 0o600
    again = ProfileStore.open(path)
    assert again.profile == store.profile
    assert again.profile.database_change_increment == 1


def test_corrupt_profile_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "profile.bin"
    ProfileStore.open(path).update(age=50)
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    with pytest.raises(StateFileCorruptError, match="truncated"):
        ProfileStore.open(path)
    assert path.read_bytes() == data[:-4]


@given(
    age=st.integers(1, 120),
    dob=st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)),
    gender=st.sampled_from(Gender),
    height=st.integers(50, 250),
    weight=st.floats(10.0, 300.0),
    index=st.integers(0, 254),
)
def test_every_valid_profile_round_trips_through_its_file(
    tmp_path_factory: pytest.TempPathFactory,
    age: int,
    dob: dt.date,
    gender: Gender,
    height: int,
    weight: float,
    index: int,
) -> None:
    path = tmp_path_factory.mktemp("p") / "profile.bin"
    store = ProfileStore.open(path)
    store.update(
        age=age, date_of_birth=dob, gender=gender, height_cm=height, weight_kg=weight,
        user_index=index,
    )  # fmt: skip
    assert ProfileStore.open(path).profile == store.profile
