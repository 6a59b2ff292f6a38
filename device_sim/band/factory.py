"""The simulated KME factory: it certifies each simulated band's identity key at manufacture.

Its key is the documented test key whose public half is
:data:`protocol.kme.attestation.SIMULATED_FACTORY_ROOT` (seed: SHA-256 of
:data:`~protocol.kme.attestation.SIMULATED_FACTORY_SEED_LABEL`). The certificate is a pure
function of the band's identity and its manufacture time, so a band rebuilt from its state
directory presents the same certificate.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.band.identity import BandIdentity
from protocol.kme.attestation import (
    SIMULATED_FACTORY_SEED_LABEL,
    BandCertificate,
    issue_certificate,
)

#: When simulated bands are made (2025-12-01T00:00:00Z): a fixed time, never the wall clock.
MANUFACTURED_AT = 1_764_547_200


def simulated_factory_key() -> Ed25519PrivateKey:
    """The simulated factory's signing key (a published test key: simulated bands only)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(SIMULATED_FACTORY_SEED_LABEL).digest()
    )


def certify(identity: BandIdentity, issued_at: int = MANUFACTURED_AT) -> BandCertificate:
    """The factory's certificate for a band's identity key."""
    return issue_certificate(
        simulated_factory_key(), identity.public_key_bytes, identity.serial, issued_at
    )
