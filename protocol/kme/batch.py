"""The sealed batch: its header, its columnar body, and the HPKE envelope framing.

A batch is a run of records of one stream of one band, on its way from the phone to the
cloud. It has two parts:

- a **header** (:class:`BatchHeader`) in clear, because the ingest routes and
  deduplicates on it, and authenticated: its canonical CBOR encoding
  (:func:`header_aad`) is bound into the HPKE key schedule through the ``info`` string
  (:func:`hpke_info`), so changing one bit of it makes the batch impossible to open;
- a **body** (:func:`encode_batch_plaintext`): the band-signed consent record that covers
  the batch and the records as compact little-endian columns, canonical CBOR, compressed
  with zlib. It is the HPKE plaintext.

The envelope on the wire (:func:`encode_envelope`) is the CBOR array
``[1, [kem_id, kdf_id, aead_id], header, enc, ciphertext]``. docs/ingest.md, section
"Batch envelope", specifies every byte so that any RFC 9180 implementation can open one.

This module is pure: the batch id, the creation time and all key material are passed in;
encryption lives in ``sync_client.sealing`` and decryption in ``cloud_ingest.keys``.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import sys
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise, repeat
from typing import Any, Final, NamedTuple

import cbor2
import numpy as np

from protocol.errors import KmebandError
from protocol.kme.record_domain import MAX_RELATIVE_S, RECORD_DOMAIN, check_domain, field_domain
from protocol.kme.record_fields import field_columns, int64_column
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    ActivityClass,
    AlarmEventKind,
    SleepStage,
    StoredRecord,
    StreamId,
    TelemetryKind,
)
from protocol.kme.strict_cbor import StrictCborError, loads_strict

FORMAT_VERSION: Final = 1
ENVELOPE_VERSION: Final = 1

#: Prefix of the HPKE ``info`` string; the SHA-256 of the header follows it.
HPKE_INFO_PREFIX: Final = b"kmeband batch v1"

BATCH_ID_LEN: Final = 16
BAND_PSEUDONYM_LEN: Final = 32
CONSENT_DIGEST_LEN: Final = 32
#: The longest service-data string (firmware version, model, client OS, client version).
MAX_SERVICE_TEXT_LEN: Final = 64
MAX_HEADER_LEN: Final = 1024
#: The most records one batch may hold; the sync client cuts batches well below it.
MAX_RECORDS_PER_BATCH: Final = 20_000
#: The most bytes a batch body may inflate to: bounds memory against decompression bombs.
MAX_PLAINTEXT_LEN: Final = 4 * 1024 * 1024
MAX_CONSENT_RECORD_LEN: Final = 16 * 1024
#: Sequence numbers and times are bounded well inside int64 so sums never overflow.
MAX_SEQ: Final = 2**48 - 1
MAX_TIME: Final = 2**40
ZLIB_LEVEL: Final = 6


class BatchError(KmebandError):
    """A batch, its body or its envelope could not be encoded or decoded."""


class MalformedBatchError(BatchError):
    """The bytes are not a well-formed batch (truncated, wrong types, bad CBOR, ...)."""


class UnsupportedBatchError(BatchError):
    """A well-formed batch in a format version or HPKE suite this code does not speak."""


class BatchMismatchError(BatchError):
    """The body disagrees with its header (stream, sequence range, count)."""


class HpkeSuiteId(NamedTuple):
    """The RFC 9180 identifiers of an HPKE suite: KEM, KDF and AEAD ids."""

    kem: int
    kdf: int
    aead: int


#: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: the default.
SUITE_X25519: Final = HpkeSuiteId(kem=0x0020, kdf=0x0001, aead=0x0002)
#: ML-KEM-768 + X25519 hybrid KEM (draft-ietf-hpke-pq), HKDF-SHA256, AES-256-GCM.
SUITE_MLKEM768_X25519: Final = HpkeSuiteId(kem=0x647A, kdf=0x0001, aead=0x0002)
SUPPORTED_SUITES: Final = (SUITE_X25519, SUITE_MLKEM768_X25519)
#: The length of the KEM's encapsulated key ``enc`` per suite.
ENC_LEN: Final[Mapping[HpkeSuiteId, int]] = {SUITE_X25519: 32, SUITE_MLKEM768_X25519: 1120}


def band_pseudonym(account_key: bytes, serial: str) -> bytes:
    """The band's 32-byte pseudonym: HMAC-SHA256 of its serial under the account key.

    The serial never leaves the phone; the cloud sees only this value, which it cannot
    reverse and which differs between accounts for the same band.
    """
    if len(account_key) < 16:
        raise BatchError("the account key must be at least 16 random bytes; create a new one")
    if not serial:
        raise BatchError("the band serial is empty; read it from Device Information first")
    return hmac.new(account_key, serial.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """What the ingest sees in clear: routing, deduplication and the policy's service data.

    Exactly the service data the privacy policy names and nothing more: a pseudonymous
    band id (never the serial), firmware version, model, client OS and version, time.
    """

    batch_id: bytes  # 16 random bytes, made by the caller; the idempotency key
    band: bytes  # 32 bytes, band_pseudonym(account_key, serial)
    stream: StreamId
    first_seq: int
    last_seq: int
    count: int
    consent_digest: bytes  # 32 bytes, the digest of the consent record in the body
    firmware_version: str
    model: str
    client_os: str
    client_version: str
    created: int  # UTC seconds when the batch was sealed
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_header(self)


#: Header field -> its key in the CBOR map. Short keys: the header rides with every batch.
HEADER_KEYS: Final[Mapping[str, str]] = {
    "version": "v",
    "batch_id": "id",
    "band": "band",
    "stream": "stream",
    "first_seq": "first",
    "last_seq": "last",
    "count": "count",
    "consent_digest": "consent",
    "firmware_version": "fw",
    "model": "model",
    "client_os": "os",
    "client_version": "app",
    "created": "created",
}
_HEADER_FIELD_BY_KEY: Final = {key: name for name, key in HEADER_KEYS.items()}


def _check_header(header: BatchHeader) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise MalformedBatchError(f"batch header: {what}")

    need(type(header.version) is int, "version must be an integer")
    if header.version != FORMAT_VERSION:
        raise UnsupportedBatchError(
            f"batch format version {header.version} is not supported (this code speaks "
            f"{FORMAT_VERSION}); update the client or the ingest"
        )
    need(_is_bytes(header.batch_id, BATCH_ID_LEN), "batch id must be 16 bytes")
    need(_is_bytes(header.band, BAND_PSEUDONYM_LEN), "band pseudonym must be 32 bytes")
    need(_is_bytes(header.consent_digest, CONSENT_DIGEST_LEN), "consent digest must be 32 bytes")
    need(isinstance(header.stream, StreamId), "stream must be a known StreamId")
    for name in ("first_seq", "last_seq", "count", "created"):
        value = getattr(header, name)
        need(type(value) is int and 0 <= value <= MAX_SEQ, f"{name} out of range")
    need(header.created <= MAX_TIME, "created out of range")
    need(1 <= header.count <= MAX_RECORDS_PER_BATCH, "record count out of range")
    need(header.first_seq <= header.last_seq, "first_seq after last_seq")
    need(header.last_seq - header.first_seq + 1 >= header.count, "count exceeds the seq range")
    need(header.count > 1 or header.first_seq == header.last_seq, "one record, two sequences")
    for name in ("firmware_version", "model", "client_os", "client_version"):
        value = getattr(header, name)
        need(
            type(value) is str and len(value) <= MAX_SERVICE_TEXT_LEN and value.isprintable(),
            f"{name} must be printable text of at most {MAX_SERVICE_TEXT_LEN} characters",
        )


def _is_bytes(value: object, length: int) -> bool:
    return type(value) is bytes and len(value) == length


#: Header fields in the canonical order of their keys' encodings (RFC 8949 4.2.1).
_HEADER_KEYS_CANONICAL: Final = tuple(
    sorted(HEADER_KEYS.items(), key=lambda name_key: cbor2.dumps(name_key[1]))
)


def header_aad(header: BatchHeader) -> bytes:
    """The canonical CBOR encoding of the header: the bytes the envelope authenticates.

    The map is built in canonical key order, and its values are only ints, byte strings
    and text, which cbor2 always writes in their shortest form: so the plain encoding is
    the canonical one, without sorting the keys for every batch.
    """
    as_map = {key: getattr(header, name) for name, key in _HEADER_KEYS_CANONICAL}
    as_map["stream"] = int(header.stream)
    return cbor2.dumps(as_map)


def hpke_info(header_bytes: bytes) -> bytes:
    """The HPKE ``info``: ``HPKE_INFO_PREFIX || SHA-256(header_bytes)`` (48 bytes).

    cryptography's single-shot HPKE API takes no AAD; RFC 9180 section 8.1 has single-shot
    users bind auxiliary data through ``info`` instead. Hashing keeps ``info`` within the
    64 bytes every RFC 9180 implementation must accept.
    """
    return HPKE_INFO_PREFIX + hashlib.sha256(header_bytes).digest()


def decode_header(header_bytes: bytes) -> BatchHeader:
    """Parse and validate header bytes; they must be exactly the canonical encoding."""
    if type(header_bytes) is not bytes or not 0 < len(header_bytes) <= MAX_HEADER_LEN:
        raise MalformedBatchError("batch header: missing or longer than 1024 bytes")
    raw = _loads(header_bytes, "batch header")
    if type(raw) is not dict or set(raw) != set(_HEADER_FIELD_BY_KEY):
        raise MalformedBatchError("batch header: not a map with exactly the format-1 fields")
    values = {_HEADER_FIELD_BY_KEY[key]: value for key, value in raw.items()}
    stream = values["stream"]
    if type(stream) is not int or stream not in _STREAM_VALUES:
        raise MalformedBatchError("batch header: unknown stream")
    values["stream"] = StreamId(stream)
    try:
        header = BatchHeader(**values)
    except TypeError as exc:  # pragma: no cover - the key set was checked above
        raise MalformedBatchError("batch header: wrong fields") from exc
    if header_aad(header) != header_bytes:
        raise MalformedBatchError("batch header: not in canonical CBOR encoding")
    return header


_STREAM_VALUES: Final = frozenset(int(s) for s in StreamId)


def _loads(data: bytes, what: str) -> Any:
    # Untrusted bytes: only the CBOR types the format uses, so no tag (a bignum, a
    # rational) can make decoding cost more than one pass over the input.
    try:
        return loads_strict(data)
    except StrictCborError as exc:
        raise MalformedBatchError(f"{what}: {exc}") from None


# ----------------------------------------------------------------------------------------
# The body: columns


class ColumnSpec(NamedTuple):
    """How one record field travels: array typecode, bounds, and whether delta-coded."""

    field: str
    typecode: str  # Python array typecode: 'q' int64, 'i' int32, 'h' int16, 'B' uint8, 'b' int8
    low: int
    high: int
    delta: bool = False  # sent as differences from the previous value (the first as is)
    increasing: bool = False  # strictly increasing: every difference at least 1


def _column(stream: StreamId, field: str, typecode: str, *, delta: bool = False) -> ColumnSpec:
    """A column whose bounds are the field's domain (protocol.kme.record_domain)."""
    domain = field_domain(stream, field)
    return ColumnSpec(field, typecode, domain.low, domain.high, delta)


