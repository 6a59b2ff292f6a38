"""Sans-IO LE Secure Connections pairing with passkey entry (Core Spec Vol 3 Part H).

Two state machines, one for each end of the link:

* :class:`SmpInitiator` - the central (the phone). It asks for pairing, gets a
  :class:`PasskeyNeeded` event and is handed the passkey the user typed with
  :meth:`SmpInitiator.supply_passkey`.
* :class:`SmpResponder` - the peripheral (the band). It is given the 6-digit passkey to
  show, emits :class:`DisplayPasskey` when the user should see it, and refuses anything
  weaker than authenticated LE Secure Connections.

Bytes go in through ``receive(data)``; every call returns a list of events, among them
:class:`SendPdu` carrying what to put on the SMP channel (L2CAP CID 0x0006). Nothing
here reads a clock or draws randomness: the caller passes ``random_bytes`` and the P-256
private key, and owns the 30-second SMP timer (run it while ``in_progress``; call
``timeout()`` when it fires). A machine runs one pairing: after :class:`PairingComplete`
or :class:`PairingAborted` it ignores further input; build a new one to pair again.

The passkey entry protocol (2.3.5.6.3): after the public keys are exchanged, 20 rounds
commit to the passkey one bit at a time (least significant bit first). In round i the
initiator sends Ca = f4(PKax, PKbx, Na, 0x80 | bit), the responder Cb = f4(PKbx, PKax, Nb,
0x80 | bit); then the nonces are revealed and each side checks the other's commitment
against its own idea of the passkey. A wrong passkey fails the first round whose bit
differs (Confirm Value Failed). Then f5 derives MacKey and the LTK from the DHKey, and
each side proves it holds them with f6 (DHKey Check).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp_bond import Bond, BondFormatError
from protocol.ble.smp_crypto import InvalidPublicKey, f4, f5, f6, p256_dhkey, p256_public_key_xy
from protocol.ble.smp_pdu import (
    MAX_ENCRYPTION_KEY_SIZE,
    MIN_ENCRYPTION_KEY_SIZE,
    AuthReq,
    DeviceAddress,
    IoCapability,
    KeyDistribution,
    KeypressNotification,
    PairingConfirm,
    PairingDhKeyCheck,
    PairingFailed,
    PairingFailedReason,
    PairingPublicKey,
    PairingRandom,
    PairingRequest,
    PairingResponse,
    SecurityRequest,
    SmpCode,
    SmpPdu,
    SmpPduError,
    decode_pdu,
)
from protocol.ble.smp_rate_limit import PairingRateLimiter
from protocol.errors import UsageError

__all__ = [
    "PASSKEY_ROUNDS",
    "SMP_TIMEOUT_S",
    "AuthReq",
    "Bond",
    "BondFormatError",
    "DeviceAddress",
    "DisplayPasskey",
    "IoCapability",
    "PairingAborted",
    "PairingComplete",
    "PairingFailedReason",
    "PairingRateLimiter",
    "PasskeyNeeded",
    "RandomBytes",
    "SecurityRequested",
    "SendPdu",
    "SmpEvent",
    "SmpInitiator",
    "SmpPduError",
    "SmpResponder",
    "SmpState",
    "decode_pdu",
    "passkey_from_bytes",
]

#: The Security Manager's timeout (3.4): a procedure not finished in 30 s fails.
SMP_TIMEOUT_S = 30.0
#: Passkey entry commits to 20 bits of the passkey, one per round.
PASSKEY_ROUNDS = 20
MAX_PASSKEY = 999_999

RandomBytes = Callable[[int], bytes]


class SmpState(enum.Enum):
    """Where a pairing stands; the WAIT_* names say what is pending."""

    IDLE = "idle"
    WAIT_PAIRING_REQUEST = "wait_pairing_request"
    WAIT_PAIRING_RESPONSE = "wait_pairing_response"
    WAIT_PUBLIC_KEY = "wait_public_key"
    WAIT_PASSKEY = "wait_passkey"
    WAIT_CONFIRM = "wait_confirm"
    WAIT_RANDOM = "wait_random"
    WAIT_DHKEY_CHECK = "wait_dhkey_check"
    COMPLETE = "complete"
    FAILED = "failed"


_NOT_STARTED = (SmpState.IDLE, SmpState.WAIT_PAIRING_REQUEST)
_FINISHED = (SmpState.COMPLETE, SmpState.FAILED)


@dataclass(frozen=True)
class SendPdu:
    """Send this PDU to the peer on the SMP channel."""

    pdu: SmpPdu

    @property
    def data(self) -> bytes:
        return self.pdu.encode()


@dataclass(frozen=True)
class PasskeyNeeded:
    """Initiator: ask the user for the passkey the band shows, then call supply_passkey."""


@dataclass(frozen=True)
class DisplayPasskey:
    """Responder: show this passkey to the user now (always six digits, zero padded)."""

    passkey: int = field(repr=False)

    @property
    def digits(self) -> str:
        return f"{self.passkey:06d}"


@dataclass(frozen=True)
class SecurityRequested:
    """Initiator: the peripheral sent a Security Request; call start() to pair."""

    auth_req: AuthReq


@dataclass(frozen=True)
class PairingComplete:
    """Pairing succeeded: encrypt the link with ``bond.ltk``; store the bond if ``bonding``."""

    bond: Bond
    bonding: bool


@dataclass(frozen=True)
class PairingAborted:
    """Pairing failed: ``reason`` was sent (or received, when ``by_peer``); no keys."""

    reason: PairingFailedReason
    by_peer: bool
    timed_out: bool = False


SmpEvent = (
    SendPdu | PasskeyNeeded | DisplayPasskey | SecurityRequested | PairingComplete | PairingAborted
)


class _PairingFailure(Exception):
    """Internal: abort the pairing and tell the peer ``reason``."""

    def __init__(self, reason: PairingFailedReason) -> None:
        super().__init__(reason.name)
        self.reason = reason


def passkey_from_bytes(random: bytes) -> int:
    """A uniform-enough 6-digit passkey (0..999999) from at least 8 random octets."""
    if len(random) < 8:
        raise UsageError("a passkey needs at least 8 random octets")
    # 64 bits modulo 10**6 leaves a bias below 1e-13.
    return int.from_bytes(random[:8], "big") % (MAX_PASSKEY + 1)


def _check_passkey(passkey: int) -> int:
    if isinstance(passkey, bool) or not isinstance(passkey, int):
        raise UsageError("the passkey is an integer 0..999999")
    if not 0 <= passkey <= MAX_PASSKEY:
        raise UsageError("the passkey has six digits: 0..999999")
    return passkey


def _passkey_z(passkey: int, round_index: int) -> int:
    return 0x80 | ((passkey >> round_index) & 1)


class _SmpMachine:
    """What both roles share: keys, nonces, the rounds and the failure handling."""

    _state: SmpState

    def __init__(
        self,
        *,
        local_address: DeviceAddress,
        peer_address: DeviceAddress,
        private_key: ec.EllipticCurvePrivateKey,
        random_bytes: RandomBytes,
        bondable: bool,
        min_key_size: int,
    ) -> None:
        if not MIN_ENCRYPTION_KEY_SIZE <= min_key_size <= MAX_ENCRYPTION_KEY_SIZE:
            raise UsageError("min_key_size must be 7..16 octets")
        self._local_address = local_address
        self._peer_address = peer_address
        self._private_key = private_key
        self._local_x, self._local_y = p256_public_key_xy(private_key)
        self._random_bytes = random_bytes
        self._bondable = bondable
        self._min_key_size = min_key_size
        self._passkey: int | None = None
        self._request: PairingRequest | None = None
        self._response: PairingResponse | None = None
        self._peer_x = b""
        self._dhkey = b""
        self._round = 0
        self._local_nonce = b""
        self._peer_nonce = b""
        self._peer_confirm = b""
        self._mac_key = b""
        self._ltk = b""
        self._failure: PairingFailedReason | None = None

    # -- what the caller may look at ------------------------------------------------------

    @property
    def state(self) -> SmpState:
        return self._state

    @property
    def in_progress(self) -> bool:
        """True while a pairing runs: the caller's 30-second SMP timer applies."""
        return self._state not in _NOT_STARTED and self._state not in _FINISHED

    @property
    def finished(self) -> bool:
        return self._state in _FINISHED

    @property
    def failure_reason(self) -> PairingFailedReason | None:
        return self._failure

    @property
    def passkey_round(self) -> int:
        """How many of the 20 passkey rounds have completed."""
        return self._round

    # -- inputs ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[SmpEvent]:
        """Feed one SMP PDU from the peer; returns what to do. Never raises for bad input."""
        if self.finished:
            return []
        try:
            pdu = decode_pdu(data)
        except SmpPduError as exc:
            if data[:1] == bytes([SmpCode.PAIRING_FAILED]):
                # Never answer a Pairing Failed, even a garbled one.
                return self._aborted_by_peer(PairingFailedReason.UNSPECIFIED_REASON)
            return self._fail(exc.reason)
        if isinstance(pdu, PairingFailed):
            return self._aborted_by_peer(pdu.reason)
        if isinstance(pdu, KeypressNotification):
            # Progress of the user's typing: informative only, it changes no state.
            return []
        try:
            return self._handle(pdu)
        except _PairingFailure as failure:
            return self._fail(failure.reason)

    def timeout(self) -> list[SmpEvent]:
        """The caller's 30-second SMP timer fired: the pairing fails without a PDU (3.4)."""
        if not self.in_progress:
            return []
        self._state = SmpState.FAILED
        self._failure = PairingFailedReason.UNSPECIFIED_REASON
        return [PairingAborted(self._failure, by_peer=False, timed_out=True)]

    # -- shared steps ---------------------------------------------------------------------

    def _handle(self, pdu: SmpPdu) -> list[SmpEvent]:
        raise NotImplementedError

    def _fail(self, reason: PairingFailedReason) -> list[SmpEvent]:
        if self._state in _NOT_STARTED:
            # Stray PDUs before pairing starts are refused but do not end the machine.
            return [SendPdu(PairingFailed(reason))]
        self._state = SmpState.FAILED
        self._failure = reason
        return [SendPdu(PairingFailed(reason)), PairingAborted(reason, by_peer=False)]

    def _aborted_by_peer(self, reason: PairingFailedReason) -> list[SmpEvent]:
        if self._state in _NOT_STARTED:
            return []
        self._state = SmpState.FAILED
        self._failure = reason
        return [PairingAborted(reason, by_peer=True)]

    def _random(self, length: int) -> bytes:
        value = self._random_bytes(length)
        if not isinstance(value, bytes) or len(value) != length:
            raise UsageError(f"random_bytes({length}) must return {length} bytes")
        return value

    def _commitment(self) -> bytes:
        """This round's confirm value over a fresh nonce (2.3.5.6.3, Ca or Cb)."""
        assert self._passkey is not None
        self._local_nonce = self._random(16)
        z = _passkey_z(self._passkey, self._round)
        return f4(self._local_x, self._peer_x, self._local_nonce, z)

    def _check_peer_nonce(self, nonce: bytes) -> None:
        """Check the peer's commitment against its revealed nonce, then end the round."""
        assert self._passkey is not None
        expected = f4(self._peer_x, self._local_x, nonce, _passkey_z(self._passkey, self._round))
        if not hmac.compare_digest(expected, self._peer_confirm):
            raise _PairingFailure(PairingFailedReason.CONFIRM_VALUE_FAILED)
        self._peer_nonce = nonce
        self._round += 1

    def _accept_peer_key(self, pdu: PairingPublicKey) -> None:
        if hmac.compare_digest(pdu.x, self._local_x):
            # A reflected public key makes passkey entry leak the passkey (CVE-2020-26558).
            raise _PairingFailure(PairingFailedReason.AUTHENTICATION_REQUIREMENTS)
        try:
            self._dhkey = p256_dhkey(self._private_key, pdu.x, pdu.y)
        except InvalidPublicKey as exc:
            raise _PairingFailure(PairingFailedReason.INVALID_PARAMETERS) from exc
        self._peer_x = pdu.x

    def _key_size(self, request: PairingRequest, response: PairingResponse) -> int:
        key_size = min(request.max_key_size, response.max_key_size)
        if key_size < self._min_key_size:
            raise _PairingFailure(PairingFailedReason.ENCRYPTION_KEY_SIZE)
        return key_size

    def _derive_keys(self, na: bytes, nb: bytes, a: bytes, b: bytes) -> None:
        self._mac_key, self._ltk = f5(self._dhkey, na, nb, a, b)

    def _bond(self) -> PairingComplete:
        assert self._request is not None and self._response is not None
        key_size = min(self._request.max_key_size, self._response.max_key_size)
        # A shorter key keeps the least significant octets (2.3.4); MSB-first, so mask the head.
        ltk = bytes(MAX_ENCRYPTION_KEY_SIZE - key_size) + self._ltk[-key_size:]
        level = (
            SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
            if key_size == MAX_ENCRYPTION_KEY_SIZE
            else SecurityLevel.AUTHENTICATED_ENCRYPTION
        )
        bonding = bool(
            self._request.auth_req & self._response.auth_req & AuthReq.BONDING
        ) and not bool((self._request.auth_req | self._response.auth_req) & 0x02)
        self._state = SmpState.COMPLETE
        bond = Bond(
            peer_address=self._peer_address,
            ltk=ltk,
            security_level=level,
            key_size=key_size,
            secure_connections=True,
        )
        return PairingComplete(bond, bonding)

    def _auth_req(self) -> AuthReq:
        bonding = AuthReq.BONDING if self._bondable else AuthReq.NO_BONDING
        return bonding | AuthReq.MITM | AuthReq.SECURE_CONNECTIONS


