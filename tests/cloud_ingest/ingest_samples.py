"""Helpers for the ingest tests: a band with a signing key, records, sealed batches."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from tests_consent import signed_consent

from device_sim.band.factory import simulated_factory_key
from protocol.kme.attestation import issue_certificate
from protocol.kme.batch import (
    BatchHeader,
    band_pseudonym,
    consent_digest_of,
    encode_batch_plaintext,
)
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    ConsentCategory,
    HeartRateSample,
    SleepSummary,
    StoredRecord,
    StreamId,
)
from sync_client.sealing import seal_batch

T0 = 1_760_000_000 - 1_760_000_000 % 86_400


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hr(n: int, first_seq: int = 1, start: int = T0, bpm: int = 70) -> list[StoredRecord]:
    return [
        StoredRecord(
            StreamId.HR_SAMPLES, first_seq + i, HeartRateSample(start + 5 * i, 120, bpm, 3)
        )
        for i in range(n)
    ]


def activity(n: int, first_seq: int = 1, start: int = T0, avg_hr: int = 0) -> list[StoredRecord]:
    return [
        StoredRecord(
            StreamId.ACTIVITY_MINUTES,
            first_seq + i,
            ActivityMinute(start + 60 * i, 120, 90, ActivityClass.WALK, 2, avg_hr, True),
        )
        for i in range(n)
    ]


def sleep_summary(seq: int = 1, start: int = T0) -> list[StoredRecord]:
    night = SleepSummary(
        start, 120, start + 900, start + 8 * 3600, start + 8 * 3600 + 600, 90, 2, 240, 90, 100, 20
    )
    return [StoredRecord(StreamId.SLEEP_SUMMARIES, seq, night)]


_ids = itertools.count(1)


@dataclass
class SampleBand:
    """A band as the client knows it: serial, account key, signing key, consent grants."""

    serial: str = "KME-TEST-000001"
    account_key: bytes = b"\x42" * 32
    signing_key: ed25519.Ed25519PrivateKey = field(
        default_factory=lambda: ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    )
    grants: dict[ConsentCategory, list[tuple[int, int | None]]] = field(
        default_factory=lambda: {c: [(T0 - 86_400, None)] for c in ConsentCategory}
    )
    policy_version: int = 3

    @property
    def pseudonym(self) -> bytes:
        return band_pseudonym(self.account_key, self.serial)

    def registration(self) -> dict[str, str]:
        """``POST /v1/bands``: pseudonym, key, and the simulated factory's certificate."""
        public = self.signing_key.public_key().public_bytes_raw()
        certificate = issue_certificate(simulated_factory_key(), public, self.serial, T0)
        return {
            "band": b64(self.pseudonym),
            "public_key": b64(public),
            "certificate": b64(certificate.encode()),
        }

    def consent_record(self) -> bytes:
        covers = (T0 - 86_400, T0 + 30 * 86_400)
        return signed_consent(self.signing_key, self.grants, self.policy_version, covers)

    def header(
        self, records: Sequence[StoredRecord], consent: bytes, **changes: Any
    ) -> BatchHeader:
        values: dict[str, Any] = {
            "batch_id": next(_ids).to_bytes(16, "big"),
            "band": self.pseudonym,
            "stream": records[0].stream,
            "first_seq": records[0].seq,
            "last_seq": records[-1].seq,
            "count": len(records),
            "consent_digest": consent_digest_of(consent),
            "firmware_version": "1.4.2",
            "model": "KME Smart 1",
            "client_os": "Linux 6.8",
            "client_version": "kmeband 0.1.0",
            "created": T0 + 86_400,
        }
        values.update(changes)
        return BatchHeader(**values)

    def seal(
        self,
        records: Sequence[StoredRecord],
        public_key: x25519.X25519PublicKey,
        *,
        consent: bytes | None = None,
        **changes: Any,
    ) -> bytes:
        consent = self.consent_record() if consent is None else consent
        header = self.header(records, consent, **changes)
        return seal_batch(header, encode_batch_plaintext(records, consent), public_key)
