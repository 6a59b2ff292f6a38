"""``kmeband sync`` while the ingest is unreachable: store and forward through the outbox."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cli_band_support import bands_on_hub, pair, run_cli

from cloud_ingest.server import IngestServer
from sync_client.activation import INGEST_KEY_FILE, AccountFile
from sync_client.outbox import Outbox


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_with_a_cached_key_sync_seals_into_the_outbox_and_uploads_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key_dir = tmp_path / "ingest.db", tmp_path / "ingest-keys"
    async with bands_on_hub(tmp_path, monkeypatch, simulate_s=3600) as (band,):
        async with IngestServer(db, key_dir) as ingest:
            port = ingest.port
            await pair(monkeypatch, band, "--ingest", ingest.url)
        client = tmp_path / "client"
        assert (client / INGEST_KEY_FILE).stat().st_mode & 0o777 == 0o600
        capsys.readouterr()
        # the ingest is down: the sync still pulls and seals into the outbox
        assert await run_cli("sync", band.address, "--json") == 0
        with Outbox(client / "outbox.db") as outbox:
            queued = outbox.pending_count()
        assert queued > 0
        # the ingest is back: the next sync uploads what was queued
        async with IngestServer(db, key_dir, port=port) as ingest:
            assert await run_cli("sync", band.address, "--json") == 0
            assert ingest.store is not None and ingest.store.record_count() >= 60
        with Outbox(client / "outbox.db") as outbox:
            assert outbox.pending_count() == 0


async def test_with_no_key_ever_fetched_sync_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = tmp_path / "client"
    AccountFile(f"http://127.0.0.1:{_closed_port()}", "token").save(client)
    code = await run_cli("sync", "AA:BB:CC:DD:EE:FF", "--json", "--client-dir", str(client))
    assert code == 1
    message = json.loads(capsys.readouterr().out)["error"]
    assert "never fetched it before" in message and "--ingest-key" in message
    assert not (client / "outbox.db").exists()  # nothing was pulled or sealed
