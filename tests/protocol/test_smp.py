"""The passkey-entry state machines run against each other in memory, and against attacks."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp import (
    PASSKEY_ROUNDS,
    DisplayPasskey,
    PairingAborted,
    PairingComplete,
    PasskeyNeeded,
    SecurityRequested,
    SendPdu,
    SmpEvent,
    SmpInitiator,
    SmpResponder,
    SmpState,
    passkey_from_bytes,
)
from protocol.ble.smp_crypto import f4, f5, p256_dhkey, p256_public_key_xy
from protocol.ble.smp_pdu import (
    AuthReq,
    DeviceAddress,
    IoCapability,
    KeyDistribution,
    KeypressNotification,
    KeypressType,
    PairingConfirm,
    PairingDhKeyCheck,
    PairingFailed,
    PairingFailedReason,
    PairingPublicKey,
    PairingRandom,
    PairingRequest,
    PairingResponse,
    SecurityRequest,
    SmpPdu,
    decode_pdu,
)
from protocol.errors import UsageError

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PHONE = DeviceAddress.parse("11:22:33:44:55:66")
BAND = DeviceAddress.parse("C0:00:00:00:B0:01", random=True)
Reason = PairingFailedReason


def key(rng: random.Random) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(rng.randrange(1, P256_ORDER), ec.SECP256R1())


@dataclass
class Link:
    """Both machines and everything that happened, in order."""

    initiator: SmpInitiator
    responder: SmpResponder
    wire: list[tuple[str, SmpPdu]] = field(default_factory=list)
    initiator_events: list[SmpEvent] = field(default_factory=list)
    responder_events: list[SmpEvent] = field(default_factory=list)

    def run(
        self, events: list[SmpEvent], sender: str, entered: int | None, limit: int = 1000
    ) -> None:
        """Deliver each SendPdu to the other side until none is left (or ``limit`` went)."""
        queue = [(sender, event) for event in events]
        while queue and len(self.wire) < limit:
            side, event = queue.pop(0)
            (self.initiator_events if side == "i" else self.responder_events).append(event)
            if isinstance(event, SendPdu):
                self.wire.append((side, event.pdu))
                if side == "i":
                    queue += [("r", e) for e in self.responder.receive(event.data)]
                else:
                    queue += [("i", e) for e in self.initiator.receive(event.data)]
            elif isinstance(event, PasskeyNeeded) and entered is not None:
                queue += [("i", e) for e in self.initiator.supply_passkey(entered)]

    def of(self, side: str, kind: type) -> list[SmpEvent]:
        events = self.initiator_events if side == "i" else self.responder_events
        return [e for e in events if isinstance(e, kind)]


def make_link(seed: int, passkey: int, **responder_options: object) -> Link:
    rng = random.Random(seed)
    initiator = SmpInitiator(
        local_address=PHONE, peer_address=BAND, private_key=key(rng), random_bytes=rng.randbytes
    )
    responder = SmpResponder(
        local_address=BAND,
        peer_address=PHONE,
        private_key=key(rng),
        random_bytes=rng.randbytes,
        passkey=passkey,
        **responder_options,  # type: ignore[arg-type]
    )
    return Link(initiator, responder)


def pair(seed: int, shown: int, entered: int) -> Link:
    link = make_link(seed, shown)
    link.run(link.initiator.start(), "i", entered)
    return link


def test_pairing_completes_with_matching_ltks_and_sc_security() -> None:
    link = pair(seed=1, shown=123456, entered=123456)
    (done_i,) = link.of("i", PairingComplete)
    (done_r,) = link.of("r", PairingComplete)
    assert isinstance(done_i, PairingComplete) and isinstance(done_r, PairingComplete)
    assert done_i.bond.ltk == done_r.bond.ltk
    assert len(done_i.bond.ltk) == 16
    for done, peer in ((done_i, BAND), (done_r, PHONE)):
        assert done.bonding
        assert done.bond.peer_address == peer
        assert done.bond.security_level is SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
        assert done.bond.key_size == 16
        assert (done.bond.ediv, done.bond.rand) == (0, 0)
    assert link.initiator.state is link.responder.state is SmpState.COMPLETE
    # Request/response, two public keys, 20 rounds of 4 PDUs, two DHKey checks.
    assert len(link.wire) == 2 + 2 + 4 * PASSKEY_ROUNDS + 2
    (shown,) = link.of("r", DisplayPasskey)
    assert isinstance(shown, DisplayPasskey) and shown.digits == "123456"
    assert len(link.of("i", PasskeyNeeded)) == 1


def test_the_wire_follows_the_specification() -> None:
    """Recompute the first commitment and the LTK from what crossed the wire."""
    rng = random.Random(7)
    phone_key, band_key = key(rng), key(rng)
    passkey = 0b1010_0000_1111_0000_0101  # 659205
    initiator = SmpInitiator(
        local_address=PHONE, peer_address=BAND, private_key=phone_key, random_bytes=rng.randbytes
    )
    responder = SmpResponder(
        local_address=BAND,
        peer_address=PHONE,
        private_key=band_key,
        random_bytes=rng.randbytes,
        passkey=passkey,
    )
    link = Link(initiator, responder)
    link.run(initiator.start(), "i", passkey)
    pka, _ = p256_public_key_xy(phone_key)
    pkb, _ = p256_public_key_xy(band_key)
    sent = [(side, type(pdu).__name__) for side, pdu in link.wire]
    assert sent[:4] == [
        ("i", "PairingRequest"),
        ("r", "PairingResponse"),
        ("i", "PairingPublicKey"),
        ("r", "PairingPublicKey"),
    ]
    assert sent[4:8] == [
        ("i", "PairingConfirm"),
        ("r", "PairingConfirm"),
        ("i", "PairingRandom"),
        ("r", "PairingRandom"),
    ]
    ca1, cb1, na1, nb1 = (pdu for _, pdu in link.wire[4:8])
    assert isinstance(ca1, PairingConfirm) and isinstance(na1, PairingRandom)
    assert isinstance(cb1, PairingConfirm) and isinstance(nb1, PairingRandom)
    assert ca1.value == f4(pka, pkb, na1.value, 0x81)  # bit 0 of the passkey is 1
    assert cb1.value == f4(pkb, pka, nb1.value, 0x81)
    last_na, last_nb = link.wire[-4][1], link.wire[-3][1]
    assert isinstance(last_na, PairingRandom) and isinstance(last_nb, PairingRandom)
    dhkey = p256_dhkey(phone_key, *p256_public_key_xy(band_key))
    _, ltk = f5(dhkey, last_na.value, last_nb.value, PHONE.as_56_bits(), BAND.as_56_bits())
    (done,) = link.of("i", PairingComplete)
    assert isinstance(done, PairingComplete) and done.bond.ltk == ltk


def test_wrong_passkey_fails_on_both_sides_with_confirm_value_failed() -> None:
    link = pair(seed=2, shown=123456, entered=654321)
    (aborted_r,) = link.of("r", PairingAborted)
    (aborted_i,) = link.of("i", PairingAborted)
    assert aborted_r == PairingAborted(Reason.CONFIRM_VALUE_FAILED, by_peer=False)
    assert aborted_i == PairingAborted(Reason.CONFIRM_VALUE_FAILED, by_peer=True)
    assert link.wire[-1] == ("r", PairingFailed(Reason.CONFIRM_VALUE_FAILED))
    assert not link.of("i", PairingComplete) and not link.of("r", PairingComplete)
    assert link.initiator.failure_reason is Reason.CONFIRM_VALUE_FAILED


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    shown=st.integers(0, 999_999),
    typed=st.integers(0, 999_999),
    typed_right=st.booleans(),
)
def test_pairing_succeeds_exactly_when_the_passkeys_match(
    seed: int, shown: int, typed: int, typed_right: bool
) -> None:
    entered = shown if typed_right else typed
    link = pair(seed, shown, entered)
    if shown == entered:
        assert link.initiator.state is link.responder.state is SmpState.COMPLETE
        (done_i,), (done_r,) = link.of("i", PairingComplete), link.of("r", PairingComplete)
        assert isinstance(done_i, PairingComplete) and isinstance(done_r, PairingComplete)
        assert done_i.bond.ltk == done_r.bond.ltk
    else:
        assert link.initiator.state is link.responder.state is SmpState.FAILED
        # The first round whose bit differs is where the responder catches it.
        first_different_bit = ((shown ^ entered) & -(shown ^ entered)).bit_length() - 1
        assert link.responder.passkey_round == first_different_bit
        assert link.responder.failure_reason is Reason.CONFIRM_VALUE_FAILED


def test_same_seed_gives_the_same_wire_bytes() -> None:
    first = [pdu.encode() for _, pdu in pair(seed=9, shown=42, entered=42).wire]
    second = [pdu.encode() for _, pdu in pair(seed=9, shown=42, entered=42).wire]
    assert first == second


def test_passkey_may_be_typed_before_the_peer_key_arrives() -> None:
    link = make_link(seed=3, passkey=777)
    initiator, responder = link.initiator, link.responder
    (request,) = initiator.start()
    assert isinstance(request, SendPdu)
    response, display = responder.receive(request.data)
    assert isinstance(response, SendPdu) and isinstance(display, DisplayPasskey)
    our_key, needed = initiator.receive(response.data)
    assert isinstance(our_key, SendPdu) and isinstance(needed, PasskeyNeeded)
    assert initiator.awaiting_passkey
    assert initiator.supply_passkey(777) == []  # nothing to send until the band's key is in
    assert not initiator.awaiting_passkey
    (their_key,) = responder.receive(our_key.data)
    assert isinstance(their_key, SendPdu)
    (commitment,) = initiator.receive(their_key.data)
    assert isinstance(commitment, SendPdu) and isinstance(commitment.pdu, PairingConfirm)
    link.run(responder.receive(commitment.data), "r", None)
    assert initiator.state is responder.state is SmpState.COMPLETE


def test_tampered_dhkey_check_fails_with_dhkey_check_failed() -> None:
    link = make_link(seed=4, passkey=1)
    original_receive = link.responder.receive

    def tampering_receive(data: bytes) -> list[SmpEvent]:
        pdu = decode_pdu(data)
        if isinstance(pdu, PairingDhKeyCheck):
            data = PairingDhKeyCheck(bytes(a ^ 0xFF for a in pdu.value)).encode()
        return original_receive(data)

    link.responder.receive = tampering_receive  # type: ignore[method-assign]
    link.run(link.initiator.start(), "i", 1)
    assert link.responder.failure_reason is Reason.DHKEY_CHECK_FAILED
    assert link.of("i", PairingAborted) == [PairingAborted(Reason.DHKEY_CHECK_FAILED, by_peer=True)]


def request(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "io_capability": IoCapability.KEYBOARD_DISPLAY,
        "oob_data_present": False,
        "auth_req": AuthReq.BONDING | AuthReq.MITM | AuthReq.SECURE_CONNECTIONS,
        "max_key_size": 16,
        "initiator_key_distribution": KeyDistribution.ID_KEY | KeyDistribution.ENC_KEY,
        "responder_key_distribution": KeyDistribution.ID_KEY | KeyDistribution.ENC_KEY,
    }
    fields.update(changes)
    return PairingRequest(**fields).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (request(auth_req=AuthReq.BONDING | AuthReq.MITM), Reason.AUTHENTICATION_REQUIREMENTS),
        (
            request(io_capability=IoCapability.NO_INPUT_NO_OUTPUT),
            Reason.AUTHENTICATION_REQUIREMENTS,
        ),
        (request(io_capability=IoCapability.DISPLAY_YES_NO), Reason.AUTHENTICATION_REQUIREMENTS),
        (request(io_capability=IoCapability.DISPLAY_ONLY), Reason.AUTHENTICATION_REQUIREMENTS),
        (request(max_key_size=15), Reason.ENCRYPTION_KEY_SIZE),
        (request(oob_data_present=True), Reason.OOB_NOT_AVAILABLE),
        (request()[:-1], Reason.INVALID_PARAMETERS),
    ],
)
def test_band_refuses_pairing_weaker_than_authenticated_sc(data: bytes, reason: Reason) -> None:
    responder = make_link(seed=5, passkey=1).responder
    events = responder.receive(data)
    assert SendPdu(PairingFailed(reason)) in events
    assert not any(isinstance(e, DisplayPasskey) for e in events)


def test_band_answers_a_keyboard_only_central_and_without_mitm_bit() -> None:
    responder = make_link(seed=5, passkey=1).responder
    events = responder.receive(
        request(io_capability=IoCapability.KEYBOARD_ONLY, auth_req=AuthReq.SECURE_CONNECTIONS)
    )
    response = events[0]
    assert isinstance(response, SendPdu) and isinstance(response.pdu, PairingResponse)
    assert response.pdu.io_capability is IoCapability.DISPLAY_ONLY
    assert response.pdu.auth_req & AuthReq.MITM
    # SC derives the LTK on both sides: nothing is distributed.
    assert response.pdu.initiator_key_distribution == KeyDistribution.NONE
    assert response.pdu.responder_key_distribution == KeyDistribution.NONE


def test_repeated_attempts_are_refused() -> None:
    responder = make_link(seed=6, passkey=1, repeated_attempts=True).responder
    assert responder.receive(request()) == [
        SendPdu(PairingFailed(Reason.REPEATED_ATTEMPTS)),
        PairingAborted(Reason.REPEATED_ATTEMPTS, by_peer=False),
    ]


def response(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "io_capability": IoCapability.DISPLAY_ONLY,
        "oob_data_present": False,
        "auth_req": AuthReq.BONDING | AuthReq.MITM | AuthReq.SECURE_CONNECTIONS,
        "max_key_size": 16,
        "initiator_key_distribution": KeyDistribution.NONE,
        "responder_key_distribution": KeyDistribution.NONE,
    }
    fields.update(changes)
    return PairingResponse(**fields).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (response(auth_req=AuthReq.BONDING | AuthReq.MITM), Reason.AUTHENTICATION_REQUIREMENTS),
        (
            response(io_capability=IoCapability.NO_INPUT_NO_OUTPUT),
            Reason.AUTHENTICATION_REQUIREMENTS,
        ),
        (response(io_capability=IoCapability.KEYBOARD_DISPLAY), Reason.AUTHENTICATION_REQUIREMENTS),
        (response(max_key_size=10), Reason.ENCRYPTION_KEY_SIZE),
        (response(responder_key_distribution=KeyDistribution.ID_KEY), Reason.INVALID_PARAMETERS),
        (PairingRandom(bytes(16)).encode(), Reason.UNSPECIFIED_REASON),
    ],
)
def test_phone_refuses_a_band_that_cannot_do_authenticated_sc(data: bytes, reason: Reason) -> None:
    initiator = make_link(seed=5, passkey=1).initiator
    initiator.start()
    assert initiator.receive(data) == [
        SendPdu(PairingFailed(reason)),
        PairingAborted(reason, by_peer=False),
    ]


def handshake_to_public_key(link: Link) -> bytes:
    """Run request/response; return the initiator's Pairing Public Key PDU."""
    (req,) = link.initiator.start()
    assert isinstance(req, SendPdu)
    resp = link.responder.receive(req.data)[0]
    assert isinstance(resp, SendPdu)
    our_key = link.initiator.receive(resp.data)[0]
    assert isinstance(our_key, SendPdu)
    return our_key.data


