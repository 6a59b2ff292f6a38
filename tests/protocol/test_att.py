"""ATT PDU codec: spec field layouts as test vectors, round trips, and total decoding."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ble import att
from protocol.ble.att import AttDecodeError, AttEncodeError, AttErrorCode, AttOpcode, decode_pdu
from protocol.ble.uuids import uuid16

VENDOR = uuid.UUID("6e400001-b5a3-f393-e0a9-e50e24dcca9e")
VENDOR_LE = bytes.fromhex("9ecadc240ee5a9e093f3a3b50100406e")

# Each vector: the PDU and its bytes written out field by field from Vol 3 Part F 3.4.
VECTORS: list[tuple[att.AttPdu, str]] = [
    # opcode, request opcode in error, handle in error, error code
    (att.ErrorResponse(0x0A, 0x0012, 0x0F), "01 0a 1200 0f"),
    (att.ExchangeMtuRequest(517), "02 0502"),
    (att.ExchangeMtuResponse(247), "03 f700"),
    (att.FindInformationRequest(0x0001, 0xFFFF), "04 0100 ffff"),
    # format 0x01: handle + 16-bit UUID
    (
        att.FindInformationResponse(((0x0003, uuid16(0x2902)), (0x0004, uuid16(0x2901)))),
        "05 01 0300 0229 0400 0129",
    ),
    # format 0x02: handle + 128-bit UUID
    (att.FindInformationResponse(((0x0010, VENDOR),)), "05 02 1000" + VENDOR_LE.hex()),
    # start, end, 16-bit type, value (a Heart Rate service UUID)
    (
        att.FindByTypeValueRequest(0x0001, 0xFFFF, uuid16(0x2800), b"\x0d\x18"),
        "06 0100 ffff 0028 0d18",
    ),
    (att.FindByTypeValueResponse(((0x0010, 0x0018),)), "07 1000 1800"),
    (att.ReadByTypeRequest(0x0001, 0x0010, uuid16(0x2803)), "08 0100 1000 0328"),
    (att.ReadByTypeRequest(0x0001, 0x0010, VENDOR), "08 0100 1000" + VENDOR_LE.hex()),
    # length 7: handle (2) + characteristic declaration (props, value handle, 16-bit UUID)
    (
        att.ReadByTypeResponse(
            ((0x0002, b"\x02\x03\x00\x00\x2a"), (0x0004, b"\x12\x05\x00\x37\x2a"))
        ),
        "09 07 0200 02 0300 002a 0400 12 0500 372a",
    ),
    (att.ReadRequest(0x0003), "0a 0300"),
    (att.ReadResponse(b"KME"), "0b 4b4d45"),
    (att.ReadBlobRequest(0x0003, 22), "0c 0300 1600"),
    (att.ReadBlobResponse(b"\x01\x02"), "0d 0102"),
    (att.ReadMultipleRequest((0x0003, 0x0005)), "0e 0300 0500"),
    (att.ReadMultipleResponse(b"\x01\x02\x03"), "0f 010203"),
    (att.ReadByGroupTypeRequest(0x0001, 0xFFFF, uuid16(0x2800)), "10 0100 ffff 0028"),
    # length 6: handle, end group handle, 16-bit service UUID
    (
        att.ReadByGroupTypeResponse(((0x0001, 0x0005, b"\x0a\x18"), (0x0006, 0x0009, b"\x0f\x18"))),
        "11 06 0100 0500 0a18 0600 0900 0f18",
    ),
    (att.WriteRequest(0x0010, b"\x01\x00"), "12 1000 0100"),
    (att.WriteResponse(), "13"),
    (att.WriteCommand(0x0010, b"\xff"), "52 1000 ff"),
    (att.PrepareWriteRequest(0x0010, 18, b"abc"), "16 1000 1200 616263"),
    (att.PrepareWriteResponse(0x0010, 18, b"abc"), "17 1000 1200 616263"),
    (att.ExecuteWriteRequest(commit=True), "18 01"),
    (att.ExecuteWriteRequest(commit=False), "18 00"),
    (att.ExecuteWriteResponse(), "19"),
    (att.HandleValueNotification(0x0012, b"\x06\x48"), "1b 1200 0648"),
    (att.HandleValueIndication(0x0012, b"\x06\x48"), "1d 1200 0648"),
    (att.HandleValueConfirmation(), "1e"),
]


@pytest.mark.parametrize(("pdu", "wire"), VECTORS, ids=lambda v: type(v).__name__)
def test_vectors_encode_and_decode(pdu: att.AttPdu, wire: str) -> None:
    raw = bytes.fromhex(wire.replace(" ", ""))
    assert pdu.encode() == raw
    assert att.encode_pdu(pdu) == raw
    assert decode_pdu(raw) == pdu
    assert raw[0] == pdu.OPCODE


def test_every_pdu_class_has_a_vector() -> None:
    covered = {type(pdu) for pdu, _ in VECTORS}
    assert covered == set(att.AttPdu.__args__)  # type: ignore[attr-defined]


def test_error_codes_match_the_spec_table() -> None:
    assert AttErrorCode.INVALID_PDU == 0x04
    assert AttErrorCode.INSUFFICIENT_AUTHENTICATION == 0x05
    assert AttErrorCode.REQUEST_NOT_SUPPORTED == 0x06
    assert AttErrorCode.INSUFFICIENT_ENCRYPTION == 0x0F
    assert AttErrorCode.VALUE_NOT_ALLOWED == 0x13
    assert {int(c) for c in AttErrorCode if c < 0x80} == set(range(0x01, 0x14))
    assert att.error_name(0x0F) == "INSUFFICIENT_ENCRYPTION (0x0F)"
    assert att.error_name(0x85) == "APPLICATION_ERROR (0x85)"
    assert att.error_name(0x50) == "RESERVED (0x50)"


# --- malformed input ------------------------------------------------------------------

MALFORMED = [
    ("", AttErrorCode.INVALID_PDU, 0x00, 0),
    ("0a", AttErrorCode.INVALID_PDU, 0x0A, 0),  # Read Request without handle
    ("0a 030000", AttErrorCode.INVALID_PDU, 0x0A, 0),  # one octet too many
    ("02 17", AttErrorCode.INVALID_PDU, 0x02, 0),
    ("08 0100 ffff 00", AttErrorCode.INVALID_PDU, 0x08, 0),  # 1-octet UUID
    ("08 0100 ffff 000102", AttErrorCode.INVALID_PDU, 0x08, 0),  # 3-octet UUID
    ("18 02", AttErrorCode.INVALID_PDU, 0x18, 0),  # reserved Execute Write flag
    ("0e 0100", AttErrorCode.INVALID_PDU, 0x0E, 0),  # Read Multiple with one handle
    ("05 03 0100 0029", AttErrorCode.INVALID_PDU, 0x05, 0),  # unknown format
    ("09 07 0200 0203", AttErrorCode.INVALID_PDU, 0x09, 0),  # truncated entry
    ("09 01 02", AttErrorCode.INVALID_PDU, 0x09, 0),  # length smaller than a handle
    ("04 0500 0100", AttErrorCode.INVALID_HANDLE, 0x04, 0x0005),  # start > end
    ("10 0000 ffff 0028", AttErrorCode.INVALID_HANDLE, 0x10, 0x0000),  # start == 0
    ("20 0100 0200", AttErrorCode.REQUEST_NOT_SUPPORTED, 0x20, 0),  # not decoded here
    ("7f", AttErrorCode.REQUEST_NOT_SUPPORTED, 0x7F, 0),
    ("d2 0100 00", AttErrorCode.REQUEST_NOT_SUPPORTED, 0xD2, 0),  # signed write
]


@pytest.mark.parametrize(("wire", "code", "opcode", "handle"), MALFORMED)
def test_malformed_pdus_raise_the_error_a_server_answers_with(
    wire: str, code: AttErrorCode, opcode: int, handle: int
) -> None:
    with pytest.raises(AttDecodeError) as info:
        decode_pdu(bytes.fromhex(wire.replace(" ", "")))
    assert info.value.error_code == code
    assert info.value.request_opcode == opcode
    assert info.value.handle == handle
    assert "Vol 3 Part F" in str(info.value)


@settings(max_examples=3000)
@given(st.binary(max_size=64))
def test_decode_is_total_for_any_bytes(data: bytes) -> None:
    try:
        pdu = decode_pdu(data)
    except AttDecodeError as exc:
        assert 0 <= exc.request_opcode <= 0xFF
        assert exc.error_code in AttErrorCode
        return
    assert data[0] == pdu.OPCODE
    # Anything that decodes re-encodes; the bytes match except where a 128-bit Find
    # Information entry holds a SIG alias (the encoder then picks the short format).
    again = decode_pdu(pdu.encode())
    assert again == pdu


@settings(max_examples=500)
@given(st.sampled_from(sorted(att._DECODERS)), st.binary(max_size=40))
def test_decode_is_total_for_known_opcodes(opcode: int, body: bytes) -> None:
    try:
        decode_pdu(bytes([opcode]) + body)
    except AttDecodeError as exc:
        assert exc.request_opcode == opcode


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = bytearray(b"\x1b\x12\x00\x01")
    assert decode_pdu(raw) == att.HandleValueNotification(0x12, b"\x01")
    assert decode_pdu(memoryview(raw)) == att.HandleValueNotification(0x12, b"\x01")  # type: ignore[arg-type]


# --- round trips for every PDU type ---------------------------------------------------

handles = st.integers(0, 0xFFFF)
u16 = st.integers(0, 0xFFFF)
values = st.binary(max_size=64)
uuids = st.one_of(st.integers(0, 0xFFFF).map(uuid16), st.uuids())
ranges = st.integers(1, 0xFFFF).flatmap(lambda s: st.tuples(st.just(s), st.integers(s, 0xFFFF)))


def _same_length_values(draw_len: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=draw_len, max_size=draw_len)


read_by_type_rsp = (
    st.integers(0, 40)
    .flatmap(lambda n: st.lists(st.tuples(handles, _same_length_values(n)), min_size=1, max_size=6))
    .map(lambda rows: att.ReadByTypeResponse(tuple(rows)))
)
read_by_group_rsp = (
    st.integers(0, 40)
    .flatmap(
        lambda n: st.lists(
            st.tuples(handles, handles, _same_length_values(n)), min_size=1, max_size=6
        )
    )
    .map(lambda rows: att.ReadByGroupTypeResponse(tuple(rows)))
)

any_pdu: st.SearchStrategy[att.AttPdu] = st.one_of(
    st.builds(att.ErrorResponse, st.integers(0, 0xFF), handles, st.integers(0, 0xFF)),
    st.builds(att.ExchangeMtuRequest, u16),
    st.builds(att.ExchangeMtuResponse, u16),
    ranges.map(lambda r: att.FindInformationRequest(*r)),
    st.lists(st.tuples(handles, uuids), min_size=1, max_size=8).map(
        lambda e: att.FindInformationResponse(tuple(e))
    ),
    st.builds(
        lambda r, t, v: att.FindByTypeValueRequest(r[0], r[1], uuid16(t), v), ranges, u16, values
    ),
    st.lists(st.tuples(handles, handles), min_size=1, max_size=8).map(
        lambda e: att.FindByTypeValueResponse(tuple(e))
    ),
    st.builds(lambda r, t: att.ReadByTypeRequest(r[0], r[1], t), ranges, uuids),
    read_by_type_rsp,
    st.builds(att.ReadRequest, handles),
    st.builds(att.ReadResponse, values),
    st.builds(att.ReadBlobRequest, handles, u16),
    st.builds(att.ReadBlobResponse, values),
    st.lists(handles, min_size=2, max_size=10).map(lambda h: att.ReadMultipleRequest(tuple(h))),
    st.builds(att.ReadMultipleResponse, values),
    st.builds(lambda r, t: att.ReadByGroupTypeRequest(r[0], r[1], t), ranges, uuids),
    read_by_group_rsp,
    st.builds(att.WriteRequest, handles, values),
    st.just(att.WriteResponse()),
    st.builds(att.WriteCommand, handles, values),
    st.builds(att.PrepareWriteRequest, handles, u16, values),
    st.builds(att.PrepareWriteResponse, handles, u16, values),
    st.builds(att.ExecuteWriteRequest, st.booleans()),
    st.just(att.ExecuteWriteResponse()),
    st.builds(att.HandleValueNotification, handles, values),
    st.builds(att.HandleValueIndication, handles, values),
    st.just(att.HandleValueConfirmation()),
)


@settings(max_examples=1500)
@given(any_pdu)
def test_every_pdu_round_trips(pdu: att.AttPdu) -> None:
    raw = pdu.encode()
    assert raw[0] == pdu.OPCODE
    assert decode_pdu(raw) == pdu
    assert decode_pdu(raw).encode() == raw


@given(handles, values)
def test_notification_fast_path_matches_the_dataclass(handle: int, value: bytes) -> None:
    raw = att.encode_notification(handle, value)
    assert raw == att.HandleValueNotification(handle, value).encode()
    assert att.decode_notification(raw) == (handle, value)
    assert att.encode_read_request(handle) == att.ReadRequest(handle).encode()


def test_decode_notification_rejects_other_pdus() -> None:
    with pytest.raises(AttDecodeError):
        att.decode_notification(b"\x1d\x01\x00")
    with pytest.raises(AttDecodeError):
        att.decode_notification(b"")
    with pytest.raises(AttDecodeError):
        att.decode_notification(b"\x1b\x01")


# --- encoder refuses what cannot be sent ----------------------------------------------


@pytest.mark.parametrize(
    "pdu",
    [
        att.ReadRequest(0x10000),
        att.ExchangeMtuRequest(-1),
        att.ErrorResponse(0x100, 1, 1),
        att.FindInformationResponse(()),
        att.FindByTypeValueRequest(1, 2, VENDOR, b""),
        att.FindByTypeValueResponse(()),
        att.ReadByTypeResponse(((1, b"a"), (2, b"bb"))),
        att.ReadByTypeResponse(((1, b"x" * 254),)),
        att.ReadByGroupTypeResponse(()),
        att.ReadMultipleRequest((1,)),
        att.ReadBlobRequest(1, 70000),
    ],
    ids=repr,
)
def test_encoder_rejects_unsendable_values(pdu: att.AttPdu) -> None:
    with pytest.raises(AttEncodeError):
        pdu.encode()


def test_opcode_tables_are_consistent() -> None:
    for request, response in att.RESPONSE_OPCODE.items():
        assert request in att.REQUEST_OPCODES
        assert response == request + 1
    assert att.is_command(AttOpcode.WRITE_CMD)
    assert att.is_command(AttOpcode.SIGNED_WRITE_CMD)
    assert not att.is_command(AttOpcode.WRITE_REQ)