#: The wire type of each field; the bounds come from the record domain. The first field
#: of every stream (its time) is delta-coded.
_TYPECODES: Final[Mapping[StreamId, tuple[str, ...]]] = {
    StreamId.ACTIVITY_MINUTES: ("q", "h", "B", "B", "B", "B", "B"),
    StreamId.HR_SAMPLES: ("q", "h", "B", "B"),
    StreamId.SLEEP_EPOCHS: ("q", "h", "B"),
    StreamId.SLEEP_SUMMARIES: ("q", "h", "q", "q", "q", "B", "h", "h", "h", "h", "h"),
    StreamId.ALARM_EVENTS: ("q", "h", "B", "B", "q", "b"),  # sleep_stage -1: not known
    StreamId.GNSS_FIXES: ("q", "h", "i", "i", "i", "i"),
    StreamId.TELEMETRY: ("q", "h", "B", "q", "q"),
}

#: Per stream, the record fields as columns, in dataclass field order.
COLUMNS: Final[Mapping[StreamId, tuple[ColumnSpec, ...]]] = {
    stream: tuple(
        _column(stream, domain.name, code, delta=i == 0)
        for i, (domain, code) in enumerate(zip(RECORD_DOMAIN[stream], codes, strict=True))
    )
    for stream, codes in _TYPECODES.items()
}

