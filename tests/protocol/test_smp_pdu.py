"""SMP PDU codecs: wire layouts, round trips, and the one typed error for malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.ble.smp_pdu import (
    PDU_LENGTHS,
    AuthReq,
    CentralIdentification,
    DeviceAddress,
    EncryptionInformation,
    IdentityAddressInformation,
    IdentityInformation,
    IoCapability,
    KeyDistribution,
    KeypressNotification,
    KeypressType,
    PairingConfirm,
    PairingDhKeyCheck,
    PairingFailed,
    PairingFailedReason,
    PairingPublicKey,
    PairingRandom,
    PairingRequest,
    PairingResponse,
    SecurityRequest,
    SigningInformation,
    SmpCode,
    SmpPdu,
    SmpPduError,
    decode_pdu,
)
from protocol.errors import UsageError

SC_BONDING_MITM = AuthReq.BONDING | AuthReq.MITM | AuthReq.SECURE_CONNECTIONS


def test_pairing_request_wire_layout() -> None:
    request = PairingRequest(
        io_capability=IoCapability.KEYBOARD_DISPLAY,
        oob_data_present=False,
        auth_req=SC_BONDING_MITM,
        max_key_size=16,
        initiator_key_distribution=KeyDistribution.ENC_KEY | KeyDistribution.ID_KEY,
        responder_key_distribution=KeyDistribution.ENC_KEY | KeyDistribution.ID_KEY,
    )
    assert request.encode() == bytes([0x01, 0x04, 0x00, 0x0D, 0x10, 0x03, 0x03])
    assert decode_pdu(request.encode()) == request
    assert request.io_cap_octets() == bytes([0x0D, 0x00, 0x04])


def test_pairing_response_decodes_with_its_own_type() -> None:
    pdu = decode_pdu(bytes([0x02, 0x00, 0x00, 0x0D, 0x10, 0x00, 0x00]))
    assert isinstance(pdu, PairingResponse)
    assert pdu.io_capability is IoCapability.DISPLAY_ONLY
    assert pdu.auth_req & AuthReq.SECURE_CONNECTIONS


def test_128_bit_values_are_little_endian_on_the_wire() -> None:
    value = bytes(range(16))
    assert PairingConfirm(value).encode() == b"\x03" + value[::-1]
    assert decode_pdu(b"\x04" + value[::-1]) == PairingRandom(value)


def test_public_key_coordinates_are_little_endian_on_the_wire() -> None:
    x, y = bytes(range(32)), bytes(range(32, 64))
    wire = PairingPublicKey(x, y).encode()
    assert wire == b"\x0c" + x[::-1] + y[::-1]
    assert len(wire) == 65
    assert decode_pdu(wire) == PairingPublicKey(x, y)


def test_identity_address_is_type_then_little_endian_address() -> None:
    address = DeviceAddress.parse("C0:11:22:33:44:55", random=True)
    wire = IdentityAddressInformation(address).encode()
    assert wire == bytes([0x09, 0x01, 0x55, 0x44, 0x33, 0x22, 0x11, 0xC0])
    assert decode_pdu(wire) == IdentityAddressInformation(address)


def test_central_identification_layout() -> None:
    pdu = CentralIdentification(ediv=0x1234, rand=0x0102030405060708)
    assert pdu.encode() == bytes([0x07, 0x34, 0x12, 8, 7, 6, 5, 4, 3, 2, 1])
    assert decode_pdu(pdu.encode()) == pdu


def test_address_text_round_trip_and_56_bit_form() -> None:
    address = DeviceAddress.parse("56:12:37:37:bf:ce")
    assert str(address) == "56:12:37:37:BF:CE"
    assert address.as_56_bits() == bytes.fromhex("0056123737bfce")
    with pytest.raises(UsageError):
        DeviceAddress.parse("56:12:37")


def test_keys_and_addresses_stay_out_of_repr() -> None:
    secret = bytes.fromhex("69867911169d7cd23980522b594750a3")
    assert secret.hex() not in repr(EncryptionInformation(secret))
    assert "C0" not in repr(DeviceAddress.parse("C0:C0:C0:C0:C0:C0"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", PairingFailedReason.INVALID_PARAMETERS),
        (b"\x00", PairingFailedReason.COMMAND_NOT_SUPPORTED),
        (b"\x0f\x00", PairingFailedReason.COMMAND_NOT_SUPPORTED),
        (b"\xff", PairingFailedReason.COMMAND_NOT_SUPPORTED),
        (bytes([0x01, 0x04, 0x00, 0x0D, 0x10, 0x00]), PairingFailedReason.INVALID_PARAMETERS),
        (bytes([0x01, 0x05, 0x00, 0x0D, 0x10, 0, 0]), PairingFailedReason.INVALID_PARAMETERS),
        (bytes([0x01, 0x04, 0x02, 0x0D, 0x10, 0, 0]), PairingFailedReason.INVALID_PARAMETERS),
        (bytes([0x01, 0x04, 0x00, 0x0D, 0x06, 0, 0]), PairingFailedReason.INVALID_PARAMETERS),
        (bytes([0x01, 0x04, 0x00, 0x0D, 0x11, 0, 0]), PairingFailedReason.INVALID_PARAMETERS),
        (b"\x03" + bytes(15), PairingFailedReason.INVALID_PARAMETERS),
        (b"\x0c" + bytes(63), PairingFailedReason.INVALID_PARAMETERS),
        (b"\x05\x00", PairingFailedReason.INVALID_PARAMETERS),
        (b"\x05\x11", PairingFailedReason.INVALID_PARAMETERS),
        (b"\x0e\x05", PairingFailedReason.INVALID_PARAMETERS),
        (b"\x09\x02" + bytes(6), PairingFailedReason.INVALID_PARAMETERS),
        (b"\x0b", PairingFailedReason.INVALID_PARAMETERS),
    ],
)
def test_malformed_pdus_carry_the_reason_to_answer(
    data: bytes, reason: PairingFailedReason
) -> None:
    with pytest.raises(SmpPduError) as caught:
        decode_pdu(data)
    assert caught.value.reason is reason


def values16() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=16, max_size=16)


features = st.builds(
    lambda cls, io, oob, auth, size, ik, rk: cls(
        io_capability=io,
        oob_data_present=oob,
        auth_req=AuthReq(auth),
        max_key_size=size,
        initiator_key_distribution=KeyDistribution(ik),
        responder_key_distribution=KeyDistribution(rk),
    ),
    st.sampled_from([PairingRequest, PairingResponse]),
    st.sampled_from(IoCapability),
    st.booleans(),
    st.integers(0, 255),
    st.integers(7, 16),
    st.integers(0, 255),
    st.integers(0, 255),
)

any_pdu: st.SearchStrategy[SmpPdu] = st.one_of(
    features,
    st.builds(PairingConfirm, values16()),
    st.builds(PairingRandom, values16()),
    st.builds(PairingDhKeyCheck, values16()),
    st.builds(EncryptionInformation, values16()),
    st.builds(IdentityInformation, values16()),
    st.builds(SigningInformation, values16()),
    st.builds(PairingFailed, st.sampled_from(PairingFailedReason)),
    st.builds(
        PairingPublicKey, st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32)
    ),
    st.builds(KeypressNotification, st.sampled_from(KeypressType)),
    st.builds(SecurityRequest, st.integers(0, 255).map(AuthReq)),
    st.builds(CentralIdentification, st.integers(0, 0xFFFF), st.integers(0, (1 << 64) - 1)),
    st.builds(
        IdentityAddressInformation,
        st.builds(DeviceAddress, st.binary(min_size=6, max_size=6), st.booleans()),
    ),
)


@given(any_pdu)
def test_every_pdu_round_trips(pdu: SmpPdu) -> None:
    wire = pdu.encode()
    assert len(wire) == PDU_LENGTHS[SmpCode(wire[0])]
    assert decode_pdu(wire) == pdu


@given(st.binary(max_size=80))
def test_arbitrary_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    try:
        pdu = decode_pdu(data)
    except SmpPduError as exc:
        assert isinstance(exc.reason, PairingFailedReason)
    else:
        assert pdu.encode() == data


@given(st.sampled_from(sorted(PDU_LENGTHS)), st.binary(max_size=70))
def test_known_codes_with_any_body_never_raise_anything_else(code: int, body: bytes) -> None:
    data = bytes([code]) + body
    try:
        assert decode_pdu(data).encode() == data
    except SmpPduError as exc:
        assert exc.reason in (
            PairingFailedReason.INVALID_PARAMETERS,
            PairingFailedReason.COMMAND_NOT_SUPPORTED,
        )
