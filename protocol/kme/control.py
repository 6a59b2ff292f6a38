"""KME control messages: versioned CBOR maps with explicit schemas.

Every KME control message (written to a KME control point, indicated back, or read from a
KME characteristic) is one CBOR data item (RFC 8949): a map with small unsigned integer
keys. Key 0 is the schema version (:data:`SCHEMA_VERSION`), key 1 the message type; the
other keys (2..23) are the fields of that message type, declared in its ``SCHEMA``.

Encoding is deterministic: cbor2's canonical mode, and because every key is in 0..23 the
length-first order of RFC 7049 and the bytewise order of RFC 8949 4.2.1 agree, so one
message has exactly one encoding (band signatures rely on that).

Other modules add their own message types with :func:`register_message`; message type
numbers are allocated in blocks per service (see :data:`MESSAGE_TYPE_BLOCKS`), e.g.
``protocol.kme.record_sync`` owns 0x10..0x1F.

Decoding never raises anything but :class:`ControlDecodeError` (or its subclasses
:class:`UnsupportedVersionError` and :class:`UnknownMessageTypeError`), whose messages say
which field is wrong and how, and never echo a value.
"""

from __future__ import annotations

import dataclasses
import enum
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import cbor2

from protocol.errors import KmebandError, UsageError
from protocol.kme.records import ConsentCategory

#: The schema version this library writes.
SCHEMA_VERSION = 1
#: The schema versions this library reads.
SUPPORTED_VERSIONS: frozenset[int] = frozenset({1})

VERSION_KEY = 0
TYPE_KEY = 1
#: Field keys are 2..23 so that each key is one CBOR byte and canonical orders agree.
FIRST_FIELD_KEY = 2
LAST_FIELD_KEY = 23

#: Largest encoded control message accepted: the ATT maximum attribute value length.
MAX_CONTROL_MESSAGE_SIZE = 512

#: Message type numbers per service; a module registers types only inside its block.
MESSAGE_TYPE_BLOCKS: Mapping[str, range] = {
    "common": range(0x01, 0x10),
    "record_sync": range(0x10, 0x20),
    "consent": range(0x20, 0x30),
    "alarms": range(0x30, 0x40),
    "device_control": range(0x40, 0x50),
    "activation": range(0x50, 0x60),
}

_MAX_DEPTH = 6


# --------------------------------------------------------------------------- errors


class ControlError(KmebandError):
    """Base of the control-message errors."""


class ControlDecodeError(ControlError, ValueError):
    """Bytes that are not a valid control message (bad CBOR, wrong types, missing fields).

    The message names the field and the problem, never the value received.
    """


class UnsupportedVersionError(ControlDecodeError):
    """A control message of a schema version this library does not read."""


class UnknownMessageTypeError(ControlDecodeError):
    """A control message whose type number is not registered (or not expected here)."""


class ControlEncodeError(ControlError, UsageError):
    """A message object whose field values do not fit its schema; fix the values."""


class SchemaDefinitionError(ControlError, UsageError):
    """A message class registered with an inconsistent schema (a programming error)."""


# ---------------------------------------------------------------------- field types


class FieldType:
    """How one field is carried in CBOR: validation and conversion both ways.

    ``problem`` returns a description of what is wrong with a CBOR-level value (or None);
    subclasses convert between the Python value held by a message and its CBOR value.
    """

    #: Short description for docs/protocol.md, e.g. ``uint 0..23``.
    description: str = ""

    def problem(self, raw: object) -> str | None:
        raise NotImplementedError

    def to_python(self, raw: Any) -> Any:
        return raw

    def to_cbor(self, value: Any) -> Any:
        return value

    def decode(self, raw: object, where: str) -> Any:
        problem = self.problem(raw)
        if problem is not None:
            raise ControlDecodeError(f"{where}: {problem}")
        return self.to_python(raw)

    def encode(self, value: object, where: str) -> Any:
        try:
            raw = self.to_cbor(value)
        except (TypeError, ValueError, AttributeError):
            raise ControlEncodeError(f"{where}: expected {self.description}") from None
        problem = self.problem(raw)
        if problem is not None:
            raise ControlEncodeError(f"{where}: {problem}")
        return raw