SEQ_COLUMN: Final = ColumnSpec("seq", "q", 0, MAX_SEQ, delta=True, increasing=True)

#: Fields whose integer travels for an enum (converted back when records are built).
_ENUM_FIELDS: Final[Mapping[str, type]] = {
    "activity_class": ActivityClass,
    "stage": SleepStage,
    "sleep_stage": SleepStage,
}
_STREAM_ENUMS: Final[Mapping[tuple[StreamId, str], type]] = {
    (StreamId.ALARM_EVENTS, "kind"): AlarmEventKind,
    (StreamId.TELEMETRY, "kind"): TelemetryKind,
}


_LITTLE_ENDIAN: Final = sys.byteorder == "little"


def _check_typecode_sizes() -> None:
    # The wire widths are fixed (docs/ingest.md); array's are the platform's C types.
    expected = {"q": 8, "i": 4, "h": 2, "B": 1, "b": 1}
    for code, size in expected.items():
        if array(code).itemsize != size:  # pragma: no cover - exotic platforms only
            raise BatchError(f"array typecode {code!r} is not {size} bytes on this platform")


_check_typecode_sizes()


def _pack(spec: ColumnSpec, values: Sequence[int]) -> bytes:
    if spec.delta:
        values = [b - a for a, b in zip([0, *values[:-1]], values, strict=True)]
    try:
        packed = array(spec.typecode, values)
    except (OverflowError, TypeError) as exc:
        raise BatchError(f"record field {spec.field!r} does not fit its column") from exc
    if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts only
        packed.byteswap()
    return packed.tobytes()


