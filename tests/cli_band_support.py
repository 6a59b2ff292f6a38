"""Test support for the command line against a simulated band: a hub on loopback TCP.

The CLI runs ``asyncio.run`` itself, so tests call ``kmeband.cli.main`` in a worker thread
while the hub (and its bands) run on the test's own event loop; the CLI's bleak calls
reach them through the simulated backend, exactly as a user's shell would with
``KMEBAND_HUB`` set.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend.bonds import BOND_DIR_ENV
from device_sim.bleak_backend.port import HUB_ENV
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from device_sim.radio.hub_server import HubServer
from device_sim.radio.hub_wire import HubAddress
from kmeband.cli import main
from sync_client.activation import CLIENT_DIR_ENV
from sync_client.ble import BACKEND_ENV


@asynccontextmanager
async def bands_on_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *seeds: int, simulate_s: float = 0.0
) -> AsyncIterator[list[BandGattEndpoint]]:
    """Simulated bands (summary fidelity) on a loopback hub, and the CLI's environment."""
    clock = ManualClock()
    radio = Radio(clock, seed=0)
    endpoints = []
    for seed in seeds or (0,):
        band = SimulatedBand(
            BandConfig(seed=seed, fidelity="summary"), clock, start=clock.now() - simulate_s
        )
        band.simulate_until(clock.now())
        endpoint = BandGattEndpoint(band)
        radio.attach(endpoint)
        endpoints.append(endpoint)
    hub = HubServer(radio, HubAddress.parse("tcp:127.0.0.1:0"))
    address = await hub.start()
    monkeypatch.setenv(HUB_ENV, str(address))
    monkeypatch.setenv(BACKEND_ENV, "device_sim.bleak_backend")
    monkeypatch.setenv(BOND_DIR_ENV, str(tmp_path / "bonds"))
    monkeypatch.setenv(CLIENT_DIR_ENV, str(tmp_path / "client"))
    try:
        yield endpoints
    finally:
        await hub.close()
        for endpoint in endpoints:
            endpoint.band.close()


async def run_cli(*argv: str) -> int:
    """``kmeband ARGV`` in a worker thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


async def pair(monkeypatch: pytest.MonkeyPatch, endpoint: BandGattEndpoint, *extra: str) -> None:
    """``kmeband pair [EXTRA]``, typing the passkey the band shows, as a user would."""

    def read_display(prompt: str = "") -> str:
        deadline = time.monotonic() + 10
        while endpoint.display is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert endpoint.display is not None, "the band never showed a passkey"
        return endpoint.display

    monkeypatch.setattr(builtins, "input", read_display)
    assert await run_cli("pair", endpoint.address, "--json", *extra) == 0
