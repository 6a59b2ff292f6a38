"""Seal a batch to the ingest's public key with HPKE (RFC 9180), before it touches disk.

The framing, header encoding and ``info`` string are ``protocol.kme.batch``'s; this module
only adds the one thing the pure layer may not do: draw the ephemeral key (inside
cryptography's ``Suite.encrypt``).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PublicKey,
    Suite,
)

from protocol.kme.batch import (
    ENC_LEN,
    SUITE_MLKEM768_X25519,
    SUITE_X25519,
    BatchError,
    BatchHeader,
    HpkeSuiteId,
    UnsupportedBatchError,
    encode_envelope,
    header_aad,
    hpke_info,
)

RecipientPublicKey = x25519.X25519PublicKey | MLKEM768X25519PublicKey

_SUITES = {
    SUITE_X25519: Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
    SUITE_MLKEM768_X25519: Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
}
_KEY_TYPES: dict[HpkeSuiteId, type] = {
    SUITE_X25519: x25519.X25519PublicKey,
    SUITE_MLKEM768_X25519: MLKEM768X25519PublicKey,
}


class SealingError(BatchError):
    """A batch could not be sealed (a key that does not match the suite)."""


def seal_batch(
    header: BatchHeader,
    plaintext: bytes,
    recipient_public_key: RecipientPublicKey,
    suite: HpkeSuiteId = SUITE_X25519,
) -> bytes:
    """Encrypt ``plaintext`` (from ``encode_batch_plaintext``) and frame the envelope.

    The header travels in clear and is authenticated: its canonical encoding is bound
    into the key schedule through the HPKE ``info`` string.
    """
    hpke_suite = _SUITES.get(suite)
    if hpke_suite is None:
        raise UnsupportedBatchError("unsupported HPKE suite; use SUITE_X25519")
    if not isinstance(recipient_public_key, _KEY_TYPES[suite]):
        raise SealingError(
            "the ingest's public key does not belong to the chosen HPKE suite; fetch the "
            "key for that suite from GET /v1/keys"
        )
    info = hpke_info(header_aad(header))
    sealed = hpke_suite.encrypt(plaintext, recipient_public_key, info=info)
    enc_len = ENC_LEN[suite]
    return encode_envelope(suite, header, sealed[:enc_len], sealed[enc_len:])
