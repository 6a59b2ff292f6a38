"""SIG characteristic codecs: vectors from the specifications and round-trip properties.

Each vector names the field layout it was written from (GATT Specification Supplement,
GSS, and the service specifications). All fields are little-endian.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ble import sig_codecs as sc
from protocol.ble.sig_codecs import (
    AdjustReason,
    BodySensorLocation,
    CurrentTime,
    DateOfBirth,
    DstOffset,
    Gender,
    HeartRateMeasurement,
    LocalTimeInformation,
    PnpId,
    SensorContact,
    SigDecodeError,
    SigEncodeError,
    UserControlOpCode,
    UserControlRequest,
    UserControlResponse,
    UserControlResult,
    VendorIdSource,
)

# (encoder, decoder, value, wire hex, layout cited)
VECTORS: list[tuple[Callable[[Any], bytes], Callable[[bytes], Any], Any, str]] = [
    # GAP Appearance: uint16; 0x00C1 = category Watch (0x003) << 6 | Sports Watch (1).
    (sc.encode_appearance, sc.decode_appearance, 0x00C1, "c100"),
    # GSS utf8s: UTF-8 bytes, no terminator.
    (sc.encode_utf8s, sc.decode_utf8s, "KME Smart", "4b4d4520536d617274"),
    (sc.encode_utf8s, sc.decode_utf8s, "Größe", "4772c3b6c39f65"),
    # Battery Level: uint8 percent.
    (sc.encode_battery_level, sc.decode_battery_level, 75, "4b"),
    (sc.encode_battery_level, sc.decode_battery_level, 100, "64"),
    # PnP ID: Vendor ID Source uint8, Vendor ID uint16, Product ID uint16, Version uint16.
    (
        sc.encode_pnp_id,
        sc.decode_pnp_id,
        PnpId(VendorIdSource.BLUETOOTH_SIG, 0x0059, 0x1234, 0x0110),
        "01" "5900" "3412" "1001",
    ),
    (
        sc.encode_pnp_id,
        sc.decode_pnp_id,
        PnpId(VendorIdSource.USB_IF, 0x046D, 0xC52B, 0x2401),
        "02" "6d04" "2bc5" "0124",
    ),
    # Heart Rate Measurement: Flags uint8 (bit0 value format, bits1-2 sensor contact,
    # bit3 energy expended present, bit4 RR-interval present), value uint8|uint16,
    # Energy Expended uint16 kJ, RR-Interval uint16 1/1024 s repeated.
    (sc.encode_heart_rate_measurement, sc.decode_heart_rate_measurement,
     HeartRateMeasurement(72), "00" "48"),
    (sc.encode_heart_rate_measurement, sc.decode_heart_rate_measurement,
     HeartRateMeasurement(72, uint16_format=True), "01" "4800"),
    (sc.encode_heart_rate_measurement, sc.decode_heart_rate_measurement,
     HeartRateMeasurement(60, SensorContact.NOT_DETECTED), "04" "3c"),
    (sc.encode_heart_rate_measurement, sc.decode_heart_rate_measurement,
     HeartRateMeasurement(72, SensorContact.DETECTED, rr_intervals=(1024,)), "16" "48" "0004"),
    (sc.encode_heart_rate_measurement, sc.decode_heart_rate_measurement,
     HeartRateMeasurement(300, SensorContact.DETECTED, 0x0123, uint16_format=True),
     "0f" "2c01" "2301"),
    (sc.encode_heart_rate_measurement, sc.decode_heart_rate_measurement,
     HeartRateMeasurement(150, SensorContact.DETECTED, 512, (410, 399)),
     "1e" "96" "0002" "9a01" "8f01"),
    # Body Sensor Location: uint8 enum, 2 = Wrist.
    (sc.encode_body_sensor_location, sc.decode_body_sensor_location,
     BodySensorLocation.WRIST, "02"),
    # Heart Rate Control Point: uint8 op code, 0x01 = Reset Energy Expended.
    (sc.encode_heart_rate_control_point, sc.decode_heart_rate_control_point, 0x01, "01"),
    # UDS Age: uint8 years.
    (sc.encode_age, sc.decode_age, 34, "22"),
    # UDS Date of Birth: Year uint16, Month uint8, Day uint8.
    (sc.encode_date_of_birth, sc.decode_date_of_birth, DateOfBirth(1990, 5, 17), "c607" "05" "11"),
    (sc.encode_date_of_birth, sc.decode_date_of_birth, DateOfBirth(0, 0, 0), "0000" "00" "00"),
    # UDS Gender: uint8 enum, 0 male, 1 female, 2 unspecified.
    (sc.encode_gender, sc.decode_gender, Gender.FEMALE, "01"),
    # UDS Height: uint16, resolution 0.01 m: 1.78 m = 178.
    (sc.encode_height, sc.decode_height, 178, "b200"),
    # UDS Weight: uint16, resolution 0.005 kg: 70.5 kg = 14100 = 0x3714.
    (sc.encode_weight, sc.decode_weight, sc.weight_units(70.5), "1437"),
    # UDS User Index: uint8, 0xFF unknown user.
    (sc.encode_user_index, sc.decode_user_index, 0xFF, "ff"),
    # UDS Database Change Increment: uint32.
    (sc.encode_database_change_increment, sc.decode_database_change_increment,
     0x01020304, "04030201"),
    # UDS User Control Point: Op Code uint8, then the op code's parameters.
    (sc.encode_user_control_point, sc.decode_user_control_point,
     UserControlRequest(UserControlOpCode.REGISTER_NEW_USER, consent_code=1234), "01" "d204"),
    (sc.encode_user_control_point, sc.decode_user_control_point,
     UserControlRequest(UserControlOpCode.CONSENT, user_index=0, consent_code=9999),
     "02" "00" "0f27"),
    (sc.encode_user_control_point, sc.decode_user_control_point,
     UserControlRequest(UserControlOpCode.DELETE_USER_DATA), "03"),
    # Response: 0x20, Request Op Code, Response Value, [User Index for Register New User].
    (sc.encode_user_control_point, sc.decode_user_control_point,
     UserControlResponse(UserControlOpCode.REGISTER_NEW_USER, UserControlResult.SUCCESS, 0),
     "20" "01" "01" "00"),
    (sc.encode_user_control_point, sc.decode_user_control_point,
     UserControlResponse(UserControlOpCode.CONSENT, UserControlResult.USER_NOT_AUTHORIZED),
     "20" "02" "05"),
    # CTS Current Time: Exact Time 256 = Day Date Time (Date Time: Year uint16, Month,
    # Day, Hours, Minutes, Seconds uint8; Day of Week uint8) + Fractions256 uint8;
    # then Adjust Reason uint8 (bit0 manual, bit1 external ref, bit2 TZ, bit3 DST).
    (sc.encode_current_time, sc.decode_current_time,
     CurrentTime(2024, 3, 31, 1, 59, 30, 7, 128,
                 AdjustReason.MANUAL_TIME_UPDATE | AdjustReason.CHANGE_OF_TIME_ZONE),
     "e807" "03" "1f" "01" "3b" "1e" "07" "80" "05"),
    # CTS Local Time Information: Time Zone sint8 (15 min), DST Offset uint8 enum.
    (sc.encode_local_time_information, sc.decode_local_time_information,
     LocalTimeInformation(4, DstOffset.DAYLIGHT), "04" "04"),
    (sc.encode_local_time_information, sc.decode_local_time_information,
     LocalTimeInformation(-20, DstOffset.STANDARD_TIME), "ec" "00"),
    (sc.encode_local_time_information, sc.decode_local_time_information,
     LocalTimeInformation(sc.TIME_ZONE_UNKNOWN, DstOffset.UNKNOWN), "80" "ff"),
]  # fmt: skip


@pytest.mark.parametrize(("encode", "decode", "value", "wire"), VECTORS)
def test_specification_vectors(
    encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], value: Any, wire: str
) -> None:
    assert encode(value).hex() == wire
    assert decode(bytes.fromhex(wire)) == value


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("decode", "wire"),
    [
        (sc.decode_battery_level, ""),
        (sc.decode_battery_level, "65"),  # 101 %
        (sc.decode_battery_level, "3232"),
        (sc.decode_pnp_id, "015900341210"),  # 6 bytes
        (sc.decode_pnp_id, "03590034121001"),  # source 3 is reserved
        (sc.decode_heart_rate_measurement, ""),
        (sc.decode_heart_rate_measurement, "00"),  # no value
        (sc.decode_heart_rate_measurement, "0148"),  # uint16 flagged, 1 byte
        (sc.decode_heart_rate_measurement, "0848"),  # energy flagged, missing
        (sc.decode_heart_rate_measurement, "104800"),  # odd RR field
        (sc.decode_heart_rate_measurement, "004800"),  # unflagged trailing byte
        (sc.decode_body_sensor_location, "07"),
        (sc.decode_gender, "03"),
        (sc.decode_date_of_birth, "2d060101"),  # year 1581
        (sc.decode_date_of_birth, "c6070d01"),  # month 13
        (sc.decode_height, "b2"),
        (sc.decode_weight, "143700"),
        (sc.decode_database_change_increment, "040302"),
        (sc.decode_user_control_point, ""),
        (sc.decode_user_control_point, "04"),  # op code not in UDS 1.0
        (sc.decode_user_control_point, "011027"),  # consent code 10000
        (sc.decode_user_control_point, "0300"),
        (sc.decode_user_control_point, "20020100"),  # index on a Consent response
        (sc.decode_user_control_point, "200109"),  # unknown result
        (sc.decode_current_time, "e807031f013b1e0780"),  # 9 bytes
        (sc.decode_current_time, "e807031f183b1e078000"),  # hour 24
        (sc.decode_current_time, "e807031f013b1e088000"),  # day of week 8
        (sc.decode_local_time_information, "3900"),  # zone +57
        (sc.decode_local_time_information, "0003"),  # DST offset 3 reserved
        (sc.decode_utf8s, "c328"),
    ],
)
def test_malformed_values_raise_decode_errors(decode: Callable[[bytes], Any], wire: str) -> None:
    with pytest.raises(SigDecodeError):
        decode(bytes.fromhex(wire))


@pytest.mark.parametrize(
    ("encode", "value"),
    [
        (sc.encode_battery_level, 101),
        (sc.encode_battery_level, True),
        (sc.encode_heart_rate_measurement, HeartRateMeasurement(70000)),
        (sc.encode_heart_rate_measurement, HeartRateMeasurement(70, energy_expended_kj=-1)),
        (sc.encode_heart_rate_measurement, HeartRateMeasurement(70, rr_intervals=(65536,))),
        (sc.encode_heart_rate_measurement, HeartRateMeasurement(70, 1)),  # type: ignore[arg-type]
        (sc.encode_gender, 7),
        (sc.encode_height, -1),
        (sc.encode_weight, 65536),
        (sc.encode_date_of_birth, DateOfBirth(1990, 2, 32)),
        (sc.encode_user_control_point, UserControlRequest(UserControlOpCode.CONSENT)),
        (sc.encode_user_control_point, UserControlRequest(UserControlOpCode.RESPONSE_CODE)),
        (
            sc.encode_user_control_point,
            UserControlResponse(UserControlOpCode.CONSENT, UserControlResult.SUCCESS, 3),
        ),
        (sc.encode_current_time, CurrentTime(2024, 1, 1, 0, 0, 60, 1)),
        (sc.encode_local_time_information, LocalTimeInformation(60, DstOffset.STANDARD_TIME)),
        (sc.encode_pnp_id, PnpId(VendorIdSource.BLUETOOTH_SIG, 0x10000, 0, 0)),
        (sc.encode_utf8s, "x" * 300),
    ],
)
def test_invalid_values_raise_encode_errors(encode: Callable[[Any], bytes], value: Any) -> None:
    with pytest.raises(SigEncodeError):
        encode(value)


def test_errors_do_not_echo_values() -> None:
    with pytest.raises(SigDecodeError) as info:
        sc.decode_date_of_birth(bytes.fromhex("2d060101"))
    assert "1581" not in str(info.value)
    with pytest.raises(SigEncodeError) as info2:
        sc.encode_weight(123456)
    assert "123456" not in str(info2.value)


# ------------------------------------------------------------------ Heart Rate details


def test_uint8_chosen_when_it_fits_and_uint16_when_needed() -> None:
    assert sc.encode_heart_rate_measurement(HeartRateMeasurement(255))[0] & 0x01 == 0
    wide = sc.encode_heart_rate_measurement(HeartRateMeasurement(256))
    assert wide == bytes.fromhex("010001")
    assert sc.decode_heart_rate_measurement(wide).uint16_format is True


def test_contact_bits_01_mean_not_supported_and_rfu_bits_are_ignored() -> None:
    decoded = sc.decode_heart_rate_measurement(bytes.fromhex("e250"))  # bits 1, 5-7
    assert decoded == HeartRateMeasurement(80, SensorContact.NOT_SUPPORTED)
    assert sc.encode_heart_rate_measurement(decoded) == bytes.fromhex("0050")


def test_rr_capacity_of_a_default_mtu_notification() -> None:
    # ATT_MTU 23 leaves 20 payload bytes: flags + uint8 value + 9 RR intervals.
    m = HeartRateMeasurement(70, rr_intervals=tuple(range(800, 809)))
    assert m.max_rr_intervals(20) == 9
    assert len(sc.encode_heart_rate_measurement(m)) == 20
    assert HeartRateMeasurement(70, energy_expended_kj=1).max_rr_intervals(20) == 8


def test_rr_interval_units() -> None:
    assert sc.rr_interval_units(1.0) == 1024
    assert sc.rr_interval_units(0.8) == 819


# ---------------------------------------------------------------------- time helpers


def test_current_time_from_and_to_datetime() -> None:
    moment = dt.datetime(2024, 10, 27, 2, 30, 15, 500_000)  # a Sunday
    ct = CurrentTime.from_datetime(moment, AdjustReason.CHANGE_OF_DST)
    assert (ct.day_of_week, ct.fractions256) == (7, 128)
    assert sc.encode_current_time(ct).hex() == "e8070a1b021e0f078008"
    assert ct.to_datetime() == moment
    with pytest.raises(SigDecodeError):
        CurrentTime(0, 0, 0, 0, 0, 0, 0).to_datetime()


def test_current_time_ignores_reserved_adjust_bits() -> None:
    value = sc.decode_current_time(bytes.fromhex("e807031f013b1e0780f1"))
    assert value.adjust_reason == AdjustReason.MANUAL_TIME_UPDATE


def test_local_time_information_offsets() -> None:
    india = LocalTimeInformation.from_offsets(330, 0)
    assert sc.encode_local_time_information(india).hex() == "1600"
    berlin_summer = LocalTimeInformation.from_offsets(60, 60)
    assert berlin_summer.total_offset_min == 120
    assert LocalTimeInformation(sc.TIME_ZONE_UNKNOWN, DstOffset.DAYLIGHT).total_offset_min is None
    with pytest.raises(SigEncodeError):
        LocalTimeInformation.from_offsets(60, 45)


def test_utf8s_drops_a_trailing_nul() -> None:
    assert sc.decode_utf8s(b"KME\x00") == "KME"


# ---------------------------------------------------------------- round-trip properties

_u16 = st.integers(0, 0xFFFF)

hrm = st.builds(
    HeartRateMeasurement,
    bpm=_u16,
    sensor_contact=st.sampled_from(list(SensorContact)),
    energy_expended_kj=st.none() | _u16,
    rr_intervals=st.lists(_u16, max_size=9).map(tuple),
    uint16_format=st.booleans(),
)
dob = st.builds(
    DateOfBirth,
    year=st.just(0) | st.integers(1582, 9999),
    month=st.integers(0, 12),
    day=st.integers(0, 31),
)
current_time = st.builds(
    CurrentTime,
    year=st.just(0) | st.integers(1582, 9999),
    month=st.integers(0, 12),
    day=st.integers(0, 31),
    hours=st.integers(0, 23),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    day_of_week=st.integers(0, 7),
    fractions256=st.integers(0, 255),
    adjust_reason=st.integers(0, 15).map(AdjustReason),
)
local_time = st.builds(
    LocalTimeInformation,
    time_zone=st.just(sc.TIME_ZONE_UNKNOWN) | st.integers(-48, 56),
    dst_offset=st.sampled_from(list(DstOffset)),
)
pnp = st.builds(PnpId, st.sampled_from(list(VendorIdSource)), _u16, _u16, _u16)
ucp = st.one_of(
    st.builds(
        UserControlRequest,
        st.just(UserControlOpCode.REGISTER_NEW_USER),
        consent_code=st.integers(0, 9999),
    ),
    st.builds(
        UserControlRequest,
        st.just(UserControlOpCode.CONSENT),
        user_index=st.integers(0, 0xFE),
        consent_code=st.integers(0, 9999),
    ),
    st.just(UserControlRequest(UserControlOpCode.DELETE_USER_DATA)),
    st.builds(
        UserControlResponse,
        st.sampled_from(
            [UserControlOpCode.REGISTER_NEW_USER, UserControlOpCode.CONSENT,
             UserControlOpCode.DELETE_USER_DATA]
        ),
        st.sampled_from(list(UserControlResult)),
    ),
    st.builds(
        UserControlResponse,
        st.just(UserControlOpCode.REGISTER_NEW_USER),
        st.just(UserControlResult.SUCCESS),
        st.integers(0, 0xFE),
    ),
)  # fmt: skip

ROUND_TRIPS: list[tuple[str, Callable[[Any], bytes], Callable[[bytes], Any], Any]] = [
    ("battery", sc.encode_battery_level, sc.decode_battery_level, st.integers(0, 100)),
    ("pnp", sc.encode_pnp_id, sc.decode_pnp_id, pnp),
    ("dob", sc.encode_date_of_birth, sc.decode_date_of_birth, dob),
    ("gender", sc.encode_gender, sc.decode_gender, st.sampled_from(list(Gender))),
    ("height", sc.encode_height, sc.decode_height, _u16),
    ("weight", sc.encode_weight, sc.decode_weight, _u16),
    ("age", sc.encode_age, sc.decode_age, st.integers(0, 255)),
    ("index", sc.encode_user_index, sc.decode_user_index, st.integers(0, 255)),
    (
        "dci",
        sc.encode_database_change_increment,
        sc.decode_database_change_increment,
        st.integers(0, 2**32 - 1),
    ),
    ("ucp", sc.encode_user_control_point, sc.decode_user_control_point, ucp),
    ("ct", sc.encode_current_time, sc.decode_current_time, current_time),
    ("lti", sc.encode_local_time_information, sc.decode_local_time_information, local_time),
    (
        "bsl",
        sc.encode_body_sensor_location,
        sc.decode_body_sensor_location,
        st.sampled_from(list(BodySensorLocation)),
    ),
    ("text", sc.encode_utf8s, sc.decode_utf8s, st.text(max_size=60).filter(
        lambda t: not t.endswith("\x00") and len(t.encode("utf-8", "surrogatepass")) <= 248
        and all(not 0xD800 <= ord(c) <= 0xDFFF for c in t)
    )),
]  # fmt: skip


@pytest.mark.parametrize(("encode", "decode", "values"), [r[1:] for r in ROUND_TRIPS],
                         ids=[r[0] for r in ROUND_TRIPS])  # fmt: skip
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(
    encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], values: Any, data: Any
) -> None:
    value = data.draw(values)
    wire = encode(value)
    assert decode(wire) == value
    assert encode(decode(wire)) == wire


@settings(max_examples=200, deadline=None)
@given(hrm)
def test_heart_rate_round_trip(value: HeartRateMeasurement) -> None:
    wire = sc.encode_heart_rate_measurement(value)
    decoded = sc.decode_heart_rate_measurement(wire)
    expected_wide = value.uint16_format or value.bpm > 0xFF
    assert decoded == HeartRateMeasurement(
        value.bpm, value.sensor_contact, value.energy_expended_kj, value.rr_intervals,
        expected_wide,
    )  # fmt: skip
    assert sc.encode_heart_rate_measurement(decoded) == wire


DECODERS = [
    sc.decode_appearance,
    sc.decode_battery_level,
    sc.decode_pnp_id,
    sc.decode_heart_rate_measurement,
    sc.decode_body_sensor_location,
    sc.decode_heart_rate_control_point,
    sc.decode_age,
    sc.decode_date_of_birth,
    sc.decode_gender,
    sc.decode_height,
    sc.decode_weight,
    sc.decode_user_index,
    sc.decode_database_change_increment,
    sc.decode_user_control_point,
    sc.decode_current_time,
    sc.decode_local_time_information,
    sc.decode_utf8s,
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DECODERS), st.binary(max_size=24))
def test_decoders_raise_only_decode_errors(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        decode(data)
    except SigDecodeError:
        return