class Int(FieldType):
    """An integer in ``minimum..maximum`` (CBOR major type 0 or 1), optionally a multiple."""

    def __init__(self, minimum: int, maximum: int, multiple_of: int = 1) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.multiple_of = multiple_of
        kind = "uint" if minimum >= 0 else "int"
        self.description = f"{kind} {minimum}..{maximum}"
        if multiple_of != 1:
            self.description += f", multiple of {multiple_of}"

    def problem(self, raw: object) -> str | None:
        if type(raw) is not int:
            return "must be an integer"
        if not self.minimum <= raw <= self.maximum:
            return f"out of range, must be {self.minimum}..{self.maximum}"
        if raw % self.multiple_of:
            return f"must be a multiple of {self.multiple_of}"
        return None


class Bool(FieldType):
    """A CBOR ``true`` or ``false``."""

    description = "bool"

    def problem(self, raw: object) -> str | None:
        return None if type(raw) is bool else "must be a boolean"


class Bytes(FieldType):
    """A CBOR byte string of ``min_length..max_length`` bytes."""

    def __init__(self, min_length: int, max_length: int) -> None:
        self.min_length = min_length
        self.max_length = max_length
        if min_length == max_length:
            self.description = f"bytes[{min_length}]"
        else:
            self.description = f"bytes[{min_length}..{max_length}]"

    def problem(self, raw: object) -> str | None:
        if type(raw) is not bytes:
            return "must be a byte string"
        if not self.min_length <= len(raw) <= self.max_length:
            return f"length must be {self.min_length}..{self.max_length} bytes"
        return None

    def to_cbor(self, value: Any) -> Any:
        return bytes(value) if isinstance(value, bytearray | memoryview) else value


class Text(FieldType):
    """A CBOR text string of at most ``max_bytes`` UTF-8 bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.description = f"text (UTF-8, <= {max_bytes} bytes)"

    def problem(self, raw: object) -> str | None:
        if type(raw) is not str:
            return "must be a text string"
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError:
            return "must be valid Unicode text (no lone surrogates)"
        if size > self.max_bytes:
            return f"longer than {self.max_bytes} UTF-8 bytes"
        return None


class EnumOf(FieldType):
    """An integer that must be a member of an IntEnum; decoded to the member."""

    def __init__(self, enum_type: type[enum.IntEnum]) -> None:
        self.enum_type = enum_type
        values = ", ".join(f"{m.value}={m.name}" for m in enum_type)
        self.description = f"{enum_type.__name__} ({values})"

    def problem(self, raw: object) -> str | None:
        if type(raw) is not int:
            return f"must be an integer {self.enum_type.__name__} code"
        if raw not in self.enum_type._value2member_map_:
            return f"not a known {self.enum_type.__name__} code"
        return None

    def to_python(self, raw: Any) -> Any:
        return self.enum_type(raw)

    def to_cbor(self, value: Any) -> Any:
        if isinstance(value, self.enum_type):
            return int(value)
        return value


class ListOf(FieldType):
    """A CBOR array of at most ``max_items`` items of one type; decoded to a tuple."""

    def __init__(self, item: FieldType, max_items: int) -> None:
        self.item = item
        self.max_items = max_items
        self.description = f"array (<= {max_items}) of {item.description}"

    def problem(self, raw: object) -> str | None:
        if type(raw) is not list:
            return "must be an array"
        if len(raw) > self.max_items:
            return f"more than {self.max_items} items"
        for index, item in enumerate(raw):
            problem = self.item.problem(item)
            if problem is not None:
                return f"item {index}: {problem}"
        return None

    def decode(self, raw: object, where: str) -> Any:
        if type(raw) is not list:
            raise ControlDecodeError(f"{where}: must be an array")
        if len(raw) > self.max_items:
            raise ControlDecodeError(f"{where}: more than {self.max_items} items")
        return tuple(self.item.decode(item, f"{where}[{i}]") for i, item in enumerate(raw))

    def encode(self, value: object, where: str) -> Any:
        if not isinstance(value, tuple | list):
            raise ControlEncodeError(f"{where}: must be a tuple")
        if len(value) > self.max_items:
            raise ControlEncodeError(f"{where}: more than {self.max_items} items")
        return [self.item.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]


class RecordOf(FieldType):
    """A nested CBOR map holding a :class:`ControlRecord` (its own schema, no version)."""

    def __init__(self, record_type: type[ControlRecord]) -> None:
        self.record_type = record_type
        self.description = f"map {record_type.__name__}"

    def problem(self, raw: object) -> str | None:
        try:
            self.decode(raw, "")
        except ControlDecodeError as exc:
            return str(exc)
        return None

    def decode(self, raw: object, where: str) -> Any:
        if type(raw) is not dict:
            raise ControlDecodeError(f"{where}: must be a map")
        return _fields_from_map(self.record_type, raw, where, header_keys=frozenset())

    def encode(self, value: object, where: str) -> Any:
        if not isinstance(value, self.record_type):
            raise ControlEncodeError(f"{where}: must be a {self.record_type.__name__}")
        return _fields_to_map(value, where)


@dataclass(frozen=True)
class Field:
    """One field of a schema: CBOR key, attribute name, type, and whether it is required.

    An optional field is ``None`` in the message object when absent and is then left out
    of the map.
    """

    key: int
    name: str
    type: FieldType
    required: bool = True
    doc: str = ""


# ------------------------------------------------------------------ message classes


class ControlRecord:
    """A value carried as a CBOR map with an explicit schema (nested inside messages).

    Subclasses are frozen dataclasses whose attributes are exactly the ``SCHEMA`` names.
    Records nested in a message number their keys from 0.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = ()


