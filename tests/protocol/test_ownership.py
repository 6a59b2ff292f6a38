"""The ownership scheme: activation attestation and per-connection owner proofs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme import ownership as own
from protocol.kme.control.activation import ActivationResult, OwnerProof
from protocol.kme.control.common import ControlStatus
from protocol.kme.control.schema import decode_as, encode_control

BAND = own.private_key_from_seed(bytes(range(32)))
OWNER = own.private_key_from_seed(bytes(range(100, 132)))
STRANGER = own.private_key_from_seed(bytes(range(200, 232)))
TAG = bytes(range(16))
NONCE = bytes(range(16, 32))


def test_activation_round_trip_through_the_wire() -> None:
    request = own.activation_request(OWNER, TAG, NONCE)
    result = own.attest_activation(BAND, request)
    on_air = decode_as(encode_control(result), ActivationResult)
    assert own.verify_activation(request, on_air) == own.public_key_bytes(BAND)


def test_attestation_is_bound_to_owner_key_tag_and_nonce() -> None:
    request = own.activation_request(OWNER, TAG, NONCE)
    result = own.attest_activation(BAND, request)
    for field, value in [
        ("owner_public_key", own.public_key_bytes(STRANGER)),
        ("account_tag", bytes(16)),
        ("client_nonce", bytes(16)),
    ]:
        with pytest.raises(own.OwnershipError, match="does not verify"):
            own.verify_activation(dataclasses.replace(request, **{field: value}), result)
    forged = dataclasses.replace(result, band_public_key=own.public_key_bytes(STRANGER))
    with pytest.raises(own.OwnershipError):
        own.verify_activation(request, forged)


def test_refused_activation_says_what_to_do() -> None:
    request = own.activation_request(OWNER, TAG, NONCE)
    with pytest.raises(own.OwnershipError, match="factory-reset"):
        own.verify_activation(request, ActivationResult(ControlStatus.ALREADY_ACTIVATED))


def test_owner_proof_verifies_only_for_the_owner_and_this_nonce() -> None:
    band_pk = own.public_key_bytes(BAND)
    owner_pk = own.public_key_bytes(OWNER)
    proof = own.prove_ownership(OWNER, band_pk, NONCE)
    assert own.check_owner_proof(owner_pk, band_pk, NONCE, proof)
    assert not own.check_owner_proof(owner_pk, band_pk, bytes(16), proof)  # replay
    other_band = own.public_key_bytes(STRANGER)
    assert not own.check_owner_proof(owner_pk, other_band, NONCE, proof)  # relayed
    intruder = own.prove_ownership(STRANGER, band_pk, NONCE)
    assert not own.check_owner_proof(owner_pk, band_pk, NONCE, intruder)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_random_signatures_never_verify(signature: bytes) -> None:
    band_pk = own.public_key_bytes(BAND)
    owner_pk = own.public_key_bytes(OWNER)
    assert not own.check_owner_proof(owner_pk, band_pk, NONCE, OwnerProof(signature))


def test_statements_are_distinct_and_fixed_length() -> None:
    band_pk = own.public_key_bytes(BAND)
    owner_pk = own.public_key_bytes(OWNER)
    act = own.activation_statement(owner_pk, TAG, NONCE, band_pk)
    proof = own.owner_proof_statement(band_pk, owner_pk, NONCE)
    assert act.startswith(own.ACTIVATION_CONTEXT)
    assert proof.startswith(own.OWNER_PROOF_CONTEXT)
    assert len(act) == len(own.ACTIVATION_CONTEXT) + 32 + 16 + 16 + 32
    with pytest.raises(own.KeyMaterialError):
        own.owner_proof_statement(band_pk, owner_pk, NONCE[:8])


def test_bad_public_key_bytes_do_not_verify() -> None:
    assert not own.verify_signature(b"\x00" * 31, b"x", b"\x00" * 64)
    assert not own.verify_signature(b"\xff" * 32, b"x", b"\x00" * 64)