_TYPE_RANGE: Final = {
    "q": (-(2**63), 2**63 - 1),
    "i": (-(2**31), 2**31 - 1),
    "h": (-(2**15), 2**15 - 1),
    "B": (0, 255),
    "b": (-128, 127),
}
_ONES: Final = array("q", [1] * MAX_RECORDS_PER_BATCH).tobytes()


#: The wire's little-endian column types, for numpy's views of a column's bytes.
_WIRE_DTYPES: Final[Mapping[str, np.dtype[Any]]] = {
    "q": np.dtype("<i8"),
    "i": np.dtype("<i4"),
    "h": np.dtype("<i2"),
    "B": np.dtype("u1"),
    "b": np.dtype("i1"),
}


def _unpack(
    spec: ColumnSpec, data: object, count: int, first: int | None = None
) -> tuple[array[int], int, int]:
    """A column's values and their (min, max); ``first`` enables the contiguous fast path.

    The checks run in numpy over the whole column (no Python work per value); the values
    are handed back as an ``array``, the type ``BatchBody.columns`` promises.
    """
    size = array(spec.typecode).itemsize
    if type(data) is not bytes or len(data) != count * size:
        raise MalformedBatchError(f"batch body: column {spec.field!r} has the wrong length")
    if (
        first is not None
        and _LITTLE_ENDIAN
        and data[8:] == _ONES[: 8 * (count - 1)]
        and data[:8] == first.to_bytes(8, "little", signed=True)
    ):
        # Contiguous sequence numbers, the usual case: no per-value work at all.
        seqs = array("q")
        seqs.frombytes(np.arange(first, first + count, dtype=np.int64).tobytes())
        return seqs, first, first + count - 1
    wire = np.frombuffer(data, dtype=_WIRE_DTYPES[spec.typecode])
    if spec.delta:
        if spec.increasing and count > 1 and int(wire[1:].min()) < 1:
            raise MalformedBatchError(f"batch body: column {spec.field!r} is not increasing")
        # The running sum may wrap around in int64, but a wrapped column cannot pass the
        # bounds check below: every step is itself an int64, so sums that all land in
        # range differ by exactly the steps, i.e. they are the true sums.
        values = np.cumsum(wire, dtype=np.int64)
        low, high = int(values.min()), int(values.max())
        column = array("q")
        column.frombytes(values.tobytes())  # native byte order, as array wants
    else:
        column = array(spec.typecode)
        column.frombytes(data)
        if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts only
            column.byteswap()
        if (spec.low, spec.high) == _TYPE_RANGE[spec.typecode]:
            return column, spec.low, spec.high  # the width itself is the range
        low, high = int(wire.min()), int(wire.max())
    if low < spec.low or high > spec.high:
        raise MalformedBatchError(f"batch body: column {spec.field!r} has values out of range")
    return column, low, high


