"""Manufacturer attestation: certificates verify under the factory root, forgeries do not."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.kme.attestation import (
    SIMULATED_FACTORY_ROOT,
    SIMULATED_FACTORY_SEED_LABEL,
    AttestationError,
    BandCertificate,
    band_id_from_serial,
    issue_certificate,
    verify_certificate,
)

FACTORY = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(SIMULATED_FACTORY_SEED_LABEL).digest()
)
BAND = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32).public_key().public_bytes_raw()


def test_the_documented_root_is_the_simulated_factory_key() -> None:
    assert FACTORY.public_key().public_bytes_raw() == SIMULATED_FACTORY_ROOT


def test_a_factory_certificate_round_trips_and_verifies() -> None:
    certificate = issue_certificate(FACTORY, BAND, "KME-0001", 1_764_547_200)
    data = certificate.encode()
    assert BandCertificate.decode(data) == certificate
    checked = verify_certificate(data, SIMULATED_FACTORY_ROOT, BAND)
    assert checked.band_id == band_id_from_serial("KME-0001") != b"KME-0001"
    assert "KME-0001" not in repr(checked) and BAND.hex() not in repr(checked)


def test_a_self_signed_or_foreign_certificate_is_refused() -> None:
    # the band's own key (or any key but the factory's) cannot certify itself
    forger = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
    forged = issue_certificate(forger, BAND, "KME-0001", 0).encode()
    with pytest.raises(AttestationError, match="trusted factory root"):
        verify_certificate(forged, SIMULATED_FACTORY_ROOT, BAND)
    # a genuine certificate of another band's key does not vouch for this key
    other = Ed25519PrivateKey.from_private_bytes(b"\x06" * 32).public_key().public_bytes_raw()
    genuine_other = issue_certificate(FACTORY, other, "KME-0002", 0).encode()
    with pytest.raises(AttestationError, match="another key"):
        verify_certificate(genuine_other, SIMULATED_FACTORY_ROOT, BAND)
    # a different trusted root refuses the simulated factory's certificates
    genuine = issue_certificate(FACTORY, BAND, "KME-0001", 0).encode()
    with pytest.raises(AttestationError):
        verify_certificate(genuine, other, BAND)


@pytest.mark.parametrize("position", [3, 10, 40, 60, 100])
def test_any_changed_byte_is_refused(position: int) -> None:
    data = bytearray(issue_certificate(FACTORY, BAND, "KME-0001", 7).encode())
    data[position % len(data)] ^= 0x01
    with pytest.raises(AttestationError):
        verify_certificate(bytes(data), SIMULATED_FACTORY_ROOT, BAND)


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xa0", b"\x80", b"x" * 300])
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(AttestationError):
        BandCertificate.decode(data)
