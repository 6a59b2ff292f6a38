"""Byte-exact codecs for the SIG characteristics the band carries.

Layouts follow the Bluetooth SIG GATT Specification Supplement (GSS) and the service
specifications (Heart Rate Service 1.0, User Data Service 1.0, Current Time Service 1.1,
Device Information Service 1.1, Battery Service 1.0). All multi-byte fields are
little-endian. Encoders validate their input and raise :class:`SigEncodeError`;
decoders accept exactly the specified length and raise :class:`SigDecodeError` for
anything else. Neither error message ever contains the value itself.

Where the specification gives two bit patterns one meaning (Heart Rate sensor contact
bits ``01`` and ``00``) or marks bits Reserved for Future Use, the decoder accepts them and
re-encoding yields the canonical form; every other valid value re-encodes to the same bytes.
"""

from __future__ import annotations

import datetime as dt
import enum
import struct
from dataclasses import dataclass
from typing import TypeVar

from protocol.errors import KmebandError, UsageError

# --------------------------------------------------------------------------- errors


class SigCodecError(KmebandError):
    """Base of the SIG characteristic codec errors."""


class SigDecodeError(SigCodecError, ValueError):
    """Bytes that are not a valid value of the characteristic (length, range, flags)."""


class SigEncodeError(SigCodecError, UsageError):
    """A value that the characteristic cannot carry; fix the value before encoding."""


def _need_length(data: bytes, expected: int, what: str) -> None:
    if len(data) != expected:
        raise SigDecodeError(f"{what} must be {expected} bytes, got {len(data)}")


