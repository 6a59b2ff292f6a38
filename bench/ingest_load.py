"""Ingest throughput: sealed batches and records per second on loopback.

The ingest runs in its own process (as in production, it does not share a core's GIL
with its clients); N concurrent uploaders, one band each, post pre-sealed batches of
realistic records. Sealing happens before the clock starts.

The default client keeps one HTTP/1.1 keep-alive connection per uploader and writes
requests serialised before the clock starts, so that on a shared 2-core machine the
figure measures the ingest rather than the load generator (``--client aiohttp`` posts
through an aiohttp session instead: it costs more CPU per request than the ingest's own
HTTP layer). The ingest's and the client's CPU time per batch are printed too: they are
steadier than the rate while others load the machine.

    python bench/ingest_load.py [--uploaders 8] [--batches 4000] [--records 500]
                                [--client raw|aiohttp] [--loop asyncio|uvloop]

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

from device_sim.band.factory import simulated_factory_key
from protocol.kme.attestation import issue_certificate
from protocol.kme.batch import (
    BatchHeader,
    band_pseudonym,
    consent_digest_of,
    encode_batch_plaintext,
)
from protocol.kme.records import StoredRecord, StreamId
from sync_client.sealing import seal_batch


def _serve(db: str, key_dir: str, ready: Any, loop: str) -> None:
    from cloud_ingest.server import IngestConfig, IngestServer

    async def run() -> None:
        config = IngestConfig(rate_per_band=1e9, burst_per_band=1e9, max_body_bytes=8 << 20)
        async with IngestServer(db, key_dir, config=config) as server:
            ready.send((server.url, server.public_key.public_bytes_raw()))
            await asyncio.Event().wait()

    if loop == "uvloop":
        import uvloop  # optional: only for measuring what it would bring

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    else:
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


async def register(url: str, sealed: list[tuple[Any, bytes, list[bytes]]]) -> list[str]:
    """Create one account per uploader and register its band; return the bearer tokens."""
    async with aiohttp.ClientSession(url) as http:
        tokens = []
        for key, band, _ in sealed:
            token = (await (await http.post("/v1/accounts")).json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            public = key.public_key().public_bytes_raw()
            certificate = issue_certificate(simulated_factory_key(), public, "BENCH", 0).encode()
            registration = {
                "band": _b64(band),
                "public_key": _b64(public),
                "certificate": _b64(certificate),
            }
            response = await http.post("/v1/bands", json=registration, headers=auth)
            assert response.status in (200, 201), await response.text()
            tokens.append(token)
        return tokens


def _refused(status: int, answer: bytes) -> SystemExit:
    return SystemExit(f"ingest refused a batch ({status}): {answer[:200]!r}")


async def upload_raw(url: str, tokens: list[str], sealed: list[Any]) -> tuple[float, int]:
    """Each uploader: one keep-alive HTTP/1.1 connection, requests serialised before the clock.

    The load generator's own cost per request is then a socket write, a read and a JSON
    parse: on a shared 2-core machine the figure is the ingest's, not the client's.
    """
    host_port = url.removeprefix("http://")
    host, _, port = host_port.rpartition(":")

    def requests_of(token: str, envelopes: list[bytes]) -> list[bytes]:
        return [
            (
                f"POST /v1/batches HTTP/1.1\r\nHost: {host_port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/cbor\r\n"
                f"Content-Length: {len(envelope)}\r\n\r\n"
            ).encode()
            + envelope
            for envelope in envelopes
        ]

    async def uploader(requests: list[bytes]) -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        stored = 0
        try:
            for request in requests:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status_line, *lines = head.decode("latin-1").split("\r\n")
                status = int(status_line.split(" ", 2)[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                )
                answer = await reader.readexactly(length)
                if status != 200:
                    raise _refused(status, answer)
                stored += json.loads(answer)["stored"]
        finally:
            writer.close()
        return stored

    prepared = [requests_of(t, env) for t, (_, _, env) in zip(tokens, sealed, strict=True)]
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(uploader(r) for r in prepared))
    return time.perf_counter() - t0, sum(counts)


async def upload_aiohttp(url: str, tokens: list[str], sealed: list[Any]) -> tuple[float, int]:
    """Each uploader posts through one shared aiohttp session (keep-alive connector)."""
    connector = aiohttp.TCPConnector(limit=len(sealed) * 2)
    async with aiohttp.ClientSession(url, connector=connector) as http:

        async def uploader(token: str, envelopes: list[bytes]) -> int:
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/cbor"}
            stored = 0
            for envelope in envelopes:
                async with http.post("/v1/batches", data=envelope, headers=auth) as response:
                    if response.status != 200:
                        raise _refused(response.status, await response.read())
                    stored += (await response.json())["stored"]
            return stored

        t0 = time.perf_counter()
        counts = await asyncio.gather(
            *(uploader(t, env) for t, (_, _, env) in zip(tokens, sealed, strict=True))
        )
        return time.perf_counter() - t0, sum(counts)


def _cpu_seconds(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def measure(
    url: str, sealed: list[Any], client: str, server_pid: int
) -> tuple[float, int, tuple[float, float] | None, float]:
    """Upload everything; return wall time, records stored, the ingest's user and system
    CPU seconds, and the client's CPU seconds."""
    tokens = await register(url, sealed)
    upload = upload_raw if client == "raw" else upload_aiohttp
    server_cpu0, client_cpu0 = _cpu_seconds(server_pid), time.process_time()
    elapsed, stored = await upload(url, tokens, sealed)
    server_cpu1, client_cpu1 = _cpu_seconds(server_pid), time.process_time()
    server_cpu = None
    if server_cpu0 is not None and server_cpu1 is not None:
        server_cpu = (server_cpu1[0] - server_cpu0[0], server_cpu1[1] - server_cpu0[1])
    return elapsed, stored, server_cpu, client_cpu1 - client_cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4000)
    parser.add_argument("--records", type=int, default=500, help="records per batch")
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: pre-serialised HTTP/1.1 requests on keep-alive connections (default); "
        "aiohttp: one aiohttp ClientSession",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the ingest's event loop (uvloop must be installed; it is not a dependency)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        receive, send = multiprocessing.Pipe(duplex=False)
        server = multiprocessing.get_context("fork").Process(
            target=_serve,
            args=(f"{tmp}/ingest.sqlite3", f"{tmp}/keys", send, args.loop),
            daemon=True,
        )
        server.start()
        try:
            url, public_raw = receive.recv()
            public_key = x25519.X25519PublicKey.from_public_bytes(public_raw)
            t0 = time.perf_counter()
            sealed = seal_all(public_key, args.uploaders, args.batches, args.records)
            n_batches = sum(len(env) for _, _, env in sealed)
            print(f"sealed {n_batches} batches in {time.perf_counter() - t0:.1f} s", flush=True)
            assert server.pid is not None
            elapsed, stored, server_cpu, client_cpu = asyncio.run(
                measure(url, sealed, args.client, server.pid)
            )
        finally:
            server.terminate()
            server.join()
    expected = n_batches * args.records
    if stored != expected:
        raise SystemExit(f"stored {stored} records, expected {expected}")
    print(
        f"{n_batches} batches, {stored} records in {elapsed:.2f} s with {args.uploaders} "
        f"uploaders ({args.client} client); load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if server_cpu is not None:
        user, system = server_cpu
        print(
            f"CPU per batch: ingest {1e6 * (user + system) / n_batches:.0f} us "
            f"(user {1e6 * user / n_batches:.0f}, system {1e6 * system / n_batches:.0f}; "
            f"{100 * (user + system) / elapsed:.0f}% of a core), "
            f"client {1e6 * client_cpu / n_batches:.0f} us",
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
