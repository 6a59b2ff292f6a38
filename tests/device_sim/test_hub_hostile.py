"""The hub against hostile frames: every field is checked for type and size before use,
only typed ``error`` frames come back, and the hub keeps serving every other central.

The fuzz test is bounded for CI; ``KMEBAND_FUZZ_EXAMPLES=100000`` runs it as a long
campaign (docs/bleak-backend.md, "Hostile frames").
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from device_sim.radio.hub_client import RemoteRadio
from device_sim.radio.hub_server import HubServer
from device_sim.radio.hub_wire import MAX_FRAME, HubAddress, HubErrorCode, encode_frame

CENTRAL = "C0:00:00:00:00:01"
FUZZ_EXAMPLES = int(os.environ.get("KMEBAND_FUZZ_EXAMPLES", "60"))
#: What a hub may answer: the ops of the wire format (hub_wire's table).
ANSWER_OPS = {"scan", "connected", "frame", "disconnected", "display", "encrypt_skd", "encrypted"}


class InstantClock(ManualClock):
    """A ManualClock whose sleeps pass at once (a fuzzed scan may ask for 60 s)."""

    async def sleep(self, seconds: float) -> None:
        self.jump(max(0.0, seconds))
        await asyncio.sleep(0)


def _band(tmp: Path, clock: ManualClock) -> BandGattEndpoint:
    band = SimulatedBand(BandConfig(seed=3, fidelity="summary", state_dir=tmp / "band"), clock)
    band.simulate_until(clock.now() + 3600)
    # an InstantClock would expire the band's bound on unauthenticated links at once
    return BandGattEndpoint(band, auth_timeout_s=None)


class Conn:
    """One raw socket connection to the hub, speaking frames by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, address: HubAddress) -> Conn:
        return cls(*await asyncio.open_connection(address.host, address.port))

    async def send(self, message: object) -> None:
        self.writer.write(encode_frame(message))  # type: ignore[arg-type]
        await self.writer.drain()

    async def answer(self) -> dict[str, Any] | None:
        """The next frame from the hub, or None when it closed the connection."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(4), 10)
            (length,) = struct.unpack(">I", header)
            body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message: dict[str, Any] = cbor2.loads(body)
        return message

    async def answer_to(self, rid: int) -> dict[str, Any] | None:
        """Skip link traffic up to the answer to request ``rid`` (None: closed)."""
        while True:
            message = await self.answer()
            if message is None or message.get("id") == rid:
                return message

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def hub(tmp_path: Path) -> Any:
    clock = InstantClock()
    radio = Radio(clock, seed=4)
    endpoint = _band(tmp_path, clock)
    radio.attach(endpoint)
    server = HubServer(radio, HubAddress.parse("tcp:127.0.0.1:0"))
    address = await server.start()
    yield address, endpoint
    await server.close()


async def _linked(address: HubAddress, band: str) -> tuple[Conn, int]:
    conn = await Conn.open(address)
    await conn.send({"op": "connect", "id": 1, "address": band, "central": CENTRAL})
    answer = await conn.answer_to(1)
    assert answer is not None and answer["op"] == "connected"
    return conn, int(answer["link"])


async def test_an_integer_data_field_is_refused_without_allocating_it(hub: Any) -> None:
    address, endpoint = hub
    conn, link = await _linked(address, endpoint.address)
    tracemalloc.start()
    try:
        await conn.send({"op": "frame", "id": 2, "link": link, "cid": 4, "data": 10**12})
        answer = await conn.answer_to(2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer is not None and answer["op"] == "error"
    assert answer["code"] == HubErrorCode.MALFORMED and "'data'" in answer["message"]
    assert peak < 4 * 1024 * 1024  # nothing near the integer's size was ever allocated
    # the session survived: the same connection still reaches the band
    await conn.send({"op": "display", "id": 3, "address": endpoint.address})
    answer = await conn.answer_to(3)
    assert answer is not None and answer["op"] == "display"
    conn.close()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"op": "frame", "cid": 4, "data": [1, 2, 3]}, "data"),
        ({"op": "frame", "cid": 2**70, "data": b"\x02\x17\x00"}, "cid"),
        ({"op": "frame", "cid": -1, "data": b""}, "cid"),
        ({"op": "frame", "link": 10**30, "cid": 4, "data": b""}, "link"),
        ({"op": "scan", "duration": float("inf")}, "duration"),
        ({"op": "scan", "duration": float("nan")}, "duration"),
        ({"op": "scan", "duration": 10**400}, "duration"),
        ({"op": "scan", "duration": 1e9}, "duration"),
        ({"op": "connect", "address": "x" * 60_000, "central": CENTRAL}, "address"),
        ({"op": "connect", "address": "AA:00:00:00:00:01", "central": "C"}, "central"),
        ({"op": "display", "address": b"AA:00:00:00:00:01"}, "address"),
        ({"op": "encrypt_proof", "skd": b"\x00" * 16, "proof": b"\x00" * 31}, "proof"),
        ({"op": "encrypt_proof", "skd": 16, "proof": b"\x00" * 32}, "skd"),
        ({"op": "scan", "id": [1, 2]}, "id"),
        ({"op": "scan", "id": 2**64}, "id"),
    ],
)
async def test_every_field_is_checked_for_type_and_size(
    hub: Any, request_: dict[str, Any], field: str
) -> None:
    address, endpoint = hub
    conn, link = await _linked(address, endpoint.address)
    message = {"id": 5, "link": link, **request_}
    await conn.send(message)
    answer = await conn.answer()
    while answer is not None and answer["op"] != "error":
        answer = await conn.answer()
    assert answer is not None
    assert answer["code"] == HubErrorCode.MALFORMED and f"'{field}'" in answer["message"]
    await conn.send({"op": "display", "id": 6, "address": endpoint.address})
    answer = await conn.answer_to(6)
    assert answer is not None and answer["op"] == "display"  # the session goes on
    conn.close()


class FaultyBand:
    """A band whose frame handler breaks on anything: a bug behind the hub."""

    address = "AA:00:00:00:00:0F"
    display = None

    def advertising_data(self) -> Any:
        from device_sim.radio.medium import AdvertisingData

        return AdvertisingData(local_name="broken")

    def on_connect(self, link: Any) -> None:
        pass

    def on_frame(self, link: Any, cid: int, payload: bytes) -> None:
        raise ZeroDivisionError

    def on_disconnect(self, link: Any, reason: Any) -> None:
        pass

    def on_encryption_request(self, link: Any, skd: bytes, proof: bytes) -> None:
        return None


async def test_a_fault_behind_the_hub_closes_only_that_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = InstantClock()
    radio = Radio(clock)
    radio.attach(FaultyBand())  # type: ignore[arg-type]
    server = HubServer(radio, HubAddress.parse("tcp:127.0.0.1:0"))
    address = await server.start()
    try:
        conn, link = await _linked(address, FaultyBand.address)
        await conn.send({"op": "frame", "link": link, "cid": 4, "data": b"\x0a\x01\x00"})
        answer = await conn.answer()
        assert answer is not None and answer["op"] == "error"
        assert answer["code"] == HubErrorCode.RADIO
        while (answer := await conn.answer()) is not None:  # then closed cleanly,
            assert answer["op"] == "disconnected"  # after telling the central its link went
        assert "ZeroDivisionError" in caplog.text and "\\x0a" not in caplog.text
        assert radio.links_to(FaultyBand.address) == []  # its link was freed
        async with RemoteRadio(str(address)) as remote:
            assert [r.address for r in await remote.scan()] == [FaultyBand.address]
    finally:
        await server.close()


# -- fuzzing ---------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, 4, 6, 0xFFFF, 0x40, 10**12, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=80),
    st.text(max_size=20),
    st.sampled_from(["AA:00:00:00:00:01", CENTRAL, "ZZ:00:00:00:00:01", ""]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_ops = st.sampled_from(
    ["frame", "scan", "connect", "display", "encrypt_start", "encrypt_proof", "disconnect"]
) | st.text(max_size=12)
_fields = st.sampled_from(
    ["id", "link", "cid", "data", "duration", "address", "central", "skd", "proof"]
)
_frames = st.builds(
    lambda op, fields: {**fields, "op": op},
    _ops,
    st.dictionaries(_fields, _values, max_size=6),
)
#: Whole frames as bytes: mostly CBOR maps, some raw garbage (a closed stream is fine).
_wire = st.one_of(
    _frames.map(lambda m: encode_frame(m)),
    st.binary(max_size=64).map(lambda b: struct.pack(">I", len(b)) + b),
)


@pytest.fixture
def fuzz_rig(tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, BandGattEndpoint]]:
    """One loop and one band for a whole campaign (a band per example would be slow)."""
    loop = asyncio.new_event_loop()
    yield loop, _band(tmp_path, InstantClock())
    loop.close()


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(_wire, min_size=1, max_size=5))
def test_fuzzed_frames_get_only_typed_errors_and_the_hub_keeps_answering(
    fuzz_rig: tuple[asyncio.AbstractEventLoop, BandGattEndpoint], frames: list[bytes]
) -> None:
    loop, endpoint = fuzz_rig
    escaped: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    loop.run_until_complete(_fuzz_once(endpoint, frames))
    assert not escaped, f"an exception escaped the hub: {escaped[0].get('message')}"


async def _fuzz_once(endpoint: BandGattEndpoint, frames: list[bytes]) -> None:
    radio = Radio(endpoint.band.clock, seed=4)
    radio.attach(endpoint)
    server = HubServer(radio, HubAddress.parse("tcp:127.0.0.1:0"))
    address = await server.start()
    hub_log = logging.getLogger("device_sim.radio.hub_server")
    faults: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = faults.append  # type: ignore[method-assign]
    hub_log.addHandler(handler)
    try:
        conn = await Conn.open(address)
        for frame in frames:
            assert len(frame) <= MAX_FRAME + 4
            conn.writer.write(frame)
        await conn.send({"op": "scan", "id": 2**62})  # a sentinel: answered after the rest
        while True:
            answer = await conn.answer()
            if answer is None:
                break  # the hub closed a stream it could no longer trust: allowed
            assert answer.get("op") in ANSWER_OPS | {"error"}, answer.get("op")
            if answer["op"] == "error":
                assert answer["code"] in set(HubErrorCode), answer
            if answer.get("id") == 2**62 and answer["op"] == "scan":
                break
        conn.close()
        assert not faults, "the hub closed a session after a fault behind it"
        async with RemoteRadio(str(address)) as other:  # and it still serves others
            await other.scan()
    finally:
        hub_log.removeHandler(handler)
        await server.close()
        for _ in range(5):  # let the closed sessions drop their links before the next example
            await asyncio.sleep(0)