def _unexpected() -> _PairingFailure:
    return _PairingFailure(PairingFailedReason.UNSPECIFIED_REASON)


class SmpInitiator(_SmpMachine):
    """The central's side of LE Secure Connections passkey entry (the user types it).

    Call :meth:`start` to send the Pairing Request, feed every SMP PDU from the peer to
    :meth:`receive`, and answer :class:`PasskeyNeeded` with :meth:`supply_passkey` (or
    :meth:`cancel_passkey` when the user gives up).
    """

    def __init__(
        self,
        *,
        local_address: DeviceAddress,
        peer_address: DeviceAddress,
        private_key: ec.EllipticCurvePrivateKey,
        random_bytes: RandomBytes,
        io_capability: IoCapability = IoCapability.KEYBOARD_DISPLAY,
        bondable: bool = True,
        min_key_size: int = MAX_ENCRYPTION_KEY_SIZE,
    ) -> None:
        if io_capability not in (IoCapability.KEYBOARD_ONLY, IoCapability.KEYBOARD_DISPLAY):
            raise UsageError("the initiator enters the passkey: give it a keyboard capability")
        super().__init__(
            local_address=local_address,
            peer_address=peer_address,
            private_key=private_key,
            random_bytes=random_bytes,
            bondable=bondable,
            min_key_size=min_key_size,
        )
        self._io_capability = io_capability
        self._state = SmpState.IDLE
        self._passkey_requested = False

    @property
    def awaiting_passkey(self) -> bool:
        """True while the user's passkey is needed and not supplied yet."""
        return self._passkey_requested and self._passkey is None and self.in_progress

    def start(self) -> list[SmpEvent]:
        """Send the Pairing Request (authenticated LE Secure Connections, no key exchange)."""
        if self._state is not SmpState.IDLE:
            raise UsageError("pairing already started: build a new SmpInitiator to pair again")
        # SC derives the LTK on both sides, and both ends use identity addresses, so no
        # key needs distributing (3.6.1).
        self._request = PairingRequest(
            io_capability=self._io_capability,
            oob_data_present=False,
            auth_req=self._auth_req(),
            max_key_size=MAX_ENCRYPTION_KEY_SIZE,
            initiator_key_distribution=KeyDistribution.NONE,
            responder_key_distribution=KeyDistribution.NONE,
        )
        self._state = SmpState.WAIT_PAIRING_RESPONSE
        return [SendPdu(self._request)]

    def supply_passkey(self, passkey: int) -> list[SmpEvent]:
        """The passkey the user typed (0..999999); continues the pairing."""
        if not self.awaiting_passkey:
            raise UsageError("no passkey is awaited: wait for the PasskeyNeeded event")
        self._passkey = _check_passkey(passkey)
        if self._state is SmpState.WAIT_PASSKEY:
            return self._send_commitment()
        return []

    def cancel_passkey(self) -> list[SmpEvent]:
        """The user gave up: Pairing Failed (Passkey Entry Failed)."""
        if not self.awaiting_passkey:
            raise UsageError("no passkey is awaited: nothing to cancel")
        return self._fail(PairingFailedReason.PASSKEY_ENTRY_FAILED)

    def _handle(self, pdu: SmpPdu) -> list[SmpEvent]:
        state = self._state
        if state is SmpState.IDLE:
            if isinstance(pdu, SecurityRequest):
                return [SecurityRequested(pdu.auth_req)]
            if isinstance(pdu, PairingRequest):
                # Only a peripheral answers a Pairing Request; this end is the central.
                raise _PairingFailure(PairingFailedReason.COMMAND_NOT_SUPPORTED)
            raise _unexpected()
        if isinstance(pdu, SecurityRequest):
            return []  # pairing is already under way: nothing more to start
        if state is SmpState.WAIT_PAIRING_RESPONSE and isinstance(pdu, PairingResponse):
            return self._on_pairing_response(pdu)
        if state is SmpState.WAIT_PUBLIC_KEY and isinstance(pdu, PairingPublicKey):
            self._accept_peer_key(pdu)
            if self._passkey is None:
                self._state = SmpState.WAIT_PASSKEY
                return []
            return self._send_commitment()
        if state is SmpState.WAIT_CONFIRM and isinstance(pdu, PairingConfirm):
            self._peer_confirm = pdu.value
            self._state = SmpState.WAIT_RANDOM
            return [SendPdu(PairingRandom(self._local_nonce))]
        if state is SmpState.WAIT_RANDOM and isinstance(pdu, PairingRandom):
            return self._on_peer_nonce(pdu.value)
        if state is SmpState.WAIT_DHKEY_CHECK and isinstance(pdu, PairingDhKeyCheck):
            return self._on_dhkey_check(pdu.value)
        raise _unexpected()

    def _on_pairing_response(self, response: PairingResponse) -> list[SmpEvent]:
        assert self._request is not None
        if not response.auth_req & AuthReq.SECURE_CONNECTIONS:
            raise _PairingFailure(PairingFailedReason.AUTHENTICATION_REQUIREMENTS)
        if response.oob_data_present:
            raise _PairingFailure(PairingFailedReason.OOB_NOT_AVAILABLE)
        if not self._peer_displays_passkey(response.io_capability):
            raise _PairingFailure(PairingFailedReason.AUTHENTICATION_REQUIREMENTS)
        requested_i = self._request.initiator_key_distribution
        requested_r = self._request.responder_key_distribution
        if (response.initiator_key_distribution & ~requested_i & 0xFF) or (
            response.responder_key_distribution & ~requested_r & 0xFF
        ):
            raise _PairingFailure(PairingFailedReason.INVALID_PARAMETERS)
        self._key_size(self._request, response)
        self._response = response
        self._state = SmpState.WAIT_PUBLIC_KEY
        self._passkey_requested = True
        return [SendPdu(PairingPublicKey(self._local_x, self._local_y)), PasskeyNeeded()]

    def _peer_displays_passkey(self, peer: IoCapability) -> bool:
        # Table 2.8 of 2.3.5.1: which pairs give "responder displays, initiator inputs".
        if peer is IoCapability.DISPLAY_ONLY:
            return True
        if peer in (IoCapability.DISPLAY_YES_NO, IoCapability.KEYBOARD_DISPLAY):
            return self._io_capability is IoCapability.KEYBOARD_ONLY
        return False

    def _send_commitment(self) -> list[SmpEvent]:
        confirm = self._commitment()
        self._state = SmpState.WAIT_CONFIRM
        return [SendPdu(PairingConfirm(confirm))]

    def _on_peer_nonce(self, nb: bytes) -> list[SmpEvent]:
        self._check_peer_nonce(nb)
        if self._round < PASSKEY_ROUNDS:
            return self._send_commitment()
        assert self._request is not None and self._passkey is not None
        a = self._local_address.as_56_bits()
        b = self._peer_address.as_56_bits()
        self._derive_keys(self._local_nonce, nb, a, b)
        r = self._passkey.to_bytes(16, "big")
        ea = f6(self._mac_key, self._local_nonce, nb, r, self._request.io_cap_octets(), a, b)
        self._state = SmpState.WAIT_DHKEY_CHECK
        return [SendPdu(PairingDhKeyCheck(ea))]

    def _on_dhkey_check(self, eb: bytes) -> list[SmpEvent]:
        assert self._passkey is not None and self._response is not None
        a = self._local_address.as_56_bits()
        b = self._peer_address.as_56_bits()
        r = self._passkey.to_bytes(16, "big")
        expected = f6(
            self._mac_key,
            self._peer_nonce,
            self._local_nonce,
            r,
            self._response.io_cap_octets(),
            b,
            a,
        )
        if not hmac.compare_digest(expected, eb):
            raise _PairingFailure(PairingFailedReason.DHKEY_CHECK_FAILED)
        return [self._bond()]


