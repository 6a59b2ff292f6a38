"""The band-signed consent record the ingest bench uploads: everything granted, policy 3."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol.kme.consent import ConsentChange, ConsentLog, ConsentRecord, ConsentSource
from protocol.kme.records import ConsentCategory

COVERS = (1_700_000_000, 1_800_000_000)


def signed_consent_record(key: ed25519.Ed25519PrivateKey) -> bytes:
    log = ConsentLog(
        ConsentChange(COVERS[0] - 86_400, c, True, 3, ConsentSource.BAND) for c in ConsentCategory
    )
    record = ConsentRecord.covering(log, COVERS[0], COVERS[1], issued_at=COVERS[1])
    return record.sign(key.private_bytes_raw()).encode()
