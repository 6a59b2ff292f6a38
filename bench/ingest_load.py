"""Ingest throughput: sealed batches and records per second on loopback.

The ingest runs in its own process (as in production, it does not share a core's GIL
with its clients); N concurrent uploaders, one band each, post pre-sealed batches of
realistic records over aiohttp. Sealing happens before the clock starts.

    python bench/ingest_load.py [--uploaders 8] [--batches 4000] [--records 500]

Last line: {"bench": "ingest", "batches_per_s": x, "records_per_s": x}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_records import realistic_records
from bench_consent import signed_consent_record
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from protocol.batch import (
    BatchHeader,
    band_pseudonym,
    consent_digest_of,
    encode_batch_plaintext,
)
from protocol.records import StoredRecord, StreamId
from sync_client.sealing import seal_batch


def _serve(db: str, key_dir: str, ready: Any) -> None:
    from cloud_ingest.server import IngestConfig, IngestServer

    async def run() -> None:
        config = IngestConfig(rate_per_band=1e9, burst_per_band=1e9, max_body_bytes=8 << 20)
        async with IngestServer(db, key_dir, config=config) as server:
            ready.send((server.url, server.public_key.public_bytes_raw()))
            await asyncio.Event().wait()

    asyncio.run(run())


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seal_all(
    public_key: x25519.X25519PublicKey, uploaders: int, batches: int, per_batch: int
) -> list[tuple[ed25519.Ed25519PrivateKey, bytes, list[bytes]]]:
    """Per uploader: its band's signing key, pseudonym and pre-sealed envelopes."""
    streams = [StreamId.HR_SAMPLES, StreamId.ACTIVITY_MINUTES, StreamId.SLEEP_EPOCHS]
    templates = {s: realistic_records(s, per_batch, seed=int(s)) for s in streams}
    out = []
    for u in range(uploaders):
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([u + 1]) * 32)
        band = band_pseudonym(bytes([0xA0 + u]) * 32, f"KME-BENCH-{u:06d}")
        consent = signed_consent_record(key)
        envelopes = []
        next_seq = dict.fromkeys(streams, 1)
        for i in range(batches // uploaders):
            stream = streams[i % len(streams)]
            first = next_seq[stream]
            next_seq[stream] += per_batch
            records = [
                StoredRecord(stream, first + j, r.record) for j, r in enumerate(templates[stream])
            ]
            header = BatchHeader(
                batch_id=os.urandom(16),
                band=band,
                stream=stream,
                first_seq=first,
                last_seq=first + per_batch - 1,
                count=per_batch,
                consent_digest=consent_digest_of(consent),
                firmware_version="1.4.2",
                model="KME Smart 1",
                client_os="Linux 6.8",
                client_version="kmeband 0.1.0",
                created=1_760_000_000,
            )
            plaintext = encode_batch_plaintext(records, consent)
            envelopes.append(seal_batch(header, plaintext, public_key))
        out.append((key, band, envelopes))
    return out


async def upload(url: str, sealed: list[tuple[Any, bytes, list[bytes]]]) -> tuple[float, int]:
    connector = aiohttp.TCPConnector(limit=len(sealed) * 2)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        auths = []
        for key, band, _ in sealed:
            token = (await (await http.post("/v1/accounts")).json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            public = key.public_key().public_bytes_raw()
            registration = {"band": _b64(band), "public_key": _b64(public)}
            response = await http.post("/v1/bands", json=registration, headers=auth)
            assert response.status in (200, 201), await response.text()
            auths.append(auth)

        async def uploader(auth: dict[str, str], envelopes: list[bytes]) -> int:
            stored = 0
            for envelope in envelopes:
                async with http.post("/v1/batches", data=envelope, headers=auth) as response:
                    answer = await response.json()
                    if response.status != 200:
                        raise SystemExit(f"ingest refused a batch: {answer}")
                    stored += answer["stored"]
            return stored

        t0 = time.perf_counter()
        counts = await asyncio.gather(
            *(uploader(auth, env) for auth, (_, _, env) in zip(auths, sealed, strict=True))
        )
        return time.perf_counter() - t0, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4000)
    parser.add_argument("--records", type=int, default=500, help="records per batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        receive, send = multiprocessing.Pipe(duplex=False)
        server = multiprocessing.get_context("fork").Process(
            target=_serve, args=(f"{tmp}/ingest.sqlite3", f"{tmp}/keys", send), daemon=True
        )
        server.start()
        try:
            url, public_raw = receive.recv()
            public_key = x25519.X25519PublicKey.from_public_bytes(public_raw)
            t0 = time.perf_counter()
            sealed = seal_all(public_key, args.uploaders, args.batches, args.records)
            n_batches = sum(len(env) for _, _, env in sealed)
            print(f"sealed {n_batches} batches in {time.perf_counter() - t0:.1f} s", flush=True)
            elapsed, stored = asyncio.run(upload(url, sealed))
        finally:
            server.terminate()
            server.join()
    expected = n_batches * args.records
    if stored != expected:
        raise SystemExit(f"stored {stored} records, expected {expected}")
    print(
        f"{n_batches} batches, {stored} records in {elapsed:.2f} s with {args.uploaders} uploaders",
        flush=True,
    )
    print(
        json.dumps(
            {
                "bench": "ingest",
                "batches_per_s": round(n_batches / elapsed),
                "records_per_s": round(stored / elapsed),
            }
        )
    )


if __name__ == "__main__":
    main()