def test_reflected_public_key_is_refused() -> None:
    link = make_link(seed=8, passkey=5)
    phone_key = handshake_to_public_key(link)
    # An attacker plays the phone's own key back to it (CVE-2020-26558).
    assert link.initiator.receive(phone_key)[0] == SendPdu(
        PairingFailed(Reason.AUTHENTICATION_REQUIREMENTS)
    )


def test_public_key_off_the_curve_is_invalid_parameters() -> None:
    link = make_link(seed=8, passkey=5)
    handshake_to_public_key(link)
    events = link.responder.receive(PairingPublicKey(bytes(31) + b"\x01", bytes(32)).encode())
    assert events[0] == SendPdu(PairingFailed(Reason.INVALID_PARAMETERS))
    assert link.responder.state is SmpState.FAILED


def test_out_of_order_and_malformed_pdus_end_the_pairing() -> None:
    link = make_link(seed=10, passkey=5)
    handshake_to_public_key(link)
    assert link.responder.receive(PairingRandom(bytes(16)).encode())[0] == SendPdu(
        PairingFailed(Reason.UNSPECIFIED_REASON)
    )
    other = make_link(seed=10, passkey=5)
    handshake_to_public_key(other)
    assert other.responder.receive(b"\x0c\x00")[0] == SendPdu(
        PairingFailed(Reason.INVALID_PARAMETERS)
    )
    assert other.responder.receive(request()) == []  # a finished machine ignores input