def _check_range(value: int, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SigEncodeError(f"{what} must be an integer")
    if not low <= value <= high:
        raise SigEncodeError(f"{what} must be {low}..{high}")
    return value


_EnumT = TypeVar("_EnumT", bound=enum.IntEnum)


def _member(enum_type: type[_EnumT], value: object, what: str) -> _EnumT:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SigEncodeError(f"{what} must be a {enum_type.__name__}")
    try:
        return enum_type(value)
    except ValueError:
        raise SigEncodeError(f"{what} must be a {enum_type.__name__}") from None


# ------------------------------------------------------------ strings (GAP, DIS)

#: The longest UTF-8 string value the profile gives a string characteristic.
MAX_STRING_BYTES = 248


def encode_utf8s(text: str, *, max_bytes: int = MAX_STRING_BYTES) -> bytes:
    """GSS ``utf8s``: UTF-8 without terminator (Device Name, the DIS strings)."""
    if not isinstance(text, str):
        raise SigEncodeError("a string characteristic value must be a str")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise SigEncodeError("string is not encodable as UTF-8 (lone surrogate)") from None
    if len(data) > max_bytes:
        raise SigEncodeError(f"string is longer than {max_bytes} UTF-8 bytes; shorten it")
    return data


def decode_utf8s(data: bytes) -> str:
    """Decode a ``utf8s`` value; a trailing NUL some devices send is dropped."""
    raw = bytes(data)
    if raw.endswith(b"\x00"):
        raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SigDecodeError("string characteristic is not valid UTF-8") from None


# Appearance (GAP 0x2A01, Assigned Numbers 2.6): category << 6 | subcategory.
APPEARANCE_GENERIC_WATCH = 0x00C0
APPEARANCE_SPORTS_WATCH = 0x00C1
APPEARANCE_GENERIC_HEART_RATE_SENSOR = 0x0340
APPEARANCE_HEART_RATE_BELT = 0x0341


def encode_appearance(value: int) -> bytes:
    """GAP Appearance: uint16 (category in bits 15..6, subcategory in bits 5..0)."""
    return struct.pack("<H", _check_range(value, 0, 0xFFFF, "appearance"))


def decode_appearance(data: bytes) -> int:
    _need_length(data, 2, "Appearance")
    value: int = struct.unpack("<H", data)[0]
    return value


# ------------------------------------------------------------------ Device Information


class VendorIdSource(enum.IntEnum):
    """PnP ID Vendor ID Source (GSS 3.170)."""

    BLUETOOTH_SIG = 1
    USB_IF = 2


@dataclass(frozen=True, slots=True)
class PnpId:
    """PnP ID (0x2A50): vendor id source uint8, vendor id, product id, product version uint16.

    ``product_version`` is BCD-like 0xJJMN (major JJ, minor M, sub-minor N).
    """

    vendor_id_source: VendorIdSource
    vendor_id: int
    product_id: int
    product_version: int


def encode_pnp_id(value: PnpId) -> bytes:
    source = _member(VendorIdSource, value.vendor_id_source, "PnP ID vendor id source")
    return struct.pack(
        "<BHHH",
        source,
        _check_range(value.vendor_id, 0, 0xFFFF, "PnP ID vendor id"),
        _check_range(value.product_id, 0, 0xFFFF, "PnP ID product id"),
        _check_range(value.product_version, 0, 0xFFFF, "PnP ID product version"),
    )


def decode_pnp_id(data: bytes) -> PnpId:
    _need_length(data, 7, "PnP ID")
    source, vendor, product, version = struct.unpack("<BHHH", data)
    if source not in VendorIdSource._value2member_map_:
        raise SigDecodeError("PnP ID vendor id source must be 1 (Bluetooth SIG) or 2 (USB-IF)")
    return PnpId(VendorIdSource(source), vendor, product, version)


# --------------------------------------------------------------------------- Battery


def encode_battery_level(percent: int) -> bytes:
    """Battery Level (0x2A19): uint8 percentage 0..100."""
    return bytes([_check_range(percent, 0, 100, "battery level")])


def decode_battery_level(data: bytes) -> int:
    _need_length(data, 1, "Battery Level")
    if data[0] > 100:
        raise SigDecodeError("Battery Level must be 0..100 percent")
    return data[0]


# ------------------------------------------------------------------------ Heart Rate


class SensorContact(enum.IntEnum):
    """Heart Rate Measurement flags bits 1..2 (bit 2 = supported, bit 1 = detected)."""

    NOT_SUPPORTED = 0  # also sent as 0b01
    NOT_DETECTED = 2
    DETECTED = 3


_HRM_UINT16 = 0x01
_HRM_CONTACT_SHIFT = 1
_HRM_ENERGY = 0x08
_HRM_RR = 0x10
#: Energy Expended saturates at this value (HRS 3.1.1.3).
MAX_ENERGY_EXPENDED_KJ = 0xFFFF


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """Heart Rate Measurement (0x2A37).

    ``bpm`` is the heart rate; ``rr_intervals`` are in units of 1/1024 s, oldest first;
    ``energy_expended_kj`` is cumulative kilojoules or None when not sent.
    The encoder uses the uint8 format when ``bpm`` fits unless ``uint16_format`` is set;
    the decoder sets ``uint16_format`` from the flags.
    """

    bpm: int
    sensor_contact: SensorContact = SensorContact.NOT_SUPPORTED
    energy_expended_kj: int | None = None
    rr_intervals: tuple[int, ...] = ()
    uint16_format: bool = False

    def max_rr_intervals(self, payload_size: int) -> int:
        """How many RR intervals fit in a notification payload of ``payload_size`` bytes."""
        fixed = 1 + (2 if self.uint16_format or self.bpm > 0xFF else 1)
        fixed += 2 if self.energy_expended_kj is not None else 0
        return max(0, (payload_size - fixed) // 2)


def rr_interval_units(seconds: float) -> int:
    """Seconds to the 1/1024 s units of an RR interval (rounded to the nearest unit)."""
    return round(seconds * 1024)


def encode_heart_rate_measurement(value: HeartRateMeasurement) -> bytes:
    bpm = _check_range(value.bpm, 0, 0xFFFF, "heart rate")
    contact = _member(SensorContact, value.sensor_contact, "sensor contact")
    wide = bool(value.uint16_format) or bpm > 0xFF
    flags = (_HRM_UINT16 if wide else 0) | (int(contact) << _HRM_CONTACT_SHIFT)
    body = bytearray(struct.pack("<H", bpm) if wide else bytes([bpm]))
    if value.energy_expended_kj is not None:
        flags |= _HRM_ENERGY
        energy = _check_range(value.energy_expended_kj, 0, 0xFFFF, "energy expended")
        body += struct.pack("<H", energy)
    if value.rr_intervals:
        flags |= _HRM_RR
        for rr in value.rr_intervals:
            body += struct.pack("<H", _check_range(rr, 0, 0xFFFF, "RR interval"))
    return bytes([flags]) + bytes(body)


def decode_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    if not data:
        raise SigDecodeError("Heart Rate Measurement is empty; it needs at least 2 bytes")
    flags = data[0]
    wide = bool(flags & _HRM_UINT16)
    offset = 3 if wide else 2
    if len(data) < offset:
        raise SigDecodeError("Heart Rate Measurement is shorter than its value field")
    bpm = int.from_bytes(data[1:offset], "little")
    contact_bits = (flags >> _HRM_CONTACT_SHIFT) & 0x03
    contact = SensorContact.NOT_SUPPORTED if contact_bits < 2 else SensorContact(contact_bits)
    energy: int | None = None
    if flags & _HRM_ENERGY:
        if len(data) < offset + 2:
            raise SigDecodeError("Heart Rate Measurement flags Energy Expended but it is missing")
        energy = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2
    rest = data[offset:]
    rr: tuple[int, ...] = ()
    if flags & _HRM_RR:
        if len(rest) % 2:
            raise SigDecodeError("Heart Rate Measurement RR-Interval field has an odd length")
        rr = tuple(v for (v,) in struct.iter_unpack("<H", rest))
    elif rest:
        raise SigDecodeError("Heart Rate Measurement has bytes after its last flagged field")
    return HeartRateMeasurement(bpm, contact, energy, rr, wide)


class BodySensorLocation(enum.IntEnum):
    """Body Sensor Location (0x2A38)."""

    OTHER = 0
    CHEST = 1
    WRIST = 2
    FINGER = 3
    HAND = 4
    EAR_LOBE = 5
    FOOT = 6


def encode_body_sensor_location(value: BodySensorLocation) -> bytes:
    return bytes([_member(BodySensorLocation, value, "body sensor location")])


def decode_body_sensor_location(data: bytes) -> BodySensorLocation:
    _need_length(data, 1, "Body Sensor Location")
    if data[0] not in BodySensorLocation._value2member_map_:
        raise SigDecodeError("Body Sensor Location is a reserved value (known: 0..6)")
    return BodySensorLocation(data[0])


#: Heart Rate Control Point (0x2A39) op code: reset Energy Expended to 0.
HR_CONTROL_RESET_ENERGY_EXPENDED = 0x01
#: ATT application error a Heart Rate server answers to an unknown op code (HRS 1.0, 3.3).
HR_CONTROL_POINT_NOT_SUPPORTED = 0x80


def encode_heart_rate_control_point(opcode: int = HR_CONTROL_RESET_ENERGY_EXPENDED) -> bytes:
    """Heart Rate Control Point: one uint8 op code (only 0x01 is defined)."""
    return bytes([_check_range(opcode, 0, 0xFF, "heart rate control point op code")])


def decode_heart_rate_control_point(data: bytes) -> int:
    """The op code; the caller answers any value but 0x01 with error 0x80."""
    _need_length(data, 1, "Heart Rate Control Point")
    return data[0]


# ------------------------------------------------------------------------- User Data


def encode_age(years: int) -> bytes:
    """Age (0x2A80): uint8 years."""
    return bytes([_check_range(years, 0, 0xFF, "age")])


def decode_age(data: bytes) -> int:
    _need_length(data, 1, "Age")
    return data[0]


@dataclass(frozen=True, slots=True)
class DateOfBirth:
    """Date of Birth (0x2A85): year uint16 (1582..9999, 0 = unknown), month, day uint8.

    Month and day are 0 when unknown.
    """

    year: int
    month: int
    day: int


def _check_date_parts(year: int, month: int, day: int, what: str) -> None:
    if year != 0:
        _check_range(year, 1582, 9999, f"{what} year (0 = unknown)")
    _check_range(month, 0, 12, f"{what} month (0 = unknown)")
    _check_range(day, 0, 31, f"{what} day (0 = unknown)")


def encode_date_of_birth(value: DateOfBirth) -> bytes:
    _check_date_parts(value.year, value.month, value.day, "date of birth")
    return struct.pack("<HBB", value.year, value.month, value.day)


def decode_date_of_birth(data: bytes) -> DateOfBirth:
    _need_length(data, 4, "Date of Birth")
    year, month, day = struct.unpack("<HBB", data)
    try:
        _check_date_parts(year, month, day, "Date of Birth")
    except SigEncodeError as exc:
        raise SigDecodeError(str(exc)) from None
    return DateOfBirth(year, month, day)


class Gender(enum.IntEnum):
    """Gender (0x2A8C)."""

    MALE = 0
    FEMALE = 1
    UNSPECIFIED = 2


def encode_gender(value: Gender) -> bytes:
    return bytes([_member(Gender, value, "gender")])


def decode_gender(data: bytes) -> Gender:
    _need_length(data, 1, "Gender")
    if data[0] not in Gender._value2member_map_:
        raise SigDecodeError("Gender is a reserved value (known: 0..2)")
    return Gender(data[0])


def encode_height(centimetres: int) -> bytes:
    """Height (0x2A8E): uint16 in units of 0.01 m, i.e. centimetres."""
    return struct.pack("<H", _check_range(centimetres, 0, 0xFFFF, "height in 0.01 m"))


def decode_height(data: bytes) -> int:
    _need_length(data, 2, "Height")
    value: int = struct.unpack("<H", data)[0]
    return value


#: Weight resolution (0x2A98): one unit is 0.005 kg (5 g).
WEIGHT_UNIT_KG = 0.005


def weight_units(kilograms: float) -> int:
    """Kilograms to Weight units of 0.005 kg (rounded to the nearest unit)."""
    return round(kilograms / WEIGHT_UNIT_KG)


def encode_weight(units: int) -> bytes:
    """Weight (0x2A98): uint16 in units of 0.005 kg (0..327.675 kg)."""
    return struct.pack("<H", _check_range(units, 0, 0xFFFF, "weight in 0.005 kg"))


def decode_weight(data: bytes) -> int:
    _need_length(data, 2, "Weight")
    value: int = struct.unpack("<H", data)[0]
    return value


#: User Index 0xFF means "unknown user" (UDS 1.0, 3.2).
UNKNOWN_USER_INDEX = 0xFF


def encode_user_index(index: int) -> bytes:
    """User Index (0x2A9A): uint8, 0xFF = unknown user."""
    return bytes([_check_range(index, 0, 0xFF, "user index")])


def decode_user_index(data: bytes) -> int:
    _need_length(data, 1, "User Index")
    return data[0]


def encode_database_change_increment(value: int) -> bytes:
    """Database Change Increment (0x2A99): uint32."""
    return struct.pack("<I", _check_range(value, 0, 0xFFFF_FFFF, "database change increment"))


def decode_database_change_increment(data: bytes) -> int:
    _need_length(data, 4, "Database Change Increment")
    value: int = struct.unpack("<I", data)[0]
    return value


class UserControlOpCode(enum.IntEnum):
    """User Control Point (0x2A9F) op codes, UDS 1.0 4.9."""

    REGISTER_NEW_USER = 0x01  # parameter: consent code uint16
    CONSENT = 0x02  # parameters: user index uint8, consent code uint16
    DELETE_USER_DATA = 0x03  # no parameter: the data of the current user
    RESPONSE_CODE = 0x20  # server to client


class UserControlResult(enum.IntEnum):
    """User Control Point response values."""

    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_PARAMETER = 0x03
    OPERATION_FAILED = 0x04
    USER_NOT_AUTHORIZED = 0x05


#: Largest consent code (UDS: 0x0000..0x270F, four decimal digits).
MAX_CONSENT_CODE = 9999


@dataclass(frozen=True, slots=True)
class UserControlRequest:
    """A User Control Point request written by a client.

    REGISTER_NEW_USER needs ``consent_code``; CONSENT needs ``user_index`` and
    ``consent_code``; DELETE_USER_DATA needs neither.
    """

    opcode: UserControlOpCode
    user_index: int | None = None
    consent_code: int | None = None


@dataclass(frozen=True, slots=True)
class UserControlResponse:
    """The server's indication: request op code, result, and for a successful
    REGISTER_NEW_USER the new ``user_index``."""

    request_opcode: UserControlOpCode
    result: UserControlResult
    user_index: int | None = None


def encode_user_control_point(value: UserControlRequest | UserControlResponse) -> bytes:
    if isinstance(value, UserControlResponse):
        request = _member(UserControlOpCode, value.request_opcode, "request op code")
        if request == UserControlOpCode.RESPONSE_CODE:
            raise SigEncodeError("a response cannot answer a response")
        result = _member(UserControlResult, value.result, "user control result")
        out = bytes([UserControlOpCode.RESPONSE_CODE, request, result])
        if value.user_index is not None:
            if not (
                value.request_opcode == UserControlOpCode.REGISTER_NEW_USER
                and value.result == UserControlResult.SUCCESS
            ):
                raise SigEncodeError("only a successful Register New User carries a user index")
            out += bytes([_check_range(value.user_index, 0, 0xFE, "user index")])
        return out
    opcode = _member(UserControlOpCode, value.opcode, "user control op code")
    if opcode == UserControlOpCode.REGISTER_NEW_USER:
        if value.consent_code is None or value.user_index is not None:
            raise SigEncodeError("Register New User takes a consent code and no user index")
        code = _check_range(value.consent_code, 0, MAX_CONSENT_CODE, "consent code")
        return bytes([opcode]) + struct.pack("<H", code)
    if opcode == UserControlOpCode.CONSENT:
        if value.consent_code is None or value.user_index is None:
            raise SigEncodeError("Consent takes a user index and a consent code")
        index = _check_range(value.user_index, 0, 0xFE, "user index")
        code = _check_range(value.consent_code, 0, MAX_CONSENT_CODE, "consent code")
        return struct.pack("<BBH", opcode, index, code)
    if opcode == UserControlOpCode.DELETE_USER_DATA:
        if value.consent_code is not None or value.user_index is not None:
            raise SigEncodeError("Delete User Data takes no parameters")
        return bytes([opcode])
    raise SigEncodeError("a request op code must be 0x01, 0x02 or 0x03")


def decode_user_control_point(data: bytes) -> UserControlRequest | UserControlResponse:
    """Decode a request or a response (op code 0x20).

    A request with an unknown op code raises :class:`SigDecodeError`; a server answers it
    with a response of result OP_CODE_NOT_SUPPORTED (see :func:`peek_user_control_opcode`).
    """
    if not data:
        raise SigDecodeError("User Control Point value is empty")
    opcode = data[0]
    if opcode == UserControlOpCode.RESPONSE_CODE:
        if len(data) not in (3, 4):
            raise SigDecodeError("User Control Point response must be 3 or 4 bytes")
        if data[1] not in (1, 2, 3) or data[2] not in UserControlResult._value2member_map_:
            raise SigDecodeError("User Control Point response has an unknown op code or result")
        request = UserControlOpCode(data[1])
        result = UserControlResult(data[2])
        index: int | None = None
        if len(data) == 4:
            if (
                request != UserControlOpCode.REGISTER_NEW_USER
                or result != UserControlResult.SUCCESS
            ):
                raise SigDecodeError("only a successful Register New User carries a user index")
            index = data[3]
        return UserControlResponse(request, result, index)
    if opcode == UserControlOpCode.REGISTER_NEW_USER:
        _need_length(data, 3, "Register New User")
        code = int.from_bytes(data[1:3], "little")
        _consent_code_in_range(code)
        return UserControlRequest(UserControlOpCode.REGISTER_NEW_USER, consent_code=code)
    if opcode == UserControlOpCode.CONSENT:
        _need_length(data, 4, "Consent")
        code = int.from_bytes(data[2:4], "little")
        _consent_code_in_range(code)
        return UserControlRequest(UserControlOpCode.CONSENT, user_index=data[1], consent_code=code)
    if opcode == UserControlOpCode.DELETE_USER_DATA:
        _need_length(data, 1, "Delete User Data")
        return UserControlRequest(UserControlOpCode.DELETE_USER_DATA)
    raise SigDecodeError("User Control Point op code is not supported (known: 0x01..0x03)")


def _consent_code_in_range(code: int) -> None:
    if code > MAX_CONSENT_CODE:
        raise SigDecodeError(f"consent code must be 0..{MAX_CONSENT_CODE}")


def peek_user_control_opcode(data: bytes) -> int | None:
    """The op code byte of a User Control Point write (None if empty), for error replies."""
    return data[0] if data else None


# ---------------------------------------------------------------------- Current Time


class AdjustReason(enum.IntFlag):
    """Current Time adjust reason bits (CTS 1.1, 3.1.2.1); bits 4..7 are reserved."""

    NONE = 0
    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time (0x2A2B): Exact Time 256 plus Adjust Reason, 10 bytes.

    Date Time: year uint16 (1582..9999, 0 = unknown), month (1..12, 0 = unknown),
    day (1..31, 0 = unknown), hours, minutes, seconds uint8; Day of Week uint8
    (1 = Monday .. 7 = Sunday, 0 = unknown); Fractions256 uint8 (1/256 s).
    """

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int
    day_of_week: int
    fractions256: int = 0
    adjust_reason: AdjustReason = AdjustReason.NONE

    @classmethod
    def from_datetime(
        cls, moment: dt.datetime, adjust_reason: AdjustReason = AdjustReason.NONE
    ) -> CurrentTime:
        """The Current Time of a (local, wall-clock) datetime; fractions from microseconds."""
        return cls(
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.isoweekday(),
            moment.microsecond * 256 // 1_000_000,
            adjust_reason,
        )

    def to_datetime(self, tzinfo: dt.tzinfo | None = None) -> dt.datetime:
        """The wall-clock datetime; raises :class:`SigDecodeError` if a part is unknown."""
        try:
            return dt.datetime(
                self.year,
                self.month,
                self.day,
                self.hours,
                self.minutes,
                self.seconds,
                self.fractions256 * 1_000_000 // 256,
                tzinfo=tzinfo,
            )
        except ValueError:
            raise SigDecodeError(
                "Current Time is not a complete calendar date (unknown or invalid part)"
            ) from None


def _check_current_time(value: CurrentTime, what: str) -> None:
    _check_date_parts(value.year, value.month, value.day, what)
    _check_range(value.hours, 0, 23, f"{what} hours")
    _check_range(value.minutes, 0, 59, f"{what} minutes")
    _check_range(value.seconds, 0, 59, f"{what} seconds")
    _check_range(value.day_of_week, 0, 7, f"{what} day of week (0 = unknown)")
    _check_range(value.fractions256, 0, 255, f"{what} fractions256")
    _check_range(int(value.adjust_reason), 0, 0x0F, f"{what} adjust reason (bits 0..3)")


def encode_current_time(value: CurrentTime) -> bytes:
    _check_current_time(value, "current time")
    return struct.pack(
        "<HBBBBBBBB",
        value.year,
        value.month,
        value.day,
        value.hours,
        value.minutes,
        value.seconds,
        value.day_of_week,
        value.fractions256,
        int(value.adjust_reason),
    )


def decode_current_time(data: bytes) -> CurrentTime:
    _need_length(data, 10, "Current Time")
    parts = struct.unpack("<HBBBBBBBB", data)
    year, month, day, hours, minutes, seconds, weekday, fractions, reason = parts
    # Reserved adjust-reason bits 4..7 are ignored, as the specification asks of clients.
    value = CurrentTime(
        year, month, day, hours, minutes, seconds, weekday, fractions, AdjustReason(reason & 0x0F)
    )
    try:
        _check_current_time(value, "Current Time")
    except SigEncodeError as exc:
        raise SigDecodeError(str(exc)) from None
    return value


#: Local Time Information time zone value meaning "unknown".
TIME_ZONE_UNKNOWN = -128


class DstOffset(enum.IntEnum):
    """Local Time Information DST offset (0x2A2D), the extra time in force."""

    STANDARD_TIME = 0
    HALF_HOUR_DAYLIGHT = 2  # +0.5 h
    DAYLIGHT = 4  # +1 h
    DOUBLE_DAYLIGHT = 8  # +2 h
    UNKNOWN = 255

    @property
    def minutes(self) -> int | None:
        """The offset in minutes, None when unknown."""
        return None if self is DstOffset.UNKNOWN else self.value * 15


@dataclass(frozen=True, slots=True)
class LocalTimeInformation:
    """Local Time Information (0x2A0F): time zone sint8 in 15-minute steps from UTC
    (-48..+56, -128 = unknown), without DST; and the DST offset in force."""

    time_zone: int
    dst_offset: DstOffset

    @classmethod
    def from_offsets(cls, utc_offset_min: int, dst_offset_min: int) -> LocalTimeInformation:
        """From the standard offset and the DST offset in minutes (multiples of 15/30)."""
        if utc_offset_min % 15:
            raise SigEncodeError("time zone offset must be a multiple of 15 minutes")
        dst_units = dst_offset_min // 15
        if dst_offset_min % 15 or dst_units not in DstOffset._value2member_map_:
            raise SigEncodeError("DST offset must be 0, 30, 60 or 120 minutes")
        return cls(utc_offset_min // 15, DstOffset(dst_units))

    @property
    def total_offset_min(self) -> int | None:
        """Standard plus DST offset in minutes, None when either is unknown."""
        dst = DstOffset(self.dst_offset).minutes
        if self.time_zone == TIME_ZONE_UNKNOWN or dst is None:
            return None
        return self.time_zone * 15 + dst


def _check_time_zone(value: int, error: type[SigCodecError]) -> None:
    if value != TIME_ZONE_UNKNOWN and not -48 <= value <= 56:
        raise error("time zone must be -48..56 (15-minute steps) or -128 (unknown)")


def encode_local_time_information(value: LocalTimeInformation) -> bytes:
    _check_range(value.time_zone, -128, 127, "time zone")
    _check_time_zone(value.time_zone, SigEncodeError)
    dst = _member(DstOffset, value.dst_offset, "DST offset")
    return struct.pack("<bB", value.time_zone, dst)


def decode_local_time_information(data: bytes) -> LocalTimeInformation:
    _need_length(data, 2, "Local Time Information")
    zone, dst = struct.unpack("<bB", data)
    _check_time_zone(zone, SigDecodeError)
    if dst not in DstOffset._value2member_map_:
        raise SigDecodeError("DST offset is a reserved value (known: 0, 2, 4, 8, 255)")
    return LocalTimeInformation(zone, DstOffset(dst))
