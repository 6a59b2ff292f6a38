"""pytest fixtures for testing bleak code against simulated bands.

Fixtures:

* ``kme_clock``: a :class:`~device_sim.clock.ManualClock` (time moves when the test says).
* ``kme_radio``: an in-process :class:`~device_sim.radio.medium.Radio` on that clock, made
  the bleak backend's radio for the test (:func:`~device_sim.bleak_backend.use_radio`).
* ``kme_band_factory``: ``kme_band_factory(seed=0, profile=BAND_PROFILE, name=...,
  distance_m=1.0)`` puts a band on the radio and returns it; its passkey display is
  ``band.displayed_passkey``.
* ``kme_bleak_client``: a connected ``bleak.BleakClient`` (simulated backend) to a fresh
  band, with its own in-memory bond store; disconnected after the test.

Use in a test module with ``pytest_plugins = ["device_sim.pytest_plugin"]``, or install
kmeband, which registers it under the ``pytest11`` entry point ``kmeband``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from bleak import BleakClient

from device_sim.bleak_backend import BondStore, SimBleakClient, use_radio
from device_sim.bleak_backend.profile_peripheral import ProfilePeripheral
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from protocol.gatt_model import ServiceDefinition
from protocol.profile import BAND_PROFILE

BandFactory = Callable[..., ProfilePeripheral]


def _address(seed: int) -> str:
    # Static random addresses (two top bits set), distinct per seed.
    return "C1:4B:4D:" + ":".join(f"{b:02X}" for b in seed.to_bytes(3, "big"))


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
        profile: tuple[ServiceDefinition, ...] = BAND_PROFILE,
        name: str | None = "KME Smart",
        distance_m: float = 1.0,
        **options: Any,
    ) -> ProfilePeripheral:
        band = ProfilePeripheral(_address(seed), profile, name=name, seed=seed, **options)
        kme_radio.attach(band, distance_m=distance_m)
        return band

    return make


@pytest.fixture
async def kme_bleak_client(kme_band_factory: BandFactory) -> AsyncIterator[BleakClient]:
    band = kme_band_factory()
    client = BleakClient(
        band.address,
        backend=SimBleakClient,
        bond_store=BondStore(),
        passkey_callback=lambda: band.displayed_passkey,
    )
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()
