"""The radio medium: scanning, links, faults, the link model, and the hub carrier."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import cbor2
import pytest

from device_sim.clock import ManualClock
from device_sim.radio import (
    ATT_CID,
    DisconnectReason,
    EncryptionRefusedError,
    LinkFault,
    LinkModel,
    PeripheralLink,
    Radio,
    RadioError,
    UnknownAddressError,
    encryption_proof,
)
from device_sim.radio.hub_client import RemoteRadio
from device_sim.radio.hub_server import HubServer
from device_sim.radio.hub_wire import (
    HubAddress,
    HubErrorCode,
    HubProtocolError,
    encode_frame,
    error_frame,
    expect,
)
from device_sim.radio.medium import AdvertisingData
from protocol.ble.gatt_model import SecurityLevel
from protocol.errors import UsageError


class EchoBand:
    """A peripheral that answers every frame with the same bytes reversed."""

    def __init__(self, address: str, *, greet: bool = False) -> None:
        self._address = address
        self.greet = greet
        self.connected: list[PeripheralLink] = []
        self.disconnects: list[DisconnectReason] = []
        self.advertising = True
        self.display: str | None = None

    @property
    def address(self) -> str:
        return self._address

    def advertising_data(self) -> AdvertisingData | None:
        if not self.advertising:
            return None
        return AdvertisingData(
            local_name="KME Band",
            service_uuids=("0000180d-0000-1000-8000-00805f9b34fb",),
            manufacturer_data={0xFFFF: b"\x01\x02"},
            tx_power=0,
        )

    def on_connect(self, link: PeripheralLink) -> None:
        self.connected.append(link)
        if self.greet:
            link.send(ATT_CID, b"hello")

    def on_frame(self, link: PeripheralLink, cid: int, payload: bytes) -> None:
        link.send(cid, payload[::-1])

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None:
        self.disconnects.append(reason)

    bond_ltk = bytes(range(16))

    def on_encryption_request(
        self, link: PeripheralLink, skd: bytes, proof: bytes
    ) -> SecurityLevel | None:
        if proof == encryption_proof(self.bond_ltk, skd):
            return SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
        return None


class CentralRecorder:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.reasons: list[DisconnectReason] = []

    def on_frame(self, cid: int, payload: bytes) -> None:
        self.frames.append((cid, payload))

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)


async def _connect(radio: object, address: str, rec: CentralRecorder):  # type: ignore[no-untyped-def]
    return await radio.connect(  # type: ignore[attr-defined]
        address,
        central_address="C0:00:00:00:00:01",
        on_frame=rec.on_frame,
        on_disconnect=rec.on_disconnect,
    )


async def test_scan_sees_bands_in_range_with_rssi_falling_with_distance() -> None:
    radio = Radio(ManualClock(), seed=1)
    near, far, gone = (
        EchoBand("AA:00:00:00:00:01"),
        EchoBand("AA:00:00:00:00:02"),
        EchoBand("AA:00:00:00:00:03"),
    )
    radio.attach(near, distance_m=0.5)
    radio.attach(far, distance_m=20)
    radio.attach(gone, distance_m=5000)
    reports = {r.address: r for r in await radio.scan()}
    assert set(reports) == {near.address, far.address}
    assert reports[near.address].rssi > reports[far.address].rssi
    assert reports[near.address].data.local_name == "KME Band"


async def test_frames_cross_both_ways_and_disconnect_reasons_are_per_side() -> None:
    radio = Radio(ManualClock())
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    rec = CentralRecorder()
    link = await _connect(radio, band.address, rec)
    link.send(ATT_CID, b"\x01\x02\x03")
    assert rec.frames == [(ATT_CID, b"\x03\x02\x01")]
    await link.disconnect()
    assert rec.reasons == [DisconnectReason.LOCAL_HOST_TERMINATED]
    assert band.disconnects == [DisconnectReason.REMOTE_USER_TERMINATED]
    with pytest.raises(RadioError, match="link is down"):
        link.send(ATT_CID, b"x")


async def test_unknown_address_and_out_of_range_are_typed_errors() -> None:
    radio = Radio(ManualClock())
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band, distance_m=1)
    with pytest.raises(RadioError, match="scan again"):
        await _connect(radio, "AA:00:00:00:00:99", CentralRecorder())
    rec = CentralRecorder()
    await _connect(radio, band.address, rec)
    radio.set_distance(band.address, 10_000)  # walks away: supervision timeout
    assert rec.reasons == [DisconnectReason.CONNECTION_TIMEOUT]
    with pytest.raises(RadioError, match="out of range"):
        await _connect(radio, band.address, CentralRecorder())


async def test_fault_drops_link_after_n_pdus() -> None:
    radio = Radio(ManualClock())
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    radio.inject_fault(band.address, LinkFault(drop_after_pdus=3))
    rec = CentralRecorder()
    link = await _connect(radio, band.address, rec)
    link.send(ATT_CID, b"ab")  # frames 1 and 2 (the echo)
    link.send(ATT_CID, b"cd")  # frame 3 reaches the band, then the link drops
    assert rec.reasons == [DisconnectReason.CONNECTION_TIMEOUT]
    assert band.disconnects == [DisconnectReason.CONNECTION_TIMEOUT]
    # the next connection has no fault left
    rec2 = CentralRecorder()
    link2 = await _connect(radio, band.address, rec2)
    for _ in range(5):
        link2.send(ATT_CID, b"ok")
    assert len(rec2.frames) == 5


async def test_fault_drops_link_at_a_simulated_time() -> None:
    clock = ManualClock()
    radio = Radio(clock)
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    radio.inject_fault(band.address, LinkFault(drop_at=clock.now() + 10))
    rec = CentralRecorder()
    link = await _connect(radio, band.address, rec)
    link.send(ATT_CID, b"a")
    await clock.advance(11)
    link.send(ATT_CID, b"b")
    assert rec.frames == [(ATT_CID, b"a")]
    assert rec.reasons == [DisconnectReason.CONNECTION_TIMEOUT]


def test_link_model_rejects_impossible_parameters() -> None:
    with pytest.raises(UsageError, match="PHY"):
        LinkModel(phy="3M")
    with pytest.raises(UsageError, match="data length"):
        LinkModel(data_length=300)


def test_link_model_capacity_follows_the_formula() -> None:
    model = LinkModel(phy="1M", conn_interval_ms=30, data_length=27, packets_per_event=4)
    # 4 packets of 27 bytes every 30 ms
    assert model.capacity_bytes_per_s == pytest.approx(4 * 27 / 0.030)
    fast = LinkModel(phy="2M", conn_interval_ms=15, data_length=251, packets_per_event=6)
    assert fast.capacity_bytes_per_s > model.capacity_bytes_per_s * 10


async def test_link_model_goodput_is_close_to_capacity() -> None:
    model = LinkModel(phy="2M", conn_interval_ms=15, data_length=251, packets_per_event=4)
    clock = ManualClock()
    radio = Radio(clock, link_model=model)
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)

    received = asyncio.Event()
    count = 0
    frames = 300

    class Sink(CentralRecorder):
        def on_frame(self, cid: int, payload: bytes) -> None:
            nonlocal count
            count += 1
            if count == frames:
                received.set()

    link = await _connect(radio, band.address, Sink())
    band_end = band.connected[0]
    t0 = clock.now()
    payload = bytes(247 - 4)  # an L2CAP frame of exactly one 251-byte packet
    for _ in range(frames):
        band_end.send(ATT_CID, payload)
    while not received.is_set():
        await clock.advance(model.conn_interval_ms / 1000.0)
    elapsed = clock.now() - t0
    goodput = frames * (len(payload) + 4) / elapsed
    assert 0.8 * model.capacity_bytes_per_s < goodput <= 1.05 * model.capacity_bytes_per_s
    await link.disconnect()


async def test_hub_carries_scan_connect_frames_and_disconnect(tmp_path: Path) -> None:
    radio = Radio(ManualClock())
    band = EchoBand("AA:00:00:00:00:01", greet=True)
    radio.attach(band)
    hub = HubServer(radio, HubAddress.parse(f"unix:{tmp_path / 'hub.sock'}"))
    address = await hub.start()
    try:
        async with RemoteRadio(str(address)) as remote:
            reports = await remote.scan()
            assert [r.address for r in reports] == [band.address]
            assert reports[0].data.manufacturer_data == {0xFFFF: b"\x01\x02"}
            rec = CentralRecorder()
            link = await _connect(remote, band.address, rec)
            link.send(ATT_CID, b"\x10\x20")
            for _ in range(50):
                if len(rec.frames) == 2:
                    break
                await asyncio.sleep(0.01)
            # the greeting sent while connecting is not lost
            assert rec.frames == [(ATT_CID, b"hello"), (ATT_CID, b"\x20\x10")]
            with pytest.raises(RadioError, match="scan again"):
                await _connect(remote, "AA:00:00:00:00:99", CentralRecorder())
            await link.disconnect()
            assert rec.reasons == [DisconnectReason.LOCAL_HOST_TERMINATED]
    finally:
        await hub.close()


async def test_hub_survives_garbage_and_frees_a_vanished_central(tmp_path: Path) -> None:
    radio = Radio(ManualClock())
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    hub = HubServer(radio, HubAddress.parse("tcp:127.0.0.1:0"))
    address = await hub.start()
    try:
        # 1: an oversized frame gets an error and the connection closes
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(struct.pack(">I", 10_000_000))
        await writer.drain()
        length = struct.unpack(">I", await reader.readexactly(4))[0]
        answer = cbor2.loads(await reader.readexactly(length))
        assert answer["op"] == "error" and "exceeds" in answer["message"]
        assert await reader.read() == b""
        writer.close()
        # 2: not CBOR
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(struct.pack(">I", 3) + b"\xff\xff\xff")
        await writer.drain()
        length = struct.unpack(">I", await reader.readexactly(4))[0]
        assert cbor2.loads(await reader.readexactly(length))["op"] == "error"
        writer.close()
        # 3: a central connects to the band and vanishes without a word
        reader, writer = await asyncio.open_connection(address.host, address.port)
        body = cbor2.dumps(
            {"op": "connect", "id": 1, "address": band.address, "central": "C0:00:00:00:00:01"}
        )
        writer.write(struct.pack(">I", len(body)) + body)
        await writer.drain()
        await reader.readexactly(4)
        writer.close()
        for _ in range(100):
            if band.disconnects:
                break
            await asyncio.sleep(0.01)
        assert band.disconnects == [DisconnectReason.REMOTE_USER_TERMINATED]
        assert radio.links_to(band.address) == []
        # the hub still serves others
        async with RemoteRadio(str(address)) as remote:
            assert [r.address for r in await remote.scan()] == [band.address]
    finally:
        await hub.close()


def test_hub_address_only_accepts_loopback_and_sockets() -> None:
    assert str(HubAddress.parse("tcp:127.0.0.1:9000")) == "tcp:127.0.0.1:9000"
    with pytest.raises(UsageError, match="loopback"):
        HubAddress.parse("tcp:10.0.0.1:9000")
    with pytest.raises(UsageError, match="not a hub address"):
        HubAddress.parse("bluetooth://x")


async def test_remote_radio_reports_a_missing_hub(tmp_path: Path) -> None:
    with pytest.raises(RadioError, match="kmeband sim"):
        async with RemoteRadio(f"unix:{tmp_path / 'nothing.sock'}"):
            pass


async def test_encryption_needs_the_bonded_key_in_process_and_through_the_hub(
    tmp_path: Path,
) -> None:
    radio = Radio(ManualClock(), seed=3)
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    hub = HubServer(radio, HubAddress.parse(f"unix:{tmp_path / 'hub.sock'}"))
    address = await hub.start()
    try:
        local = await _connect(radio, band.address, CentralRecorder())
        with pytest.raises(EncryptionRefusedError, match="pair again"):
            await local.start_encryption(bytes(16))
        assert local.security_level == SecurityLevel.NO_SECURITY
        level = await local.start_encryption(EchoBand.bond_ltk)
        assert level == SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
        assert band.connected[-1].security_level == level
        await local.disconnect()
        async with RemoteRadio(str(address)) as remote:
            link = await _connect(remote, band.address, CentralRecorder())
            with pytest.raises(EncryptionRefusedError):
                await link.start_encryption(bytes(16))
            assert await link.start_encryption(EchoBand.bond_ltk) == level
            assert link.security_level == level
            assert band.connected[-1].security_level == level
    finally:
        await hub.close()


async def test_a_second_hub_refuses_a_live_socket_and_replaces_a_stale_one(tmp_path: Path) -> None:
    import os
    import socket
    import stat

    path = tmp_path / "hub.sock"
    first = HubServer(Radio(ManualClock()), HubAddress.parse(f"unix:{path}"))
    await first.start()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = HubServer(Radio(ManualClock()), HubAddress.parse(f"unix:{path}"))
    with pytest.raises(RadioError, match="already running"):
        await second.start()
    await first.close()
    assert not path.exists()
    # a socket file nobody listens on (a crashed hub's) is taken over
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()
    third = HubServer(Radio(ManualClock()), HubAddress.parse(f"unix:{path}"))
    await third.start()
    async with RemoteRadio(f"unix:{path}") as remote:
        assert await remote.scan() == []
    await third.close()
    assert not path.exists()


async def _ask_hub(address: HubAddress, request: dict[str, object]) -> dict[str, object]:
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(encode_frame(request))
    await writer.drain()
    length = struct.unpack(">I", await reader.readexactly(4))[0]
    answer: dict[str, object] = cbor2.loads(await reader.readexactly(length))
    writer.close()
    return answer


async def test_errors_cross_the_hub_as_typed_codes_not_text(tmp_path: Path) -> None:
    radio = Radio(ManualClock(), seed=2)
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    hub = HubServer(radio, HubAddress.parse("tcp:127.0.0.1:0"))
    address = await hub.start()
    try:
        # in-process and through the hub, an unknown address is the same typed error
        with pytest.raises(UnknownAddressError):
            await _connect(radio, "AA:00:00:00:00:99", CentralRecorder())
        async with RemoteRadio(str(address)) as remote:
            with pytest.raises(UnknownAddressError):
                await _connect(remote, "AA:00:00:00:00:99", CentralRecorder())
            with pytest.raises(UnknownAddressError):
                await remote.read_display("AA:00:00:00:00:99")
            link = await _connect(remote, band.address, CentralRecorder())
            with pytest.raises(EncryptionRefusedError):
                await link.start_encryption(bytes(16))
        # the frame says which error by its code
        answer = await _ask_hub(
            address,
            {
                "op": "connect",
                "id": 7,
                "address": "AA:00:00:00:00:99",
                "central": "C0:00:00:00:00:01",
            },
        )
        assert answer["op"] == "error" and answer["id"] == 7
        assert answer["code"] == HubErrorCode.UNKNOWN_ADDRESS
        # a request with a field of the wrong type is malformed, and says which field
        answer = await _ask_hub(
            address, {"op": "connect", "id": 8, "address": 5, "central": "C0:00:00:00:00:01"}
        )
        assert answer["code"] == HubErrorCode.MALFORMED and "'address'" in str(answer["message"])
        answer = await _ask_hub(address, {"op": "levitate", "id": 9})
        assert answer["code"] == HubErrorCode.MALFORMED
    finally:
        await hub.close()


def test_error_frames_round_trip_each_error_class() -> None:
    errors: list[RadioError] = [
        UnknownAddressError("u"),
        EncryptionRefusedError("e"),
        HubProtocolError("p"),
        RadioError("r"),
    ]
    for error in errors:
        with pytest.raises(type(error)) as caught:
            expect(error_frame(1, error), "connected")
        assert type(caught.value) is type(error) and str(caught.value) == str(error)
    # a code this side does not know (a newer hub) is still a radio error, never a crash
    with pytest.raises(RadioError) as caught:
        expect({"op": "error", "id": 1, "code": 99, "message": "m"}, "connected")
    assert type(caught.value) is RadioError
    with pytest.raises(HubProtocolError, match="where 'scan' was due"):
        expect({"op": "display", "id": 1}, "scan")


async def test_the_band_display_is_read_through_the_peripheral_protocol(tmp_path: Path) -> None:
    radio = Radio(ManualClock())
    band = EchoBand("AA:00:00:00:00:01")
    radio.attach(band)
    hub = HubServer(radio, HubAddress.parse(f"unix:{tmp_path / 'hub.sock'}"))
    address = await hub.start()
    try:
        async with RemoteRadio(str(address)) as remote:
            assert await radio.read_display(band.address) is None
            assert await remote.read_display(band.address) is None
            band.display = "042917"
            assert await radio.read_display(band.address) == "042917"
            assert await remote.read_display(band.address) == "042917"
    finally:
        await hub.close()
