"""A large export is streamed in chunks while the ingest goes on answering others."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from aiohttp.test_utils import TestClient
from ingest_samples import T0, SampleBand, hr

from cloud_ingest.store import IngestStore
from protocol.kme.batch import decode_batch_plaintext, encode_batch_plaintext

RECORDS = 12_000
PER_BATCH = 6_000


def _fill(store: IngestStore, token: str) -> None:
    band = SampleBand()
    account = store.create_account(token, T0)
    store.register_band(account, band.pseudonym, b"\x00" * 32, T0)
    consent = band.consent_record()
    for first in range(1, RECORDS, PER_BATCH):
        records = hr(PER_BATCH, first_seq=first, start=T0 + 5 * first)
        header = band.header(records, consent)
        plaintext = encode_batch_plaintext(records, consent)
        body = decode_batch_plaintext(header, plaintext)
        store.store_batch(account, header, body, plaintext, b"\x02" * 32, T0)


@pytest.mark.parametrize("fmt", ["json", "csv", "fhir"])
async def test_a_large_export_is_chunked_and_others_are_answered_meanwhile(
    client: TestClient, store: IngestStore, fmt: str
) -> None:
    _fill(store, "exporter")
    auth = {"Authorization": "Bearer exporter"}
    response = await client.get(f"/v1/export?format={fmt}", headers=auth)
    assert response.status == 200
    assert response.headers.get("Transfer-Encoding") == "chunked"
    first = await response.content.read(4096)
    # The export is under way (we stopped reading); another client is answered now.
    async with asyncio.timeout(5):
        assert (await client.get("/v1/keys")).status == 200
    text = (first + await response.read()).decode()
    if fmt == "json":
        exported = json.loads(text)
        assert [r["seq"] for r in exported["records"]["hr_samples"]] == list(range(1, RECORDS + 1))
        assert len(exported["batches"]) == RECORDS // PER_BATCH
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][0] == "stream"
        assert len({row[2] for row in rows[1:]}) == RECORDS
    else:
        bundle = json.loads(text)
        assert len(bundle["entry"]) == RECORDS  # one heart-rate observation per sample


async def test_an_empty_export_is_a_complete_document(client: TestClient) -> None:
    token = (await (await client.post("/v1/accounts")).json())["token"]
    auth = {"Authorization": f"Bearer {token}"}
    exported = await (await client.get("/v1/export", headers=auth)).json()
    assert exported["records"] == {} and exported["batches"] == []
    fhir = json.loads(await (await client.get("/v1/export?format=fhir", headers=auth)).text())
    assert fhir == {"resourceType": "Bundle", "type": "collection", "entry": []}
