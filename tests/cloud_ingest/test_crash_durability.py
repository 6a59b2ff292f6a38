"""An acknowledged batch survives a SIGKILL of the ingest (WAL, synchronous=NORMAL).

The ingest runs in a child process, as deployed (background WAL checkpointer on); the
test kills it with SIGKILL right after the last answer and reopens the database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import x25519
from ingest_samples import SampleBand, hr

from cloud_ingest.store import IngestStore

REPO = Path(__file__).resolve().parents[2]

SERVE = """
import asyncio, sys
from cloud_ingest.server import IngestServer

async def main():
    async with IngestServer(sys.argv[1], sys.argv[2]) as server:
        print(server.url, server.public_key.public_bytes_raw().hex(), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_acknowledged_batches_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "ingest.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVE,
        str(db),
        str(tmp_path / "keys"),
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=20)
        url, public_hex = line.decode().split()
        public_key = x25519.X25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        band = SampleBand(serial="KME-TEST-SIGKILL")
        async with aiohttp.ClientSession(url) as http:
            token = (await (await http.post("/v1/accounts")).json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            registration = await http.post("/v1/bands", json=band.registration(), headers=auth)
            assert registration.status == 201
            acknowledged = 0
            for i in range(6):
                envelope = band.seal(hr(200, first_seq=1 + 200 * i), public_key)
                async with http.post("/v1/batches", data=envelope, headers=auth) as answer:
                    assert answer.status == 200
                    acknowledged += (await answer.json())["stored"]
        child.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), timeout=20) == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    store = IngestStore(db)
    try:
        assert acknowledged == 1200
        assert store.record_count() == acknowledged
        tables = store.snapshot()
        assert (tables["batches"], tables["segments"], tables["bands"]) == (6, 6, 1)
    finally:
        store.close()


def test_closing_a_store_stops_its_checkpointer(tmp_path: Path) -> None:
    store = IngestStore(tmp_path / "ingest.sqlite3", background_checkpoint=True)
    checkpointer = store._checkpointer
    assert checkpointer is not None and checkpointer._thread.is_alive()
    store.create_account("token", 0)
    store.close()
    assert not checkpointer._thread.is_alive()
    reopened = IngestStore(tmp_path / "ingest.sqlite3")
    assert reopened.snapshot()["accounts"] == 1
    reopened.close()


def test_the_store_and_its_wal_files_are_private(tmp_path: Path) -> None:
    import os
    import stat

    from cloud_ingest.store import IngestStore

    loose = os.umask(0o022)
    try:
        store = IngestStore(tmp_path / "ingest.db")
        store.create_account("token", 0)
    finally:
        os.umask(loose)
    for name in ("ingest.db", "ingest.db-wal", "ingest.db-shm"):
        path = tmp_path / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert (tmp_path / "ingest.db-wal").exists()
    store.close()
