"""``kmeband alarm list|set|delete`` against a simulated band, through bleak, as its owner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_band_support import bands_on_hub, pair, run_cli

from protocol.kme.control.alarms import Alarm
from sync_client.alarms import AlarmSpecError, make_alarm, parse_weekdays


def last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out


async def test_set_list_and_delete_alarms_on_the_band(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with bands_on_hub(tmp_path, monkeypatch) as (band,):
        await pair(monkeypatch, band)
        capsys.readouterr()
        address = band.address
        assert await run_cli("alarm", "list", address, "--json") == 0
        assert last_json(capsys) == {"alarms": []}

        args = ("alarm", "set", address, "2", "06:45", "--days", "weekdays", "--smart-window", "30")
        assert await run_cli(*args, "--json") == 0
        expected = {
            "id": 2,
            "time": "06:45",
            "days": "mon,tue,wed,thu,fri",
            "weekdays_mask": 0x1F,
            "smart_window_min": 30,
            "enabled": True,
        }
        assert last_json(capsys) == {"alarms": [expected]}
        [stored] = band.band.firmware.alarms
        assert (stored.id, stored.hour, stored.minute, stored.smart_window_min) == (2, 6, 45, 30)

        assert await run_cli("alarm", "set", address, "0", "22:00", "--disabled") == 0
        text = capsys.readouterr().out
        assert "0  22:00  once  (off)" in text and "2  06:45" in text

        assert await run_cli("alarm", "delete", address, "2", "--json") == 0
        assert [a["id"] for a in last_json(capsys)["alarms"]] == [0]  # type: ignore[union-attr]
        assert [a.id for a in band.band.firmware.alarms] == [0]

        assert await run_cli("alarm", "delete", address, "5", "--json") == 3
        assert "no such alarm" in str(last_json(capsys)["error"])


async def test_alarms_need_the_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with bands_on_hub(tmp_path, monkeypatch) as (band,):
        await pair(monkeypatch, band)
        # another phone's client (other keys) on the same bonded link is not the owner
        monkeypatch.setenv("KMEBAND_CLIENT_DIR", str(tmp_path / "stranger"))
        capsys.readouterr()
        assert await run_cli("alarm", "set", band.address, "1", "07:00", "--json") == 1
        assert "owner" in str(last_json(capsys)["error"])
        assert band.band.firmware.alarms == []


async def test_bad_alarm_is_a_usage_error_before_any_radio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KMEBAND_BLEAK_BACKEND", "no.such.backend")  # never reached
    assert await run_cli("alarm", "set", "C0:00:00:00:00:01", "1", "25:00") == 2
    assert "HH:MM" in capsys.readouterr().err
    assert await run_cli("alarm", "set", "C0:00:00:00:00:01", "9", "07:00", "--json") == 2


def test_unknown_band_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kmeband.cli import main

    monkeypatch.setenv("KMEBAND_BLEAK_BACKEND", "device_sim.bleak_backend")
    monkeypatch.setenv("KMEBAND_HUB", "unix:" + str(tmp_path / "nobody.sock"))
    monkeypatch.setenv("KMEBAND_CLIENT_DIR", str(tmp_path / "client"))
    code = main(["alarm", "list", "C0:00:00:00:00:01", "--timeout", "0.5", "--json"])
    assert code == 3
    assert "could not connect" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "mask"),
    [("once", 0), ("daily", 0x7F), ("weekends", 0x60), ("mon,wed", 0x05), ("Friday", 0x10)],
)
def test_weekday_names(text: str, mask: int) -> None:
    assert parse_weekdays(text) == mask


@pytest.mark.parametrize(
    ("time", "days", "window"),
    [("6:5", "once", 0), ("24:00", "once", 0), ("07:00", "someday", 0), ("07:00", "once", 61)],
)
def test_bad_alarm_values(time: str, days: str, window: int) -> None:
    with pytest.raises(AlarmSpecError):
        make_alarm(1, time, days, window)


def test_make_alarm() -> None:
    assert make_alarm(3, "7:05", "sat,sun", 20) == Alarm(3, 7, 5, 0x60, 20, True)
