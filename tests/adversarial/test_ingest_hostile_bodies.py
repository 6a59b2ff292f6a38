"""The ingest against bodies that are cheap to send and were expensive to receive."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from aiohttp.test_utils import TestClient
from hostile import FAR_SEQ, big_rational_envelope, bignum_envelope, nested_json, span_records
from ingest_samples import T0, SampleBand

from cloud_ingest.keys import IngestKeys
from cloud_ingest.store import IngestStore
from protocol.kme.batch import (
    MalformedBatchError,
    decode_batch_plaintext,
    decode_envelope,
    encode_batch_plaintext,
)


def _store_records(store: IngestStore, account: int, band: SampleBand, *seqs: int) -> object:
    records = span_records(*seqs, start=T0)
    consent = band.consent_record()
    header = band.header(records, consent)
    plaintext = encode_batch_plaintext(records, consent)
    body = decode_batch_plaintext(header, plaintext)
    return store.store_batch(account, header, body, plaintext, b"\x01" * 32, T0)


@pytest.mark.parametrize("far", [2**21, FAR_SEQ])
def test_a_batch_spanning_a_huge_seq_range_costs_its_records_not_its_span(
    store: IngestStore, far: int
) -> None:
    band = SampleBand()
    account = store.create_account("token", T0)
    store.register_band(account, band.pseudonym, b"\x00" * 32, T0)
    _store_records(store, account, band, far)
    store.erase_account_data(account)  # remembers seq `far` as erased through
    tracemalloc.start()
    try:
        outcome = _store_records(store, account, band, 0, far)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (outcome.stored, outcome.duplicates) == (0, 2)  # type: ignore[attr-defined]
    # A set of the span's numbers would take tens of MB at 2**21 (and never end at 2**40).
    assert peak < 4 * 1024 * 1024


def test_a_stored_segment_far_away_still_deduplicates_exactly(store: IngestStore) -> None:
    band = SampleBand()
    account = store.create_account("token", T0)
    store.register_band(account, band.pseudonym, b"\x00" * 32, T0)
    _store_records(store, account, band, 5, FAR_SEQ)
    outcome = _store_records(store, account, band, 0, 5, 7, FAR_SEQ, FAR_SEQ + 1)
    assert (outcome.stored, outcome.duplicates) == (3, 2)  # type: ignore[attr-defined]
    assert store.record_count(account) == 5


@pytest.mark.parametrize(
    "envelope", [big_rational_envelope(), bignum_envelope()], ids=["tag30_rational", "tag2_bignum"]
)
def test_bignum_and_rational_tags_are_refused_before_any_arithmetic(envelope: bytes) -> None:
    started = time.process_time()
    with pytest.raises(MalformedBatchError, match="tags are not accepted"):
        decode_envelope(envelope)
    assert time.process_time() - started < 0.5  # linear: ~1 ms; the gcd took seconds


async def test_a_big_rational_envelope_gets_400_at_once(
    client: TestClient, keys: IngestKeys
) -> None:
    auth = await _registered(client, SampleBand())
    response = await client.post("/v1/batches", data=big_rational_envelope(), headers=auth)
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_batch"


async def _registered(client: TestClient, band: SampleBand) -> dict[str, str]:
    token = (await (await client.post("/v1/accounts")).json())["token"]
    auth = {"Authorization": f"Bearer {token}"}
    response = await client.post("/v1/bands", json=band.registration(), headers=auth)
    assert response.status == 201
    return auth


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v1/profile"), ("POST", "/v1/bands"), ("POST", "/v1/consent/withdrawals")],
)
@pytest.mark.parametrize(
    ("depth", "status", "code"), [(2000, 400, "bad_json"), (100_000, 413, "too_large")]
)
async def test_deeply_nested_json_is_a_4xx_not_a_500(
    client: TestClient, method: str, path: str, depth: int, status: int, code: str
) -> None:
    auth = await _registered(client, SampleBand())
    response = await client.request(method, path, data=nested_json(depth), headers=auth)
    assert response.status == status
    assert (await response.json())["error"] == code
    # and the ingest goes on answering
    assert (await client.get("/v1/profile", headers=auth)).status == 200
