"""Sealing batches with HPKE: round-trips, tamper detection, and interoperability.

The interoperability test opens a sealed batch with a from-the-RFC implementation of
HPKE base mode (RFC 9180 sections 4.1, 5.1, 5.2, 7) built only on X25519, HMAC/HKDF and
AES-GCM primitives plus the constants docs/ingest.md documents: so any RFC 9180
implementation can open a batch.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import zlib
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from cloud_ingest.keys import IngestKeys, load_or_create_keys
from cloud_ingest.opening import BatchOpenError, open_batch
from protocol.kme.batch import (
    SUITE_MLKEM768_X25519,
    SUITE_X25519,
    BatchHeader,
    MalformedBatchError,
    band_pseudonym,
    consent_digest_of,
    decode_batch_plaintext,
    encode_batch_plaintext,
    header_aad,
)
from protocol.kme.records import HeartRateSample, StoredRecord, StreamId
from sync_client.sealing import SealingError, seal_batch

CONSENT = b"band-signed consent record"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> IngestKeys:
    return load_or_create_keys(tmp_path_factory.mktemp("keys"))


def batch(n: int = 20) -> tuple[BatchHeader, bytes, list[StoredRecord]]:
    records = [
        StoredRecord(StreamId.HR_SAMPLES, 7 + i, HeartRateSample(1_760_000_000 + i, 60, 72, 3))
        for i in range(n)
    ]
    header = BatchHeader(
        batch_id=bytes(16),
        band=band_pseudonym(b"\x01" * 32, "KME-TEST-0001"),
        stream=StreamId.HR_SAMPLES,
        first_seq=7,
        last_seq=6 + n,
        count=n,
        consent_digest=consent_digest_of(CONSENT),
        firmware_version="1.4.2",
        model="KME Smart 1",
        client_os="Linux 6.8",
        client_version="kmeband 0.1.0",
        created=1_760_000_100,
    )
    return header, encode_batch_plaintext(records, CONSENT), records


@pytest.mark.parametrize("suite", [SUITE_X25519, SUITE_MLKEM768_X25519])
def test_sealed_batch_opens_with_the_ingest_keys(keys: IngestKeys, suite: object) -> None:
    header, plaintext, records = batch()
    public = keys.public_key if suite == SUITE_X25519 else keys.hybrid_key.public_key()
    envelope = seal_batch(header, plaintext, public, suite=suite)  # type: ignore[arg-type]
    opened_header, opened = open_batch(envelope, keys)
    assert opened_header == header
    assert decode_batch_plaintext(opened_header, opened).records() == records


def test_sealing_twice_gives_different_ciphertexts(keys: IngestKeys) -> None:
    header, plaintext, _ = batch()
    assert seal_batch(header, plaintext, keys.public_key) != seal_batch(
        header, plaintext, keys.public_key
    )


def test_the_plaintext_does_not_appear_in_the_envelope(keys: IngestKeys) -> None:
    header, plaintext, _ = batch()
    envelope = seal_batch(header, plaintext, keys.public_key)
    assert plaintext[8:40] not in envelope
    assert b"KME-TEST-0001" not in envelope


def _with(envelope: bytes, index: int, value: object) -> bytes:
    items = cbor2.loads(envelope)
    items[index] = value
    return cbor2.dumps(items, canonical=True)


def test_a_changed_header_does_not_open(keys: IngestKeys) -> None:
    header, plaintext, _ = batch()
    envelope = seal_batch(header, plaintext, keys.public_key)
    other, _, _ = batch()
    forged = BatchHeader(**{**_fields(other), "created": other.created + 1})
    with pytest.raises(BatchOpenError, match="another key or altered"):
        open_batch(_with(envelope, 2, header_aad(forged)), keys)


def _fields(header: BatchHeader) -> dict[str, object]:
    return {name: getattr(header, name) for name in header.__dataclass_fields__}


def test_a_flipped_ciphertext_bit_or_wrong_key_does_not_open(
    keys: IngestKeys, tmp_path: Path
) -> None:
    header, plaintext, _ = batch()
    envelope = seal_batch(header, plaintext, keys.public_key)
    ciphertext = bytearray(cbor2.loads(envelope)[4])
    ciphertext[5] ^= 0x01
    with pytest.raises(BatchOpenError):
        open_batch(_with(envelope, 4, bytes(ciphertext)), keys)
    with pytest.raises(BatchOpenError):
        open_batch(envelope, load_or_create_keys(tmp_path / "other"))
    with pytest.raises(MalformedBatchError):
        open_batch(envelope[:-7], keys)


def test_a_key_of_another_suite_is_refused(keys: IngestKeys) -> None:
    header, plaintext, _ = batch()
    with pytest.raises(SealingError, match="suite"):
        seal_batch(header, plaintext, keys.public_key, suite=SUITE_MLKEM768_X25519)
    envelope = seal_batch(header, plaintext, keys.public_key)
    with pytest.raises(BatchOpenError, match="suite"):
        open_batch(envelope, keys.hybrid_key)


# -- an independent RFC 9180 base-mode opener, from the documented constants only --------

INFO_PREFIX = b"kmeband batch v1"  # docs/ingest.md, "Batch envelope"
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0002


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    return _expand(prk, n.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, n)


def rfc9180_open(sk_r: x25519.X25519PrivateKey, enc: bytes, info: bytes, ct: bytes) -> bytes:
    kem_suite = b"KEM" + KEM_ID.to_bytes(2, "big")
    dh = sk_r.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + sk_r.public_key().public_bytes_raw()
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared = _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, 32)
    hpke_suite = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (KEM_ID, KDF_ID, AEAD_ID))
    psk_id_hash = _labeled_extract(hpke_suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(hpke_suite, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = _labeled_extract(hpke_suite, shared, b"secret", b"")
    key = _labeled_expand(hpke_suite, secret, b"key", context, 32)
    nonce = _labeled_expand(hpke_suite, secret, b"base_nonce", context, 12)
    return AESGCM(key).decrypt(nonce, ct, b"")  # sequence number 0, empty AAD


def test_any_rfc9180_implementation_opens_a_batch_from_the_documented_constants(
    keys: IngestKeys,
) -> None:
    header, plaintext, records = batch(5)
    envelope = seal_batch(header, plaintext, keys.public_key)
    version, suite, header_bytes, enc, ct = cbor2.loads(envelope)
    assert (version, suite) == (1, [KEM_ID, KDF_ID, AEAD_ID])
    info = INFO_PREFIX + hashlib.sha256(header_bytes).digest()
    opened = rfc9180_open(keys.x25519_key, enc, info, ct)
    body = cbor2.loads(zlib.decompress(opened))
    assert body["consent"] == CONSENT
    seq_deltas = body["records"]["seq"]
    assert int.from_bytes(seq_deltas[:8], "little", signed=True) == records[0].seq
    assert cbor2.loads(header_bytes)["first"] == records[0].seq


def test_key_files_are_private_and_reloaded(tmp_path: Path) -> None:
    first = load_or_create_keys(tmp_path / "k")
    again = load_or_create_keys(tmp_path / "k")
    assert first.x25519_public == again.x25519_public
    assert first.hybrid_public == again.hybrid_public
    for path in (tmp_path / "k").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "k").st_mode & 0o077 == 0
