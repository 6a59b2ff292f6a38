"""The ATT PDU registry is the one source of opcodes: every derived table must agree with it."""

from __future__ import annotations

import typing

import pytest
from test_att import VECTORS

from protocol.ble import att, gatt_server
from protocol.ble.att import PDU_REGISTRY, AttDecodeError, AttErrorCode, AttOpcode, PduRole
from protocol.ble.gatt_server import SERVER_OPCODES

# Opcodes the Core Specification defines that kmeband deliberately does not implement.
# Pinned here so that adding an opcode without a codec is a visible decision.
NOT_IMPLEMENTED = {
    AttOpcode.READ_MULTIPLE_VARIABLE_REQ,
    AttOpcode.READ_MULTIPLE_VARIABLE_RSP,
    AttOpcode.MULTIPLE_HANDLE_VALUE_NTF,
    AttOpcode.SIGNED_WRITE_CMD,
}

PDU_CLASSES: tuple[type[att.AttPdu], ...] = typing.get_args(att.AttPdu)


def test_every_opcode_has_a_registry_row_keyed_by_itself() -> None:
    assert set(PDU_REGISTRY) == set(AttOpcode)
    for opcode, spec in PDU_REGISTRY.items():
        assert spec.opcode is opcode


def test_every_opcode_has_a_codec_except_the_pinned_unimplemented_ones() -> None:
    without = {op for op, spec in PDU_REGISTRY.items() if not spec.supported}
    assert without == NOT_IMPLEMENTED
    for spec in PDU_REGISTRY.values():
        assert (spec.pdu_type is None) == (spec.decode is None)


def test_each_pdu_class_is_registered_once_and_knows_its_opcode() -> None:
    registered = [spec.pdu_type for spec in PDU_REGISTRY.values() if spec.pdu_type]
    assert len(registered) == len(set(registered))
    assert set(registered) == set(PDU_CLASSES)
    for spec in PDU_REGISTRY.values():
        if spec.pdu_type is not None:
            assert spec.pdu_type.OPCODE is spec.opcode
            assert bytes((spec.opcode,)) == spec.pdu_type.OPCODE_OCTET


@pytest.mark.parametrize(("pdu", "wire"), VECTORS, ids=lambda v: type(v).__name__)
def test_decode_of_encode_is_the_pdu_through_the_registry(pdu: att.AttPdu, wire: str) -> None:
    raw = pdu.encode()
    spec = PDU_REGISTRY[AttOpcode(raw[0])]
    assert spec.pdu_type is type(pdu)
    assert spec.decode is not None
    assert spec.decode(raw) == pdu
    assert att.decode_pdu(raw) == pdu


def test_decoder_table_is_exactly_the_supported_rows() -> None:
    supported = {int(op) for op, spec in PDU_REGISTRY.items() if spec.supported}
    assert set(att._DECODERS) == supported


@pytest.mark.parametrize("opcode", sorted(NOT_IMPLEMENTED))
def test_unimplemented_opcodes_decode_as_request_not_supported(opcode: AttOpcode) -> None:
    with pytest.raises(AttDecodeError) as info:
        att.decode_pdu(bytes((opcode, 0x01, 0x00, 0x02, 0x00)))
    assert info.value.error_code == AttErrorCode.REQUEST_NOT_SUPPORTED


def test_request_tables_follow_the_roles() -> None:
    requests = {op for op, spec in PDU_REGISTRY.items() if spec.role is PduRole.REQUEST}
    assert requests == att.REQUEST_OPCODES
    for request in requests:
        response = PDU_REGISTRY[request].response
        assert response is not None
        assert PDU_REGISTRY[response].role is PduRole.RESPONSE
    assert set(att.RESPONSE_OPCODE) == {op for op in requests if PDU_REGISTRY[op].supported}
    for op, spec in PDU_REGISTRY.items():
        # The Command Flag on the wire and the registry's role must tell the same story.
        assert att.is_command(op) == (spec.role is PduRole.COMMAND)


def test_server_dispatch_covers_exactly_what_a_client_sends() -> None:
    client_sent = {
        op for op, spec in PDU_REGISTRY.items() if spec.supported and spec.role.from_client
    }
    assert client_sent == SERVER_OPCODES
    assert set(gatt_server._DISPATCH) == SERVER_OPCODES


def test_each_server_handler_takes_the_registered_pdu_class() -> None:
    for pdu_type, handler in gatt_server._HANDLERS.items():
        hints = typing.get_type_hints(handler)
        assert hints["pdu"] is pdu_type, handler.__name__
        assert gatt_server._DISPATCH[pdu_type.OPCODE] is handler


def test_server_stays_silent_for_exactly_the_supported_non_requests() -> None:
    silent = {
        op
        for op, spec in PDU_REGISTRY.items()
        if spec.supported and spec.role is not PduRole.REQUEST
    }
    assert silent == gatt_server._NOT_FOR_SERVER
    assert not silent & att.REQUEST_OPCODES
