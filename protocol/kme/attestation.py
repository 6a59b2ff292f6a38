"""Manufacturer attestation: the KME factory certifies each band's identity key.

At manufacture the factory signs a :class:`BandCertificate` for the band: the band's
Ed25519 identity public key, a band id derived from its serial number
(:func:`band_id_from_serial`) and the time of issue, signed with the factory key (Ed25519).
The band exposes the certificate (the Band Certificate characteristic); the owner's client
passes it to the cloud when it registers the band; the cloud accepts the band's key only if
the certificate verifies under a factory root it trusts and names that very key
(:func:`verify_certificate`). So a client cannot register a key of its own making as a
band's, and the consent records the cloud later checks with that key really come from a
band.

Wire form: canonical CBOR map with integer keys (docs/protocol.md, "Manufacturer
attestation")::

    {0: version (1), 1: band_public_key (32 bytes), 2: band_id (16 bytes),
     3: issued_at (UTC seconds), 4: signature (64 bytes)}

The signature is Ed25519(factory key, ``"KME-band-certificate-v1\\0" ||`` the canonical
CBOR of the map without key 4).

Simulated bands are made by a simulated factory whose key is a fixed, documented test key
(:data:`SIMULATED_FACTORY_ROOT`); a real deployment configures its own root. This module is
pure: keys and times come from the caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import KmebandError
from protocol.kme.ownership import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, verify_signature

CERTIFICATE_CONTEXT: Final = b"KME-band-certificate-v1\x00"
CERTIFICATE_VERSION: Final = 1
BAND_ID_SIZE: Final = 16
#: Longest certificate accepted (a canonical one is about 130 bytes).
MAX_CERTIFICATE_BYTES: Final = 256

#: The public key of the simulated KME factory root: the Ed25519 key whose 32-byte seed is
#: SHA-256("kmeband simulated KME factory root v1"). A test key, published on purpose: it
#: certifies simulated bands only. ``device_sim.band.factory`` holds its private half.
SIMULATED_FACTORY_ROOT: Final = bytes.fromhex(
    "fe0f146f832910a758c244f59d27e45ce0c212682abb8c35e500e9a55cb5326b"
)
SIMULATED_FACTORY_SEED_LABEL: Final = b"kmeband simulated KME factory root v1"


class AttestationError(KmebandError):
    """A band certificate is malformed, not signed by a trusted root, or for another key."""


@dataclass(frozen=True)
class BandCertificate:
    """The factory's statement that ``band_public_key`` is the key of band ``band_id``."""

    band_public_key: bytes
    band_id: bytes
    issued_at: int
    signature: bytes = b""
    version: int = CERTIFICATE_VERSION

    def signed_bytes(self) -> bytes:
        """What the factory signs: the context label and the map without the signature."""
        body = {0: self.version, 1: self.band_public_key, 2: self.band_id, 3: self.issued_at}
        return CERTIFICATE_CONTEXT + cbor2.dumps(body, canonical=True)

    def encode(self) -> bytes:
        return cbor2.dumps(
            {
                0: self.version,
                1: self.band_public_key,
                2: self.band_id,
                3: self.issued_at,
                4: self.signature,
            },
            canonical=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> BandCertificate:
        """Parse a certificate; :class:`AttestationError` if it is not one (not verified)."""
        if not isinstance(data, bytes | bytearray) or len(data) > MAX_CERTIFICATE_BYTES:
            raise AttestationError("the band certificate is missing or too long")
        try:
            value = cbor2.loads(bytes(data))
        except Exception:
            raise AttestationError("the band certificate is not CBOR") from None
        if not isinstance(value, dict) or set(value) != {0, 1, 2, 3, 4}:
            raise AttestationError("the band certificate does not have the fields 0..4")
        version, key, band_id, issued_at, signature = (value[k] for k in range(5))
        if version != CERTIFICATE_VERSION:
            raise AttestationError(f"band certificate version {version!r} is not supported")
        if not (isinstance(key, bytes) and len(key) == PUBLIC_KEY_SIZE):
            raise AttestationError("the band certificate's key is not a 32-byte Ed25519 key")
        if not (isinstance(band_id, bytes) and len(band_id) == BAND_ID_SIZE):
            raise AttestationError("the band certificate's band id is not 16 bytes")
        if not (isinstance(issued_at, int) and not isinstance(issued_at, bool)) or issued_at < 0:
            raise AttestationError("the band certificate's issue time is not a UTC second")
        if not (isinstance(signature, bytes) and len(signature) == SIGNATURE_SIZE):
            raise AttestationError("the band certificate's signature is not 64 bytes")
        certificate = cls(key, band_id, issued_at, signature, version)
        if certificate.encode() != bytes(data):
            raise AttestationError("the band certificate is not canonical CBOR")
        return certificate

    def __repr__(self) -> str:
        # the key and id identify a band: keep them out of logs
        return f"BandCertificate(version={self.version}, issued_at={self.issued_at})"


def band_id_from_serial(serial: str) -> bytes:
    """The 16-byte band id a certificate carries: a digest of the serial, never the serial."""
    return hashlib.sha256(b"KME-band-id-v1\x00" + serial.encode("utf-8")).digest()[:BAND_ID_SIZE]


def issue_certificate(
    factory_key: Ed25519PrivateKey, band_public_key: bytes, serial: str, issued_at: int
) -> BandCertificate:
    """The factory's certificate for a band's identity key (done once, at manufacture)."""
    unsigned = BandCertificate(bytes(band_public_key), band_id_from_serial(serial), issued_at)
    signature = factory_key.sign(unsigned.signed_bytes())
    return BandCertificate(unsigned.band_public_key, unsigned.band_id, issued_at, signature)


def verify_certificate(
    data: bytes, root_public_key: bytes, band_public_key: bytes
) -> BandCertificate:
    """Check that ``data`` is a certificate for ``band_public_key`` signed by the root.

    Raises :class:`AttestationError` (with what is wrong) otherwise.
    """
    certificate = BandCertificate.decode(data)
    if not verify_signature(root_public_key, certificate.signed_bytes(), certificate.signature):
        raise AttestationError(
            "the band certificate is not signed by a trusted factory root; "
            "only a band made by KME can be registered"
        )
    if certificate.band_public_key != bytes(band_public_key):
        raise AttestationError("the band certificate is for another key than the one registered")
    return certificate


__all__ = [
    "BAND_ID_SIZE",
    "CERTIFICATE_CONTEXT",
    "CERTIFICATE_VERSION",
    "MAX_CERTIFICATE_BYTES",
    "SIMULATED_FACTORY_ROOT",
    "SIMULATED_FACTORY_SEED_LABEL",
    "AttestationError",
    "BandCertificate",
    "band_id_from_serial",
    "issue_certificate",
    "verify_certificate",
]