@dataclass(frozen=True, slots=True)
class BatchBody:
    """A decoded batch body: the consent record and the records as columns.

    ``columns`` maps each field name of the stream's record type (and ``"seq"``) to an
    ``array`` of ints, so the ingest can validate and store without a Python object per
    record; :meth:`records` builds the dataclasses when they are wanted.
    """

    stream: StreamId
    consent_record: bytes
    columns: Mapping[str, array[int]]
    time_bounds: tuple[int, int]  # the earliest and latest record time

    @property
    def seqs(self) -> array[int]:
        return self.columns["seq"]

    @property
    def count(self) -> int:
        return len(self.columns["seq"])

    def times(self) -> array[int]:
        """Each record's :func:`protocol.kme.records.record_time`: what consent is checked on."""
        return self.columns[COLUMNS[self.stream][0].field]

    def records(self, start: int = 0, stop: int | None = None) -> list[StoredRecord]:
        """The records (``start:stop`` of them) as :class:`StoredRecord` dataclasses.

        A slice builds only its own records: a reader of a 20,000-record batch can take
        it in pieces (the ingest's streamed export does).
        """
        record_type = STREAM_RECORD_TYPE[self.stream]
        specs = COLUMNS[self.stream]
        converters = [self._converter(spec.field) for spec in specs]
        rows = zip(*(self.columns[spec.field][start:stop] for spec in specs), strict=True)
        out = []
        for seq, row in zip(self.seqs[start:stop], rows, strict=True):
            values = [convert(v) for convert, v in zip(converters, row, strict=True)]
            out.append(StoredRecord(self.stream, seq, record_type(*values)))
        return out

    def _converter(self, name: str) -> Any:
        if name == "worn":
            return bool
        if name == "sleep_stage":
            return lambda v: None if v < 0 else SleepStage(v)
        enum_type = _STREAM_ENUMS.get((self.stream, name)) or _ENUM_FIELDS.get(name)
        return enum_type if enum_type is not None else int


def _record_field_names(stream: StreamId) -> list[str]:
    return [f.name for f in fields(STREAM_RECORD_TYPE[stream])]


def _check_column_table() -> None:
    for stream, specs in COLUMNS.items():
        if [s.field for s in specs] != _record_field_names(stream):  # pragma: no cover
            raise BatchError(f"COLUMNS for {stream.name} disagree with its record type")


_check_column_table()


def encode_batch_plaintext(records: Sequence[StoredRecord], consent_record: bytes) -> bytes:
    """The HPKE plaintext of a batch: zlib(canonical CBOR body).

    ``records`` are of one stream in strictly increasing sequence order (gaps allowed:
    withheld records leave them); ``consent_record`` is the encoded band-signed consent
    record that covers them.
    """
    if not records:
        raise BatchError("a batch needs at least one record")
    if len(records) > MAX_RECORDS_PER_BATCH:
        raise BatchError(f"a batch holds at most {MAX_RECORDS_PER_BATCH} records; cut it")
    if type(consent_record) is not bytes or not 0 < len(consent_record) <= MAX_CONSENT_RECORD_LEN:
        raise BatchError("the consent record must be 1..16384 encoded bytes")
    stream = records[0].stream
    record_type = STREAM_RECORD_TYPE[stream]
    values = list(map(_RECORD_OF, records))
    if not all(map(operator.is_, map(_STREAM_OF, records), repeat(stream))) or set(
        map(type, values)
    ) != {record_type}:
        raise BatchError("a batch holds records of one stream and its record type only")
    check_domain(stream, values, BatchError, "the band stored a record outside the record domain")
    columns = {SEQ_COLUMN.field: _seq_column(list(map(_SEQ_OF, records)))}
    specs = COLUMNS[stream]
    for spec, column in zip(specs, field_columns(values, [s.field for s in specs]), strict=True):
        columns[spec.field] = _field_column(spec, column)
    body = {"consent": consent_record, "records": columns}
    return zlib.compress(cbor2.dumps(body, canonical=True), ZLIB_LEVEL)


