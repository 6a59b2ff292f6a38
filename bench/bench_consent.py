"""The band-signed consent record the ingest bench uploads (everything granted)."""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol.records import ConsentCategory

_TESTS = Path(__file__).resolve().parent.parent / "tests" / "cloud_ingest"


def signed_consent_record(key: ed25519.Ed25519PrivateKey) -> bytes:
    sys.path.insert(0, str(_TESTS))
    from tests_consent import signed_consent

    return signed_consent(key, {c: [(0, None)] for c in ConsentCategory}, 3)


def CONSENT_SEAM() -> None:
    """Let the ingest process read the records above (until protocol.consent is wired)."""
    sys.path.insert(0, str(_TESTS))
    import tests_consent

    from cloud_ingest import consent_check

    consent_check.decode_and_verify = tests_consent.verified_grants
