"""Ingest key files, the in-process server and the ``kmeband ingest`` command."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from ingest_samples import SampleBand, hr

from cloud_ingest.keys import X25519_KEY_FILE, KeyFileError, load_or_create_keys
from cloud_ingest.server import IngestServer
from kmeband.cli import build_parser, main


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path)
    os.chmod(tmp_path / X25519_KEY_FILE, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_keys(tmp_path)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path)
    (tmp_path / X25519_KEY_FILE).write_bytes(b"short")
    with pytest.raises(KeyFileError, match="damaged"):
        load_or_create_keys(tmp_path)


async def test_the_in_process_server_takes_a_batch_on_an_ephemeral_port(tmp_path: Path) -> None:
    async with IngestServer(tmp_path / "db.sqlite3", tmp_path / "keys") as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port != 0
        band = SampleBand()
        async with aiohttp.ClientSession(server.url) as http:
            token = (await (await http.post("/v1/accounts")).json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await http.post("/v1/bands", json=band.registration(), headers=auth)
            envelope = band.seal(hr(10), server.public_key)
            response = await http.post("/v1/batches", data=envelope, headers=auth)
            assert response.status == 200
            assert (await response.json())["stored"] == 10
        first_key = server.public_key.public_bytes_raw()
    # The keys persist: a restarted ingest opens batches sealed to the old public key.
    async with IngestServer(tmp_path / "db.sqlite3", tmp_path / "keys") as again:
        assert again.public_key.public_bytes_raw() == first_key
        assert again.store is not None and again.store.record_count() == 10


def test_the_console_script_has_ingest_serve(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["ingest", "serve", "--db", "x.sqlite3", "--port", "0"])
    assert args.port == 0 and args.db == Path("x.sqlite3") and callable(args.handler)
    assert main(["ingest"]) == 0
    assert "serve" in capsys.readouterr().out


def test_ingest_serve_takes_an_attestation_root_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root.key"
    root.write_bytes(b"\x11" * 32)
    args = build_parser().parse_args(["ingest", "serve", "--attestation-root", str(root)])
    assert args.attestation_root == root
    # a file without a key is a usage error before anything is served
    db = str(tmp_path / "db.sqlite3")
    bad = tmp_path / "bad.key"
    bad.write_text("nope")
    assert main(["ingest", "serve", "--db", db, "--attestation-root", str(bad)]) == 2
    assert "Ed25519 public key" in capsys.readouterr().err
