"""The data subject's rights: export (JSON, CSV, FHIR R4), profile rectification, erasure.

Everything here works on one account's data only; the server passes the authenticated
account id and the store filters every query by it.
"""

from __future__ import annotations

import base64
import csv
import enum
import io
import json
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cloud_ingest.store import IngestStore
from protocol.errors import KmebandError
from protocol.kme.classification import PROFILE_CLASSES
from protocol.kme.records import (
    STREAM_CONSENT,
    ActivityMinute,
    ConsentCategory,
    HeartRateSample,
    SleepSummary,
    StoredRecord,
    StreamId,
    record_time,
)

EXPORT_FORMATS = ("json", "csv", "fhir")

#: Profile fields and their accepted ranges (PUT /v1/profile).
PROFILE_RANGES: dict[str, tuple[int, int] | tuple[str, ...]] = {
    "birth_year": (1900, 2100),
    "sex": ("female", "male", "other", "unspecified"),
    "height_cm": (50, 260),
    "weight_kg": (10, 400),
}
assert set(PROFILE_RANGES) == set(PROFILE_CLASSES)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


class ProfileError(KmebandError):
    """A profile update names an unknown field or a value out of range."""


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def validate_profile(value: object) -> dict[str, Any]:
    """Check a rectified profile: known fields only, each in its range."""
    if not isinstance(value, dict):
        raise ProfileError("the profile must be a JSON object")
    unknown = set(value) - set(PROFILE_RANGES)
    if unknown:
        raise ProfileError(f"unknown profile fields: {', '.join(sorted(unknown))[:200]}")
    for name, allowed in PROFILE_RANGES.items():
        if name not in value or value[name] is None:
            continue
        item = value[name]
        if isinstance(allowed[0], str):
            if item not in allowed:
                raise ProfileError(f"{name} must be one of {', '.join(map(str, allowed))}")
        elif type(item) is not int or not allowed[0] <= item <= allowed[1]:
            raise ProfileError(f"{name} must be an integer in {allowed[0]}..{allowed[1]}")
    return {k: v for k, v in value.items() if v is not None}


#: A streamed export: the document's text in chunks.
Export = Generator[str, None, None]

#: Records per chunk of a streamed export: a chunk takes under a millisecond to make, so
#: the event loop, which makes them between other requests, is never held for long.
EXPORT_CHUNK_RECORDS = 100


def _record_slices(
    store: IngestStore, account_id: int
) -> Iterator[list[tuple[bytes, StoredRecord]]]:
    """The account's records, stream by stream, in slices of EXPORT_CHUNK_RECORDS."""
    for segment in store.segments_of(account_id):
        body = segment.body
        for i in range(0, body.count, EXPORT_CHUNK_RECORDS):
            yield [(segment.band, r) for r in body.records(i, i + EXPORT_CHUNK_RECORDS)]


def _records(store: IngestStore, account_id: int) -> Iterator[tuple[bytes, StoredRecord]]:
    for piece in _record_slices(store, account_id):
        yield from piece


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.IntEnum):
        return value.name.lower()
    return int(value)


def _record_dict(band: bytes, stored: StoredRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"band": b64(band), "seq": stored.seq}
    for f in fields(stored.record):
        row[f.name] = _plain(getattr(stored.record, f.name))
    return row


def export_json(store: IngestStore, account_id: int) -> Export:
    """Everything the ingest holds for the account, as one JSON document in chunks.

    The document is an object: account, profile, bands, consent withdrawals, consent
    records, batches (service data), and ``records``: per stream name, every record.
    """
    dumps = json.dumps
    yield f'{{"account": {int(account_id)}, "profile": {dumps(store.profile(account_id))}'
    bands = [{"band": b64(p), "registered": t} for p, t in store.bands_of(account_id)]
    yield f', "bands": {dumps(bands)}'
    withdrawals = [
        {"category": c.name.lower(), "at": at}
        for c, at in sorted(store.withdrawals(account_id).items())
    ]
    yield f', "consent_withdrawals": {dumps(withdrawals)}'
    yield ', "consent_records": ['
    for i, (b, r, t) in enumerate(store.consent_records_of(account_id)):
        yield (", " if i else "") + dumps({"band": b64(b), "record": b64(r), "received": t})
    yield '], "batches": ['
    for i, row in enumerate(store.batches_of(account_id)):
        row = {**row, "batch_id": row["batch_id"].hex(), "band": b64(row["band"])}
        yield (", " if i else "") + dumps(row)
    yield '], "records": {'
    stream: StreamId | None = None
    for piece in _record_slices(store, account_id):
        parts = []
        for band, stored in piece:
            if stored.stream is not stream:
                opening = "" if stream is None else "], "
                stream = stored.stream
                parts.append(f'{opening}"{stream.name.lower()}": [')
            else:
                parts.append(", ")
            parts.append(dumps(_record_dict(band, stored)))
        yield "".join(parts)
    yield "]}}" if stream is not None else "}}"


