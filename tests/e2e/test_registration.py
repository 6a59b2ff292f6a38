"""A band whose registration with the ingest failed is registered by the next sync.

Activation binds the band on the band itself; registering it with the ingest is a
separate HTTP call that can fail (ingest down) or be cut short (client killed between the
two). Until the ingest knows the band it refuses its batches, so the client must keep them
queued and register before it uploads again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from e2e_helpers import EPOCH, Rig, live, make_band, seqs

from device_sim.clock import ManualClock
from protocol.kme.records import StreamId


async def test_an_unreachable_ingest_at_activation_delays_the_upload_and_loses_nothing(
    tmp_path: Path,
) -> None:
    clock = ManualClock(EPOCH)
    band = make_band(tmp_path, clock)
    live(band, EPOCH + 6 * 3600)
    await clock.advance(6 * 3600)
    async with Rig(tmp_path, band) as rig:
        real_account = rig.account
        rig.account = dataclasses.replace(real_account, ingest_url="http://127.0.0.1:9")
        first = await rig.sync()
        assert first.newly_activated
        assert first.registration_error is not None and "unreachable" in first.registration_error
        assert first.upload is None
        assert rig.outbox.pending_count() > 0  # pulled and sealed, waiting
        assert all(not held for held in rig.held().values())

        rig.account = real_account
        second = await rig.sync()
        assert not second.newly_activated and second.registration_error is None
        assert second.upload is not None and second.upload.rejected == 0
        assert rig.outbox.pending_count() == 0
        held = rig.held()
        activity = seqs(held[StreamId.ACTIVITY_MINUTES])
        assert activity == list(range(1, len(activity) + 1)) and len(activity) == 360