_RECORD_OF: Final = operator.attrgetter("record")
_STREAM_OF: Final = operator.attrgetter("stream")
_SEQ_OF: Final = operator.attrgetter("seq")
#: Sequence numbers within this bound have differences that int64 holds.
_SAFE_SEQ: Final = 2**62


def _seq_column(seqs: list[int]) -> bytes:
    """The packed sequence-number column, after checking the order strictly increases."""
    column = int64_column(seqs)
    if column is None or int(column.min()) < -_SAFE_SEQ or int(column.max()) >= _SAFE_SEQ:
        # beyond int64 arithmetic: check and pack with Python ints
        if any(b <= a for a, b in pairwise(seqs)):
            raise BatchError("batch records must be in strictly increasing sequence order")
        return _pack(SEQ_COLUMN, seqs)
    steps = np.diff(column, prepend=0)
    if len(steps) > 1 and int(steps[1:].min()) <= 0:
        raise BatchError("batch records must be in strictly increasing sequence order")
    return steps.astype(_WIRE_DTYPES[SEQ_COLUMN.typecode]).tobytes()


def _field_column(spec: ColumnSpec, values: list[Any]) -> bytes:
    """One field of every record as its packed column, after checking the field's range."""
    column = int64_column(values)
    if column is None:
        # None (an unknown sleep stage), floats and such: each value converted as int()
        ints = [-1 if v is None else int(v) for v in values]
        if min(ints) < spec.low or max(ints) > spec.high:
            raise BatchError(f"record field {spec.field!r} is outside its allowed range")
        return _pack(spec, ints)
    if int(column.min()) < spec.low or int(column.max()) > spec.high:
        raise BatchError(f"record field {spec.field!r} is outside its allowed range")
    if spec.delta:
        column = np.diff(column, prepend=0)
    # in range, every value (and every delta: see _check_column_widths) fits the wire type
    return column.astype(_WIRE_DTYPES[spec.typecode]).tobytes()


def _check_column_widths() -> None:
    for spec in (SEQ_COLUMN, *(s for specs in COLUMNS.values() for s in specs)):
        low, high = _TYPE_RANGE[spec.typecode]
        span = spec.high - spec.low
        fits = low <= spec.low and spec.high <= high
        if spec.delta:
            fits = fits and low <= -span and span <= high
        if not fits:  # pragma: no cover - a wrong table entry
            raise BatchError(f"column {spec.field!r} does not fit its wire type")


_check_column_widths()


def decode_batch_plaintext(header: BatchHeader, plaintext: bytes) -> BatchBody:
    """Inflate, parse and check a batch body against its header; raise a BatchError."""
    return decode_body(
        header.stream,
        plaintext,
        count=header.count,
        first_seq=header.first_seq,
        last_seq=header.last_seq,
    )


