"""The phone's pairing agent: unchanged bleak programs pair with simulated bands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError
from bleak_helpers import parse_heart_rate

from device_sim.bleak_backend import (
    AGENT_ENV,
    PairingFailedError,
    PasskeyMissingError,
    PasskeyRequest,
    install,
    set_pairing_agent,
    uninstall,
)
from device_sim.bleak_backend.pairing import PASSKEY_ENV
from protocol.ble.smp import PairingFailedReason
from protocol.kme.profile import HEART_RATE_MEASUREMENT

HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"


@pytest.fixture
def bleak_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bleak picks the simulated backend, as ``python -m device_sim.bleak_backend`` does."""
    monkeypatch.delenv(PASSKEY_ENV, raising=False)
    monkeypatch.delenv(AGENT_ENV, raising=False)
    install()
    set_pairing_agent(None)
    try:
        yield
    finally:
        set_pairing_agent(None)
        uninstall()


async def explore(address: str, received: list[int], push: object) -> dict[str, bytes]:
    """bleak's service-explorer example, unchanged: pair, read everything, subscribe."""
    values: dict[str, bytes] = {}
    device = await BleakScanner.find_device_by_address(address, timeout=2.0)
    assert device is not None
    async with BleakClient(device, pair=True) as client:
        for service in client.services:
            for char in service.characteristics:
                if "read" in char.properties:
                    with contextlib.suppress(BleakError):  # the example logs and goes on
                        values[char.uuid] = bytes(await client.read_gatt_char(char))
                for descriptor in char.descriptors:
                    await client.read_gatt_descriptor(descriptor)
        await client.start_notify(
            str(HEART_RATE_MEASUREMENT),
            lambda _c, data: received.append(parse_heart_rate(data)[0]),
        )
        for _ in range(3):
            push()  # type: ignore[operator]
            await asyncio.sleep(0)
    return values


async def test_an_unchanged_explorer_pairs_through_the_auto_agent_and_reads_hrm(
    kme_band_factory, bleak_installed, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    endpoint = kme_band_factory(seed=5, fidelity="signal", simulate_s=600)
    monkeypatch.setenv(AGENT_ENV, "auto")
    received: list[int] = []
    values = await explore(endpoint.address, received, endpoint.push_live_values)
    assert received and all(received)
    # Protected characteristics were read: the link was authenticated by the agent's pairing.
    assert "00002a25-0000-1000-8000-00805f9b34fb" in values  # Serial Number String
    assert not endpoint.activated, "pairing must never activate the band"


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (None, AGENT_ENV),
        ("none", "refused"),
        ("ask", "terminal"),
        ("bluez", f"{AGENT_ENV} to one of ask, auto, none"),
    ],
)
async def test_without_a_usable_agent_pairing_says_how_to_choose_one(
    kme_band_factory, bleak_installed, monkeypatch: pytest.MonkeyPatch, agent, message
) -> None:  # type: ignore[no-untyped-def]
    endpoint = kme_band_factory(seed=6)
    monkeypatch.setattr("sys.stdin", None)  # no terminal to ask on
    if agent is not None:
        monkeypatch.setenv(AGENT_ENV, agent)
    with pytest.raises(PasskeyMissingError, match=message):
        await explore(endpoint.address, [], endpoint.push_live_values)
    assert not endpoint.activated


async def test_a_callback_agent_is_asked_with_the_band_and_a_wrong_passkey_fails(
    kme_band_factory, kme_clock, bleak_installed
) -> None:  # type: ignore[no-untyped-def]
    endpoint = kme_band_factory(seed=7, fidelity="signal", simulate_s=600)
    requests: list[PasskeyRequest] = []

    async def wrong(request: PasskeyRequest) -> str:
        requests.append(request)
        shown = await request.read_display()
        assert shown is not None and shown == endpoint.display
        return f"{(int(shown) + 1) % 1_000_000:06d}"

    set_pairing_agent(wrong)
    with pytest.raises(PairingFailedError) as failure:
        await explore(endpoint.address, [], endpoint.push_live_values)
    assert failure.value.reason is PairingFailedReason.CONFIRM_VALUE_FAILED
    assert [r.address for r in requests] == [endpoint.address]
    await kme_clock.advance(60.0)  # past the band's back-off after one failed attempt
    set_pairing_agent(lambda request: endpoint.display or "")
    received: list[int] = []
    await explore(endpoint.address, received, endpoint.push_live_values)
    assert received
    assert not endpoint.activated