def test_stray_pdus_before_pairing_are_refused_without_ending_the_band() -> None:
    link = make_link(seed=11, passkey=5)
    assert link.responder.receive(b"\x42") == [SendPdu(PairingFailed(Reason.COMMAND_NOT_SUPPORTED))]
    assert link.responder.receive(PairingFailed(Reason.BUSY).encode()) == []
    assert link.responder.state is SmpState.WAIT_PAIRING_REQUEST
    link.run(link.initiator.start(), "i", 5)
    assert link.responder.state is SmpState.COMPLETE


def test_keypress_notifications_change_nothing() -> None:
    link = make_link(seed=12, passkey=5)
    handshake_to_public_key(link)
    state = link.responder.state
    assert (
        link.responder.receive(KeypressNotification(KeypressType.PASSKEY_DIGIT_ENTERED).encode())
        == []
    )
    assert link.responder.state is state


def test_user_cancelling_sends_passkey_entry_failed() -> None:
    link = make_link(seed=13, passkey=5)
    handshake_to_public_key(link)
    assert link.initiator.cancel_passkey() == [
        SendPdu(PairingFailed(Reason.PASSKEY_ENTRY_FAILED)),
        PairingAborted(Reason.PASSKEY_ENTRY_FAILED, by_peer=False),
    ]
    with pytest.raises(UsageError):
        link.initiator.supply_passkey(5)


