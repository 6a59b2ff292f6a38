"""pytest fixtures for testing bleak code against simulated bands.

Fixtures:

* ``kme_clock``: a :class:`~device_sim.clock.ManualClock` (time moves when the test says).
* ``kme_radio``: an in-process :class:`~device_sim.radio.medium.Radio` on that clock, made
  the bleak backend's radio for the test (:func:`~device_sim.bleak_backend.use_radio`).
* ``kme_band_factory``: ``kme_band_factory(seed=0, scenario="default_day",
  fidelity="summary", simulate_s=0.0, distance_m=1.0, **BandConfig fields)`` builds a
  :class:`~device_sim.band.simulated_band.SimulatedBand` on ``kme_clock``, simulates ``simulate_s``
  seconds of its wearer's life, puts it on the radio and returns its
  :class:`~device_sim.band.gatt_endpoint.BandGattEndpoint` (``.band`` is the band; ``.display`` is
  the passkey it shows while pairing).
* ``kme_bleak_client``: a connected ``bleak.BleakClient`` (simulated backend) to a fresh
  band, with its own in-memory bond store and a ``passkey_callback`` that reads the band's
  display (so ``await client.pair()`` just works); disconnected after the test.

Use in a test module with ``pytest_plugins = ["device_sim.pytest_plugin"]``, or install
kmeband, which registers it under the ``pytest11`` entry point ``kmeband``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from bleak import BleakClient

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import BondStore, SimBleakClient, use_radio
from device_sim.clock import ManualClock
from device_sim.radio import Radio

BandFactory = Callable[..., BandGattEndpoint]


@pytest.fixture
def kme_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def kme_radio(kme_clock: ManualClock) -> Iterator[Radio]:
    radio = Radio(kme_clock, seed=0)
    with use_radio(radio):
        yield radio


@pytest.fixture
def kme_band_factory(kme_radio: Radio) -> BandFactory:
    def make(
        seed: int = 0,
        *,
        scenario: str = "default_day",
        fidelity: str = "summary",
        simulate_s: float = 0.0,
        distance_m: float = 1.0,
        **config: Any,
    ) -> BandGattEndpoint:
        clock = kme_radio.clock
        band = SimulatedBand(
            BandConfig(seed=seed, scenario=scenario, fidelity=fidelity, **config), clock
        )
        if simulate_s > 0:
            band.simulate_until(clock.now() + simulate_s)
        endpoint = BandGattEndpoint(band)
        kme_radio.attach(endpoint, distance_m=distance_m)
        return endpoint

    return make


@pytest.fixture
async def kme_bleak_client(kme_band_factory: BandFactory) -> AsyncIterator[BleakClient]:
    band = kme_band_factory()
    client = BleakClient(
        band.address,
        backend=SimBleakClient,
        bond_store=BondStore(),
        passkey_callback=lambda: band.display,
    )
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()
