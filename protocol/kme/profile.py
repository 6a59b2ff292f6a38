"""The KME Smart band's GATT profile, as data.

:data:`BAND_PROFILE` lists every service the band exposes, in handle order: the SIG
services in SIG formats (``protocol.ble.sig_codecs``) and the KME services with 128-bit UUIDs
whose control messages are CBOR (``protocol.kme.control``; record sync in
``protocol.kme.record_sync``). :data:`SIG_ONLY_PROFILE` is a third-party heart-rate band that
offers only Device Information, Battery and Heart Rate.

KME UUIDs share one base, ``4b4d4500-SSCC-4b4d-8000-000000000000``: ``4b4d45`` is "KME"
in ASCII, ``SS`` numbers the service (01 Record Sync, 02 Consent, 03 Alarms, 04 Device
Control, 05 Activation/Ownership), ``CC`` is 00 for the service and 01.. for its
characteristics. The version nibble (4) and variant bits (8) make them valid RFC 4122 UUIDs.

Security (docs/protocol.md, "Security"): everything that holds or changes personal data
needs an encrypted link from an authenticated (passkey) pairing. Only what a client must
see before pairing is open: the GAP name and appearance, Device Information except the
serial number, Battery Level, Body Sensor Location, the time of day, and whether the band
is activated.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping

from protocol.ble.gatt_model import (
    OPEN_READ,
    PROTECTED_READ,
    PROTECTED_READ_WRITE,
    CharacteristicDefinition,
    Permissions,
    Properties,
    ServiceDefinition,
)
from protocol.ble.uuids import uuid16
from protocol.errors import UsageError

# ----------------------------------------------------------------------- permissions

#: A value that is never read but whose notifications/indications carry personal data:
#: the encryption bits make the CCCD (subscribing) need an authenticated link.
PROTECTED_NOTIFY_ONLY = Permissions.READ_ENCRYPTED | Permissions.READ_AUTHENTICATED
#: A write-only value (a control point) that needs an authenticated link to write and to
#: subscribe to its indications.
PROTECTED_CONTROL_POINT = (
    Permissions.WRITABLE
    | Permissions.WRITE_ENCRYPTED
    | Permissions.WRITE_AUTHENTICATED
    | Permissions.READ_ENCRYPTED
    | Permissions.READ_AUTHENTICATED
)
#: Readable by anyone, writable only on an authenticated link (setting the clock).
OPEN_READ_PROTECTED_WRITE = (
    Permissions.READABLE
    | Permissions.WRITABLE
    | Permissions.WRITE_ENCRYPTED
    | Permissions.WRITE_AUTHENTICATED
)
#: Open notify-only value (a third-party heart-rate band's measurement).
OPEN_NOTIFY_ONLY = Permissions.NONE

_R = Properties.READ
_W = Properties.WRITE
_N = Properties.NOTIFY
_I = Properties.INDICATE

# ------------------------------------------------------------------------- SIG UUIDs

GENERIC_ACCESS_SERVICE = uuid16(0x1800)
DEVICE_NAME = uuid16(0x2A00)
APPEARANCE = uuid16(0x2A01)

DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
HARDWARE_REVISION = uuid16(0x2A27)
FIRMWARE_REVISION = uuid16(0x2A26)
SOFTWARE_REVISION = uuid16(0x2A28)
PNP_ID = uuid16(0x2A50)

BATTERY_SERVICE = uuid16(0x180F)
BATTERY_LEVEL = uuid16(0x2A19)

HEART_RATE_SERVICE = uuid16(0x180D)
HEART_RATE_MEASUREMENT = uuid16(0x2A37)
BODY_SENSOR_LOCATION = uuid16(0x2A38)
HEART_RATE_CONTROL_POINT = uuid16(0x2A39)

USER_DATA_SERVICE = uuid16(0x181C)
AGE = uuid16(0x2A80)
DATE_OF_BIRTH = uuid16(0x2A85)
GENDER = uuid16(0x2A8C)
HEIGHT = uuid16(0x2A8E)
WEIGHT = uuid16(0x2A98)
DATABASE_CHANGE_INCREMENT = uuid16(0x2A99)
USER_INDEX = uuid16(0x2A9A)
USER_CONTROL_POINT = uuid16(0x2A9F)

CURRENT_TIME_SERVICE = uuid16(0x1805)
CURRENT_TIME = uuid16(0x2A2B)
LOCAL_TIME_INFORMATION = uuid16(0x2A0F)

# ------------------------------------------------------------------------- KME UUIDs


def kme_uuid(service: int, characteristic: int = 0) -> uuid.UUID:
    """The KME UUID of a service number (1..255) and characteristic number (0 = service)."""
    if not (1 <= service <= 0xFF and 0 <= characteristic <= 0xFF):
        raise UsageError("a KME UUID needs service 1..255 and characteristic 0..255")
    return uuid.UUID(f"4b4d4500-{service:02x}{characteristic:02x}-4b4d-8000-000000000000")


KME_RECORD_SYNC_SERVICE = kme_uuid(0x01)
KME_RECORD_SYNC_CONTROL_POINT = kme_uuid(0x01, 0x01)
KME_RECORD_SYNC_DATA = kme_uuid(0x01, 0x02)
KME_RECORD_SYNC_STATUS = kme_uuid(0x01, 0x03)

KME_CONSENT_SERVICE = kme_uuid(0x02)
KME_CONSENT_STATE = kme_uuid(0x02, 0x01)
KME_CONSENT_CHANGE_LOG = kme_uuid(0x02, 0x02)
KME_CONSENT_CONTROL_POINT = kme_uuid(0x02, 0x03)
KME_CONSENT_RECORD = kme_uuid(0x02, 0x04)

KME_ALARMS_SERVICE = kme_uuid(0x03)
KME_ALARM_LIST = kme_uuid(0x03, 0x01)
KME_ALARM_CONTROL_POINT = kme_uuid(0x03, 0x02)

KME_DEVICE_CONTROL_SERVICE = kme_uuid(0x04)
KME_DEVICE_CONTROL_POINT = kme_uuid(0x04, 0x01)

KME_ACTIVATION_SERVICE = kme_uuid(0x05)
KME_ACTIVATION_STATE = kme_uuid(0x05, 0x01)
KME_BAND_IDENTITY = kme_uuid(0x05, 0x02)
KME_ACTIVATION_CONTROL_POINT = kme_uuid(0x05, 0x03)
KME_BAND_CERTIFICATE = kme_uuid(0x05, 0x04)

# ------------------------------------------------------------------- static values

DEFAULT_DEVICE_NAME = "KME Smart"
#: GAP Appearance 0x00C1: category Watch, subcategory Sports Watch (worn on the wrist).
BAND_APPEARANCE = 0x00C1
#: KME control messages and DIS strings: the longest value a characteristic holds.
MAX_CONTROL_VALUE = 512
MAX_DIS_STRING = 64
#: Room for a whole record-sync chunk in one notification at the largest LE data length.
MAX_RECORD_CHUNK = 244

# ------------------------------------------------------------------------ services


def _char(
    char_uuid: uuid.UUID,
    name: str,
    properties: Properties,
    permissions: Permissions,
    value_format: str,
    *,
    max_length: int,
    initial_value: bytes = b"",
    description: str = "",
) -> CharacteristicDefinition:
    return CharacteristicDefinition(
        uuid=char_uuid,
        name=name,
        properties=properties,
        permissions=permissions,
        value_format=value_format,
        initial_value=initial_value,
        description=description,
        max_length=max_length,
    )


GENERIC_ACCESS = ServiceDefinition(
    GENERIC_ACCESS_SERVICE,
    "Generic Access",
    (
        _char(DEVICE_NAME, "Device Name", _R, OPEN_READ, "utf8s", max_length=32,
              initial_value=DEFAULT_DEVICE_NAME.encode("utf-8")),
        _char(APPEARANCE, "Appearance", _R, OPEN_READ, "uint16 appearance", max_length=2,
              initial_value=BAND_APPEARANCE.to_bytes(2, "little")),
    ),
    description="GAP device name and appearance.",
)  # fmt: skip


def _dis_string(
    char_uuid: uuid.UUID, name: str, permissions: Permissions
) -> CharacteristicDefinition:
    return _char(char_uuid, name, _R, permissions, "utf8s", max_length=MAX_DIS_STRING)


DEVICE_INFORMATION = ServiceDefinition(
    DEVICE_INFORMATION_SERVICE,
    "Device Information",
    (
        _dis_string(MANUFACTURER_NAME, "Manufacturer Name String", OPEN_READ),
        _dis_string(MODEL_NUMBER, "Model Number String", OPEN_READ),
        # The serial is a direct identifier: it would let anyone in radio range track the
        # wearer, so only a paired (authenticated) client may read it.
        _dis_string(SERIAL_NUMBER, "Serial Number String", PROTECTED_READ),
        _dis_string(HARDWARE_REVISION, "Hardware Revision String", OPEN_READ),
        _dis_string(FIRMWARE_REVISION, "Firmware Revision String", OPEN_READ),
        _dis_string(SOFTWARE_REVISION, "Software Revision String", OPEN_READ),
        _char(PNP_ID, "PnP ID", _R, OPEN_READ,
              "uint8 vendor id source, uint16 vendor id, uint16 product id, "
              "uint16 product version", max_length=7),
    ),
    description="Manufacturer, model, serial, revisions and PnP ID (DIS 1.1).",
)  # fmt: skip

BATTERY = ServiceDefinition(
    BATTERY_SERVICE,
    "Battery",
    (
        _char(BATTERY_LEVEL, "Battery Level", _R | _N, OPEN_READ, "uint8 percent 0..100",
              max_length=1, initial_value=b"\x64"),
    ),
    description="Battery level in percent (BAS 1.0).",
)  # fmt: skip

_HRM_FORMAT = (
    "uint8 flags; uint8 or uint16 bpm; [uint16 energy expended kJ]; "
    "[uint16 RR-interval 1/1024 s]..."
)
_BSL_FORMAT = "uint8 enum (0 other, 1 chest, 2 wrist, 3 finger, 4 hand, 5 ear lobe, 6 foot)"


def _heart_rate(measurement_permissions: Permissions, control_permissions: Permissions,
                location: int) -> ServiceDefinition:  # fmt: skip
    return ServiceDefinition(
        HEART_RATE_SERVICE,
        "Heart Rate",
        (
            _char(HEART_RATE_MEASUREMENT, "Heart Rate Measurement", _N,
                  measurement_permissions, _HRM_FORMAT, max_length=MAX_RECORD_CHUNK),
            _char(BODY_SENSOR_LOCATION, "Body Sensor Location", _R, OPEN_READ, _BSL_FORMAT,
                  max_length=1, initial_value=bytes([location])),
            _char(HEART_RATE_CONTROL_POINT, "Heart Rate Control Point", _W,
                  control_permissions, "uint8 op code (0x01 reset energy expended)",
                  max_length=1),
        ),
        description="Live heart rate (HRS 1.0).",
    )  # fmt: skip


_WRIST = 0x02
_CHEST = 0x01
HEART_RATE = _heart_rate(
    PROTECTED_NOTIFY_ONLY,
    Permissions.WRITABLE | Permissions.WRITE_ENCRYPTED | Permissions.WRITE_AUTHENTICATED,
    _WRIST,
)

USER_DATA = ServiceDefinition(
    USER_DATA_SERVICE,
    "User Data",
    (
        _char(AGE, "Age", _R | _W, PROTECTED_READ_WRITE, "uint8 years", max_length=1),
        _char(DATE_OF_BIRTH, "Date of Birth", _R | _W, PROTECTED_READ_WRITE,
              "uint16 year, uint8 month, uint8 day (0 = unknown)", max_length=4),
        _char(GENDER, "Gender", _R | _W, PROTECTED_READ_WRITE,
              "uint8 enum (0 male, 1 female, 2 unspecified)", max_length=1),
        _char(HEIGHT, "Height", _R | _W, PROTECTED_READ_WRITE, "uint16, 0.01 m",
              max_length=2),
        _char(WEIGHT, "Weight", _R | _W, PROTECTED_READ_WRITE, "uint16, 0.005 kg",
              max_length=2),
        _char(DATABASE_CHANGE_INCREMENT, "Database Change Increment", _R | _W | _N,
              PROTECTED_READ_WRITE, "uint32", max_length=4, initial_value=bytes(4)),
        _char(USER_INDEX, "User Index", _R, PROTECTED_READ, "uint8 (0xFF unknown user)",
              max_length=1, initial_value=b"\xff"),
        _char(USER_CONTROL_POINT, "User Control Point", _W | _I, PROTECTED_CONTROL_POINT,
              "uint8 op code + parameters; response 0x20, op code, result [, user index]",
              max_length=4),
    ),
    description="The wearer's profile for the estimators (UDS 1.0).",
)  # fmt: skip

CURRENT_TIME_SERVICE_DEFINITION = ServiceDefinition(
    CURRENT_TIME_SERVICE,
    "Current Time",
    (
        _char(CURRENT_TIME, "Current Time", _R | _W | _N, OPEN_READ_PROTECTED_WRITE,
              "Exact Time 256 (uint16 year, uint8 month, day, hours, minutes, seconds, "
              "day of week, fractions256) + uint8 adjust reason", max_length=10),
        # The time zone hints where the wearer is: personal, so protected.
        _char(LOCAL_TIME_INFORMATION, "Local Time Information", _R | _W,
              PROTECTED_READ_WRITE, "sint8 time zone (15 min), uint8 DST offset",
              max_length=2),
    ),
    description="The band's wall clock and time zone (CTS 1.1).",
)  # fmt: skip

_RECORDS_DOC = "docs/records.md"

KME_RECORD_SYNC = ServiceDefinition(
    KME_RECORD_SYNC_SERVICE,
    "KME Record Sync",
    (
        _char(KME_RECORD_SYNC_CONTROL_POINT, "Record Sync Control Point", _W | _I,
              PROTECTED_CONTROL_POINT, f"CBOR record-sync messages 0x10..0x1F ({_RECORDS_DOC})",
              max_length=MAX_CONTROL_VALUE,
              description="Start, acknowledge and stop record transfers"),
        _char(KME_RECORD_SYNC_DATA, "Record Sync Data", _N, PROTECTED_NOTIFY_ONLY,
              f"binary record chunks with CRC ({_RECORDS_DOC})", max_length=MAX_RECORD_CHUNK,
              description="Record chunks of the stream being sent"),
        _char(KME_RECORD_SYNC_STATUS, "Record Sync Status", _R, PROTECTED_READ,
              f"CBOR stream list: first/next sequence, dropped counts ({_RECORDS_DOC})",
              max_length=MAX_CONTROL_VALUE,
              description="Streams with their sequence ranges and drop counts"),
    ),
    description="Pull recorded streams from the band's flash.",
)  # fmt: skip

KME_CONSENT = ServiceDefinition(
    KME_CONSENT_SERVICE,
    "KME Consent",
    (
        _char(KME_CONSENT_STATE, "Consent State", _R, PROTECTED_READ,
              "CBOR ConsentState (0x20)", max_length=MAX_CONTROL_VALUE,
              description="Consent flag and policy version of every category"),
        _char(KME_CONSENT_CHANGE_LOG, "Consent Change Log", _R, PROTECTED_READ,
              "CBOR ConsentLogPage (0x21)", max_length=MAX_CONTROL_VALUE,
              description="Band-signed page of the consent change log"),
        _char(KME_CONSENT_CONTROL_POINT, "Consent Control Point", _W | _I,
              PROTECTED_CONTROL_POINT,
              "CBOR SelectConsentLogPage (0x22), SetConsent (0x23), "
              "RequestConsentRecord (0x25); results ControlResult (0x01), ConsentResult (0x24)",
              max_length=MAX_CONTROL_VALUE,
              description="Grant or withdraw consent; page the change log; sign a record"),
        _char(KME_CONSENT_RECORD, "Consent Record", _R, PROTECTED_READ,
              "CBOR ConsentRecord (protocol.kme.consent), band-signed",
              max_length=MAX_CONTROL_VALUE,
              description="The consent record last requested on this connection"),
    ),
    description="Consent flags (the band is the source of truth) and their change log.",
)  # fmt: skip

KME_ALARMS = ServiceDefinition(
    KME_ALARMS_SERVICE,
    "KME Alarms",
    (
        _char(KME_ALARM_LIST, "Alarm List", _R, PROTECTED_READ, "CBOR AlarmList (0x31)",
              max_length=MAX_CONTROL_VALUE, description="Every alarm on the band"),
        _char(KME_ALARM_CONTROL_POINT, "Alarm Control Point", _W | _I,
              PROTECTED_CONTROL_POINT,
              "CBOR ListAlarms (0x30), SetAlarm (0x32), DeleteAlarm (0x33); "
              "results AlarmList (0x31), ControlResult (0x01)",
              max_length=MAX_CONTROL_VALUE, description="List, set and delete alarms"),
    ),
    description="Alarms and smart-alarm windows.",
)  # fmt: skip

KME_DEVICE_CONTROL = ServiceDefinition(
    KME_DEVICE_CONTROL_SERVICE,
    "KME Device Control",
    (
        _char(KME_DEVICE_CONTROL_POINT, "Device Control Point", _W | _I,
              PROTECTED_CONTROL_POINT,
              "CBOR SetTimeZone (0x40), Reboot (0x41), FindBand (0x42), FactoryReset (0x43); "
              "result ControlResult (0x01)",
              max_length=MAX_CONTROL_VALUE,
              description="Time zone, reboot, find band, factory reset"),
    ),
    description="Commands for the band itself.",
)  # fmt: skip

KME_ACTIVATION = ServiceDefinition(
    KME_ACTIVATION_SERVICE,
    "KME Activation",
    (
        # Open so a client can tell an unowned band before pairing; it holds no identifier.
        _char(KME_ACTIVATION_STATE, "Activation State", _R, OPEN_READ,
              "CBOR ActivationState (0x50)", max_length=MAX_CONTROL_VALUE,
              description="Whether the band has an owner"),
        _char(KME_BAND_IDENTITY, "Band Identity", _R, PROTECTED_READ,
              "CBOR BandPublicKey (0x51)", max_length=MAX_CONTROL_VALUE,
              description="The band's Ed25519 signing public key"),
        _char(KME_ACTIVATION_CONTROL_POINT, "Activation Control Point", _W | _I,
              PROTECTED_CONTROL_POINT,
              "CBOR ActivationRequest (0x52), RequestOwnerChallenge (0x54), "
              "OwnerProof (0x56); results ActivationResult (0x53), OwnerChallenge (0x55), "
              "ControlResult (0x01)",
              max_length=MAX_CONTROL_VALUE,
              description="Activate the band; prove ownership on each connection"),
        _char(KME_BAND_CERTIFICATE, "Band Certificate", _R, PROTECTED_READ,
              "CBOR BandCertificate (protocol.kme.attestation), factory-signed",
              max_length=MAX_CONTROL_VALUE,
              description="The factory's certificate of the band's identity key"),
    ),
    description="Bind the band to one owner and prove ownership on later connections.",
)  # fmt: skip

#: The whole band profile, in handle order.
BAND_PROFILE: tuple[ServiceDefinition, ...] = (
    GENERIC_ACCESS,
    DEVICE_INFORMATION,
    BATTERY,
    HEART_RATE,
    USER_DATA,
    CURRENT_TIME_SERVICE_DEFINITION,
    KME_RECORD_SYNC,
    KME_CONSENT,
    KME_ALARMS,
    KME_DEVICE_CONTROL,
    KME_ACTIVATION,
)


def _open_dis() -> ServiceDefinition:
    # A typical third-party strap: every DIS string readable without pairing.
    chars = tuple(
        dataclasses.replace(c, permissions=OPEN_READ) for c in DEVICE_INFORMATION.characteristics
    )
    return dataclasses.replace(DEVICE_INFORMATION, characteristics=chars)


#: A third-party heart-rate band: Device Information, Battery and Heart Rate, all open
#: (as most chest straps are), with the sensor on the chest.
SIG_ONLY_PROFILE: tuple[ServiceDefinition, ...] = (
    _open_dis(),
    BATTERY,
    _heart_rate(OPEN_NOTIFY_ONLY, Permissions.WRITABLE, _CHEST),
)

#: The KME service UUIDs: a client filters scans by these to find KME bands.
KME_SERVICE_UUIDS: tuple[uuid.UUID, ...] = (
    KME_RECORD_SYNC_SERVICE,
    KME_CONSENT_SERVICE,
    KME_ALARMS_SERVICE,
    KME_DEVICE_CONTROL_SERVICE,
    KME_ACTIVATION_SERVICE,
)

# -------------------------------------------------------------------------- helpers


class UnknownCharacteristicError(UsageError, KeyError):
    """A profile has no characteristic with the UUID asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def iter_characteristics(
    profile: tuple[ServiceDefinition, ...] = BAND_PROFILE,
) -> Iterator[tuple[ServiceDefinition, CharacteristicDefinition]]:
    """Every (service, characteristic) pair of a profile, in handle order."""
    for service in profile:
        for characteristic in service.characteristics:
            yield service, characteristic


