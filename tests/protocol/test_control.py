"""The KME control-message framework: schemas, canonical CBOR, typed errors."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import KmebandError
from protocol.kme.control import schema
from protocol.kme.control.activation import OwnerProof
from protocol.kme.control.alarms import Alarm, AlarmList, SetAlarm
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import (
    MAX_LOG_PAGE_ENTRIES,
    ConsentFlag,
    ConsentLogEntry,
    ConsentLogPage,
    ConsentSource,
    ConsentState,
    SetConsent,
)
from protocol.kme.control.device_control import Reboot, SetTimeZone
from protocol.kme.control.schema import (
    MAX_CONTROL_MESSAGE_SIZE,
    MESSAGE_TYPE_BLOCKS,
    Bool,
    Bytes,
    ControlDecodeError,
    ControlEncodeError,
    ControlMessage,
    ControlRecord,
    EnumOf,
    Field,
    FieldType,
    Int,
    ListOf,
    MessageTypeBlockError,
    RecordOf,
    SchemaDefinitionError,
    Text,
    UnknownMessageTypeError,
    UnsupportedVersionError,
    decode_as,
    decode_control,
    encode_control,
    register_message,
    registered_messages,
    unsigned_encoding,
)
from protocol.kme.records import ConsentCategory

# ---------------------------------------------------------------- schema strategies


def _value_strategy(ftype: FieldType) -> st.SearchStrategy[Any]:
    if isinstance(ftype, Int):
        step = ftype.multiple_of
        low = -(-ftype.minimum // step)
        high = ftype.maximum // step
        return st.integers(low, high).map(lambda n: n * step)
    if isinstance(ftype, Bool):
        return st.booleans()
    if isinstance(ftype, Bytes):
        return st.binary(min_size=ftype.min_length, max_size=ftype.max_length)
    if isinstance(ftype, Text):
        return st.text(max_size=ftype.max_bytes // 4)
    if isinstance(ftype, EnumOf):
        return st.sampled_from(list(ftype.enum_type))
    if isinstance(ftype, ListOf):
        return st.lists(_value_strategy(ftype.item), max_size=ftype.max_items).map(tuple)
    if isinstance(ftype, RecordOf):
        return _record_strategy(ftype.record_type)
    raise AssertionError(f"no strategy for {type(ftype).__name__}")


def _record_strategy(cls: type[ControlRecord]) -> st.SearchStrategy[Any]:
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for spec in cls.SCHEMA:
        values = _value_strategy(spec.type)
        kwargs[spec.name] = values if spec.required else st.none() | values
    return st.builds(cls, **kwargs)


_BUILT_IN = sorted(
    (cls for cls in registered_messages().values() if cls.SERVICE != "record_sync"),
    key=lambda cls: cls.MESSAGE_TYPE,
)


def _fits(message: ControlMessage) -> bool:
    try:
        encode_control(message)
    except ControlEncodeError:
        return False  # only the 512-byte size limit can reject a schema-valid message
    return True


@pytest.mark.parametrize("cls", _BUILT_IN, ids=lambda cls: cls.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls: type[ControlMessage], data: st.DataObject) -> None:
    message = data.draw(_record_strategy(cls).filter(_fits))
    encoded = encode_control(message)
    assert decode_control(encoded) == message
    assert decode_as(encoded, cls) == message
    # Canonical: a second encoding is identical and the decoder's re-encoding too.
    assert cbor2.dumps(cbor2.loads(encoded), canonical=True) == encoded


def test_message_type_numbers_sit_in_their_service_blocks() -> None:
    blocks = MESSAGE_TYPE_BLOCKS
    for cls in _BUILT_IN:
        block = next(name for name, rng in blocks.items() if cls.MESSAGE_TYPE in rng)
        assert block != "record_sync", f"{cls.__name__} took a record-sync number"


# ------------------------------------------------------------------- known vectors


def test_set_consent_vector() -> None:
    # {0: 1, 1: 0x23, 2: 3 (SLEEP), 3: true, 4: 3}, keys in canonical order.
    message = SetConsent(ConsentCategory.SLEEP, granted=True, policy_version=3)
    assert encode_control(message).hex() == "a50001011823020303f50403"


def test_empty_message_vector() -> None:
    assert encode_control(Reboot()) == bytes.fromhex("a20001011841")


def test_nested_record_vector() -> None:
    alarms = AlarmList((Alarm(0, 7, 30, 0x1F, 20, True),))
    expected = (
        "a3"
        "0001"
        "011831"  # version 1, type 0x31
        "02"
        "81"  # key 2: array of 1
        "a6"
        "0000"
        "0107"
        "02181e"
        "03181f"
        "0414"
        "05f5"  # the alarm map
    )
    assert encode_control(alarms).hex() == expected


# -------------------------------------------------------------------------- errors


def _raw(body: dict[Any, Any]) -> bytes:
    return cbor2.dumps(body, canonical=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\x1b\xff",  # truncated uint64
        b"\xa1\x00",  # map missing its value
        bytes.fromhex("a2000101") + b"\x7f",  # indefinite text
        bytes.fromhex("9f00ff"),  # indefinite array
        b"\xc1\x1a\x00\x00\x00\x00",  # a tagged date, not a map
        b"\x81" * 20 + b"\x00",  # nesting deeper than any schema
    ],
)
def test_malformed_cbor_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(ControlDecodeError):
        decode_control(data)


def test_trailing_bytes_rejected() -> None:
    data = encode_control(Reboot()) + b"\x00"
    with pytest.raises(ControlDecodeError, match="trailing"):
        decode_control(data)


def test_duplicate_keys_rejected() -> None:
    data = bytes.fromhex("a300010118410001")
    with pytest.raises(ControlDecodeError):
        decode_control(data)


def test_unsupported_version_names_supported_versions() -> None:
    data = _raw({0: 7, 1: 0x41})
    with pytest.raises(UnsupportedVersionError, match=r"version\(s\) 1") as info:
        decode_control(data)
    assert isinstance(info.value, ControlDecodeError)
    assert isinstance(info.value, KmebandError)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([1, 2], "must be a CBOR map"),
        ({1: 0x41}, "schema version"),
        ({0: "1", 1: 0x41}, "schema version"),
        ({0: 1}, "message type"),
        ({0: 1, 1: -4}, "message type"),
        ({0: 1, 1: 0x23, 2: 3, 3: True}, "policy_version: required field"),
        ({0: 1, 1: 0x23, 2: 3, 3: 1, 4: 3}, "granted: must be a boolean"),
        ({0: 1, 1: 0x23, 2: 99, 3: True, 4: 3}, "category: not a known ConsentCategory"),
        ({0: 1, 1: 0x23, 2: 3, 3: True, 4: 70000}, "policy_version: out of range"),
        ({0: 1, 1: 0x23, 2: 3, 3: True, 4: 3, 9: 0}, "unexpected field key 9"),
        ({0: 1, 1: 0x23, 2: 3, 3: True, 4: 3, "x": 0}, "map keys must be integers"),
        ({0: 1, 1: 0x40, 2: 61, 3: 0}, "multiple of 15"),
        ({0: 1, 1: 0x32, 2: {0: 9, 1: 7, 2: 0, 3: 0, 4: 0, 5: True}}, "alarm.alarm_id"),
        ({0: 1, 1: 0x32, 2: {0: 1, 1: 7, 2: 0, 3: 0, 4: 0}}, "alarm.enabled"),
        ({0: 1, 1: 0x31, 2: {0: 1}}, "alarms: must be an array"),
        ({0: 1, 1: 0x31, 2: [1]}, r"alarms\[0\]: must be a map"),
        ({0: 1, 1: 0x56, 2: 1.5}, "signature: must be a byte string"),
    ],
)
def test_schema_violations_name_the_field(body: object, needle: str) -> None:
    with pytest.raises(ControlDecodeError, match=needle):
        decode_control(_raw(body))


def test_error_messages_never_echo_values() -> None:
    secret = bytes.fromhex("5eC2e7" * 11)[:33]  # a wrong-length "signature"
    with pytest.raises(ControlDecodeError) as info:
        decode_control(_raw({0: 1, 1: 0x56, 2: secret}))
    message = str(info.value)
    assert secret.hex() not in message.lower()
    assert repr(secret) not in message
    with pytest.raises(ControlDecodeError) as info:
        decode_control(_raw({0: 1, 1: 0x23, 2: 3, 3: True, 4: 987654}))
    assert "987654" not in str(info.value)


def test_unknown_type_and_unexpected_type() -> None:
    with pytest.raises(UnknownMessageTypeError):
        decode_control(_raw({0: 1, 1: 0xEE}))
    data = encode_control(Reboot())
    with pytest.raises(UnknownMessageTypeError, match="expected SetAlarm"):
        decode_as(data, SetAlarm)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(ControlDecodeError):
        decode_control(data)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.binary(max_size=8) | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.integers(-2, 30), inner, max_size=6)
        ),
        max_leaves=20,
    ),
    st.sampled_from(sorted(registered_messages())),
)
def test_arbitrary_maps_raise_only_decode_errors(body: Any, number: int) -> None:
    if isinstance(body, dict):
        body = {**body, 0: 1, 1: number}
    with contextlib.suppress(ControlDecodeError):
        decode_control(_raw(body))


# ------------------------------------------------------------------------ encoding


def test_encode_rejects_out_of_schema_values() -> None:
    with pytest.raises(ControlEncodeError, match="policy_version"):
        encode_control(SetConsent(ConsentCategory.SLEEP, True, -1))
    with pytest.raises(ControlEncodeError, match="granted"):
        encode_control(SetConsent(ConsentCategory.SLEEP, 1, 3))  # type: ignore[arg-type]
    with pytest.raises(ControlEncodeError, match="utc_offset_min"):
        encode_control(SetTimeZone(utc_offset_min=50, dst_offset_min=0))
    with pytest.raises(ControlEncodeError, match="required"):
        encode_control(OwnerProof(None))  # type: ignore[arg-type]
    with pytest.raises(ControlEncodeError, match=r"alarm\.hour"):
        encode_control(SetAlarm(Alarm(0, 24, 0, 0, 0, True)))


def test_enum_fields_accept_plain_ints_and_decode_to_members() -> None:
    data = encode_control(ControlResult(0x23, 0))  # type: ignore[arg-type]
    decoded = decode_as(data, ControlResult)
    assert decoded.status is ControlStatus.OK


def test_consent_log_page_fits_at_worst_case() -> None:
    entry = ConsentLogEntry(
        index=0xFFFF_FFFF,
        category=ConsentCategory.THIRD_PARTY_SHARING,
        granted=False,
        policy_version=0xFFFF,
        time=0xFFFF_FFFF_FFFF,
        tz_offset_min=-720,
        source=ConsentSource.OWNER_CLIENT,
    )
    page = ConsentLogPage(
        first_index=0xFFFF_FFFF,
        total=0xFFFF_FFFF,
        entries=(entry,) * MAX_LOG_PAGE_ENTRIES,
        signature=b"\xff" * 64,
    )
    assert len(encode_control(page)) <= MAX_CONTROL_MESSAGE_SIZE


def test_consent_state_carries_every_category() -> None:
    flags = tuple(ConsentFlag(c, c % 2 == 0, 2, 1_700_000_000, 60) for c in ConsentCategory)
    state = ConsentState(flags=flags, log_length=len(flags))
    assert decode_control(encode_control(state)) == state


def test_unsigned_encoding_leaves_out_only_the_signature() -> None:
    page = ConsentLogPage(first_index=0, total=0, entries=(), signature=b"\x01" * 64)
    unsigned = unsigned_encoding(page)
    assert decode_control(unsigned) == dataclasses.replace(page, signature=None)
    assert len(encode_control(page)) - len(unsigned) == 1 + 2 + 64


def test_oversized_message_is_refused_with_advice() -> None:
    @dataclasses.dataclass(frozen=True)
    class Blob(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0E
        SERVICE: ClassVar[str] = "common"
        SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "data", Bytes(0, 2000)),)
        data: bytes

    registry = dict(schema._REGISTRY)
    try:
        register_message(Blob)
        with pytest.raises(ControlEncodeError, match="fewer items"):
            encode_control(Blob(b"\x00" * 600))
        with pytest.raises(ControlDecodeError, match="longer than 512"):
            decode_control(_raw({0: 1, 1: 0x0E, 2: b"\x00" * 600}))
    finally:
        schema._REGISTRY.clear()
        schema._REGISTRY.update(registry)


# -------------------------------------------------------------------- registration


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "_REGISTRY", dict(schema._REGISTRY))


@pytest.mark.usefixtures("scratch_registry")
def test_other_modules_register_their_own_messages() -> None:
    @register_message
    @dataclasses.dataclass(frozen=True)
    class StartThing(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x1F
        SERVICE: ClassVar[str] = "record_sync"
        SCHEMA: ClassVar[tuple[Field, ...]] = (
            Field(2, "stream", Int(1, 7)),
            Field(3, "from_seq", Int(0, 2**32 - 1)),
            Field(4, "note", Text(10), required=False),
        )
        stream: int
        from_seq: int
        note: str | None = None

    message = StartThing(3, 12345)
    assert decode_control(encode_control(message)) == message
    assert registered_messages()[0x1F] is StartThing


@pytest.mark.usefixtures("scratch_registry")
def test_registration_rejects_inconsistent_schemas() -> None:
    @dataclasses.dataclass(frozen=True)
    class Taken(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = SetConsent.MESSAGE_TYPE
        SERVICE: ClassVar[str] = SetConsent.SERVICE
        SCHEMA: ClassVar[tuple[Field, ...]] = ()

    with pytest.raises(SchemaDefinitionError, match="already SetConsent"):
        register_message(Taken)

    @dataclasses.dataclass(frozen=True)
    class Mismatch(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0D
        SERVICE: ClassVar[str] = "common"
        SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "a", Int(0, 1)),)
        b: int

    with pytest.raises(SchemaDefinitionError, match="differ"):
        register_message(Mismatch)

    @dataclasses.dataclass(frozen=True)
    class HeaderKey(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0D
        SERVICE: ClassVar[str] = "common"
        SCHEMA: ClassVar[tuple[Field, ...]] = (Field(1, "a", Int(0, 1)),)
        a: int

    with pytest.raises(SchemaDefinitionError, match=r"key must be 2\.\.23"):
        register_message(HeaderKey)

    class NotADataclass(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0D
        SERVICE: ClassVar[str] = "common"

    with pytest.raises(SchemaDefinitionError, match="dataclass"):
        register_message(NotADataclass)


@pytest.mark.usefixtures("scratch_registry")
def test_registration_refuses_a_type_number_outside_its_service_block() -> None:
    @dataclasses.dataclass(frozen=True)
    class Misplaced(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x3E  # an alarms number
        SERVICE: ClassVar[str] = "consent"
        SCHEMA: ClassVar[tuple[Field, ...]] = ()

    with pytest.raises(MessageTypeBlockError, match=r"outside the consent block 0x20\.\.0x2F"):
        register_message(Misplaced)
    assert 0x3E not in registered_messages()

    @dataclasses.dataclass(frozen=True)
    class NoService(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0A
        SCHEMA: ClassVar[tuple[Field, ...]] = ()

    with pytest.raises(MessageTypeBlockError, match="SERVICE must name"):
        register_message(NoService)
    assert 0x0A not in registered_messages()


def test_every_registered_message_sits_in_its_own_catalogue_and_block() -> None:
    for number, cls in registered_messages().items():
        assert number in MESSAGE_TYPE_BLOCKS[cls.SERVICE], cls.__name__
        assert cls.__module__ == f"protocol.kme.control.{cls.SERVICE}", cls.__name__


def test_unregistered_message_cannot_be_encoded() -> None:
    @dataclasses.dataclass(frozen=True)
    class Loose(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0C
        SERVICE: ClassVar[str] = "common"
        SCHEMA: ClassVar[tuple[Field, ...]] = ()

    with pytest.raises(ControlEncodeError, match="register_message"):
        encode_control(Loose())


def test_lone_surrogate_text_is_an_encode_error() -> None:
    with pytest.raises(ControlEncodeError, match="tz_name"):
        encode_control(SetTimeZone(60, 0, "\ud800"))


@pytest.mark.usefixtures("scratch_registry")
def test_cross_field_checks_surface_as_decode_errors() -> None:
    @register_message
    @dataclasses.dataclass(frozen=True)
    class Window(ControlMessage):
        MESSAGE_TYPE: ClassVar[int] = 0x0B
        SERVICE: ClassVar[str] = "common"
        SCHEMA: ClassVar[tuple[Field, ...]] = (
            Field(2, "low", Int(0, 10)),
            Field(3, "high", Int(0, 10)),
        )
        low: int
        high: int

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low above high")

    with pytest.raises(ControlDecodeError, match="inconsistent"):
        decode_control(_raw({0: 1, 1: 0x0B, 2: 5, 3: 1}))
