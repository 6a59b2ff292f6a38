"""``kmeband band reset`` against a simulated band, through bleak, as its owner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_band_support import bands_on_hub, pair, run_cli

from protocol.kme.records import StreamId


async def test_band_reset_erases_the_band_and_releases_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with bands_on_hub(tmp_path, monkeypatch, simulate_s=3 * 3600) as (endpoint,):
        band = endpoint.band
        await pair(monkeypatch, endpoint)
        assert await run_cli("alarm", "set", endpoint.address, "1", "07:00") == 0
        assert band.flash.count(StreamId.ACTIVITY_MINUTES) > 0 and band.firmware.alarms
        capsys.readouterr()

        # without --yes nothing happens (exit 2, before any radio)
        assert await run_cli("band", "reset", endpoint.address) == 2
        assert "--yes" in capsys.readouterr().err and band.activated

        # another client's keys: not the owner, so not allowed to reset
        monkeypatch.setenv("KMEBAND_CLIENT_DIR", str(tmp_path / "stranger"))
        assert await run_cli("band", "reset", endpoint.address, "--yes", "--json") == 1
        assert "owner" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]
        assert band.activated and band.firmware.alarms

        monkeypatch.setenv("KMEBAND_CLIENT_DIR", str(tmp_path / "client"))
        assert await run_cli("band", "reset", endpoint.address, "--yes", "--json") == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"reset": True}
        # The band resets once the phone's confirmation of its answer (or the link's drop)
        # reaches it, which may be just after the command has returned.
        for _ in range(500):
            if not band.activated:
                break
            await asyncio.sleep(0.01)
        assert not band.activated and band.owner.bonds == {}
        assert band.firmware.alarms == []
        assert all(band.flash.count(s) == 0 for s in StreamId) and len(band.consent) == 0
