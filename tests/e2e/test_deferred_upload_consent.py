"""Consent withdrawn while batches wait in the outbox: what a later upload may carry.

Batches are sealed with the consent read at pull time, and the ingest accepts them on the
consent record inside; so the client alone must drop, before it uploads, whatever a
withdrawal since then forbids: a field's category (avg_hr needs heart rate) as much as a
stream's, and on every band whose queue it drains.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from e2e_helpers import (
    EPOCH,
    Rig,
    band_records,
    expected_upload,
    ingest_records,
    live,
    make_band,
    read_passkey,
)

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from device_sim.clock import ManualClock
from protocol.kme.records import ConsentCategory, StreamId
from sync_client.ble import Backend
from sync_client.session import SyncOptions, SyncReport, SyncSession

HOUR = 3600.0


async def test_a_heart_rate_withdrawal_drops_queued_avg_hr_but_keeps_the_minutes(
    tmp_path: Path,
) -> None:
    clock = ManualClock(EPOCH)
    band = make_band(tmp_path, clock, seed=61, scenario="athlete_week")
    live(band, EPOCH + 6 * HOUR)
    before = band_records(band)
    minutes = before[StreamId.ACTIVITY_MINUTES]
    assert sum(1 for r in minutes if r.record.avg_hr) > 100  # type: ignore[union-attr]
    async with Rig(tmp_path, band) as rig:
        real_account = rig.account
        rig.account = dataclasses.replace(real_account, ingest_url="http://127.0.0.1:9")
        first = await rig.sync()  # pulled, sealed and queued; the ingest is out of reach
        assert first.upload is None and rig.outbox.pending_count() > 0
        assert band.flash.count(StreamId.ACTIVITY_MINUTES) == 0  # the band freed them
        band.set_consent(ConsentCategory.HEART_RATE, False)  # on the band's own screen
        rig.account = real_account
        second = await rig.sync()
        assert second.upload is not None and second.upload.rejected == 0
        assert second.purged_batches.get(int(ConsentCategory.HEART_RATE), 0) > 0
        assert rig.outbox.pending_count() == 0
        held = rig.held()
        got = sorted(held[StreamId.ACTIVITY_MINUTES], key=lambda r: r.seq)
        # no heart rate went up after its withdrawal, and every minute still did
        assert all(r.record.avg_hr == 0 for r in got)  # type: ignore[union-attr]
        assert [r.seq for r in got] == [r.seq for r in minutes]
        assert not held.get(StreamId.HR_SAMPLES)
        assert got == expected_upload(before, band.consent)[StreamId.ACTIVITY_MINUTES]
        stats = rig.outbox.stats(rig.pseudonym)
        assert stats[int(StreamId.HR_SAMPLES)]["withheld"] == len(before[StreamId.HR_SAMPLES])


async def sync_band(rig: Rig, address: str, *, upload: bool) -> SyncReport:
    """A sync of another band on the rig's radio, with the rig's client and outbox."""

    async def passkey() -> str:
        return await read_passkey(rig.radio, address)

    session = SyncSession(
        address,
        rig.keys,
        rig.outbox,
        rig.ingest.public_key,
        rig.account,
        backend=Backend(SimBleakScanner, SimBleakClient),
        options=SyncOptions(set_clock=False, timeout_s=5.0, upload=upload),
        passkey_callback=passkey,  # type: ignore[arg-type]
        backend_options={"bond_store": rig.bonds},
    )
    return await session.run()


async def test_syncing_one_band_never_uploads_another_bands_queue(tmp_path: Path) -> None:
    clock = ManualClock(EPOCH)
    band_a = make_band(tmp_path, clock, seed=61, scenario="athlete_week")
    band_b = make_band(tmp_path, clock, seed=62, scenario="office_worker_week")
    live(band_a, EPOCH + 4 * HOUR)
    live(band_b, EPOCH + 4 * HOUR)
    before_b = band_records(band_b)
    async with Rig(tmp_path, band_a) as rig:
        rig.radio.attach(BandGattEndpoint(band_b))
        b_pseudonym = rig.keys.band_pseudonym(band_b.identity.serial)
        queued_b = await sync_band(rig, band_b.address, upload=False)
        assert queued_b.upload is None and rig.outbox.pending_count(b_pseudonym) > 0
        # band B's wearer withdraws activity sync; only B's next sync reads that
        band_b.set_consent(ConsentCategory.ACTIVITY, False)
        report_a = await rig.sync()
        assert report_a.upload is not None and report_a.upload.rejected == 0
        held_b = ingest_records(rig.ingest, rig.account, b_pseudonym)
        assert not any(held_b.values()), "band A's sync uploaded band B's queued batches"
        assert rig.outbox.pending_count(b_pseudonym) > 0  # still waiting for B's own sync
        assert rig.held()[StreamId.ACTIVITY_MINUTES]  # A's own data did go
        # B's own sync reads the withdrawal, purges, and uploads only what B allows
        report_b = await sync_band(rig, band_b.address, upload=True)
        assert report_b.purged_batches.get(int(ConsentCategory.ACTIVITY), 0) > 0
        held_b = ingest_records(rig.ingest, rig.account, b_pseudonym)
        expected = expected_upload(before_b, band_b.consent)
        assert not expected[StreamId.ACTIVITY_MINUTES]
        for stream in StreamId:
            got = sorted(held_b.get(stream, []), key=lambda r: r.seq)
            assert got == expected[stream], f"{stream.name}: band B's ingest data differs"
    band_b.close()
