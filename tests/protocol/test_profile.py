"""The band's GATT profile: UUIDs, properties, the security of personal data."""

from __future__ import annotations

import re
import uuid

import pytest

from protocol.ble import sig_codecs as sc
from protocol.ble.gatt_model import Permissions, Properties, SecurityLevel
from protocol.ble.uuids import alias16
from protocol.kme import profile as p
from protocol.kme.control.schema import registered_messages

ALL_CHARACTERISTICS = list(p.iter_characteristics(p.BAND_PROFILE))

#: Characteristics that may be read (or subscribed to) before pairing.
OPEN_READS = {
    p.DEVICE_NAME,
    p.APPEARANCE,
    p.MANUFACTURER_NAME,
    p.MODEL_NUMBER,
    p.HARDWARE_REVISION,
    p.FIRMWARE_REVISION,
    p.SOFTWARE_REVISION,
    p.PNP_ID,
    p.BATTERY_LEVEL,
    p.BODY_SENSOR_LOCATION,
    p.CURRENT_TIME,
    p.KME_ACTIVATION_STATE,
}


def test_uuids_are_unique() -> None:
    services = [s.uuid for s in p.BAND_PROFILE]
    chars = [c.uuid for _s, c in ALL_CHARACTERISTICS]
    assert len(set(services)) == len(services)
    assert len(set(chars)) == len(chars)
    assert not set(services) & set(chars)


def test_kme_uuids_follow_the_documented_base() -> None:
    pattern = re.compile(r"^4b4d4500-([0-9a-f]{2})([0-9a-f]{2})-4b4d-8000-000000000000$")
    for service in p.BAND_PROFILE:
        if alias16(service.uuid) is not None:
            assert all(alias16(c.uuid) is not None for c in service.characteristics)
            continue
        match = pattern.match(str(service.uuid))
        assert match and match.group(2) == "00", service.name
        assert service.uuid.version == 4 and service.uuid.variant == uuid.RFC_4122
        for number, characteristic in enumerate(service.characteristics, start=1):
            char_match = pattern.match(str(characteristic.uuid))
            assert char_match, characteristic.name
            assert char_match.group(1) == match.group(1)
            assert int(char_match.group(2), 16) == number
    assert set(p.KME_SERVICE_UUIDS) == {s.uuid for s in p.BAND_PROFILE if alias16(s.uuid) is None}


def test_kme_uuid_rejects_out_of_range_numbers() -> None:
    with pytest.raises(p.UsageError):
        p.kme_uuid(0)
    with pytest.raises(p.UsageError):
        p.kme_uuid(1, 256)


def test_exported_constants_name_every_profile_uuid() -> None:
    exported = {
        value for name, value in vars(p).items() if name.isupper() and isinstance(value, uuid.UUID)
    }
    for service, characteristic in ALL_CHARACTERISTICS:
        assert service.uuid in exported
        assert characteristic.uuid in exported


@pytest.mark.parametrize(
    ("service", "char"), ALL_CHARACTERISTICS, ids=lambda x: getattr(x, "name", "")
)
def test_security_of_every_characteristic(
    service: object, char: p.CharacteristicDefinition
) -> None:
    perms = char.permissions
    reads = bool(char.properties & Properties.READ)
    writes = bool(char.properties & (Properties.WRITE | Properties.WRITE_WITHOUT_RESPONSE))
    pushes = bool(char.properties & (Properties.NOTIFY | Properties.INDICATE))
    # Permissions agree with properties: nothing readable or writable that is not declared.
    assert bool(perms & Permissions.READABLE) == reads
    assert bool(perms & Permissions.WRITABLE) == writes
    needed = SecurityLevel.NO_SECURITY if char.uuid in OPEN_READS else (
        SecurityLevel.AUTHENTICATED_ENCRYPTION
    )  # fmt: skip
    if reads or pushes:
        # The CCCD of a pushed value takes the value's read level (gatt_model).
        assert perms.read_level == needed, char.name
    if writes and char.uuid not in {p.DEVICE_NAME}:
        # Every write changes the band's state or the wearer's data: paired owners only.
        assert perms.write_level == SecurityLevel.AUTHENTICATED_ENCRYPTION, char.name


def test_personal_data_is_never_open() -> None:
    personal = {
        p.SERIAL_NUMBER,
        p.HEART_RATE_MEASUREMENT,
        p.AGE,
        p.DATE_OF_BIRTH,
        p.GENDER,
        p.HEIGHT,
        p.WEIGHT,
        p.LOCAL_TIME_INFORMATION,
        p.KME_RECORD_SYNC_DATA,
        p.KME_RECORD_SYNC_STATUS,
        p.KME_CONSENT_STATE,
        p.KME_CONSENT_CHANGE_LOG,
        p.KME_ALARM_LIST,
        p.KME_BAND_IDENTITY,
    }
    for char_uuid in personal:
        perms = p.find_characteristic(char_uuid).permissions
        assert perms & Permissions.READ_ENCRYPTED and perms & Permissions.READ_AUTHENTICATED


