"""Band-signed consent records (protocol.kme.consent) for the ingest tests and bench."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol.kme.consent import ConsentChange, ConsentLog, ConsentRecord, ConsentSource
from protocol.kme.records import ConsentCategory


def signed_consent(
    key: ed25519.Ed25519PrivateKey,
    grants: dict[ConsentCategory, list[tuple[int, int | None]]],
    policy_version: int,
    covers: tuple[int, int],
) -> bytes:
    """The encoded record the band signs for ``covers``, from grant intervals per category."""
    changes = []
    for category, spans in grants.items():
        for start, end in spans:
            changes.append(ConsentChange(start, category, True, policy_version, ConsentSource.BAND))
            if end is not None:
                changes.append(
                    ConsentChange(end, category, False, policy_version, ConsentSource.BAND)
                )
    log = ConsentLog(sorted(changes, key=lambda c: c.timestamp))
    record = ConsentRecord.covering(log, covers[0], covers[1], issued_at=covers[1])
    return record.sign(key.private_bytes_raw()).encode()
