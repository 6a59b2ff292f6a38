"""``kmeband clone`` and ``kmeband sim --clone`` as a user runs them, through a hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from protocol.ble.device_snapshot import from_json

ROOT = Path(__file__).resolve().parents[2]


def _sim(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmeband.cli", "sim", "--json", "--fidelity", "summary", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    events: dict[str, Any] = {}
    for line in proc.stdout:
        event = json.loads(line)
        events[event["event"]] = event
        if event["event"] == "ready":
            return proc, events
    raise AssertionError(f"kmeband sim exited with {proc.wait()}")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)


def _clone(hub: str, address: str, out: Path) -> dict[str, Any]:
    env = dict(os.environ, KMEBAND_HUB=hub, KMEBAND_BLEAK_BACKEND="device_sim.bleak_backend")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "kmeband.cli", "clone", address, "--out", str(out)),
            *("--seconds", "0.2", "--scan-seconds", "0.2", "--json"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_clone_a_band_serve_the_clone_and_clone_it_again(tmp_path: Path) -> None:
    hub = f"unix:{tmp_path / 'band.sock'}"
    proc, events = _sim("--bands", "1", "--hub", hub)
    try:
        first = _clone(hub, events["ready"]["bands"][0], tmp_path / "band.json")
    finally:
        _stop(proc)
    assert first["services"] >= 5 and first["characteristics"] > 10

    hub2 = f"unix:{tmp_path / 'clone.sock'}"
    proc, events = _sim("--bands", "0", "--clone", str(tmp_path / "band.json"), "--hub", hub2)
    try:
        assert events["ready"]["bands"] == []
        _clone(hub2, events["clone"]["address"], tmp_path / "clone.json")
    finally:
        _stop(proc)
    recorded = from_json(json.loads((tmp_path / "band.json").read_text()))
    again = from_json(json.loads((tmp_path / "clone.json").read_text()))
    assert again.table() == recorded.table()


def test_sim_refuses_a_bad_clone_file_with_what_to_fix(tmp_path: Path) -> None:
    bad = tmp_path / "device.json"
    bad.write_text(json.dumps({"format": "kmeband-device-clone", "version": 1, "services": []}))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "kmeband.cli", "sim", "--bands", "0", "--clone", str(bad)),
            *("--hub", f"unix:{tmp_path / 'x.sock'}", "--duration", "1"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode != 0
    assert "services" in done.stderr and "at least one service" in done.stderr
