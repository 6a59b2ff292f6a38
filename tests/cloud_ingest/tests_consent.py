"""Band-signed consent records for the ingest tests."""

from __future__ import annotations

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud_ingest.consent_check import ConsentRejected, VerifiedConsent
from protocol.records import ConsentCategory


def signed_consent(
    key: ed25519.Ed25519PrivateKey,
    grants: dict[ConsentCategory, list[tuple[int, int | None]]],
    policy_version: int,
) -> bytes:
    body = cbor2.dumps(
        {
            "policy": policy_version,
            "grants": {int(c): [list(i) for i in spans] for c, spans in grants.items()},
        },
        canonical=True,
    )
    return cbor2.dumps([body, key.sign(body)])


def verified_grants(raw: bytes, public_key: bytes) -> VerifiedConsent:
    try:
        body, signature = cbor2.loads(raw)
        ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, body)
    except (InvalidSignature, ValueError, TypeError, cbor2.CBORError) as exc:
        raise ConsentRejected(
            "consent_invalid", "the consent record's signature is invalid"
        ) from exc
    content = cbor2.loads(body)
    grants = {
        ConsentCategory(c): [(s, e) for s, e in spans] for c, spans in content["grants"].items()
    }
    return VerifiedConsent(content["policy"], grants)