class ControlMessage(ControlRecord):
    """A top-level control message: a record plus its ``MESSAGE_TYPE`` number."""

    MESSAGE_TYPE: ClassVar[int] = 0


_M = TypeVar("_M", bound=ControlMessage)
_R = TypeVar("_R", bound=ControlRecord)

_REGISTRY: dict[int, type[ControlMessage]] = {}


def _check_schema(cls: type[ControlRecord], first_key: int) -> None:
    if not dataclasses.is_dataclass(cls):
        raise SchemaDefinitionError(f"{cls.__name__} must be a dataclass")
    names = [f.name for f in dataclasses.fields(cls)]
    schema_names = [f.name for f in cls.SCHEMA]
    if sorted(names) != sorted(schema_names):
        raise SchemaDefinitionError(
            f"{cls.__name__}: dataclass fields and SCHEMA names differ; make them equal"
        )
    keys = [f.key for f in cls.SCHEMA]
    if len(set(keys)) != len(keys):
        raise SchemaDefinitionError(f"{cls.__name__}: SCHEMA uses a key twice")
    for spec in cls.SCHEMA:
        if not first_key <= spec.key <= LAST_FIELD_KEY:
            raise SchemaDefinitionError(
                f"{cls.__name__}.{spec.name}: key must be {first_key}..{LAST_FIELD_KEY}"
            )


def register_record(cls: type[_R]) -> type[_R]:
    """Class decorator: check a nested record's schema (keys 0..23)."""
    _check_schema(cls, 0)
    return cls


def register_message(cls: type[_M]) -> type[_M]:
    """Class decorator: check a message's schema and register its type number.

    Raises :class:`SchemaDefinitionError` if the type number is taken or out of 1..255.
    """
    _check_schema(cls, FIRST_FIELD_KEY)
    number = cls.MESSAGE_TYPE
    if not 1 <= number <= 0xFF:
        raise SchemaDefinitionError(f"{cls.__name__}: MESSAGE_TYPE must be 1..255")
    existing = _REGISTRY.get(number)
    if existing is not None and existing is not cls:
        raise SchemaDefinitionError(
            f"{cls.__name__}: message type 0x{number:02X} is already {existing.__name__}; "
            "pick a free number in your service's block"
        )
    _REGISTRY[number] = cls
    return cls


def registered_messages() -> Mapping[int, type[ControlMessage]]:
    """A snapshot of the registered message types, by type number."""
    return dict(_REGISTRY)


def _fields_to_map(record: ControlRecord, where: str) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for spec in type(record).SCHEMA:
        value = getattr(record, spec.name)
        path = f"{where}.{spec.name}" if where else spec.name
        if value is None:
            if spec.required:
                raise ControlEncodeError(f"{path}: required field is missing")
            continue
        out[spec.key] = spec.type.encode(value, path)
    return out


_HEADER_KEYS = frozenset({VERSION_KEY, TYPE_KEY})


