"""How the band bounds guessing: only attempts that test a secret count as failures.

A pairing that showed its passkey and failed, and a checked ownership proof that was
wrong, count; a pairing refused before its passkey (Repeated Attempts, Just Works) tested
nothing and neither counts nor extends the lock-out (docs/pairing.md, docs/protocol.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from band_central import Central
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import ManualClock
from device_sim.radio import SMP_CID, DisconnectReason, Radio
from protocol.ble.smp_pdu import AuthReq, IoCapability, KeyDistribution, PairingRequest
from protocol.kme.control.activation import OwnerChallenge, RequestOwnerChallenge
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.schema import decode_as, encode_control
from protocol.kme.ownership import OWNER_PROOF_FREE_FAILURES, activation_request, prove_ownership
from protocol.kme.profile import KME_ACTIVATION_CONTROL_POINT


async def _setup(seed: int = 21) -> tuple[ManualClock, Radio, BandGattEndpoint]:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=seed, fidelity="summary"), clock)
    band.simulate_until(clock.now() + 600)
    radio = Radio(clock, seed=seed)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    return clock, radio, endpoint


def _wrong(endpoint: BandGattEndpoint) -> int:
    return (int(endpoint.display or "0") + 1) % 1_000_000


async def test_refused_pairing_attempts_do_not_extend_the_lock_out() -> None:
    clock, radio, endpoint = await _setup()
    central = await Central(radio, endpoint.address, seed=1).connect()
    with pytest.raises(AssertionError, match="CONFIRM_VALUE_FAILED"):
        await central.pair(lambda: _wrong(endpoint))  # a real guess: it counts
    assert endpoint.limiter.consecutive_failures == 1
    for _ in range(8):  # eight tries during the 2 s back-off: each refused, none a guess
        with pytest.raises(AssertionError, match="REPEATED_ATTEMPTS"):
            await central.pair(lambda: endpoint.display)
    assert endpoint.limiter.consecutive_failures == 1
    assert endpoint.limiter.retry_after(clock.now()) == pytest.approx(2.0)
    await clock.advance(2.0)  # the wait the one real failure earned, not 256 s
    await central.pair(lambda: endpoint.display)
    assert endpoint.limiter.consecutive_failures == 0


async def test_a_just_works_request_is_refused_without_counting() -> None:
    _, radio, endpoint = await _setup()
    central = await Central(radio, endpoint.address, seed=2).connect()
    just_works = PairingRequest(
        io_capability=IoCapability.NO_INPUT_NO_OUTPUT,
        oob_data_present=False,
        auth_req=AuthReq.BONDING | AuthReq.SECURE_CONNECTIONS,
        max_key_size=16,
        initiator_key_distribution=KeyDistribution.NONE,
        responder_key_distribution=KeyDistribution.NONE,
    )
    for _ in range(10):
        central.link.send(SMP_CID, just_works.encode())
    assert endpoint.display is None  # no passkey was ever shown
    assert endpoint.limiter.consecutive_failures == 0
    await central.pair(lambda: endpoint.display)  # the owner pairs at once


async def test_leaving_mid_pairing_clears_the_passkey_and_locks_nobody_out() -> None:
    _, radio, endpoint = await _setup()
    central = await Central(radio, endpoint.address, seed=3).connect()

    def never_typed() -> int:
        raise LookupError("the user walked away")

    with pytest.raises(LookupError):
        await central.pair(never_typed)  # the passkey stays on the band's screen
    assert endpoint.display is not None
    await central.link.disconnect()  # a flaky phone, or a SIGKILLed client
    assert endpoint.display is None
    assert endpoint.limiter.consecutive_failures == 0  # no guess was tested
    again = await Central(radio, endpoint.address, seed=30).connect()
    await again.pair(lambda: endpoint.display)  # the owner pairs at once


async def _owned(radio: Radio, endpoint: BandGattEndpoint) -> tuple[Ed25519PrivateKey, bytes]:
    first = await Central(radio, endpoint.address, seed=4).connect()
    bond = await first.pair(lambda: endpoint.display)
    await first.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    owner = Ed25519PrivateKey.generate()
    request = activation_request(owner, b"\x01" * 16, b"\x02" * 16)
    await first.control(KME_ACTIVATION_CONTROL_POINT, encode_control(request))
    await first.link.disconnect()
    return owner, bond.ltk


async def _prove(central: Central, endpoint: BandGattEndpoint, key: Ed25519PrivateKey) -> Any:
    challenge = decode_as(
        await central.control(
            KME_ACTIVATION_CONTROL_POINT, encode_control(RequestOwnerChallenge())
        ),
        OwnerChallenge,
    )
    if challenge.nonce is None:
        return challenge.status
    proof = prove_ownership(key, endpoint.band.identity.public_key_bytes, challenge.nonce)
    answer = decode_as(
        await central.control(KME_ACTIVATION_CONTROL_POINT, encode_control(proof)),
        ControlResult,
    )
    return answer.status


async def test_repeated_wrong_owner_proofs_get_rate_limited_and_the_owner_gets_in_after() -> None:
    clock, radio, endpoint = await _setup()
    owner, ltk = await _owned(radio, endpoint)
    other = await Central(radio, endpoint.address, seed=5).connect()
    await other.link.start_encryption(ltk)
    await other.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    stranger = Ed25519PrivateKey.generate()
    S = ControlStatus
    for _ in range(OWNER_PROOF_FREE_FAILURES + 1):
        assert await _prove(other, endpoint, stranger) is S.AUTH_FAILED
    # now the band backs off: no challenge, and even the right key must wait
    assert await _prove(other, endpoint, stranger) is S.RATE_LIMITED
    assert await _prove(other, endpoint, owner) is S.RATE_LIMITED
    assert endpoint.owner_limiter.consecutive_failures == OWNER_PROOF_FREE_FAILURES + 1
    await clock.advance(2.0)
    assert await _prove(other, endpoint, stranger) is S.AUTH_FAILED  # the wait doubles
    await clock.advance(2.0)
    assert await _prove(other, endpoint, owner) is S.RATE_LIMITED
    await clock.advance(2.0)
    assert await _prove(other, endpoint, owner) is S.OK
    assert endpoint.owner_limiter.consecutive_failures == 0


async def test_a_proof_sent_during_the_back_off_is_refused_unchecked() -> None:
    clock, radio, endpoint = await _setup()
    owner, ltk = await _owned(radio, endpoint)
    other = await Central(radio, endpoint.address, seed=6).connect()
    await other.link.start_encryption(ltk)
    await other.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    stranger = Ed25519PrivateKey.generate()
    for _ in range(OWNER_PROOF_FREE_FAILURES):
        assert await _prove(other, endpoint, stranger) is ControlStatus.AUTH_FAILED
    # take a challenge while still allowed, fail once more, then answer it in the back-off
    challenge = decode_as(
        await other.control(KME_ACTIVATION_CONTROL_POINT, encode_control(RequestOwnerChallenge())),
        OwnerChallenge,
    )
    assert challenge.nonce is not None
    endpoint.owner_limiter.record_failure(clock.now())
    proof = prove_ownership(owner, endpoint.band.identity.public_key_bytes, challenge.nonce)
    answer = decode_as(
        await other.control(KME_ACTIVATION_CONTROL_POINT, encode_control(proof)),
        ControlResult,
    )
    assert answer.status is ControlStatus.RATE_LIMITED
    assert endpoint.owner_limiter.consecutive_failures == OWNER_PROOF_FREE_FAILURES + 1


def test_free_failures_cost_nothing_then_the_wait_doubles() -> None:
    from protocol.ble.smp_rate_limit import FailureBackoff

    backoff = FailureBackoff(base_delay_s=2.0, max_delay_s=600.0, free_failures=2)
    waits = []
    for n in range(6):
        backoff.record_failure(100.0 * n)
        waits.append(backoff.retry_after(100.0 * n))
    assert waits == [0.0, 0.0, 2.0, 4.0, 8.0, 16.0]


# -- the bound on unauthenticated links ------------------------------------------------


async def test_a_central_that_never_authenticates_is_dropped_and_the_owner_gets_in() -> None:
    clock, radio, endpoint = await _setup()
    squatter = await Central(radio, endpoint.address, seed=7).connect()
    assert await radio.scan() == []  # the band's one connection is taken
    await clock.advance(29.0)
    assert squatter.link.connected  # reading open characteristics is fine for a while
    await clock.advance(1.0)
    assert not squatter.link.connected
    assert squatter.disconnects == [DisconnectReason.REMOTE_USER_TERMINATED]
    assert [r.address for r in await radio.scan()] == [endpoint.address]
    owner = await Central(radio, endpoint.address, seed=8).connect()
    await owner.pair(lambda: endpoint.display)
    await clock.advance(3600.0)
    assert owner.link.connected  # an authenticated link is never dropped for it


async def test_a_bonded_central_that_encrypts_in_time_keeps_its_link() -> None:
    clock, radio, endpoint = await _setup()
    first = await Central(radio, endpoint.address, seed=9).connect()
    bond = await first.pair(lambda: endpoint.display)
    await first.link.disconnect()
    again = await Central(radio, endpoint.address, seed=10).connect()
    await clock.advance(20.0)
    await again.link.start_encryption(bond.ltk)
    await clock.advance(600.0)
    assert again.link.connected


async def test_a_pairing_left_hanging_does_not_hold_the_band() -> None:
    clock, radio, endpoint = await _setup()
    hanging = await Central(radio, endpoint.address, seed=11).connect()

    def never_typed() -> int:
        raise LookupError("the user walked away")

    with pytest.raises(LookupError):
        await hanging.pair(never_typed)
    await clock.advance(30.0)
    assert not hanging.link.connected
    assert endpoint.display is None  # the passkey left the screen with the link


async def test_the_bound_is_configurable_and_can_be_switched_off() -> None:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=12, fidelity="summary"), clock)
    radio = Radio(clock, seed=12)
    endpoint = BandGattEndpoint(band, auth_timeout_s=5.0)
    radio.attach(endpoint)
    central = await Central(radio, endpoint.address, seed=12).connect()
    await clock.advance(5.0)
    assert not central.link.connected
    radio.detach(endpoint.address)
    unbounded = BandGattEndpoint(band, auth_timeout_s=None)
    radio.attach(unbounded)
    central = await Central(radio, unbounded.address, seed=13).connect()
    await clock.advance(86400.0)
    assert central.link.connected
