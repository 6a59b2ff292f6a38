"""KME Activation: bind the band to one owner; each connection proves ownership."""

from __future__ import annotations

from collections.abc import Callable

from device_sim.band.services.connection import Answer, BandConnection, Effect, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.kme.control.activation import (
    ActivationRequest,
    ActivationResult,
    ActivationState,
    BandPublicKey,
    KeyAlgorithm,
    OwnerChallenge,
    OwnerProof,
    RequestOwnerChallenge,
)
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.schema import SCHEMA_VERSION, ControlMessage, encode_control
from protocol.kme.ownership import (
    NONCE_SIZE,
    activation_statement,
    check_owner_proof,
    owner_proof_limiter,
)
from protocol.kme.profile import (
    KME_ACTIVATION_CONTROL_POINT,
    KME_ACTIVATION_STATE,
    KME_BAND_CERTIFICATE,
    KME_BAND_IDENTITY,
)


class ActivationService:
    """Activation state, the band's keys and certificate, activation and owner proofs.

    ``random_bytes`` draws the owner challenges (the band's seeded generator)."""

    def __init__(self, band: SimulatedBand, random_bytes: Callable[[int], bytes]) -> None:
        self.band = band
        self.random_bytes = random_bytes
        # per band, not per central: a central can change its address
        self.owner_limiter = owner_proof_limiter()

    def handlers(self) -> Service:
        band = self.band
        return Service(
            reads={
                KME_ACTIVATION_STATE: lambda c: encode_control(
                    ActivationState(band.activated, (SCHEMA_VERSION,))
                ),
                KME_BAND_IDENTITY: lambda c: encode_control(
                    BandPublicKey(KeyAlgorithm.ED25519, band.identity.public_key_bytes)
                ),
                KME_BAND_CERTIFICATE: lambda c: band.certificate.encode(),
            },
            requests={KME_ACTIVATION_CONTROL_POINT: self._request},
        )

    def _request(self, conn: BandConnection, message: ControlMessage, raw: bytes) -> list[Effect]:
        band = self.band
        if isinstance(message, ActivationRequest):
            if band.activated:
                return [Answer(ActivationResult(ControlStatus.ALREADY_ACTIVATED))]
            band_public = band.identity.public_key_bytes
            statement = activation_statement(
                message.owner_public_key, message.account_tag, message.client_nonce, band_public
            )
            band.owner.activate(message.owner_public_key, message.account_tag)
            conn.owner = True
            signature = band.identity.sign(statement)
            return [Answer(ActivationResult(ControlStatus.OK, band_public, signature))]
        if isinstance(message, RequestOwnerChallenge):
            if not band.activated:
                return [Answer(OwnerChallenge(ControlStatus.NOT_ACTIVATED))]
            if not self.owner_limiter.allows(band.clock.now()):
                return [Answer(OwnerChallenge(ControlStatus.RATE_LIMITED))]
            conn.nonce = self.random_bytes(NONCE_SIZE)
            return [Answer(OwnerChallenge(ControlStatus.OK, conn.nonce))]
        assert isinstance(message, OwnerProof)  # the access table lists these three only
        nonce, conn.nonce = conn.nonce, None  # single use, whatever the outcome
        status = self._verify_owner_proof(conn, nonce, message)
        return [Answer(ControlResult(message.MESSAGE_TYPE, status))]

    def _verify_owner_proof(
        self, conn: BandConnection, nonce: bytes | None, proof: OwnerProof
    ) -> ControlStatus:
        """Check an ownership proof under the back-off; only a checked proof can fail."""
        band = self.band
        now = band.clock.now()
        conn.owner = False
        if not self.owner_limiter.allows(now):
            return ControlStatus.RATE_LIMITED  # refused unchecked: no failure counted
        owner_key = band.owner.key
        if owner_key is None or nonce is None:
            return ControlStatus.AUTH_FAILED  # nothing to check against: tests nothing
        if not check_owner_proof(owner_key, band.identity.public_key_bytes, nonce, proof):
            self.owner_limiter.record_failure(now)
            return ControlStatus.AUTH_FAILED
        self.owner_limiter.record_success()
        conn.owner = True
        return ControlStatus.OK
