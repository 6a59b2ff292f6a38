"""``kmeband report``: PNGs from an ingest database or a trace; clear exits otherwise."""

from __future__ import annotations

import base64
import builtins
import json
from pathlib import Path

import pytest
from cli_band_support import bands_on_hub, pair, run_cli

from cloud_ingest.server import IngestServer
from kmeband.cli import main
from sync_client.activation import AccountFile

PNG = b"\x89PNG\r\n\x1a\n"


def needs_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        reason = "matplotlib is not installed (pip install 'kmeband[report]'): report not drawn"
        print(reason)
        pytest.skip(reason)


async def test_report_from_the_ingest_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_matplotlib()
    db = tmp_path / "ingest.db"
    async with (
        IngestServer(db, tmp_path / "keys") as ingest,
        bands_on_hub(tmp_path, monkeypatch, 1, 2, simulate_s=6 * 3600) as bands,
    ):
        key = base64.urlsafe_b64encode(ingest.public_key.public_bytes_raw()).decode()
        for band in bands:
            await pair(monkeypatch, band, "--ingest", ingest.url)
            assert await run_cli("sync", band.address, f"--ingest-key={key}") == 0
    capsys.readouterr()
    out = tmp_path / "all"
    assert main(["report", "--db", str(db), "--out-dir", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["reports"]) == 2 and result["records"] > 700
    for path in map(Path, result["reports"]):
        assert path.read_bytes()[:8] == PNG and path.name.startswith("band-")

    token = AccountFile.load(tmp_path / "client").token  # type: ignore[union-attr]
    one = tmp_path / "one"
    # '=': an account made by an older ingest may have a token that starts with '-'
    assert main(["report", "--db", str(db), f"--account-token={token}", "--out-dir", str(one)]) == 0
    assert len(list(one.glob("*.png"))) == 2  # both bands belong to this client's account
    assert main(["report", "--db", str(db), "--account-token", "nobody", "--json"]) == 3
    # the same from the environment, kept off the command line
    monkeypatch.setenv("KMEBAND_ACCOUNT_TOKEN", "nobody")
    assert main(["report", "--db", str(db), "--json"]) == 3
    monkeypatch.setenv("KMEBAND_ACCOUNT_TOKEN", token)
    env = tmp_path / "env"
    assert main(["report", "--db", str(db), "--out-dir", str(env)]) == 0
    assert len(list(env.glob("*.png"))) == 2


def test_report_from_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    needs_matplotlib()
    trace = tmp_path / "t.kmetrace"
    assert main(["record", str(trace), "--minutes", "5", "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["report", "--trace", str(trace), "--out-dir", str(tmp_path), "--json"]) == 0
    [path] = json.loads(capsys.readouterr().out)["reports"]
    assert Path(path).read_bytes()[:8] == PNG


def test_report_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 2
    assert "--db" in capsys.readouterr().err
    assert main(["report", "--db", str(tmp_path / "x.db"), "--trace", "t"]) == 2
    assert main(["report", "--db", str(tmp_path / "missing.db")]) == 3
    assert main(["report", "--trace", str(tmp_path / "missing.kmetrace")]) == 3


def test_missing_matplotlib_exits_2_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.kmetrace"
    assert main(["record", str(trace), "--minutes", "3"]) == 0
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["report", "--trace", str(trace), "--out-dir", str(tmp_path / "r")]) == 2
    assert "pip install 'kmeband[report]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