def _fields_from_map(
    cls: type[_R], raw: dict[Any, Any], where: str, header_keys: frozenset[int]
) -> _R:
    by_key = {spec.key: spec for spec in cls.SCHEMA}
    for key in raw:
        if type(key) is not int:
            raise ControlDecodeError(f"{where or cls.__name__}: map keys must be integers")
        if key not in by_key and key not in header_keys:
            raise ControlDecodeError(
                f"{where or cls.__name__}: unexpected field key {key} for schema version "
                f"{SCHEMA_VERSION}"
            )
    kwargs: dict[str, Any] = {}
    for spec in cls.SCHEMA:
        path = f"{where}.{spec.name}" if where else f"{cls.__name__}.{spec.name}"
        if spec.key in raw:
            kwargs[spec.name] = spec.type.decode(raw[spec.key], path)
        elif spec.required:
            raise ControlDecodeError(f"{path}: required field (key {spec.key}) is missing")
        else:
            kwargs[spec.name] = None
    try:
        return cls(**kwargs)
    except (KmebandError, TypeError, ValueError):
        # A registered class may check cross-field rules in __post_init__; to a receiver
        # that is one more way for the bytes to be invalid.
        raise ControlDecodeError(
            f"{where or cls.__name__}: field values are inconsistent with each other"
        ) from None


# ------------------------------------------------------------------ encode / decode


def encode_control(message: ControlMessage) -> bytes:
    """The canonical CBOR encoding of a registered message.

    Raises :class:`ControlEncodeError` if a field value does not fit the schema.
    """
    cls = type(message)
    if _REGISTRY.get(cls.MESSAGE_TYPE) is not cls:
        raise ControlEncodeError(
            f"{cls.__name__} is not a registered control message; decorate it with "
            "@register_message"
        )
    body = _fields_to_map(message, "")
    body[VERSION_KEY] = SCHEMA_VERSION
    body[TYPE_KEY] = cls.MESSAGE_TYPE
    data: bytes = cbor2.dumps(body, canonical=True)
    if len(data) > MAX_CONTROL_MESSAGE_SIZE:
        raise ControlEncodeError(
            f"{cls.__name__} encodes to {len(data)} bytes, over the "
            f"{MAX_CONTROL_MESSAGE_SIZE}-byte limit; send fewer items per message"
        )
    return data


def _load_cbor(data: bytes) -> object:
    if len(data) > MAX_CONTROL_MESSAGE_SIZE:
        raise ControlDecodeError(f"control message longer than {MAX_CONTROL_MESSAGE_SIZE} bytes")
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream, allow_indefinite=False, allow_duplicate_keys=False, max_depth=_MAX_DEPTH
        )
        value = decoder.decode()
    except Exception:
        # cbor2 raises several types (decode errors, tag value errors, recursion limits);
        # all mean the same thing to the caller: these bytes are not a control message.
        raise ControlDecodeError("not a well-formed CBOR data item") from None
    if stream.tell() != len(data):
        raise ControlDecodeError("trailing bytes after the CBOR data item")
    return value


def _header(data: bytes) -> tuple[dict[Any, Any], int]:
    value = _load_cbor(bytes(data))
    if type(value) is not dict:
        raise ControlDecodeError("a control message must be a CBOR map")
    version = value.get(VERSION_KEY)
    if type(version) is not int:
        raise ControlDecodeError("schema version (key 0) is missing or not an integer")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        raise UnsupportedVersionError(
            f"unsupported control schema version; this library reads version(s) {supported}: "
            "update the software on the older side"
        )
    number = value.get(TYPE_KEY)
    if type(number) is not int or not 1 <= number <= 0xFF:
        raise ControlDecodeError("message type (key 1) is missing or not an integer 1..255")
    return value, number


def decode_control(data: bytes) -> ControlMessage:
    """Decode any registered control message.

    Raises :class:`UnsupportedVersionError` for an unknown schema version,
    :class:`UnknownMessageTypeError` for an unregistered type, and
    :class:`ControlDecodeError` for anything else that is wrong.
    """
    value, number = _header(data)
    cls = _REGISTRY.get(number)
    if cls is None:
        raise UnknownMessageTypeError(f"unknown control message type 0x{number:02X}")
    return _fields_from_map(cls, value, "", _HEADER_KEYS)


