"""The KME control-message schema engine: versioned CBOR maps with explicit schemas.

Every KME control message (written to a KME control point, indicated back, or read from a
KME characteristic) is one CBOR data item (RFC 8949): a map with small unsigned integer
keys. Key 0 is the schema version (:data:`SCHEMA_VERSION`), key 1 the message type; the
other keys (2..23) are the fields of that message type, declared in its ``SCHEMA``.

Encoding is deterministic: cbor2's canonical mode, and because every key is in 0..23 the
length-first order of RFC 7049 and the bytewise order of RFC 8949 4.2.1 agree, so one
message has exactly one encoding (band signatures rely on that).

This module is the engine only (field types, message base classes, registration,
encoding and decoding). The messages themselves live in one catalogue module per service
next to it (``protocol.kme.control.common``, ``.record_sync``, ``.consent``, ``.alarms``,
``.device_control``, ``.activation``). Each message names its service in ``SERVICE``;
:func:`register_message` refuses a type number outside that service's block of
:data:`MESSAGE_TYPE_BLOCKS` (or one already taken), so a misplaced message fails at import.

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

#: Message type numbers per service: :func:`register_message` enforces that each message
#: (by its ``SERVICE``) takes a number inside its own block.
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


class MessageTypeBlockError(SchemaDefinitionError):
    """A message registered under an unknown service or outside its service's type block."""


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
    """A top-level control message: a record plus its ``MESSAGE_TYPE`` number.

    ``SERVICE`` names the block of :data:`MESSAGE_TYPE_BLOCKS` the number is taken from.
    """

    MESSAGE_TYPE: ClassVar[int] = 0
    SERVICE: ClassVar[str] = ""


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

    Raises :class:`MessageTypeBlockError` if ``SERVICE`` is not a key of
    :data:`MESSAGE_TYPE_BLOCKS` or the type number lies outside that service's block, and
    :class:`SchemaDefinitionError` if the number is already taken or the schema is
    inconsistent.
    """
    _check_schema(cls, FIRST_FIELD_KEY)
    number = cls.MESSAGE_TYPE
    if not 1 <= number <= 0xFF:
        raise SchemaDefinitionError(f"{cls.__name__}: MESSAGE_TYPE must be 1..255")
    block = MESSAGE_TYPE_BLOCKS.get(cls.SERVICE)
    if block is None:
        services = ", ".join(MESSAGE_TYPE_BLOCKS)
        raise MessageTypeBlockError(
            f"{cls.__name__}: SERVICE must name a message-type block ({services})"
        )
    if number not in block:
        raise MessageTypeBlockError(
            f"{cls.__name__}: message type 0x{number:02X} is outside the {cls.SERVICE} block "
            f"0x{block.start:02X}..0x{block.stop - 1:02X}; pick a free number inside it"
        )
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


__all__ = [
    "MAX_CONTROL_MESSAGE_SIZE",
    "MESSAGE_TYPE_BLOCKS",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "Bool",
    "Bytes",
    "ControlDecodeError",
    "ControlEncodeError",
    "ControlError",
    "ControlMessage",
    "ControlRecord",
    "EnumOf",
    "Field",
    "FieldType",
    "Int",
    "ListOf",
    "MessageTypeBlockError",
    "RecordOf",
    "SchemaDefinitionError",
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