def export_csv(store: IngestStore, account_id: int) -> Export:
    """Every record as long-format CSV (one row per field value), in chunks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["stream", "band", "seq", "time", "tz_offset_min", "field", "value"])
    yield out.getvalue()
    for piece in _record_slices(store, account_id):
        out.seek(0)
        out.truncate()
        for band, stored in piece:
            row = _record_dict(band, stored)
            head = [stored.stream.name.lower(), row["band"], stored.seq]
            head += [record_time(stored.record), row["tz_offset_min"]]
            for name, value in row.items():
                if name not in ("band", "seq", "tz_offset_min"):
                    writer.writerow([*head, name, "" if value is None else value])
        yield out.getvalue()


def _instant(utc_s: int, offset_min: int) -> str:
    tz = timezone(timedelta(minutes=offset_min))
    return datetime.fromtimestamp(utc_s, UTC).astimezone(tz).isoformat()


def _observation(code: str, display: str, value: float, unit: str, ucum: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "activity",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum},
    }


def export_fhir(store: IngestStore, account_id: int) -> Export:
    """A FHIR R4 Bundle of Observations: heart rate, daily steps, sleep duration (LOINC).

    In chunks: heart-rate and sleep observations as their records come, the daily step
    totals (which need every activity minute) at the end.
    """
    yield '{"resourceType": "Bundle", "type": "collection", "entry": ['
    steps_per_day: dict[tuple[str, int], int] = defaultdict(int)
    first = True
    for piece in _record_slices(store, account_id):
        entries: list[dict[str, Any]] = []
        for _band, stored in piece:
            record = stored.record
            if isinstance(record, HeartRateSample) and record.bpm > 0:
                obs = _observation("8867-4", "Heart rate", record.bpm, "beats/minute", "/min")
                obs["effectiveDateTime"] = _instant(record.timestamp, record.tz_offset_min)
                entries.append(obs)
            elif isinstance(record, ActivityMinute):
                local = record.start + 60 * record.tz_offset_min
                day = datetime.fromtimestamp(local, UTC).date().isoformat()
                steps_per_day[(day, record.tz_offset_min)] += record.steps
            elif isinstance(record, SleepSummary):
                asleep = record.light_min + record.deep_min + record.rem_min
                obs = _observation("93832-4", "Sleep duration", asleep, "min", "min")
                obs["effectivePeriod"] = {
                    "start": _instant(record.bed_time, record.tz_offset_min),
                    "end": _instant(record.out_of_bed, record.tz_offset_min),
                }
                entries.append(obs)
        if entries:
            yield _entries(entries, first)
            first = False
    daily = []
    for (day, offset), steps in sorted(steps_per_day.items()):
        obs = _observation("41950-7", "Number of steps in 24 hour Measured", steps, "steps", "1")
        start = datetime.fromisoformat(day).replace(tzinfo=timezone(timedelta(minutes=offset)))
        obs["effectivePeriod"] = {
            "start": start.isoformat(),
            "end": (start + timedelta(days=1)).isoformat(),
        }
        daily.append(obs)
    if daily:
        yield _entries(daily, first)
    yield "]}"


def _entries(resources: list[dict[str, Any]], first: bool) -> str:
    text = ", ".join(json.dumps({"resource": r}) for r in resources)
    return text if first else ", " + text


EXPORTERS: dict[str, Callable[[IngestStore, int], Export]] = {
    "json": export_json,
    "csv": export_csv,
    "fhir": export_fhir,
}


def parse_category(value: object) -> ConsentCategory:
    """A consent category from its name ("heart_rate") or wire number (2)."""
    if isinstance(value, str):
        try:
            return ConsentCategory[value.upper()]
        except KeyError:
            pass
    elif type(value) is int and value in {int(c) for c in ConsentCategory}:
        return ConsentCategory(value)
    names = ", ".join(c.name.lower() for c in ConsentCategory)
    raise ProfileError(f"unknown consent category; use one of {names}")


def streams_of(category: ConsentCategory) -> list[int]:
    """The streams whose records need ``category``."""
    return [int(s) for s, c in STREAM_CONSENT.items() if c is category]
