"""The ownership scheme: activation binds a band to an owner key; each connection proves it.

Keys are Ed25519 (RFC 8032). The band has its own identity key pair from manufacture; its
public key is the Band Identity characteristic. The owner key pair belongs to the account
and lives on the owner's phones (never on the band); the band stores only its public key.

Activation (band unowned, on an authenticated LE Secure Connections link, so the user has
confirmed the passkey shown on the band):

1. the client writes :class:`~protocol.kme.control.ActivationRequest` (owner public key,
   a pseudonymous 16-byte account tag, a 16-byte client nonce);
2. the band stores the owner key and answers :class:`~protocol.kme.control.ActivationResult`
   with its public key and ``attestation`` = Ed25519(band key, :func:`activation_statement`);
3. the client checks the attestation (:func:`verify_activation`) and registers the band's
   public key with the cloud, which then verifies band-signed records and consent pages.

Every later connection: the client writes ``RequestOwnerChallenge``; the band answers
``OwnerChallenge`` with a fresh single-use 16-byte nonce (random bytes passed in by the
firmware); the client writes ``OwnerProof`` = Ed25519(owner key,
:func:`owner_proof_statement`); the band checks it (:func:`check_owner_proof`) and treats the
connection as the owner's until it ends. The nonce dies with the connection or the first
proof, so a recorded proof never works twice. Statements concatenate fixed-length fields
after a context label, so they are unambiguous and cannot be confused with each other.

This module is pure: keys and nonces come from the caller.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.ble.smp_rate_limit import FailureBackoff
from protocol.errors import KmebandError, UsageError
from protocol.kme.control.activation import (
    ActivationRequest,
    ActivationResult,
    KeyAlgorithm,
    OwnerProof,
)
from protocol.kme.control.common import ControlStatus

ACTIVATION_CONTEXT = b"KME-activation-v1\x00"
OWNER_PROOF_CONTEXT = b"KME-owner-proof-v1\x00"
PUBLIC_KEY_SIZE = 32
NONCE_SIZE = 16
ACCOUNT_TAG_SIZE = 16
SIGNATURE_SIZE = 64


class OwnershipError(KmebandError):
    """An ownership step cannot go on (bad key material or a refused activation)."""


class KeyMaterialError(OwnershipError, UsageError):
    """A key, nonce or tag has the wrong size; pass the bytes the protocol specifies."""


def _need(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise KeyMaterialError(f"{what} must be {size} bytes")
    return bytes(value)


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from its 32-byte seed (drawn by the caller)."""
    return Ed25519PrivateKey.from_private_bytes(_need(seed, 32, "an Ed25519 seed"))


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a private key."""
    return private_key.public_key().public_bytes_raw()


def activation_statement(
    owner_public_key: bytes, account_tag: bytes, client_nonce: bytes, band_public_key: bytes
) -> bytes:
    """What the band signs on activation: context || owner key || tag || nonce || band key."""
    return (
        ACTIVATION_CONTEXT
        + _need(owner_public_key, PUBLIC_KEY_SIZE, "owner public key")
        + _need(account_tag, ACCOUNT_TAG_SIZE, "account tag")
        + _need(client_nonce, NONCE_SIZE, "client nonce")
        + _need(band_public_key, PUBLIC_KEY_SIZE, "band public key")
    )


def owner_proof_statement(band_public_key: bytes, owner_public_key: bytes, nonce: bytes) -> bytes:
    """What the owner signs per connection: context || band key || owner key || nonce."""
    return (
        OWNER_PROOF_CONTEXT
        + _need(band_public_key, PUBLIC_KEY_SIZE, "band public key")
        + _need(owner_public_key, PUBLIC_KEY_SIZE, "owner public key")
        + _need(nonce, NONCE_SIZE, "challenge nonce")
    )


def verify_signature(public_key: bytes, statement: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``statement`` by ``public_key``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), statement)
    except (InvalidSignature, ValueError):
        return False
    return True


def attest_activation(band_key: Ed25519PrivateKey, request: ActivationRequest) -> ActivationResult:
    """The band's OK answer to an activation request (the firmware checks state first)."""
    band_public = public_key_bytes(band_key)
    statement = activation_statement(
        request.owner_public_key, request.account_tag, request.client_nonce, band_public
    )
    return ActivationResult(ControlStatus.OK, band_public, band_key.sign(statement))


def verify_activation(request: ActivationRequest, result: ActivationResult) -> bytes:
    """Check the band's activation answer; return the band's public key.

    Raises :class:`OwnershipError` if the band refused or the attestation does not verify.
    """
    if result.status != ControlStatus.OK:
        raise OwnershipError(
            f"the band refused activation ({ControlStatus(result.status).name}); "
            "an owned band must be factory-reset by its owner first"
        )
    if result.band_public_key is None or result.attestation is None:
        raise OwnershipError("the band's activation answer lacks its key or attestation")
    statement = activation_statement(
        request.owner_public_key, request.account_tag, request.client_nonce,
        result.band_public_key,
    )  # fmt: skip
    if not verify_signature(result.band_public_key, statement, result.attestation):
        raise OwnershipError("the band's activation attestation does not verify; do not trust it")
    return result.band_public_key


def activation_request(
    owner_key: Ed25519PrivateKey, account_tag: bytes, client_nonce: bytes
) -> ActivationRequest:
    """The client's activation request for the owner key."""
    return ActivationRequest(
        KeyAlgorithm.ED25519,
        public_key_bytes(owner_key),
        _need(account_tag, ACCOUNT_TAG_SIZE, "account tag"),
        _need(client_nonce, NONCE_SIZE, "client nonce"),
    )


def prove_ownership(
    owner_key: Ed25519PrivateKey, band_public_key: bytes, nonce: bytes
) -> OwnerProof:
    """The client's answer to an OwnerChallenge."""
    statement = owner_proof_statement(band_public_key, public_key_bytes(owner_key), nonce)
    return OwnerProof(owner_key.sign(statement))


def check_owner_proof(
    owner_public_key: bytes, band_public_key: bytes, nonce: bytes, proof: OwnerProof
) -> bool:
    """The band's check of an OwnerProof against the nonce it issued on this connection."""
    statement = owner_proof_statement(band_public_key, owner_public_key, nonce)
    return verify_signature(owner_public_key, statement, proof.signature)


#: Wrong owner proofs in a row that cost nothing (another account's phone may try once or
#: twice); after them the band answers ``RATE_LIMITED`` for 2 s, then 4 s, 8 s, ... up to
#: 10 minutes after the last wrong proof, until a right one resets the count.
OWNER_PROOF_FREE_FAILURES = 2


def owner_proof_limiter() -> FailureBackoff:
    """The back-off a band applies to ownership proofs (docs/protocol.md, Ownership)."""
    return FailureBackoff(
        base_delay_s=2.0, max_delay_s=600.0, free_failures=OWNER_PROOF_FREE_FAILURES
    )
