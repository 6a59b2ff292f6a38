"""A full sync over the slowest legal link completes: timeouts follow progress.

1M PHY, a 50 ms connection interval, 27-byte PDUs and one packet per connection event
carry about 540 bytes a second; a day of records takes minutes of link time and the
acknowledgement of a batch waits behind every chunk already queued. Everything here runs
on a virtual-time event loop (tests/virtual_time.py) whose clock also drives the radio's
link model and the band, so minutes of link time take well under a second, and a timeout
fires exactly when virtual time says so, never because the test machine is busy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner, use_radio
from device_sim.bleak_backend.bonds import BondStore
from device_sim.radio import LinkModel, Radio
from protocol.kme.records import StreamId
from sync_client.activation import ClientKeys
from sync_client.ble import Backend
from sync_client.outbox import Outbox
from sync_client.session import SyncOptions, SyncReport, SyncSession
from tests.e2e.e2e_helpers import EPOCH, band_records, read_passkey
from tests.virtual_time import LoopClock, VirtualTimeLoop

#: The slowest link the link model allows at 50 ms: what the issue measured.
SLOWEST = LinkModel(phy="1M", conn_interval_ms=50.0, data_length=27, packets_per_event=1)


async def _sync_over(model: LinkModel, tmp: Path, hours: float) -> tuple[SyncReport, dict]:  # type: ignore[type-arg]
    clock = LoopClock(EPOCH)
    config = BandConfig(seed=11, scenario="office_worker_week", fidelity="summary")
    band = SimulatedBand(config, clock)
    band.simulate_until(EPOCH + hours * 3600)
    clock.jump(hours * 3600)  # the band lived its backlog; now the phone comes along
    before = band_records(band)
    radio = Radio(clock, seed=5, link_model=model)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    keys = ClientKeys.load_or_create(tmp / "client")

    async def passkey() -> str:
        return await read_passkey(radio, band.address)

    with use_radio(radio), Outbox(tmp / "client" / "outbox.db") as outbox:
        session = SyncSession(
            band.address,
            keys,
            outbox,
            x25519.X25519PrivateKey.generate().public_key(),
            None,  # no account: this test is about the band-to-outbox leg
            backend=Backend(SimBleakScanner, SimBleakClient),
            options=SyncOptions(set_clock=False, timeout_s=10.0, upload=False),
            passkey_callback=passkey,  # type: ignore[arg-type]
            backend_options={"bond_store": BondStore()},
        )
        started = asyncio.get_running_loop().time()
        report = await session.run()
        took = asyncio.get_running_loop().time() - started
        pseudonym = keys.band_pseudonym(band.identity.serial)
        cursors = {s: outbox.stored_up_to(pseudonym, int(s)) for s in StreamId}
    left = {s: band.flash.count(s) for s in StreamId}
    return report, {"before": before, "cursors": cursors, "left": left, "took": took}


@pytest.mark.slow
def test_a_day_of_records_syncs_completely_over_the_slowest_legal_link(tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        report, seen = runner.run(_sync_over(SLOWEST, tmp_path, hours=24))
    assert all(s.complete and s.error is None for s in report.streams), [
        (s.stream.name, s.error) for s in report.streams
    ]
    # the link was busy far longer than any timeout: only progress kept the waits alive
    assert seen["took"] > 3 * 10.0
    for stream, records in seen["before"].items():
        if records:
            assert seen["cursors"][stream] == records[-1].seq, stream.name
        assert seen["left"][stream] == 0, f"{stream.name}: the band kept acknowledged records"
    assert sum(s.received for s in report.streams) == sum(map(len, seen["before"].values()))


def test_a_link_that_stops_moving_still_times_out(tmp_path: Path) -> None:
    """Progress-based is not unbounded: a band that goes silent mid-transfer is given up on
    after the timeout of silence: here a band that takes the link and never answers."""

    async def run() -> str:
        clock = LoopClock(EPOCH)
        band = SimulatedBand(BandConfig(seed=11, fidelity="summary"), clock)
        band.simulate_until(EPOCH + 6 * 3600)
        clock.jump(6 * 3600)
        radio = Radio(clock, seed=5, link_model=SLOWEST)
        endpoint = BandGattEndpoint(band)
        radio.attach(endpoint)
        # the band stops answering (its frames are lost) but the link stays up
        endpoint.on_frame = lambda link, cid, payload: None  # type: ignore[method-assign]
        with use_radio(radio):
            client = SimBleakClient(band.address, timeout=10.0, bond_store=BondStore())
            started = asyncio.get_running_loop().time()
            try:
                await client.connect(pair=False)
            except Exception as exc:  # the ATT transaction timeout
                waited = asyncio.get_running_loop().time() - started
                assert 10.0 <= waited < 11.0, waited
                return type(exc).__name__
        return "connected"

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        assert runner.run(run()) == "SimLinkLostError"
