"""The LE Secure Connections cryptographic toolbox (Core Spec Vol 3 Part H 2.2).

Every value here is a byte string in the specification's own notation: most significant
octet first, exactly as Appendix D prints its sample data. The SMP PDU codecs
(``protocol.ble.smp_pdu``) reverse the octet order to and from the little-endian wire.

P-256 key agreement uses ``cryptography``; the private key is always the caller's, so this
module never generates randomness.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from protocol.errors import UsageError

#: SALT of f5 (Vol 3 Part H 2.2.7).
F5_SALT = bytes.fromhex("6c888391aaf5a53860370bdb5a6083be")
#: keyID of f5: the ASCII octets "btle".
F5_KEY_ID = bytes.fromhex("62746c65")
#: Length of f5's output in bits (256 = MacKey || LTK), as two octets.
F5_LENGTH = bytes.fromhex("0100")

P256_COORDINATE_LENGTH = 32


class InvalidPublicKey(ValueError):
    """A peer's P-256 public key is not a point on the curve (or is malformed)."""


def _require_length(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise UsageError(f"{name} must be {length} octets, not {len(value)}: pass the full value")


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC with a 128-bit key (RFC 4493), the MAC beneath f4, f5, f6 and g2."""
    _require_length("AES-CMAC key", key, 16)
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def aes_e(key: bytes, plaintext: bytes) -> bytes:
    """The security function e: AES-128 of one block (Vol 3 Part H 2.2.1)."""
    _require_length("e key", key, 16)
    _require_length("e plaintext", plaintext, 16)
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(plaintext) + encryptor.finalize()


def f4(u: bytes, v: bytes, x: bytes, z: int) -> bytes:
    """Confirm value generation f4(U, V, X, Z) = AES-CMAC_X(U || V || Z) (2.2.6).

    ``u`` and ``v`` are 256-bit public-key X coordinates, ``x`` the 128-bit nonce used as
    key, ``z`` one octet (0 for Just Works / numeric comparison, 0x80 | bit for passkey).
    """
    _require_length("f4 U", u, 32)
    _require_length("f4 V", v, 32)
    if not 0 <= z <= 0xFF:
        raise UsageError("f4 Z must be one octet (0..255)")
    return aes_cmac(x, u + v + bytes([z]))


def f5(w: bytes, n1: bytes, n2: bytes, a1: bytes, a2: bytes) -> tuple[bytes, bytes]:
    """Key generation f5 (2.2.7): returns (MacKey, LTK) from the DHKey ``w``.

    ``n1``/``n2`` are the 128-bit nonces, ``a1``/``a2`` the 56-bit device addresses
    (address type octet first, then the 48-bit address).
    """
    _require_length("f5 W", w, 32)
    _require_length("f5 N1", n1, 16)
    _require_length("f5 N2", n2, 16)
    _require_length("f5 A1", a1, 7)
    _require_length("f5 A2", a2, 7)
    t = aes_cmac(F5_SALT, w)
    body = F5_KEY_ID + n1 + n2 + a1 + a2 + F5_LENGTH
    mac_key = aes_cmac(t, b"\x00" + body)
    ltk = aes_cmac(t, b"\x01" + body)
    return mac_key, ltk


def f6(w: bytes, n1: bytes, n2: bytes, r: bytes, io_cap: bytes, a1: bytes, a2: bytes) -> bytes:
    """Check value generation f6 = AES-CMAC_W(N1 || N2 || R || IOcap || A1 || A2) (2.2.8)."""
    _require_length("f6 W", w, 16)
    _require_length("f6 N1", n1, 16)
    _require_length("f6 N2", n2, 16)
    _require_length("f6 R", r, 16)
    _require_length("f6 IOcap", io_cap, 3)
    _require_length("f6 A1", a1, 7)
    _require_length("f6 A2", a2, 7)
    return aes_cmac(w, n1 + n2 + r + io_cap + a1 + a2)


def g2(u: bytes, v: bytes, x: bytes, y: bytes) -> int:
    """Numeric comparison value g2 (2.2.9): a 32-bit integer; the six digits are mod 10**6."""
    _require_length("g2 U", u, 32)
    _require_length("g2 V", v, 32)
    _require_length("g2 Y", y, 16)
    return int.from_bytes(aes_cmac(x, u + v + y)[-4:], "big")


def ah(k: bytes, r: bytes) -> bytes:
    """Random address hash ah(k, r) = e(k, padding || r) mod 2**24 (2.2.2)."""
    _require_length("ah r", r, 3)
    return aes_e(k, bytes(13) + r)[-3:]


def p256_public_key_xy(private_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    """The X and Y coordinates (32 octets each, MSB first) of a P-256 private key's point."""
    _require_p256(private_key)
    numbers = private_key.public_key().public_numbers()
    return (
        numbers.x.to_bytes(P256_COORDINATE_LENGTH, "big"),
        numbers.y.to_bytes(P256_COORDINATE_LENGTH, "big"),
    )


def p256_dhkey(private_key: ec.EllipticCurvePrivateKey, peer_x: bytes, peer_y: bytes) -> bytes:
    """The DHKey: the X coordinate (MSB first) of private_key times the peer's point.

    Raises :class:`InvalidPublicKey` when the peer's point is not on P-256, which defeats
    the invalid-curve attack on ECDH (CVE-2018-5383).
    """
    _require_p256(private_key)
    if len(peer_x) != P256_COORDINATE_LENGTH or len(peer_y) != P256_COORDINATE_LENGTH:
        raise InvalidPublicKey("a P-256 coordinate is 32 octets")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + peer_x + peer_y
        )
    except ValueError as exc:
        raise InvalidPublicKey("the peer's public key is not a point on P-256") from exc
    return private_key.exchange(ec.ECDH(), peer)


def _require_p256(private_key: ec.EllipticCurvePrivateKey) -> None:
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise UsageError("LE Secure Connections needs a P-256 (SECP256R1) private key")
