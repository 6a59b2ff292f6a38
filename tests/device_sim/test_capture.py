"""A capture of a real band session decodes in tshark with no malformed packet."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from band_central import Central

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from device_sim.radio.capture import BtsnoopCapture
from protocol.ble.btsnoop import read_btsnoop
from protocol.kme.profile import MANUFACTURER_NAME, SERIAL_NUMBER


async def _session(path: Path) -> int:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=11, fidelity="summary"), clock)
    band.simulate_until(clock.now() + 600)
    with BtsnoopCapture(path) as capture:
        radio = Radio(clock, seed=11, capture=capture)
        endpoint = BandGattEndpoint(band)
        radio.attach(endpoint)
        central = await Central(radio, endpoint.address).connect()
        await central.read(MANUFACTURER_NAME)
        await central.pair(lambda: endpoint.display)
        await central.read(SERIAL_NUMBER)
        await central.link.disconnect()
        return capture.frames


async def test_capture_holds_every_frame_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "band.btsnoop"
    frames = await _session(path)
    records = read_btsnoop(path.read_bytes())
    # frames plus connection complete, encryption change and disconnection complete
    assert len(records) == frames + 3
    assert frames > 40


async def test_tshark_decodes_a_band_session_without_malformed_packets(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        reason = "tshark is not installed (Debian package 'tshark'): capture decoding not checked"
        print(reason)
        pytest.skip(reason)
    path = tmp_path / "band.btsnoop"
    await _session(path)
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.col.Info",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = [line.split("|", 2) for line in out.splitlines() if line]
    assert rows and all(malformed == "" for _, malformed, _ in rows), out
    protocols = {protocol for protocol, _, _ in rows}
    assert {"ATT", "SMP", "HCI_EVT"} <= protocols
    infos = " ".join(info for _, _, info in rows)
    assert "Read By Group Type Request" in infos and "Pairing Request" in infos


async def test_a_capture_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "band.btsnoop"
    previous = os.umask(0o022)  # the usual umask, which leaves new files world-readable
    try:
        await _session(path)
        stale = tmp_path / "old.btsnoop"
        stale.write_bytes(b"")
        stale.chmod(0o644)
        BtsnoopCapture(stale).close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600  # overwriting one fixes its mode too
