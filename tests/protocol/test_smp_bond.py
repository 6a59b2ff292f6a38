"""Bonds survive storage; damaged storage is a typed error. Rate limiting backs off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp_bond import Bond, BondFormatError
from protocol.ble.smp_pdu import DeviceAddress
from protocol.ble.smp_rate_limit import PairingRateLimiter
from protocol.errors import UsageError

bonds = st.builds(
    Bond,
    peer_address=st.builds(DeviceAddress, st.binary(min_size=6, max_size=6), st.booleans()),
    ltk=st.binary(min_size=16, max_size=16),
    security_level=st.sampled_from(SecurityLevel),
    key_size=st.integers(7, 16),
    ediv=st.integers(0, 0xFFFF),
    rand=st.integers(0, (1 << 64) - 1),
    secure_connections=st.booleans(),
    peer_irk=st.none() | st.binary(min_size=16, max_size=16),
)


@given(bonds)
def test_bond_round_trips_through_bytes(bond: Bond) -> None:
    assert Bond.from_bytes(bond.to_bytes()) == bond


@given(st.binary(max_size=200))
def test_damaged_bond_bytes_raise_the_typed_error(data: bytes) -> None:
    try:
        bond = Bond.from_bytes(data)
    except BondFormatError:
        return
    assert Bond.from_bytes(bond.to_bytes()) == bond


def test_bond_fields_are_type_checked_on_load() -> None:
    import cbor2

    good = Bond(DeviceAddress(bytes(6)), bytes(16), SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS)
    raw = cbor2.loads(good.to_bytes())
    for key, bad in [("key_size", True), ("ltk", "x"), ("level", 9), ("v", 2), ("addr", b"1")]:
        damaged = dict(raw, **{key: bad})
        with pytest.raises(BondFormatError):
            Bond.from_bytes(cbor2.dumps(damaged))


def test_bond_repr_leaves_out_the_keys() -> None:
    ltk = bytes.fromhex("00112233445566778899aabbccddeeff")
    bond = Bond(DeviceAddress(bytes(6)), ltk, SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS)
    assert ltk.hex() not in repr(bond) and "ltk" not in repr(bond)
    with pytest.raises(UsageError):
        Bond(DeviceAddress(bytes(6)), ltk[:8], SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS)


def test_rate_limiter_backs_off_exponentially_and_resets_on_success() -> None:
    limiter = PairingRateLimiter(base_delay_s=2.0, max_delay_s=30.0)
    assert limiter.allows(0.0)
    limiter.record_failure(100.0)
    assert not limiter.allows(101.0)
    assert limiter.retry_after(101.0) == 1.0
    assert limiter.allows(102.0)
    delays = []
    for _ in range(5):
        limiter.record_failure(200.0)
        delays.append(limiter.retry_after(200.0))
    assert delays == [4.0, 8.0, 16.0, 30.0, 30.0]
    limiter.record_success()
    assert limiter.consecutive_failures == 0 and limiter.allows(200.0)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50))
def test_rate_limiter_never_shortens_the_wait(times: list[float]) -> None:
    limiter = PairingRateLimiter()
    previous = 0.0
    for now in sorted(times):
        limiter.record_failure(now)
        assert limiter.current_delay_s() >= previous
        assert not limiter.allows(now)
        previous = limiter.current_delay_s()


def test_rate_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(UsageError):
        PairingRateLimiter(base_delay_s=0)
    with pytest.raises(UsageError):
        PairingRateLimiter(base_delay_s=5, max_delay_s=1)
