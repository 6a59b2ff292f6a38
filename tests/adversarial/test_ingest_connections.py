"""The ingest against slow and idle connections, and its shutdown on signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from ingest_samples import SampleBand, hr

from cloud_ingest.server import IngestConfig, IngestServer

REPO = Path(__file__).resolve().parents[2]
SLOW_CLIENTS = 40
SERVE = [sys.executable, "-m", "kmeband.cli", "ingest", "serve", "--port", "0"]


async def _slow_client(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/batches HTTP/1.1\r\nHost: ingest\r\n")  # never finishes its head
    await writer.drain()
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout=within_s) is not None
    except (TimeoutError, ConnectionError):
        return False


async def test_slow_clients_are_cut_off_while_a_normal_client_keeps_being_served(
    tmp_path: Path,
) -> None:
    config = IngestConfig(header_timeout_s=0.5, max_unauthenticated=8)
    async with IngestServer(tmp_path / "db", tmp_path / "keys", config=config) as server:
        assert server.guard is not None
        band = SampleBand()
        async with aiohttp.ClientSession(server.url) as http:
            token = (await (await http.post("/v1/accounts")).json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            assert (await http.post("/v1/bands", json=band.registration(), headers=auth)).status
            slow = []
            served = 0
            for i in range(SLOW_CLIENTS):
                slow.append(await _slow_client(server.host, server.port))
                assert server.guard.unauthenticated <= config.max_unauthenticated
                if i % 4 == 0:
                    # the well-behaved uploader, on its kept-alive connection, meanwhile
                    envelope = band.seal(hr(50, first_seq=1 + 50 * served), server.public_key)
                    post = http.post("/v1/batches", data=envelope, headers=auth)
                    async with asyncio.timeout(5):
                        async with post as answer:
                            assert answer.status == 200
                            assert (await answer.json())["status"] == "stored"
                    served += 1
            # Beyond the cap the oldest unauthenticated connections were closed at once;
            # the rest go when their header timeout runs out.
            assert server.guard.evicted >= SLOW_CLIENTS - config.max_unauthenticated
            closed = await asyncio.gather(*(_closed_by_server(r, 3.0) for r, _ in slow))
            assert all(closed)
            # and a fresh client is served as before
            async with asyncio.timeout(5), http.get("/v1/keys") as answer:
                assert answer.status == 200
        for _, writer in slow:
            writer.close()
        assert served == SLOW_CLIENTS // 4
        assert server.store is not None and server.store.record_count() == 50 * served


async def test_an_idle_kept_alive_connection_is_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    config = IngestConfig(header_timeout_s=0.3)
    async with IngestServer(tmp_path / "db", tmp_path / "keys", config=config) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /v1/keys HTTP/1.1\r\nHost: ingest\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 200")
        # then nothing: the server closes the kept-alive connection
        assert await _closed_by_server(reader, 3.0)
        writer.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ingest_serve_started_in_the_background_stops_cleanly_on_a_signal(
    tmp_path: Path, signum: int
) -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored.
    child = subprocess.Popen(
        [*SERVE, "--db", str(tmp_path / "ingest.sqlite3")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert child.stdout is not None
        assert b"serving on" in child.stdout.readline()
        child.send_signal(signum)
        assert child.wait(timeout=20) == 0
        assert b"stopped" in child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
