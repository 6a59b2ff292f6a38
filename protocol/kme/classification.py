"""The data-classification table: for every field that leaves the phone, its class and consent.

Each field of the batch header, of the batch body and of every record type has an entry:
its :class:`DataClass` and the :class:`~protocol.kme.records.ConsentCategory` it needs
(``None`` for service data, which the privacy policy's "Service Processing" covers).
Record fields take their consent from ``protocol.kme.records.STREAM_CONSENT`` and
``FIELD_CONSENT``, so the table cannot drift from what the client and ingest enforce.
The tests check the batch encoder against this table: every encoded field is classified
and no direct identifier is ever encoded.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    STREAM_RECORD_TYPE,
    ConsentCategory,
    StreamId,
)


class DataClass(enum.Enum):
    """What kind of personal data a field is, from most to least identifying."""

    DIRECT_IDENTIFIER = "direct identifier"  # serial, IMEI, email, phone, BLE address
    PSEUDONYMOUS_ID = "pseudonymous id"  # keyed hash of an identifier
    HEALTH = "health"  # heart rate, activity, sleep
    LOCATION = "location"  # GNSS position
    PROFILE = "profile"  # what the user told us about themselves and their settings
    TELEMETRY = "telemetry"  # device events (User Experience Improvement Program)
    SERVICE = "service"  # what the service needs to work: versions, model, times, ids


@dataclass(frozen=True, slots=True)
class FieldClass:
    """One row of the table: a field's class and the consent it needs (None: service)."""

    data_class: DataClass
    consent: ConsentCategory | None
    note: str = ""


#: Field names that are direct identifiers: none of them may ever be encoded in a batch.
DIRECT_IDENTIFIERS: Final = frozenset(
    {"serial", "serial_number", "imei", "email", "phone", "address", "mac", "name"}
)

_SERVICE = FieldClass(DataClass.SERVICE, None)

#: The batch header (field names of ``protocol.kme.batch.BatchHeader``).
HEADER_CLASSES: Final[Mapping[str, FieldClass]] = {
    "version": _SERVICE,
    "batch_id": FieldClass(DataClass.SERVICE, None, "random, per batch: idempotency key"),
    "band": FieldClass(
        DataClass.PSEUDONYMOUS_ID, None, "HMAC-SHA256 of the serial under an account key"
    ),
    "stream": _SERVICE,
    "first_seq": _SERVICE,
    "last_seq": _SERVICE,
    "count": _SERVICE,
    "consent_digest": FieldClass(DataClass.SERVICE, None, "SHA-256 of the consent record"),
    "firmware_version": _SERVICE,
    "model": _SERVICE,
    "client_os": _SERVICE,
    "client_version": _SERVICE,
    "created": _SERVICE,
}

#: The batch body's own fields (besides the record columns).
BODY_CLASSES: Final[Mapping[str, FieldClass]] = {
    "consent": FieldClass(
        DataClass.SERVICE, None, "the band-signed consent record: proof of consent"
    ),
    "seq": FieldClass(DataClass.SERVICE, None, "per-stream sequence numbers"),
}

#: Each stream's class: what its records are about.
STREAM_CLASS: Final[Mapping[StreamId, DataClass]] = {
    StreamId.ACTIVITY_MINUTES: DataClass.HEALTH,
    StreamId.HR_SAMPLES: DataClass.HEALTH,
    StreamId.SLEEP_EPOCHS: DataClass.HEALTH,
    StreamId.SLEEP_SUMMARIES: DataClass.HEALTH,
    StreamId.ALARM_EVENTS: DataClass.PROFILE,
    StreamId.GNSS_FIXES: DataClass.LOCATION,
    StreamId.TELEMETRY: DataClass.TELEMETRY,
}

#: Record fields whose class differs from their stream's.
_FIELD_CLASS_OVERRIDES: Final[Mapping[tuple[StreamId, str], DataClass]] = {
    (StreamId.ACTIVITY_MINUTES, "avg_hr"): DataClass.HEALTH,
    (StreamId.ALARM_EVENTS, "sleep_stage"): DataClass.HEALTH,
}


def _record_classes() -> dict[StreamId, dict[str, FieldClass]]:
    table: dict[StreamId, dict[str, FieldClass]] = {}
    for stream, record_type in STREAM_RECORD_TYPE.items():
        row: dict[str, FieldClass] = {}
        for f in fields(record_type):
            data_class = _FIELD_CLASS_OVERRIDES.get((stream, f.name), STREAM_CLASS[stream])
            consent = FIELD_CONSENT.get((stream, f.name), STREAM_CONSENT[stream])
            note = "reveals the time zone" if f.name == "tz_offset_min" else ""
            row[f.name] = FieldClass(data_class, consent, note)
        table[stream] = row
    return table


#: Every field of every record type, per stream.
RECORD_CLASSES: Final[Mapping[StreamId, Mapping[str, FieldClass]]] = _record_classes()

#: The profile the ingest holds for an account (PUT /v1/profile).
PROFILE_CLASSES: Final[Mapping[str, FieldClass]] = {
    "birth_year": FieldClass(DataClass.PROFILE, None),
    "sex": FieldClass(DataClass.PROFILE, None),
    "height_cm": FieldClass(DataClass.PROFILE, None),
    "weight_kg": FieldClass(DataClass.HEALTH, None, "entered by the user for calorie estimates"),
}


def classify_header_field(name: str) -> FieldClass:
    """The class of a batch header field; KeyError for a field the table does not know."""
    return HEADER_CLASSES[name]


def classify_record_field(stream: StreamId, name: str) -> FieldClass:
    """The class of a record field (or a body field such as ``seq``) of ``stream``."""
    if name in BODY_CLASSES:
        return BODY_CLASSES[name]
    return RECORD_CLASSES[stream][name]


def required_consents(stream: StreamId) -> frozenset[ConsentCategory]:
    """Every consent that some field of a ``stream`` batch needs."""
    return frozenset(c.consent for c in RECORD_CLASSES[stream].values() if c.consent is not None)
