"""The LE SC toolbox against the Core Specification's sample data (Vol 3 Part H Appendix D).

Values are written as the specification prints them (most significant octet first, in
groups of four octets) and compared verbatim.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.ble.smp_crypto import (
    InvalidPublicKey,
    aes_cmac,
    ah,
    f4,
    f5,
    f6,
    g2,
    p256_dhkey,
    p256_public_key_xy,
)
from protocol.errors import UsageError


def spec(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# D.1 AES-CMAC (the RFC 4493 examples)
CMAC_KEY = spec("2b7e1516 28aed2a6 abf71588 09cf4f3c")
CMAC_M = spec(
    "6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51"
    " 30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710"
)


@pytest.mark.parametrize(
    ("length", "mac"),
    [
        (0, "bb1d6929 e9593728 7fa37d12 9b756746"),
        (16, "070a16b4 6b4d4144 f79bdd9d d04a287c"),
        (40, "dfa66747 de9ae630 30ca3261 1497c827"),
        (64, "51f0bebf 7e3b9d92 fc497417 79363cfe"),
    ],
)
def test_aes_cmac_sample_data(length: int, mac: str) -> None:
    assert aes_cmac(CMAC_KEY, CMAC_M[:length]) == spec(mac)


# P-256 sample data, data set 1 and 2
PRIVATE_A1 = spec("3f49f6d4 a3c55f38 74c9b3e3 d2103f50 4aff607b eb40b799 5899b8a6 cd3c1abd")
PRIVATE_B1 = spec("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd")
PUBLIC_A1_X = spec("20b003d2 f297be2c 5e2c83a7 e9f9a5b9 eff49111 acf4fddb cc030148 0e359de6")
PUBLIC_A1_Y = spec("dc809c49 652aeb6d 63329abf 5a52155c 766345c2 8fed3024 741c8ed0 1589d28b")
PUBLIC_B1_X = spec("1ea1f0f0 1faf1d96 09592284 f19e4c00 47b58afd 8615a69f 559077b2 2faaa190")
PUBLIC_B1_Y = spec("4c55f33e 429dad37 7356703a 9ab85160 472d1130 e28e3676 5f89aff9 15b1214a")
DHKEY1 = spec("ec0234a3 57c8ad05 341010a6 0a397d9b 99796b13 b4f866f1 868d34f3 73bfa698")

PRIVATE_A2 = spec("06a51669 3c9aa31a 6084545d 0c5db641 b48572b9 7203ddff b7ac73f7 d0457663")
PRIVATE_B2 = spec("529aa067 0d72cd64 97502ed4 73502b03 7e8803b5 c60829a5 a3caa219 505530ba")
PUBLIC_A2_X = spec("2c31a47b 5779809e f44cb5ea af5c3e43 d5f8faad 4a8794cb 987e9b03 745c78dd")
DHKEY2 = spec("ab85843a 2f6d883f 62e5684b 38e30733 5fe6e194 5ecd1960 4105c6f2 3221eb69")


def private_key(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())


def test_p256_data_set_1_public_keys_and_dhkey() -> None:
    a, b = private_key(PRIVATE_A1), private_key(PRIVATE_B1)
    assert p256_public_key_xy(a) == (PUBLIC_A1_X, PUBLIC_A1_Y)
    assert p256_public_key_xy(b) == (PUBLIC_B1_X, PUBLIC_B1_Y)
    assert p256_dhkey(a, PUBLIC_B1_X, PUBLIC_B1_Y) == DHKEY1
    assert p256_dhkey(b, PUBLIC_A1_X, PUBLIC_A1_Y) == DHKEY1


def test_p256_data_set_2_dhkey_from_both_sides() -> None:
    a, b = private_key(PRIVATE_A2), private_key(PRIVATE_B2)
    ax, ay = p256_public_key_xy(a)
    bx, by = p256_public_key_xy(b)
    assert ax == PUBLIC_A2_X
    assert p256_dhkey(a, bx, by) == DHKEY2
    assert p256_dhkey(b, ax, ay) == DHKEY2


def test_point_off_the_curve_is_rejected() -> None:
    off_curve_y = PUBLIC_B1_Y[:-1] + bytes([PUBLIC_B1_Y[-1] ^ 1])
    with pytest.raises(InvalidPublicKey):
        p256_dhkey(private_key(PRIVATE_A1), PUBLIC_B1_X, off_curve_y)
    with pytest.raises(InvalidPublicKey):
        p256_dhkey(private_key(PRIVATE_A1), PUBLIC_B1_X[:31], PUBLIC_B1_Y)


def test_private_key_on_another_curve_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        p256_public_key_xy(ec.derive_private_key(7, ec.SECP384R1()))


# D.2 to D.5: f4, f5, f6, g2
U = spec("20b003d2 f297be2c 5e2c83a7 e9f9a5b9 eff49111 acf4fddb cc030148 0e359de6")
V = spec("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd")
X = spec("d5cb8454 d177733e ffffb2ec 712baeab")
Y = spec("a6e8e7cc 25a75f6e 216583f7 ff3dc4cf")
N1 = spec("d5cb8454 d177733e ffffb2ec 712baeab")
N2 = spec("a6e8e7cc 25a75f6e 216583f7 ff3dc4cf")
A1 = spec("00561237 37bfce")
A2 = spec("00a71370 2dcfc1")
MAC_KEY = spec("2965f176 a1084a02 fd3f6a20 ce636e20")
LTK = spec("69867911 69d7cd23 980522b5 94750a38")


def test_f4_sample_data() -> None:
    assert f4(U, V, X, 0x00) == spec("f2c916f1 07a9bd1c f1eda1be a974872d")


def test_f5_sample_data() -> None:
    assert f5(DHKEY1, N1, N2, A1, A2) == (MAC_KEY, LTK)


def test_f6_sample_data() -> None:
    r = spec("12a3343b b453bb54 08da42d2 0c2d0fc8")
    io_cap = spec("010102")
    assert f6(MAC_KEY, N1, N2, r, io_cap, A1, A2) == spec("e3c47398 9cd0e8c5 d26c0b09 da958f61")


def test_g2_sample_data() -> None:
    value = g2(U, V, X, Y)
    assert value == 0x2F9ED5BA
    assert value % 1_000_000 == 938554


def test_ah_sample_data() -> None:
    irk = spec("ec0234a3 57c8ad05 341010a6 0a397d9b")
    assert ah(irk, spec("708194")) == spec("0dfbaa")


@pytest.mark.parametrize(
    "call",
    [
        lambda: f4(U[:31], V, X, 0),
        lambda: f4(U, V, X, 256),
        lambda: f5(DHKEY1, N1, N2, A1[:6], A2),
        lambda: f6(MAC_KEY, N1, N2, N1, b"\x01\x01", A1, A2),
        lambda: g2(U, V, X, Y[:15]),
        lambda: aes_cmac(b"short", b""),
    ],
)
def test_wrong_lengths_are_usage_errors(call: object) -> None:
    with pytest.raises(UsageError):
        call()  # type: ignore[operator]
