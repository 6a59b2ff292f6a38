"""A fleet of simulated bands syncing into the embedded ingest, timed, sized and accounted.

Each run below is ``kmeband fleet run`` (the local engine: worker processes, waves of
bands, every sync through the real path) against the embedded reference ingest (SQLite,
in this process), with link drops at ``--link-drop`` per sync attempt.

* bands, records: the main run (``--bands`` bands, ``--workers`` workers, default: cores);
  records are those the ingest holds at the end.
* fleet_records_per_s: records / wall seconds of the main run (simulation, sync, sealing,
  upload and the ingest's store; the worker processes are started before the clock runs,
  and the accounting pass after it is not timed in).
* fleet_records_per_s_per_core: fleet_records_per_s / the cores this process may use
  (the ingest shares them with the workers).
* scaling_efficiency_2w: the same ``--scaling-bands`` fleet with 2 workers and with 1; the
  2-worker throughput over the 1-worker one, divided by 2.
* cost_ratio_2k_vs_100: wall seconds per band of a ``--large`` fleet over those of a
  ``--small`` one (defaults 2,000 and 100), same workers.
* worker_peak_rss_mb: the largest peak RSS (VmHWM) of any worker in any run.
* lost, duplicated: summed over every run (the accounting of kmeband.fleet.accounting).
* live_band_rss_kb: RSS growth per live band (band + GATT endpoint on a radio, a day of
  records in flash), measured in a fresh process over ``--live-bands`` bands.

Last line: one JSON object with those keys.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import sys

from kmeband.fleet.engine import FleetResult, FleetSpec, cpu_count, run_fleet
from kmeband.fleet.memory import live_band_rss_kb
from kmeband.fleet.worker import Faults


def fleet(bands: int, workers: int, days: float, link_drop: float, seed: int) -> FleetResult:
    spec = FleetSpec(
        bands=bands, days=days, workers=workers, seed=seed, faults=Faults(link_drop=link_drop)
    )
    result = asyncio.run(run_fleet(spec))
    s = result.summary()
    print(
        json.dumps(
            {
                "run": {
                    k: s[k]
                    for k in (
                        "bands",
                        "workers",
                        "records",
                        "seconds",
                        "fleet_records_per_s",
                        "lost",
                        "duplicated",
                        "errors",
                    )
                }
            }
        ),
        file=sys.stderr,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bands", type=int, default=200)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=cpu_count())
    parser.add_argument("--scaling-bands", type=int, default=48)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--live-bands", type=int, default=20)
    parser.add_argument("--link-drop", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        live_kb = pool.submit(live_band_rss_kb, args.live_bands, args.days).result()

    main_run = fleet(args.bands, args.workers, args.days, args.link_drop, args.seed)
    one = fleet(args.scaling_bands, 1, args.days, args.link_drop, args.seed + 1)
    two = fleet(args.scaling_bands, 2, args.days, args.link_drop, args.seed + 1)
    small = fleet(args.small, args.workers, args.days, args.link_drop, args.seed + 2)
    large = fleet(args.large, args.workers, args.days, args.link_drop, args.seed + 3)
    runs = (main_run, one, two, small, large)

    rate = main_run.totals.records / main_run.seconds
    rate_1 = one.totals.records / one.seconds
    rate_2 = two.totals.records / two.seconds
    per_band_small = small.seconds / small.totals.bands
    per_band_large = large.seconds / large.totals.bands
    figures = {
        "bench": "fleet",
        "bands": main_run.totals.bands,
        "days": args.days,
        "workers": args.workers,
        "records": main_run.totals.records,
        "fleet_records_per_s": round(rate, 1),
        "fleet_records_per_s_per_core": round(rate / cpu_count(), 1),
        "scaling_efficiency_2w": round(rate_2 / rate_1 / 2, 3),
        "cost_ratio_2k_vs_100": round(per_band_large / per_band_small, 3),
        "cost_ratio_bands": [args.small, args.large],
        "worker_peak_rss_mb": round(max(r.totals.peak_rss_kb for r in runs) / 1024, 1),
        "lost": sum(r.totals.checked.lost for r in runs),
        "duplicated": sum(r.totals.checked.duplicated for r in runs),
        "unexpected": sum(r.totals.checked.unexpected for r in runs),
        "live_band_rss_kb": round(live_kb, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