def decode_body(
    stream: StreamId, plaintext: bytes, *, count: int, first_seq: int, last_seq: int
) -> BatchBody:
    """Decode a body given what its header says: stream, record count and sequence range."""
    if not 1 <= count <= MAX_RECORDS_PER_BATCH:
        raise MalformedBatchError("batch body: record count out of range")
    inflater = zlib.decompressobj()
    try:
        raw_bytes = inflater.decompress(plaintext, MAX_PLAINTEXT_LEN)
    except zlib.error as exc:
        raise MalformedBatchError("batch body: not a zlib stream") from exc
    if inflater.unconsumed_tail:
        raise MalformedBatchError("batch body: inflates beyond 4 MiB")
    if not inflater.eof or inflater.unused_data:
        raise MalformedBatchError("batch body: truncated zlib stream or bytes after it")
    raw = _loads(raw_bytes, "batch body")
    if type(raw) is not dict or set(raw) != {"consent", "records"}:
        raise MalformedBatchError("batch body: not a map of 'consent' and 'records'")
    consent_record = raw["consent"]
    if type(consent_record) is not bytes or not 0 < len(consent_record) <= MAX_CONSENT_RECORD_LEN:
        raise MalformedBatchError("batch body: the consent record must be 1..16384 bytes")
    specs = COLUMNS[stream]
    raw_columns = raw["records"]
    expected = {SEQ_COLUMN.field, *(s.field for s in specs)}
    if type(raw_columns) is not dict or set(raw_columns) != expected:
        raise MalformedBatchError(f"batch body: the columns are not those of stream {stream.name}")
    contiguous = first_seq if last_seq - first_seq + 1 == count else None
    seqs, _, _ = _unpack(SEQ_COLUMN, raw_columns["seq"], count, contiguous)
    if seqs[0] != first_seq or seqs[-1] != last_seq:
        raise BatchMismatchError("batch body: sequence numbers disagree with the header range")
    columns = {"seq": seqs}
    time_bounds = (0, 0)
    for i, spec in enumerate(specs):
        columns[spec.field], low, high = _unpack(spec, raw_columns[spec.field], count)
        if i == 0:
            time_bounds = (low, high)
    for domain in RECORD_DOMAIN[stream]:
        if domain.relative_to is not None:
            field = np.asarray(columns[domain.name], dtype=np.int64)
            anchor = np.asarray(columns[domain.relative_to], dtype=np.int64)
            if int(np.abs(field - anchor).max()) > MAX_RELATIVE_S:
                raise MalformedBatchError(
                    f"batch body: column {domain.name!r} has values out of range"
                )
    return BatchBody(stream, consent_record, columns, time_bounds)


# ----------------------------------------------------------------------------------------
# The envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: suite, header (both bytes and parsed), ``enc`` and ciphertext."""

    suite: HpkeSuiteId
    header: BatchHeader
    header_bytes: bytes
    enc: bytes
    ciphertext: bytes


def encode_envelope(
    suite: HpkeSuiteId, header: BatchHeader, enc: bytes, ciphertext: bytes
) -> bytes:
    """Frame a sealed batch: ``[1, [kem, kdf, aead], header, enc, ciphertext]`` in CBOR."""
    if suite not in SUPPORTED_SUITES:
        raise UnsupportedBatchError("unsupported HPKE suite; use SUITE_X25519")
    if len(enc) != ENC_LEN[suite]:
        raise BatchError("the encapsulated key has the wrong length for its suite")
    return cbor2.dumps(
        [ENVELOPE_VERSION, list(suite), header_aad(header), enc, ciphertext], canonical=True
    )


def decode_envelope(data: bytes) -> Envelope:
    """Parse an envelope and its header without opening it; raise a BatchError."""
    if type(data) is not bytes or not data:
        raise MalformedBatchError("envelope: empty")
    raw = _loads(data, "envelope")
    if type(raw) is not list or len(raw) != 5:
        raise MalformedBatchError("envelope: not a CBOR array of 5 items")
    version, suite_raw, header_bytes, enc, ciphertext = raw
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise UnsupportedBatchError(
            f"envelope version {version!r} is not supported; this ingest speaks 1"
            if type(version) is int
            else "envelope: version is not an integer"
        )
    if (
        type(suite_raw) is not list
        or len(suite_raw) != 3
        or any(type(x) is not int for x in suite_raw)
    ):
        raise MalformedBatchError("envelope: the suite is not [kem_id, kdf_id, aead_id]")
    suite = HpkeSuiteId(*suite_raw)
    if suite not in SUPPORTED_SUITES:
        raise UnsupportedBatchError(
            "envelope: unsupported HPKE suite; seal with the suites GET /v1/keys lists"
        )
    if type(enc) is not bytes or len(enc) != ENC_LEN[suite]:
        raise MalformedBatchError("envelope: the encapsulated key has the wrong length")
    if type(ciphertext) is not bytes or len(ciphertext) < 16:
        raise MalformedBatchError("envelope: the ciphertext is missing or shorter than its tag")
    if type(header_bytes) is not bytes:
        raise MalformedBatchError("envelope: the header is not a byte string")
    header = decode_header(header_bytes)
    return Envelope(suite, header, header_bytes, enc, ciphertext)


def consent_digest_of(consent_record: bytes) -> bytes:
    """SHA-256 of the encoded consent record: the header's ``consent_digest``."""
    return hashlib.sha256(consent_record).digest()
