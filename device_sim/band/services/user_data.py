"""User Data Service: the wearer's profile (UDS 1.0) from the band's profile store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from device_sim.band.services.connection import AnswerBytes, BandConnection, Effect, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt import GattRejection
from protocol.ble.sig_codecs import (
    DateOfBirth,
    Gender,
    SigCodecError,
    UserControlOpCode,
    UserControlResult,
    decode_age,
    decode_database_change_increment,
    decode_date_of_birth,
    decode_gender,
    decode_height,
    decode_weight,
    encode_age,
    encode_database_change_increment,
    encode_date_of_birth,
    encode_gender,
    encode_height,
    encode_user_index,
    encode_weight,
    peek_user_control_opcode,
    weight_units,
)
from protocol.kme.profile import (
    AGE,
    DATABASE_CHANGE_INCREMENT,
    DATE_OF_BIRTH,
    GENDER,
    HEIGHT,
    USER_CONTROL_POINT,
    USER_INDEX,
    WEIGHT,
)


class UserDataService:
    """Reads and writes of the profile; the band registers no further users."""

    def __init__(self, band: SimulatedBand) -> None:
        self.band = band

    def handlers(self) -> Service:
        profile = self.band.profile
        return Service(
            reads={
                AGE: lambda c: encode_age(profile.profile.age),
                DATE_OF_BIRTH: lambda c: encode_date_of_birth(
                    DateOfBirth(
                        profile.profile.date_of_birth.year,
                        profile.profile.date_of_birth.month,
                        profile.profile.date_of_birth.day,
                    )
                ),
                GENDER: lambda c: encode_gender(Gender(int(profile.profile.gender))),
                HEIGHT: lambda c: encode_height(profile.profile.height_cm),
                WEIGHT: lambda c: encode_weight(weight_units(profile.profile.weight_kg)),
                USER_INDEX: lambda c: encode_user_index(profile.profile.user_index),
                DATABASE_CHANGE_INCREMENT: lambda c: encode_database_change_increment(
                    profile.profile.database_change_increment
                ),
            },
            writes={
                AGE: lambda c, v: self._update(age=_decoded(decode_age, v)),
                HEIGHT: lambda c, v: self._update(height_cm=_decoded(decode_height, v)),
                WEIGHT: lambda c, v: self._update(weight_kg=_decoded(decode_weight, v) * 0.005),
                GENDER: lambda c, v: self._update(gender=int(_decoded(decode_gender, v))),
                DATE_OF_BIRTH: self._write_date_of_birth,
                DATABASE_CHANGE_INCREMENT: self._write_change_increment,
            },
            raw_requests={USER_CONTROL_POINT: self._user_control},
        )

    def _update(self, **changes: Any) -> None:
        try:
            self.band.profile.update(**changes)
        except Exception:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "value out of range") from None

    def _write_date_of_birth(self, conn: BandConnection, value: bytes) -> None:
        dob = _decoded(decode_date_of_birth, value)
        try:
            date = dt.date(dob.year, dob.month, dob.day)
        except ValueError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad date") from None
        self._update(date_of_birth=date)

    def _write_change_increment(self, conn: BandConnection, value: bytes) -> None:
        self.band.profile.set_change_increment(_decoded(decode_database_change_increment, value))

    @staticmethod
    def _user_control(conn: BandConnection, value: bytes) -> list[Effect]:
        # The band keeps one wearer's data and registers no further users: every op code
        # is answered "Op Code not supported" (UDS 4.9.2), echoing the request's op code.
        op = peek_user_control_opcode(value) or 0
        response = bytes(
            [UserControlOpCode.RESPONSE_CODE, op & 0xFF, UserControlResult.OP_CODE_NOT_SUPPORTED]
        )
        return [AnswerBytes(response)]


def _decoded(decode: Any, value: bytes) -> Any:
    try:
        return decode(value)
    except SigCodecError:
        raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "value cannot be decoded") from None
