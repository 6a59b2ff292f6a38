"""The wearer's User Data profile as the band stores it (the User Data Service's fields).

Age, date of birth, gender, height, weight, the user index and the database change
increment, which goes up by one on every change (or is set by the owner's client, as
the User Data Service lets it). Values are validated against the ranges their UDS
characteristics can carry and a person can have; error messages name the field and the
allowed range but never echo the value (it is health data). Persisted as a checksummed
CBOR file, mode 0600, replaced atomically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from device_sim.band.state_file import StateFileCorruptError, read_checked, write_checked
from protocol.errors import UsageError

_MAGIC = b"KMEPROFL"
_VERSION = 1
_MAX_CHANGE_INCREMENT = 0xFFFF_FFFF  # UDS Database Change Increment is a uint32
WEIGHT_RESOLUTION_KG = 0.005  # UDS Weight characteristic resolution


class ProfileError(UsageError):
    """A profile value is out of range or of the wrong kind."""


class Gender(enum.IntEnum):
    """UDS Gender characteristic values."""

    MALE = 0
    FEMALE = 1
    UNSPECIFIED = 2


def _check_int(name: str, value: object, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{name} must be a whole number")
    if not low <= value <= high:
        raise ProfileError(f"{name} must be between {low} and {high} {unit}".rstrip())


@dataclass(frozen=True, repr=False)
class UserProfile:
    """One wearer's profile; construction validates every field. ``repr`` hides values."""

    age: int  # years
    date_of_birth: dt.date
    gender: Gender
    height_cm: int
    weight_kg: float  # stored at the UDS resolution of 0.005 kg
    user_index: int = 0  # 0..254; 255 is UDS "unknown user"
    database_change_increment: int = 0

    def __post_init__(self) -> None:
        _check_int("age", self.age, 1, 120, "years")
        if not isinstance(self.date_of_birth, dt.date) or isinstance(
            self.date_of_birth, dt.datetime
        ):
            raise ProfileError("date_of_birth must be a datetime.date (year, month, day)")
        if not 1900 <= self.date_of_birth.year <= 2100:
            raise ProfileError("date_of_birth must be between the years 1900 and 2100")
        try:
            object.__setattr__(self, "gender", Gender(self.gender))
        except ValueError:
            raise ProfileError("gender must be 0 (male), 1 (female) or 2 (unspecified)") from None
        _check_int("height_cm", self.height_cm, 50, 250, "cm")
        if isinstance(self.weight_kg, bool) or not isinstance(self.weight_kg, int | float):
            raise ProfileError("weight_kg must be a number of kilograms")
        if not 10.0 <= self.weight_kg <= 300.0:  # also rejects NaN
            raise ProfileError("weight_kg must be between 10 and 300 kg")
        steps = round(self.weight_kg / WEIGHT_RESOLUTION_KG)
        object.__setattr__(self, "weight_kg", round(steps * WEIGHT_RESOLUTION_KG, 3))
        _check_int("user_index", self.user_index, 0, 254, "(255 means unknown user)")
        _check_int(
            "database_change_increment", self.database_change_increment, 0, _MAX_CHANGE_INCREMENT
        )

    def __repr__(self) -> str:
        return f"<UserProfile change_increment={self.database_change_increment}>"


DEFAULT_PROFILE = UserProfile(
    age=30,
    date_of_birth=dt.date(1996, 1, 1),
    gender=Gender.UNSPECIFIED,
    height_cm=170,
    weight_kg=70.0,
)


class ProfileStore:
    """The band's stored profile: read it, change it (the change increment follows)."""

    def __init__(self, profile: UserProfile = DEFAULT_PROFILE, *, path: Path | None = None):
        self._profile = profile
        self._path = path

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], default: UserProfile = DEFAULT_PROFILE
    ) -> ProfileStore:
        """Load the profile file at ``path``; create it from ``default`` if absent."""
        file_path = Path(path)
        if not file_path.exists():
            store = cls(default, path=file_path)
            store._save()
            return store
        payload = read_checked(file_path, _MAGIC, _VERSION)
        try:
            fields = cbor2.loads(payload)
            profile = UserProfile(
                age=fields["age"],
                date_of_birth=dt.date.fromisoformat(fields["dob"]),
                gender=Gender(fields["gender"]),
                height_cm=fields["height_cm"],
                weight_kg=fields["weight_kg"],
                user_index=fields["user_index"],
                database_change_increment=fields["dci"],
            )
        except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError):
            raise StateFileCorruptError(
                file_path, "profile file has a valid checksum but unreadable fields"
            ) from None
        return cls(profile, path=file_path)

    @property
    def profile(self) -> UserProfile:
        return self._profile

    def update(self, **changes: Any) -> UserProfile:
        """Change some fields; the database change increment goes up by one (mod 2**32).

        Raises ProfileError (nothing changes) if a value is invalid or a name unknown.
        """
        fields = {f.name for f in dataclasses.fields(UserProfile)}
        unknown = sorted(set(changes) - fields)
        if unknown or "database_change_increment" in changes:
            raise ProfileError(
                f"cannot update {', '.join(unknown) or 'database_change_increment'}; "
                f"updatable fields are {', '.join(sorted(fields - {'database_change_increment'}))}"
                " (set the increment with set_change_increment)"
            )
        dci = (self._profile.database_change_increment + 1) & _MAX_CHANGE_INCREMENT
        new = dataclasses.replace(self._profile, **changes, database_change_increment=dci)
        self._profile = new
        self._save()
        return new

    def reset(self) -> None:
        """Back to the factory profile (factory reset): the wearer's values are gone."""
        self._profile = DEFAULT_PROFILE
        self._save()

    def set_change_increment(self, value: int) -> None:
        """Store the database change increment the owner's client wrote (UDS behaviour)."""
        self._profile = dataclasses.replace(self._profile, database_change_increment=value)
        self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        p = self._profile
        payload = cbor2.dumps(
            {
                "age": p.age,
                "dob": p.date_of_birth.isoformat(),
                "gender": int(p.gender),
                "height_cm": p.height_cm,
                "weight_kg": p.weight_kg,
                "user_index": p.user_index,
                "dci": p.database_change_increment,
            },
            canonical=True,
        )
        write_checked(self._path, _MAGIC, _VERSION, payload)

    def __repr__(self) -> str:
        # the profile is health data: keep it out of logs
        return f"<ProfileStore change_increment={self._profile.database_change_increment}>"
