"""A band handed from one owner to the next keeps nothing of the first.

Owner A syncs and resets the band; owner B pairs, activates, grants consent and syncs.
B's account at the ingest holds only what the band recorded for B, and A's profile and
ownership are gone from the band.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from e2e_helpers import EPOCH, Rig, live, make_band, read_passkey, seqs

from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from device_sim.bleak_backend.bonds import BondStore
from device_sim.clock import ManualClock
from protocol.ble import sig_codecs as sig
from protocol.kme import profile as P
from protocol.kme.records import ConsentCategory, StreamId, record_time
from sync_client.activation import (
    ActivationError,
    ClientKeys,
    create_account,
    ensure_owner,
    factory_reset,
)
from sync_client.ble import Backend, BandLink, BleError, connect
from sync_client.consent import set_consent
from sync_client.outbox import Outbox


@asynccontextmanager
async def owner_link(rig: Rig, *, pair: bool = False) -> AsyncIterator[tuple[object, BandLink]]:
    """A connection from the rig's current client, proven (or activated) as the owner."""

    async def passkey() -> str:
        return await read_passkey(rig.radio, rig.band.address)

    client = await connect(
        rig.band.address,
        backend=Backend(SimBleakScanner, SimBleakClient),
        timeout_s=5.0,
        passkey_callback=passkey if pair else None,  # type: ignore[arg-type]
        backend_options={"bond_store": rig.bonds},
    )
    try:
        link = BandLink(client, 5.0)
        yield client, link
    finally:
        await client.disconnect()


async def test_a_reset_band_gives_its_next_owner_nothing_of_the_previous_one(
    tmp_path: Path,
) -> None:
    clock = ManualClock(EPOCH)
    band = make_band(tmp_path, clock, seed=17)
    live(band, EPOCH + 6 * 3600)
    async with Rig(tmp_path, band) as rig:
        # owner A: pair, activate, sync; then set a profile value and reset the band
        report = await rig.sync()
        assert report.newly_activated and report.upload is not None
        held_a = rig.held()
        assert len(held_a[StreamId.ACTIVITY_MINUTES]) == 360
        async with owner_link(rig) as (_, link):
            await ensure_owner(link, rig.keys)
            await link.write(P.HEIGHT, sig.encode_height(187))
            assert band.profile.profile.height_cm == 187
            await factory_reset(link, rig.keys)
        reset_at = int(clock.now())
        a_keys, a_bonds = rig.keys, rig.bonds
        assert not band.activated

        live(band, EPOCH + 8 * 3600)  # nothing is recorded without a new owner's consent
        assert all(band.flash.count(s) == 0 for s in StreamId)

        # owner B: a different phone with its own keys, account and outbox
        rig.keys = ClientKeys.load_or_create(tmp_path / "client-b")
        rig.account = await create_account(rig.ingest.url)
        rig.outbox = rig._stack.enter_context(Outbox(tmp_path / "client-b" / "outbox.db"))
        rig.bonds = BondStore()
        async with owner_link(rig, pair=True) as (client, link):
            _, activated = await ensure_owner(link, rig.keys)
            assert activated
            # A's profile is not on the band any more, for anyone
            assert sig.decode_height(await link.read(P.HEIGHT)) != 187
            for category in (ConsentCategory.ACTIVITY, ConsentCategory.HEART_RATE):
                await set_consent(client, category, True, 1, timeout_s=5.0)  # type: ignore[arg-type]
        granted_at = int(clock.now())
        live(band, EPOCH + 12 * 3600)
        report_b = await rig.sync()
        assert report_b.upload is not None and report_b.upload.rejected == 0
        held_b = rig.held()
        minutes = held_b[StreamId.ACTIVITY_MINUTES]
        assert len(minutes) == 4 * 60
        assert all(record_time(r.record) >= granted_at >= reset_at for r in minutes)
        assert min(seqs(minutes)) > max(seqs(held_a[StreamId.ACTIVITY_MINUTES]))
        for stream, records in held_b.items():
            a_times = {record_time(r.record) for r in held_a.get(stream, [])}
            assert not a_times & {record_time(r.record) for r in records}, stream.name

        # A's phone lost its bond with the reset, and its key is not the owner's any more
        b_owner = band.owner.key
        rig.keys, rig.bonds = a_keys, a_bonds
        with pytest.raises((ActivationError, BleError)):
            async with owner_link(rig) as (_, link):
                await ensure_owner(link, rig.keys)
        assert band.owner.key == b_owner
