"""Memory figures of a fleet: a process's peak and current RSS, and a live band's share.

A *live band* is what ``kmeband sim`` keeps per band: a :class:`SimulatedBand` (person,
firmware, flash, consent, identity) with its GATT endpoint on a radio. Its memory is
measured as the growth of RSS while ``count`` such bands are created and each simulates
a day (so a day of records sits in its flash), divided by ``count``.
"""

from __future__ import annotations

import gc
import resource


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kb() -> int:
    """This process's peak RSS since exec: VmHWM, else ru_maxrss.

    On Linux ``ru_maxrss`` of an exec'd child starts from its parent's RSS at fork, so a
    worker spawned by a large parent would report the parent's size; VmHWM belongs to the
    process image the worker runs in.
    """
    peak = _status_kb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kb() -> int:
    """This process's RSS now (VmRSS), 0 where /proc is not available."""
    return _status_kb("VmRSS") or 0


def live_band_rss_kb(count: int = 20, days: float = 1.0, seed: int = 1) -> float:
    """KiB of RSS per live band holding ``days`` of records (see the module docstring).

    One band is built and dropped first, so imports and one-off caches are not charged to
    the bands measured.
    """
    from device_sim.band.gatt_endpoint import BandGattEndpoint
    from device_sim.band.simulated_band import BandConfig, SimulatedBand
    from device_sim.clock import ManualClock
    from device_sim.radio import Radio
    from kmeband.fleet.engine import DEFAULT_MIX
    from kmeband.fleet.schedule import scenario_for
    from kmeband.fleet.worker import EPOCH, FLEET_BLOCK_S, band_seed

    clock = ManualClock(start=EPOCH)
    radio = Radio(clock, seed=seed)

    def make(index: int) -> BandGattEndpoint:
        band = SimulatedBand(
            BandConfig(
                seed=band_seed(seed, index),
                scenario=scenario_for(DEFAULT_MIX, seed, index),
                fidelity="summary",
                block_s=FLEET_BLOCK_S,
            ),
            clock,
        )
        band.simulate_until(EPOCH + days * 86400.0)
        endpoint = BandGattEndpoint(band)
        radio.attach(endpoint)
        return endpoint

    warm = make(count)
    radio.detach(warm.address)
    warm.band.close()
    del warm
    gc.collect()
    before = current_rss_kb()
    live = [make(i) for i in range(count)]
    gc.collect()
    grown = current_rss_kb() - before
    for endpoint in live:
        endpoint.band.close()
    return grown / count