def decode_as(data: bytes, *expected: type[_M]) -> _M:
    """Decode a control message that must be one of ``expected`` (e.g. a control point's).

    Raises :class:`UnknownMessageTypeError` when it is another type.
    """
    value, number = _header(data)
    for cls in expected:
        if number == cls.MESSAGE_TYPE:
            return _fields_from_map(cls, value, "", _HEADER_KEYS)
    names = ", ".join(cls.__name__ for cls in expected)
    raise UnknownMessageTypeError(
        f"control message type 0x{number:02X} is not accepted here; expected {names}"
    )


def unsigned_encoding(message: ControlMessage, signature_field: str = "signature") -> bytes:
    """The bytes a band signs for a message that carries its own signature field.

    The canonical encoding of the message with ``signature_field`` left out.
    """
    stripped = dataclasses.replace(message, **{signature_field: None})  # type: ignore[type-var]
    return encode_control(stripped)


def schema_rows(cls: type[ControlRecord]) -> Iterator[tuple[int, str, str, bool]]:
    """(key, name, type description, required) for each field: for docs and tooling."""
    for spec in sorted(cls.SCHEMA, key=lambda s: s.key):
        yield spec.key, spec.name, spec.type.description, spec.required


# ------------------------------------------------------------------ common messages


class ControlStatus(enum.IntEnum):
    """Outcome codes of KME control-point requests."""

    OK = 0
    INVALID_REQUEST = 1  # a well-formed message the band cannot act on as given
    UNSUPPORTED = 2  # message type or schema version not supported by this band
    NOT_ACTIVATED = 3  # the band has no owner yet: activate it first
    ALREADY_ACTIVATED = 4  # the band already has an owner: factory reset to re-activate
    NOT_OWNER = 5  # authenticate as the owner (challenge/proof) on this connection first
    AUTH_FAILED = 6  # the ownership proof did not verify (or no challenge was pending)
    NOT_FOUND = 7  # no such item (e.g. alarm id)
    LIMIT_REACHED = 8  # no room for another item
    BUSY = 9  # another request is in progress: wait for its result
    RATE_LIMITED = 10  # too many failed attempts: wait before trying again
    INSUFFICIENT_SECURITY = 11  # the link is not encrypted and authenticated


_UINT8 = Int(0, 0xFF)
_UINT16 = Int(0, 0xFFFF)
_UINT32 = Int(0, 0xFFFF_FFFF)
_UTC_SECONDS = Int(0, 0xFFFF_FFFF_FFFF)
_TZ_OFFSET_MIN = Int(-720, 840)


@register_message
@dataclass(frozen=True, slots=True)
class ControlResult(ControlMessage):
    """The band's answer to a control-point request that returns nothing else.

    Indicated on the control point that received the request; ``request_type`` is the
    request's message type (0 when the request could not be decoded at all).
    """

    MESSAGE_TYPE: ClassVar[int] = 0x01
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "request_type", _UINT8, doc="message type of the request answered"),
        Field(3, "status", EnumOf(ControlStatus)),
    )
    request_type: int
    status: ControlStatus


# -------------------------------------------------------------------------- consent


class ConsentSource(enum.IntEnum):
    """Who made a consent change."""

    BAND = 1  # on the band's own screen
    OWNER_CLIENT = 2  # by the owner's authenticated client
    FACTORY = 3  # factory defaults (everything withdrawn)


@register_record
@dataclass(frozen=True, slots=True)
class ConsentFlag(ControlRecord):
    """The current state of one consent category."""

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "category", EnumOf(ConsentCategory)),
        Field(1, "granted", Bool()),
        Field(2, "policy_version", _UINT16, doc="privacy policy version accepted"),
        Field(3, "changed_at", _UTC_SECONDS, doc="UTC seconds of the last change"),
        Field(4, "tz_offset_min", _TZ_OFFSET_MIN),
    )
    category: ConsentCategory
    granted: bool
    policy_version: int
    changed_at: int
    tz_offset_min: int


#: Entries per Consent Change Log page: the worst case still encodes in under 512 bytes.
MAX_LOG_PAGE_ENTRIES = 12


@register_record
@dataclass(frozen=True, slots=True)
class ConsentLogEntry(ControlRecord):
    """One logged consent change; ``index`` counts changes from 0 since activation."""

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "index", _UINT32),
        Field(1, "category", EnumOf(ConsentCategory)),
        Field(2, "granted", Bool()),
        Field(3, "policy_version", _UINT16),
        Field(4, "time", _UTC_SECONDS, doc="UTC seconds of the change, band clock"),
        Field(5, "tz_offset_min", _TZ_OFFSET_MIN),
        Field(6, "source", EnumOf(ConsentSource)),
    )
    index: int
    category: ConsentCategory
    granted: bool
    policy_version: int
    time: int
    tz_offset_min: int
    source: ConsentSource