def find_characteristic(
    char_uuid: uuid.UUID, profile: tuple[ServiceDefinition, ...] = BAND_PROFILE
) -> CharacteristicDefinition:
    """The characteristic with this UUID (UUIDs are unique within the band profile)."""
    for _service, characteristic in iter_characteristics(profile):
        if characteristic.uuid == char_uuid:
            return characteristic
    raise UnknownCharacteristicError(
        f"no characteristic {char_uuid} in this profile; use a constant of protocol.kme.profile"
    )


def with_values(
    profile: tuple[ServiceDefinition, ...], values: Mapping[uuid.UUID, bytes]
) -> tuple[ServiceDefinition, ...]:
    """A copy of ``profile`` whose characteristics start with the given values.

    For per-band static values (Device Information strings, PnP ID) before the attribute
    database is built. Raises :class:`UnknownCharacteristicError` for a UUID not in it.
    """
    known = {c.uuid for _s, c in iter_characteristics(profile)}
    missing = [u for u in values if u not in known]
    if missing:
        raise UnknownCharacteristicError(
            f"{len(missing)} UUID(s) given to with_values are not in this profile"
        )
    out = []
    for service in profile:
        chars = tuple(
            dataclasses.replace(c, initial_value=bytes(values[c.uuid])) if c.uuid in values else c
            for c in service.characteristics
        )
        out.append(dataclasses.replace(service, characteristics=chars))
    return tuple(out)
