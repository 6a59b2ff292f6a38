"""The fleet's ten-minute firmware blocks make the very records one-minute blocks make."""

from __future__ import annotations

from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import ManualClock
from kmeband.fleet.worker import EPOCH, FLEET_BLOCK_S
from protocol.kme.records import StoredRecord, StreamId


def records(block_s: int, scenario: str) -> dict[StreamId, list[StoredRecord]]:
    band = SimulatedBand(
        BandConfig(seed=9, scenario=scenario, fidelity="summary", block_s=block_s),
        ManualClock(EPOCH),
    )
    band.simulate_until(EPOCH + 8 * 3600)
    out = {}
    for stream in StreamId:
        first, nxt = band.flash.first_seq(stream), band.flash.next_seq(stream)
        out[stream] = list(band.flash.read(stream, first, nxt - first)) if nxt > first else []
    band.close()
    return out


def test_fleet_blocks_make_the_same_records_as_minute_blocks() -> None:
    for scenario in ("athlete_week", "shift_worker"):
        fleet = records(FLEET_BLOCK_S, scenario)
        assert sum(map(len, fleet.values())) > 0
        assert fleet == records(60, scenario)