@register_message
@dataclass(frozen=True, slots=True)
class ConsentState(ControlMessage):
    """Value of the Consent State characteristic: every category's current flag.

    ``log_length`` is the number of change-log entries, so a client can tell whether
    it has read the whole log.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x20
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "flags", ListOf(RecordOf(ConsentFlag), len(ConsentCategory))),
        Field(3, "log_length", _UINT32),
    )
    flags: tuple[ConsentFlag, ...]
    log_length: int


@register_message
@dataclass(frozen=True, slots=True)
class ConsentLogPage(ControlMessage):
    """Value of the Consent Change Log characteristic: a signed page of the change log.

    The page starts at the index chosen with :class:`SelectConsentLogPage` (0 after
    connecting) and holds as many entries as fit in 512 bytes. ``signature`` is the
    band's Ed25519 signature over :func:`unsigned_encoding` of this page, so the cloud
    can verify the consent history with the band's public key.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x21
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "first_index", _UINT32),
        Field(3, "total", _UINT32, doc="entries in the whole log"),
        Field(4, "entries", ListOf(RecordOf(ConsentLogEntry), MAX_LOG_PAGE_ENTRIES)),
        Field(5, "signature", Bytes(64, 64), required=False, doc="Ed25519, band key"),
    )
    first_index: int
    total: int
    entries: tuple[ConsentLogEntry, ...]
    signature: bytes | None = None


@register_message
@dataclass(frozen=True, slots=True)
class SelectConsentLogPage(ControlMessage):
    """Consent control point: choose the first log index the next log read returns.

    Answered by :class:`ControlResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x22
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "first_index", _UINT32),)
    first_index: int


@register_message
@dataclass(frozen=True, slots=True)
class SetConsent(ControlMessage):
    """Consent control point (owner only): grant or withdraw one category.

    The band logs the change with its own clock and answers :class:`ConsentResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x23
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "category", EnumOf(ConsentCategory)),
        Field(3, "granted", Bool()),
        Field(4, "policy_version", _UINT16, doc="privacy policy version shown to the user"),
    )
    category: ConsentCategory
    granted: bool
    policy_version: int


@register_message
@dataclass(frozen=True, slots=True)
class ConsentResult(ControlMessage):
    """Answer to :class:`SetConsent`; ``log_index`` is the new log entry's index."""

    MESSAGE_TYPE: ClassVar[int] = 0x24
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "status", EnumOf(ControlStatus)),
        Field(3, "log_index", _UINT32, required=False),
    )
    status: ControlStatus
    log_index: int | None = None


@register_message
@dataclass(frozen=True, slots=True)
class RequestConsentRecord(ControlMessage):
    """Ask the band to sign a consent record covering ``covers_from..covers_to`` (UTC, inclusive).

    Owner only. The band clamps ``covers_to`` to its clock's now (a record never speaks of
    the future) and answers :class:`ControlResult` (OK; INVALID_REQUEST when the range is
    then empty; LIMIT_REACHED when the record would not fit in one 512-byte value: ask for
    a shorter range); on OK the record (``protocol.kme.consent.
    ConsentRecord``) is then readable from the Consent Record characteristic on this
    connection. Batches carry it so the cloud can check their consent with the band's key.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x25
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "covers_from", _UTC_SECONDS, doc="UTC seconds, inclusive"),
        Field(3, "covers_to", _UTC_SECONDS, doc="UTC seconds, inclusive; clamped to now"),
    )
    covers_from: int
    covers_to: int


# --------------------------------------------------------------------------- alarms

#: Weekday bits of :attr:`Alarm.weekdays`: bit 0 Monday .. bit 6 Sunday; 0 = once.
WEEKDAY_BITS: Mapping[str, int] = {
    "mon": 0x01,
    "tue": 0x02,
    "wed": 0x04,
    "thu": 0x08,
    "fri": 0x10,
    "sat": 0x20,
    "sun": 0x40,
}
MAX_ALARMS = 8
MAX_SMART_WINDOW_MIN = 60


@register_record
@dataclass(frozen=True, slots=True)
class Alarm(ControlRecord):
    """One alarm in the band's local time.

    ``weekdays`` is a bitmask (:data:`WEEKDAY_BITS`; 0 = ring once);
    ``smart_window_min`` > 0 lets the band ring up to that many minutes early when the
    wearer is in light sleep or awake.
    """

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(0, "alarm_id", Int(0, MAX_ALARMS - 1)),
        Field(1, "hour", Int(0, 23)),
        Field(2, "minute", Int(0, 59)),
        Field(3, "weekdays", Int(0, 0x7F)),
        Field(4, "smart_window_min", Int(0, MAX_SMART_WINDOW_MIN)),
        Field(5, "enabled", Bool()),
    )
    alarm_id: int
    hour: int
    minute: int
    weekdays: int
    smart_window_min: int
    enabled: bool


@register_message
@dataclass(frozen=True, slots=True)
class ListAlarms(ControlMessage):
    """Alarm control point: ask for every alarm; answered by :class:`AlarmList`."""

    MESSAGE_TYPE: ClassVar[int] = 0x30
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class AlarmList(ControlMessage):
    """Every alarm on the band (also the value of the Alarm List characteristic)."""

    MESSAGE_TYPE: ClassVar[int] = 0x31
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "alarms", ListOf(RecordOf(Alarm), MAX_ALARMS)),)
    alarms: tuple[Alarm, ...]


@register_message
@dataclass(frozen=True, slots=True)
class SetAlarm(ControlMessage):
    """Alarm control point: create or replace the alarm with this id.

    Answered by :class:`ControlResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x32
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "alarm", RecordOf(Alarm)),)
    alarm: Alarm