def test_timeout_is_the_callers_and_sends_nothing() -> None:
    link = make_link(seed=14, passkey=5)
    assert not link.responder.in_progress
    assert link.responder.timeout() == []
    handshake_to_public_key(link)
    assert link.initiator.in_progress and link.responder.in_progress
    assert link.initiator.timeout() == [
        PairingAborted(Reason.UNSPECIFIED_REASON, by_peer=False, timed_out=True)
    ]
    assert link.initiator.finished and not link.initiator.in_progress


def test_security_request_prompts_the_central() -> None:
    link = make_link(seed=15, passkey=5)
    (ask,) = link.responder.security_request()
    assert isinstance(ask, SendPdu) and isinstance(ask.pdu, SecurityRequest)
    assert ask.pdu.auth_req & AuthReq.SECURE_CONNECTIONS
    assert link.initiator.receive(ask.data) == [SecurityRequested(ask.pdu.auth_req)]
    link.run(link.initiator.start(), "i", 5)
    assert link.initiator.state is SmpState.COMPLETE


def test_misuse_is_a_usage_error() -> None:
    link = make_link(seed=16, passkey=5)
    with pytest.raises(UsageError):
        link.initiator.supply_passkey(5)  # nothing asked yet
    link.initiator.start()
    with pytest.raises(UsageError):
        link.initiator.start()
    with pytest.raises(UsageError):
        make_link(seed=16, passkey=1_000_000)
    rng = random.Random(0)
    with pytest.raises(UsageError):
        SmpInitiator(
            local_address=PHONE,
            peer_address=BAND,
            private_key=key(rng),
            random_bytes=rng.randbytes,
            io_capability=IoCapability.DISPLAY_ONLY,
        )


def test_passkey_from_bytes_is_six_digits() -> None:
    assert passkey_from_bytes(b"\xff" * 8) == (2**64 - 1) % 1_000_000
    with pytest.raises(UsageError):
        passkey_from_bytes(b"\x00" * 7)


@settings(max_examples=80, deadline=None)
@given(
    delivered=st.integers(0, 86),
    target=st.sampled_from(["i", "r"]),
    data=st.binary(max_size=70),
)
def test_arbitrary_bytes_at_any_point_never_crash_either_side(
    delivered: int, target: str, data: bytes
) -> None:
    link = make_link(seed=17, passkey=5)
    link.run(link.initiator.start(), "i", 5, limit=delivered)
    machine = link.initiator if target == "i" else link.responder
    events = machine.receive(data)
    for event in events:
        if isinstance(event, SendPdu):
            decode_pdu(event.data)  # everything sent is well formed
    failed = [e for e in events if isinstance(e, SendPdu) and isinstance(e.pdu, PairingFailed)]
    assert len(failed) <= 1
    if failed and machine.finished:
        assert machine.failure_reason is not None
