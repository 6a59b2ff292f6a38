"""The bleak backend through a hub, bleak's backend selection patched, and the runners."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import bleak
import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakGATTProtocolError
from bleak_helpers import GattPeripheral, parse_heart_rate

from device_sim.bleak_backend import (
    BondStore,
    SimBleakClient,
    SimBleakScanner,
    install,
    installed,
    uninstall,
)
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from device_sim.radio.hub_server import HubServer
from device_sim.radio.hub_wire import HubAddress
from protocol.ble.sig_codecs import HeartRateMeasurement, encode_heart_rate_measurement
from protocol.kme.profile import (
    BAND_PROFILE,
    BODY_SENSOR_LOCATION,
    HEART_RATE_MEASUREMENT,
    SERIAL_NUMBER,
    SIG_ONLY_PROFILE,
)

REPO = Path(__file__).resolve().parents[2]
STRAP = "AA:00:00:00:00:01"
BAND = "C1:00:00:00:00:02"


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Radio]:
    radio = Radio(ManualClock(), seed=5)
    server = HubServer(radio, HubAddress("unix", path=str(tmp_path / "hub.sock")))
    address = await server.start()
    monkeypatch.setenv("KMEBAND_HUB", str(address))
    try:
        yield radio
    finally:
        await server.close()


async def test_heart_rate_read_and_pairing_through_the_hub(hub: Radio) -> None:
    strap = GattPeripheral(STRAP, SIG_ONLY_PROFILE, name="HR Strap")
    band = GattPeripheral(BAND, BAND_PROFILE, seed=4)
    hub.attach(strap)
    hub.attach(band)
    device = await BleakScanner.find_device_by_filter(
        lambda d, adv: d.address == STRAP, timeout=2.0, backend=SimBleakScanner
    )
    assert device is not None
    received: list[int] = []
    got_all = asyncio.Event()

    def on_hr(_c: object, data: bytearray) -> None:
        received.append(parse_heart_rate(data)[0])
        if len(received) == 3:
            got_all.set()

    async with BleakClient(device, backend=SimBleakClient) as client:
        assert client.mtu_size == 247
        assert await client.read_gatt_char(str(BODY_SENSOR_LOCATION)) == bytearray(b"\x01")
        await client.start_notify(str(HEART_RATE_MEASUREMENT), on_hr)
        for bpm in (70, 71, 72):
            strap.notify(HEART_RATE_MEASUREMENT, encode_heart_rate_measurement(
                HeartRateMeasurement(bpm=bpm)))  # fmt: skip
        await asyncio.wait_for(got_all.wait(), 2.0)
    assert received == [70, 71, 72]

    async with BleakClient(
        BAND,
        backend=SimBleakClient,
        bond_store=BondStore(),
        passkey_callback=lambda: band.displayed_passkey,
    ) as client:
        with pytest.raises(BleakGATTProtocolError):
            await client.read_gatt_char(str(SERIAL_NUMBER))
        await client.pair()
        assert client._backend.security_level >= 3  # encrypted, authenticated
        await client.read_gatt_char(str(SERIAL_NUMBER))  # now permitted


async def test_an_unknown_address_through_the_hub_is_device_not_found(hub: Radio) -> None:
    hub.attach(GattPeripheral(STRAP, SIG_ONLY_PROFILE))
    with pytest.raises(BleakDeviceNotFoundError):
        await BleakClient("AA:AA:AA:AA:AA:AA", backend=SimBleakClient).connect()


async def test_a_band_leaving_the_hub_calls_the_disconnect_callback(hub: Radio) -> None:
    strap = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
    hub.attach(strap)
    dropped = asyncio.Event()
    client = BleakClient(STRAP, lambda _c: dropped.set(), backend=SimBleakClient)
    await client.connect()
    hub.set_distance(STRAP, 10_000)  # out of range: supervision timeout
    await asyncio.wait_for(dropped.wait(), 2.0)
    assert not client.is_connected


async def test_install_makes_plain_bleak_calls_use_the_simulated_backend(hub: Radio) -> None:
    strap = GattPeripheral(STRAP, SIG_ONLY_PROFILE)
    hub.attach(strap)
    install()
    try:
        assert installed()
        device = await BleakScanner.find_device_by_address(STRAP, timeout=2.0)
        assert device is not None
        async with BleakClient(device) as client:
            assert client.backend_id == "SimBleakClient"
            assert await client.read_gatt_char(str(BODY_SENSOR_LOCATION)) == bytearray(b"\x01")
    finally:
        uninstall()
    assert not installed()
    assert bleak.get_platform_client_backend_type.__module__ == "bleak.backends.client"


async def test_the_runner_runs_an_unmodified_bleak_program(hub: Radio, tmp_path: Path) -> None:
    hub.attach(GattPeripheral(STRAP, SIG_ONLY_PROFILE))
    program = tmp_path / "app.py"
    program.write_text(
        textwrap.dedent(f"""
        import asyncio, sys
        from bleak import BleakClient, BleakScanner

        async def main():
            device = await BleakScanner.find_device_by_address({STRAP!r}, timeout=5)
            async with BleakClient(device) as client:
                value = await client.read_gatt_char("00002a38-0000-1000-8000-00805f9b34fb")
                print("location", value[0], sys.argv[1:])

        asyncio.run(main())
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "device_sim.bleak_backend", str(program), "x", "--y",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "location 1 ['x', '--y']"


def test_the_runner_explains_a_missing_hub(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from device_sim.bleak_backend.__main__ import main

    monkeypatch.delenv("KMEBAND_HUB", raising=False)
    assert main(["app.py"]) == 2
    assert "kmeband sim" in capsys.readouterr().err
    assert main(["--hub", "udp:nowhere", "app.py"]) == 2


def test_the_heart_rate_example_runs_against_an_in_process_band(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KMEBAND_HUB", raising=False)
    spec = importlib.util.spec_from_file_location(
        "heart_rate_client", REPO / "examples" / "heart_rate_client.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        assert example.main(["--count", "2", "--seed", "3"]) == 0
    finally:
        uninstall()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(30 <= int(line.split()[2]) <= 220 for line in lines)
