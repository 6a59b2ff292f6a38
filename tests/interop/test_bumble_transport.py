"""The bridge on a bumble transport spec (HCI over loopback TCP), and a clone behind it."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("bumble", reason="the interop suite needs the kmeband[bumble] extra")

from bumble import hci
from bumble.controller import Controller
from bumble.core import UUID
from bumble.device import Device, DeviceConfiguration, Peer
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bumble_bridge import BandPasskeyDisplay, BridgeError, BumbleBridge, bumble_address
from device_sim.bumble_bridge.transport import VirtualAir, open_bridge
from device_sim.clock import ManualClock
from device_sim.clone import ClonePeripheral
from protocol.ble.device_snapshot import from_json
from protocol.ble.gatt_model import CLIENT_CHARACTERISTIC_CONFIGURATION as CCCD
from protocol.ble.sig_codecs import (
    HeartRateMeasurement,
    decode_utf8s,
    encode_heart_rate_measurement,
)
from protocol.ble.uuids import uuid_to_att
from protocol.kme.profile import HEART_RATE_MEASUREMENT, HEART_RATE_SERVICE, MODEL_NUMBER


async def _central(air: VirtualAir) -> Device:
    central = Device(
        config=DeviceConfiguration(name="phone", address=hci.Address("F0:F1:F2:F3:F4:F6")),
        host=air.host("phone"),
    )
    await central.power_on()
    return central


async def test_a_band_served_on_an_hci_controller_reached_by_a_transport_spec() -> None:
    # A virtual controller listens on loopback TCP, as root-canal or an HCI bridge would;
    # the bridge reaches it with the same kind of spec 'kmeband sim --transport' takes.
    air = VirtualAir()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hci_server = await open_tcp_server_transport_with_socket(sock)
    Controller("radio", host_source=hci_server.source, host_sink=hci_server.sink, link=air.link)
    band = SimulatedBand(BandConfig(seed=21, fidelity="summary"), ManualClock())
    endpoint = BandGattEndpoint(band)
    bridged = await open_bridge(
        f"tcp-client:127.0.0.1:{port}",
        endpoint,
        endpoint.db,
        passkey_display=BandPasskeyDisplay(endpoint),
    )
    central = await _central(air)
    try:
        connection = await central.connect(bumble_address(endpoint.address))
        peer = Peer(connection)
        await peer.discover_all()
        [name] = peer.get_characteristics_by_uuid(UUID.from_bytes(uuid_to_att(MODEL_NUMBER)))
        assert decode_utf8s(await peer.read_value(name)) == band.identity.model
    finally:
        await bridged.close()
        await central.power_off()
        await hci_server.close()


async def test_a_bad_transport_spec_is_a_typed_error_that_says_what_to_check() -> None:
    band = SimulatedBand(BandConfig(seed=22, fidelity="summary"), ManualClock())
    endpoint = BandGattEndpoint(band)
    with pytest.raises(BridgeError, match="check the spec"):
        await open_bridge("no-such-transport:1", endpoint, endpoint.db)


async def test_a_clone_behind_the_bridge_replays_to_bumbles_subscriber() -> None:
    hrm = str(HEART_RATE_MEASUREMENT)
    frames = [encode_heart_rate_measurement(HeartRateMeasurement(bpm=b)) for b in (80, 81)]
    snapshot = from_json(
        {
            "format": "kmeband-device-clone",
            "version": 1,
            "name": "Strap",
            "services": [
                {
                    "uuid": str(HEART_RATE_SERVICE),
                    "handle": 1,
                    "characteristics": [
                        {
                            "uuid": hrm,
                            "handle": 2,
                            "properties": ["notify"],
                            "descriptors": [{"uuid": str(CCCD), "handle": 4}],
                        }
                    ],
                }
            ],
            "notifications": [
                {"t": 0.1, "characteristic": hrm, "value": frames[0].hex()},
                {"t": 0.2, "characteristic": hrm, "value": frames[1].hex()},
            ],
            "recorded_s": 0.3,
        }
    )
    clock = ManualClock()
    clone = ClonePeripheral(snapshot, clock)
    air = VirtualAir()
    bridge = BumbleBridge(clone, clone.db, air.host("clone"))
    await bridge.start()
    central = await _central(air)
    try:
        connection = await central.connect(bumble_address(clone.address))
        peer = Peer(connection)
        await peer.discover_all()
        [char] = peer.get_characteristics_by_uuid(
            UUID.from_bytes(uuid_to_att(HEART_RATE_MEASUREMENT))
        )
        heard: list[bytes] = []
        await peer.subscribe(char, heard.append)
        clone.start()
        await asyncio.sleep(0)
        await clock.advance(0.65)
        await asyncio.sleep(0.05)
        await clone.stop()
        assert heard[:4] == [frames[0], frames[1], frames[0], frames[1]]
    finally:
        await bridge.close()
        await central.power_off()
