"""A damaged outbox: a typed error that says what to do, and an account erase that never
stops half done without saying so, and can be run again to finish."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from cli_band_support import run_cli

from cloud_ingest.server import IngestServer
from sync_client.activation import AccountFile
from sync_client.cli import ERASE_PENDING
from sync_client.outbox import Outbox, OutboxDamagedError, OutboxError, QueuedBatch

BAND = b"\x04" * 32
PAGE = 4096


def _filled_outbox(path: Path, batches: int = 200) -> None:
    with Outbox(path) as outbox:
        for n in range(batches):
            batch = QueuedBatch(
                n.to_bytes(16, "big"), BAND, 1, 1, n * 10 + 1, n * 10 + 10, 10, bytes(1500), n
            )
            outbox.commit(BAND, 1, n * 10 + 10, [batch])


def _damage(path: Path) -> None:
    """Overwrite b-tree pages of the batches table (its root, page 2, and one in the middle
    of the file) with bytes no page can hold; the schema (page 1) stays readable."""
    size = path.stat().st_size
    assert size > 20 * PAGE
    with path.open("r+b") as f:
        for page in (2, size // PAGE // 2):
            f.seek((page - 1) * PAGE)
            f.write(b"\xff" * PAGE)


def test_a_damaged_outbox_gives_a_typed_error_that_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _filled_outbox(path)
    _damage(path)
    outbox = Outbox(path)  # the schema reads: the damage shows on first use
    with pytest.raises(OutboxDamagedError, match="move the file away") as caught:
        outbox.due(limit=1000, now=1e12)
    assert isinstance(caught.value, OutboxError)
    with pytest.raises(OutboxDamagedError):
        outbox.drop_all()
    with pytest.raises(OutboxDamagedError):
        outbox.check()
    outbox.close()


async def _account(ingest: IngestServer, client: Path) -> str:
    async with aiohttp.ClientSession() as http:
        token = str((await (await http.post(ingest.url + "/v1/accounts")).json())["token"])
    AccountFile(ingest.url, token).save(client)
    return token


async def _token_works(ingest: IngestServer, token: str) -> bool:
    async with aiohttp.ClientSession() as http:
        answer = await http.get(
            ingest.url + "/v1/profile", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status == 200


async def test_erasing_the_account_over_a_damaged_outbox_erases_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = tmp_path / "client"
    async with IngestServer(tmp_path / "ingest.db", tmp_path / "keys") as ingest:
        token = await _account(ingest, client)
        _filled_outbox(client / "outbox.db")
        _damage(client / "outbox.db")
        argv = ("erase", "--account", "--yes", "--json", "--client-dir", str(client))
        assert await run_cli(*argv) == 1
        message = json.loads(capsys.readouterr().out)["error"]
        assert message.startswith("nothing was erased") and "run 'kmeband erase" in message
        assert await _token_works(ingest, token)
        assert (client / "account.json").exists()
        # as the message says: move the outbox away, run again, and the erase finishes
        (client / "outbox.db").rename(tmp_path / "damaged-outbox.db")
        assert await run_cli(*argv) == 0
        assert json.loads(capsys.readouterr().out)["account_deleted"] is True
        assert not await _token_works(ingest, token)
        assert not (client / "account.json").exists()


async def test_an_erase_stopped_after_the_ingest_step_says_so_and_a_rerun_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = tmp_path / "client"
    async with IngestServer(tmp_path / "ingest.db", tmp_path / "keys") as ingest:
        token = await _account(ingest, client)
        _filled_outbox(client / "outbox.db", batches=3)

        def broken(self: Outbox) -> int:
            raise OutboxDamagedError("the outbox is damaged: move the file away")

        monkeypatch.setattr(Outbox, "drop_all", broken)
        argv = ("erase", "--account", "--yes", "--json", "--client-dir", str(client))
        assert await run_cli(*argv) == 1
        message = json.loads(capsys.readouterr().out)["error"]
        assert message.startswith("the account was deleted at the ingest (0 records erased")
        assert "were not dropped" in message and "again to finish" in message
        assert not await _token_works(ingest, token)
        assert (client / ERASE_PENDING).exists()
        monkeypatch.undo()
        assert await run_cli(*argv) == 0
        done = json.loads(capsys.readouterr().out)
        assert (done["account_deleted"], done["dropped_batches"]) == (True, 3)
        assert not (client / ERASE_PENDING).exists()
        with Outbox(client / "outbox.db") as outbox:
            assert outbox.pending_count() == 0
