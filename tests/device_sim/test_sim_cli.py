"""``kmeband sim`` as a user runs it: a hub process that bleak programs reach, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from device_sim.radio.hub_client import RemoteRadio

ROOT = Path(__file__).resolve().parents[2]


async def test_sim_serves_bands_over_a_socket_and_persists_on_ctrl_c(tmp_path: Path) -> None:
    sock = tmp_path / "hub.sock"
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kmeband.cli",
            "sim",
            "--bands",
            "2",
            "--json",
            "--hub",
            f"unix:{sock}",
            "--state-dir",
            str(state),
            "--speed",
            "3600",
            "--fidelity",
            "summary",
            "--backlog-days",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and len(ready["bands"]) == 2
        async with RemoteRadio(ready["hub"]) as radio:
            reports = await radio.scan()
            assert sorted(r.address for r in reports) == sorted(ready["bands"])
            assert await radio.read_display(ready["bands"][0]) is None
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert json.loads(out.splitlines()[-1])["event"] == "stopped"
        for band_dir in state.iterdir():
            assert (band_dir / "flash.bin").stat().st_size > 16
            assert (band_dir / "identity.bin").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sim_rejects_bad_arguments_with_a_clear_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kmeband.cli", "sim", "--bands", "0", "--duration", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 2
    assert "--bands must be 1..1000" in out.stderr
