"""Open a sealed batch: parse the envelope, then HPKE-decrypt with the header bound in."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    Suite,
)

from cloud_ingest.keys import IngestKeys, PrivateKey
from protocol.kme.batch import (
    SUITE_MLKEM768_X25519,
    SUITE_X25519,
    BatchError,
    BatchHeader,
    Envelope,
    decode_envelope,
    hpke_info,
)

_SUITES = {
    SUITE_X25519: Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
    SUITE_MLKEM768_X25519: Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
}
_KEY_TYPES = {
    SUITE_X25519: x25519.X25519PrivateKey,
    SUITE_MLKEM768_X25519: MLKEM768X25519PrivateKey,
}


class BatchOpenError(BatchError):
    """The batch does not open: sealed to another key, or altered on the way."""


def open_batch(envelope: bytes, private_key: PrivateKey | IngestKeys) -> tuple[BatchHeader, bytes]:
    """Parse and decrypt an envelope; return its (authenticated) header and plaintext.

    ``private_key`` is either one private key or the ingest's :class:`IngestKeys`, which
    picks the key of the envelope's suite.
    """
    return open_envelope(decode_envelope(envelope), private_key)


def open_envelope(
    parsed: Envelope, private_key: PrivateKey | IngestKeys
) -> tuple[BatchHeader, bytes]:
    """Decrypt an envelope already parsed with ``protocol.kme.batch.decode_envelope``."""
    key = (
        private_key.private_key(parsed.suite)
        if isinstance(private_key, IngestKeys)
        else private_key
    )
    if not isinstance(key, _KEY_TYPES[parsed.suite]):
        raise BatchOpenError("the batch was sealed for another HPKE suite than this key's")
    info = hpke_info(parsed.header_bytes)
    try:
        plaintext = _SUITES[parsed.suite].decrypt(parsed.enc + parsed.ciphertext, key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise BatchOpenError(
            "the batch does not open: it was sealed to another key or altered on the way; "
            "fetch the current key from GET /v1/keys and seal it again"
        ) from exc
    return parsed.header, plaintext