def test_control_points_write_and_indicate() -> None:
    control_points = [c for _s, c in ALL_CHARACTERISTICS if c.name.endswith("Control Point")]
    assert len(control_points) == 7
    for char in control_points:
        if alias16(char.uuid) is None or char.uuid == p.USER_CONTROL_POINT:
            assert char.properties == Properties.WRITE | Properties.INDICATE, char.name
            assert char.permissions == p.PROTECTED_CONTROL_POINT


def test_kme_value_formats_name_registered_messages() -> None:
    registry = registered_messages()
    seen = 0
    for _service, char in ALL_CHARACTERISTICS:
        for name, number in re.findall(r"(\w+) \(0x([0-9A-F]{2})\)", char.value_format):
            assert registry[int(number, 16)].__name__ == name, char.name
            seen += 1
    assert seen >= 20


def test_sig_characteristics_and_properties() -> None:
    expected = {
        p.BATTERY_LEVEL: Properties.READ | Properties.NOTIFY,
        p.HEART_RATE_MEASUREMENT: Properties.NOTIFY,
        p.BODY_SENSOR_LOCATION: Properties.READ,
        p.HEART_RATE_CONTROL_POINT: Properties.WRITE,
        p.CURRENT_TIME: Properties.READ | Properties.WRITE | Properties.NOTIFY,
        p.KME_RECORD_SYNC_DATA: Properties.NOTIFY,
        p.KME_RECORD_SYNC_STATUS: Properties.READ,
    }
    for char_uuid, properties in expected.items():
        assert p.find_characteristic(char_uuid).properties == properties
    for char_uuid in (p.AGE, p.DATE_OF_BIRTH, p.GENDER, p.HEIGHT, p.WEIGHT):
        assert p.find_characteristic(char_uuid).permissions == p.PROTECTED_READ_WRITE


def test_initial_values_decode_with_the_sig_codecs() -> None:
    def initial(char_uuid: uuid.UUID) -> bytes:
        return p.find_characteristic(char_uuid).initial_value

    assert sc.decode_appearance(initial(p.APPEARANCE)) == p.BAND_APPEARANCE == 0x00C1
    assert sc.decode_utf8s(initial(p.DEVICE_NAME)) == p.DEFAULT_DEVICE_NAME
    assert sc.decode_battery_level(initial(p.BATTERY_LEVEL)) == 100
    assert sc.decode_body_sensor_location(initial(p.BODY_SENSOR_LOCATION)) == (
        sc.BodySensorLocation.WRIST
    )
    assert sc.decode_user_index(initial(p.USER_INDEX)) == sc.UNKNOWN_USER_INDEX
    assert sc.decode_database_change_increment(initial(p.DATABASE_CHANGE_INCREMENT)) == 0


def test_fixed_length_values_fit_their_max_length() -> None:
    sizes = {
        p.PNP_ID: 7,
        p.BATTERY_LEVEL: 1,
        p.DATE_OF_BIRTH: 4,
        p.HEIGHT: 2,
        p.WEIGHT: 2,
        p.CURRENT_TIME: 10,
        p.LOCAL_TIME_INFORMATION: 2,
        p.DATABASE_CHANGE_INCREMENT: 4,
    }
    for char_uuid, size in sizes.items():
        assert p.find_characteristic(char_uuid).max_length == size


def test_sig_only_profile_is_a_third_party_heart_rate_band() -> None:
    services = [s.uuid for s in p.SIG_ONLY_PROFILE]
    assert services == [p.DEVICE_INFORMATION_SERVICE, p.BATTERY_SERVICE, p.HEART_RATE_SERVICE]
    for _service, char in p.iter_characteristics(p.SIG_ONLY_PROFILE):
        assert char.permissions.read_level == SecurityLevel.NO_SECURITY
        assert char.permissions.write_level == SecurityLevel.NO_SECURITY
    hrm = p.find_characteristic(p.HEART_RATE_MEASUREMENT, p.SIG_ONLY_PROFILE)
    assert hrm.properties == Properties.NOTIFY
    location = p.find_characteristic(p.BODY_SENSOR_LOCATION, p.SIG_ONLY_PROFILE)
    assert sc.decode_body_sensor_location(location.initial_value) == sc.BodySensorLocation.CHEST
    with pytest.raises(p.UnknownCharacteristicError):
        p.find_characteristic(p.KME_CONSENT_STATE, p.SIG_ONLY_PROFILE)


def test_with_values_sets_initial_values_without_touching_the_original() -> None:
    values = {p.MANUFACTURER_NAME: b"KME", p.SERIAL_NUMBER: b"S-1"}
    changed = p.with_values(p.BAND_PROFILE, values)
    assert p.find_characteristic(p.MANUFACTURER_NAME, changed).initial_value == b"KME"
    assert p.find_characteristic(p.SERIAL_NUMBER, changed).initial_value == b"S-1"
    assert p.find_characteristic(p.MANUFACTURER_NAME).initial_value == b""
    assert [s.uuid for s in changed] == [s.uuid for s in p.BAND_PROFILE]
    with pytest.raises(p.UnknownCharacteristicError, match="not in this profile"):
        p.with_values(p.SIG_ONLY_PROFILE, {p.KME_ALARM_LIST: b""})
