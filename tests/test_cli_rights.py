"""``kmeband pair --ingest``, ``sync``, ``export`` and ``erase``: the data subject's rights,
end to end against an in-process ingest on loopback and a simulated band."""

from __future__ import annotations

import base64
import csv
import io
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_band_support import bands_on_hub, pair, run_cli

from cloud_ingest.server import IngestServer
from kmeband.cli import main


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[IngestServer]:
    async with IngestServer(tmp_path / "ingest.db", tmp_path / "ingest-keys") as server:
        yield server


def ingest_key(server: IngestServer) -> str:
    return base64.urlsafe_b64encode(server.public_key.public_bytes_raw()).decode().rstrip("=")


async def test_export_and_erase_what_a_sync_uploaded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ingest: IngestServer,
) -> None:
    async with bands_on_hub(tmp_path, monkeypatch, simulate_s=3 * 3600) as (band,):
        await pair(monkeypatch, band, "--ingest", ingest.url)
        capsys.readouterr()
        assert await run_cli("sync", band.address, f"--ingest-key={ingest_key(ingest)}") == 0
        assert "activity_minutes: 180 queued" in capsys.readouterr().out
    assert ingest.store is not None and ingest.store.record_count() > 180

    out = tmp_path / "export.json"
    assert await run_cli("export", "--out", str(out), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    document = json.loads(out.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(document["records"]["activity_minutes"]) == 180
    assert summary["records"] == sum(len(v) for v in document["records"].values())
    assert summary["streams"]["activity_minutes"] == 180

    assert await run_cli("export", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["stream"] for r in rows} >= {"activity_minutes"}
    assert await run_cli("export", "--format", "fhir", "--out", str(tmp_path / "f.json")) == 0
    bundle = json.loads((tmp_path / "f.json").read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]

    assert await run_cli("erase", "--json") == 2  # not without --yes
    assert "--yes" in capsys.readouterr().err
    assert ingest.store.record_count() > 0
    assert await run_cli("erase", "--yes", "--json") == 0
    erased = json.loads(capsys.readouterr().out)["erased_records"]
    assert erased == summary["records"]
    assert ingest.store.record_count() == 0
    assert await run_cli("export", "--json", "--out", str(out)) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 0


async def test_deleting_the_account_forgets_it_here_and_a_new_pairing_starts_afresh(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ingest: IngestServer,
) -> None:
    from sync_client.activation import AccountFile
    from sync_client.outbox import Outbox

    client = tmp_path / "client"
    async with bands_on_hub(tmp_path, monkeypatch, simulate_s=3 * 3600) as (band,):
        await pair(monkeypatch, band, "--ingest", ingest.url)
        first = AccountFile.load(client)
        assert first is not None
        assert await run_cli("sync", band.address, f"--ingest-key={ingest_key(ingest)}") == 0
        assert ingest.store is not None and ingest.store.record_count() > 0
        capsys.readouterr()
        assert await run_cli("erase", "--account", "--json") == 2  # not without --yes
        capsys.readouterr()
        assert await run_cli("erase", "--yes", "--account", "--json") == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["account_deleted"] is True and answer["deleted_bands"] == 1
        assert answer["erased_records"] > 0
        assert ingest.store.record_count() == 0
        assert not (client / "account.json").exists()
        with Outbox(client / "outbox.db") as outbox:
            assert outbox.pending_count() == 0
        assert await run_cli("export", "--json") == 3  # no account here any more
        capsys.readouterr()
        # pairing again with --ingest makes a new account and registers the band to it
        await pair(monkeypatch, band, "--ingest", ingest.url)
        second = AccountFile.load(client)
        assert second is not None and second.token != first.token
        assert await run_cli("sync", band.address) == 0
        store = ingest.store
        assert store.account_for_token(first.token) is None
        assert store.account_for_token(second.token) is not None


def test_export_without_an_account_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--client-dir", str(tmp_path), "--json"]) == 3
    assert "no account file" in json.loads(capsys.readouterr().out)["error"]


async def test_unreachable_ingest_or_unknown_token_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ingest: IngestServer
) -> None:
    from sync_client.activation import AccountFile

    AccountFile(ingest.url, "not-a-token").save(tmp_path / "a")
    assert await run_cli("export", "--client-dir", str(tmp_path / "a"), "--json") == 1
    assert "does not know this account" in json.loads(capsys.readouterr().out)["error"]
    AccountFile("http://127.0.0.1:9", "t").save(tmp_path / "b")
    assert await run_cli("erase", "--yes", "--client-dir", str(tmp_path / "b")) == 1
    assert "unreachable" in capsys.readouterr().err


def test_a_non_loopback_http_ingest_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sync_client.activation import AccountFile

    AccountFile("http://ingest.example", "t").save(tmp_path)
    assert main(["export", "--client-dir", str(tmp_path)]) == 2
    assert "https" in capsys.readouterr().err


async def test_sync_fetches_the_ingest_key_from_the_account_when_none_is_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ingest: IngestServer,
) -> None:
    async with bands_on_hub(tmp_path, monkeypatch, simulate_s=3600) as (band,):
        assert await run_cli("sync", band.address) == 2  # no account, no key: say what to do
        assert "pair with --ingest URL first" in capsys.readouterr().err
        await pair(monkeypatch, band, "--ingest", ingest.url)
        assert await run_cli("sync", band.address) == 0
    assert ingest.store is not None and ingest.store.record_count() >= 60