class SmpResponder(_SmpMachine):
    """The band's side: displays a passkey and accepts only authenticated LE SC pairing.

    ``passkey`` is the six-digit value to display, chosen by the caller (for example with
    :func:`passkey_from_bytes`) and fresh for every attempt: each opened commitment reveals
    one bit of it, so a passkey is worthless once used. Set ``repeated_attempts`` (from a
    :class:`~protocol.ble.smp_rate_limit.PairingRateLimiter`) to answer the next Pairing
    Request with Pairing Failed (Repeated Attempts).
    """

    def __init__(
        self,
        *,
        local_address: DeviceAddress,
        peer_address: DeviceAddress,
        private_key: ec.EllipticCurvePrivateKey,
        random_bytes: RandomBytes,
        passkey: int,
        bondable: bool = True,
        min_key_size: int = MAX_ENCRYPTION_KEY_SIZE,
        repeated_attempts: bool = False,
    ) -> None:
        super().__init__(
            local_address=local_address,
            peer_address=peer_address,
            private_key=private_key,
            random_bytes=random_bytes,
            bondable=bondable,
            min_key_size=min_key_size,
        )
        self._passkey = _check_passkey(passkey)
        self._repeated_attempts = repeated_attempts
        self._passkey_shown = False
        self._state = SmpState.WAIT_PAIRING_REQUEST

    @property
    def passkey_shown(self) -> bool:
        """True once this pairing displayed its passkey: from then on it can test a guess.

        A pairing aborted before (refused for Repeated Attempts, legacy or Just Works, OOB,
        a short key) tested nothing and is no failure for a rate limiter; one aborted after,
        by either side or by a timeout, is.
        """
        return self._passkey_shown

    def security_request(self) -> list[SmpEvent]:
        """Ask the central to pair (Security Request with bonding, MITM and SC)."""
        if self._state is not SmpState.WAIT_PAIRING_REQUEST:
            raise UsageError("a Security Request only makes sense before pairing starts")
        return [SendPdu(SecurityRequest(self._auth_req()))]

    def _handle(self, pdu: SmpPdu) -> list[SmpEvent]:
        state = self._state
        if state is SmpState.WAIT_PAIRING_REQUEST:
            if isinstance(pdu, PairingRequest):
                return self._on_pairing_request(pdu)
            if isinstance(pdu, SecurityRequest | PairingResponse):
                # Commands only a peripheral sends: a central never should.
                raise _PairingFailure(PairingFailedReason.COMMAND_NOT_SUPPORTED)
            raise _unexpected()
        if state is SmpState.WAIT_PUBLIC_KEY and isinstance(pdu, PairingPublicKey):
            self._accept_peer_key(pdu)
            self._state = SmpState.WAIT_CONFIRM
            return [SendPdu(PairingPublicKey(self._local_x, self._local_y))]
        if state is SmpState.WAIT_CONFIRM and isinstance(pdu, PairingConfirm):
            return self._on_commitment(pdu.value)
        if state is SmpState.WAIT_RANDOM and isinstance(pdu, PairingRandom):
            return self._on_peer_nonce(pdu.value)
        if state is SmpState.WAIT_DHKEY_CHECK and isinstance(pdu, PairingDhKeyCheck):
            return self._on_dhkey_check(pdu.value)
        raise _unexpected()

    def _on_pairing_request(self, request: PairingRequest) -> list[SmpEvent]:
        # From here on a failure ends this machine (the peer has started pairing).
        self._state = SmpState.WAIT_PUBLIC_KEY
        if self._repeated_attempts:
            raise _PairingFailure(PairingFailedReason.REPEATED_ATTEMPTS)
        if not request.auth_req & AuthReq.SECURE_CONNECTIONS:
            raise _PairingFailure(PairingFailedReason.AUTHENTICATION_REQUIREMENTS)
        if request.oob_data_present:
            # The band never hands out OOB data, so the central cannot hold any of it.
            raise _PairingFailure(PairingFailedReason.OOB_NOT_AVAILABLE)
        if request.io_capability not in (
            IoCapability.KEYBOARD_ONLY,
            IoCapability.KEYBOARD_DISPLAY,
        ):
            # Any other central would get Just Works: unauthenticated, not allowed here.
            raise _PairingFailure(PairingFailedReason.AUTHENTICATION_REQUIREMENTS)
        response = PairingResponse(
            io_capability=IoCapability.DISPLAY_ONLY,
            oob_data_present=False,
            auth_req=self._auth_req(),
            max_key_size=MAX_ENCRYPTION_KEY_SIZE,
            initiator_key_distribution=KeyDistribution.NONE,
            responder_key_distribution=KeyDistribution.NONE,
        )
        self._key_size(request, response)
        self._request = request
        self._response = response
        assert self._passkey is not None
        self._passkey_shown = True
        return [SendPdu(response), DisplayPasskey(self._passkey)]

    def _on_commitment(self, ca: bytes) -> list[SmpEvent]:
        self._peer_confirm = ca
        cb = self._commitment()
        self._state = SmpState.WAIT_RANDOM
        return [SendPdu(PairingConfirm(cb))]

    def _on_peer_nonce(self, na: bytes) -> list[SmpEvent]:
        self._check_peer_nonce(na)
        if self._round < PASSKEY_ROUNDS:
            self._state = SmpState.WAIT_CONFIRM
        else:
            a = self._peer_address.as_56_bits()
            b = self._local_address.as_56_bits()
            self._derive_keys(na, self._local_nonce, a, b)
            self._state = SmpState.WAIT_DHKEY_CHECK
        return [SendPdu(PairingRandom(self._local_nonce))]

    def _on_dhkey_check(self, ea: bytes) -> list[SmpEvent]:
        assert self._passkey is not None
        assert self._request is not None and self._response is not None
        a = self._peer_address.as_56_bits()
        b = self._local_address.as_56_bits()
        r = self._passkey.to_bytes(16, "big")
        na, nb = self._peer_nonce, self._local_nonce
        expected = f6(self._mac_key, na, nb, r, self._request.io_cap_octets(), a, b)
        if not hmac.compare_digest(expected, ea):
            raise _PairingFailure(PairingFailedReason.DHKEY_CHECK_FAILED)
        eb = f6(self._mac_key, nb, na, r, self._response.io_cap_octets(), b, a)
        return [SendPdu(PairingDhKeyCheck(eb)), self._bond()]