@register_message
@dataclass(frozen=True, slots=True)
class DeleteAlarm(ControlMessage):
    """Alarm control point: delete one alarm (NOT_FOUND if there is none)."""

    MESSAGE_TYPE: ClassVar[int] = 0x33
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "alarm_id", Int(0, MAX_ALARMS - 1)),)
    alarm_id: int


# ------------------------------------------------------------------- device control


@register_message
@dataclass(frozen=True, slots=True)
class SetTimeZone(ControlMessage):
    """Device control point: the wearer's time zone.

    ``utc_offset_min`` is the standard offset (a multiple of 15 minutes), ``dst_offset_min``
    the daylight-saving offset now in force; ``tz_name`` optionally names the IANA zone.
    Answered by :class:`ControlResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x40
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "utc_offset_min", Int(-720, 840, multiple_of=15)),
        Field(3, "dst_offset_min", Int(0, 120, multiple_of=15)),
        Field(4, "tz_name", Text(64), required=False),
    )
    utc_offset_min: int
    dst_offset_min: int
    tz_name: str | None = None


@register_message
@dataclass(frozen=True, slots=True)
class Reboot(ControlMessage):
    """Device control point: restart the firmware (stored data is kept)."""

    MESSAGE_TYPE: ClassVar[int] = 0x41
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class FindBand(ControlMessage):
    """Device control point: vibrate ``repeat`` times for ``vibrate_ms`` each."""

    MESSAGE_TYPE: ClassVar[int] = 0x42
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "vibrate_ms", Int(100, 5000)),
        Field(3, "repeat", Int(1, 10)),
    )
    vibrate_ms: int
    repeat: int


@register_message
@dataclass(frozen=True, slots=True)
class FactoryReset(ControlMessage):
    """Device control point (owner only): erase records, consent, alarms and the owner.

    The band's own identity key is kept. Answered by :class:`ControlResult` before the
    band erases and disconnects.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x43
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


# --------------------------------------------------------------- activation/ownership


class KeyAlgorithm(enum.IntEnum):
    """Public-key algorithms of band and owner keys."""

    ED25519 = 1


@register_message
@dataclass(frozen=True, slots=True)
class ActivationState(ControlMessage):
    """Value of the Activation State characteristic (readable before pairing).

    Tells a client whether the band has an owner and which control schema versions it
    reads; carries nothing that identifies the band or the owner.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x50
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "activated", Bool()),
        Field(3, "schema_versions", ListOf(Int(1, 0xFF), 8)),
    )
    activated: bool
    schema_versions: tuple[int, ...]


@register_message
@dataclass(frozen=True, slots=True)
class BandIdentity(ControlMessage):
    """Value of the Band Identity characteristic: the band's signing public key."""

    MESSAGE_TYPE: ClassVar[int] = 0x51
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "algorithm", EnumOf(KeyAlgorithm)),
        Field(3, "public_key", Bytes(32, 32)),
    )
    algorithm: KeyAlgorithm
    public_key: bytes


@register_message
@dataclass(frozen=True, slots=True)
class ActivationRequest(ControlMessage):
    """Activation control point: bind an unowned band to an account.

    ``owner_public_key`` is the account's owner key (Ed25519); ``account_tag`` a
    pseudonymous 16-byte account reference (never an email); ``client_nonce`` 16 random
    bytes that make the band's attestation fresh. Answered by :class:`ActivationResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x52
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "algorithm", EnumOf(KeyAlgorithm)),
        Field(3, "owner_public_key", Bytes(32, 32)),
        Field(4, "account_tag", Bytes(16, 16)),
        Field(5, "client_nonce", Bytes(16, 16)),
    )
    algorithm: KeyAlgorithm
    owner_public_key: bytes
    account_tag: bytes
    client_nonce: bytes


@register_message
@dataclass(frozen=True, slots=True)
class ActivationResult(ControlMessage):
    """Answer to :class:`ActivationRequest`.

    On OK, ``band_public_key`` and ``attestation`` (the band's signature over the
    activation statement, see ``protocol.kme.ownership``) let the cloud register the band
    under the account.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x53
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "status", EnumOf(ControlStatus)),
        Field(3, "band_public_key", Bytes(32, 32), required=False),
        Field(4, "attestation", Bytes(64, 64), required=False),
    )
    status: ControlStatus
    band_public_key: bytes | None = None
    attestation: bytes | None = None


@register_message
@dataclass(frozen=True, slots=True)
class RequestOwnerChallenge(ControlMessage):
    """Activation control point: ask for a fresh nonce; answered by :class:`OwnerChallenge`."""

    MESSAGE_TYPE: ClassVar[int] = 0x54
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class OwnerChallenge(ControlMessage):
    """A single-use nonce, valid on this connection until the next proof or disconnect."""

    MESSAGE_TYPE: ClassVar[int] = 0x55
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "status", EnumOf(ControlStatus)),
        Field(3, "nonce", Bytes(16, 16), required=False),
    )
    status: ControlStatus
    nonce: bytes | None = None


@register_message
@dataclass(frozen=True, slots=True)
class OwnerProof(ControlMessage):
    """Activation control point: the owner key's signature over the challenge statement.

    Answered by :class:`ControlResult` (OK: this connection is the owner's until it ends;
    AUTH_FAILED otherwise).
    """

    MESSAGE_TYPE: ClassVar[int] = 0x56
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "signature", Bytes(64, 64)),)
    signature: bytes


__all__ = [
    "MAX_CONTROL_MESSAGE_SIZE",
    "MESSAGE_TYPE_BLOCKS",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "ActivationRequest",
    "ActivationResult",
    "ActivationState",
    "Alarm",
    "AlarmList",
    "BandIdentity",
    "Bool",
    "Bytes",
    "ConsentFlag",
    "ConsentLogEntry",
    "ConsentLogPage",
    "ConsentResult",
    "ConsentSource",
    "ConsentState",
    "ControlDecodeError",
    "ControlEncodeError",
    "ControlError",
    "ControlMessage",
    "ControlRecord",
    "ControlResult",
    "ControlStatus",
    "DeleteAlarm",
    "EnumOf",
    "FactoryReset",
    "Field",
    "FieldType",
    "FindBand",
    "Int",
    "KeyAlgorithm",
    "ListAlarms",
    "ListOf",
    "OwnerChallenge",
    "OwnerProof",
    "Reboot",
    "RecordOf",
    "RequestOwnerChallenge",
    "SchemaDefinitionError",
    "SelectConsentLogPage",
    "SetAlarm",
    "SetConsent",
    "SetTimeZone",
    "Text",
    "UnknownMessageTypeError",
    "UnsupportedVersionError",
    "decode_as",
    "decode_control",
    "encode_control",
    "register_message",
    "register_record",
    "registered_messages",
    "schema_rows",
    "unsigned_encoding",
]
