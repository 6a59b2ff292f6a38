"""Simulation speed and memory: signal fidelity, summary fidelity, flat memory in duration.

- signal: one band, 24 simulated hours: person model, 25 Hz accelerometer and 25 Hz PPG
  sensor models, and every firmware algorithm (steps, heart rate, activity minutes, sleep,
  a smart alarm, GNSS), in 60-second blocks, on one core.
- summary: records straight from truth for a fleet of bands, one simulated day each.
- memory: peak RSS of a 7-day signal run over that of a 1-day run, each in its own
  process (ru_maxrss).

Last line: {"bench": "sim_speed", "signal_x_realtime": x, "summary_x_realtime": x,
"rss_ratio_7d_1d": x}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from device_sim.band.firmware import Alarm, Firmware
from device_sim.band.summary import SummaryModel
from device_sim.person.physiology import Person
from device_sim.person.sensors import SensorModel
from protocol.kme.records import Record, StreamId

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
BLOCK_S = 60


class CountingSink:
    """Counts records per stream (the flash's cost is measured by its own bench)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(StreamId, 0)

    def append(self, stream: StreamId, record: Record) -> int:
        self.counts[stream] += 1
        return self.counts[stream]


def run_signal(days: int, seed: int = 7) -> tuple[float, CountingSink]:
    """Seconds of wall time to simulate ``days`` of one band at signal fidelity."""
    person = Person.from_preset("office_worker_week", seed=seed, start_utc=T0)
    sensors = SensorModel(seed)
    sink = CountingSink()
    fw = Firmware(sink, tz_offset_min=person.tz_offset_min)
    fw.set_alarm(Alarm(1, 6, 30, 0x7F, 30), T0)
    started = time.perf_counter()
    for start in range(T0, T0 + days * DAY, BLOCK_S):
        truth = person.truth(start, BLOCK_S)
        fw.process(sensors.render(truth, person, gnss_allowed=True, battery_v=3.9))
    fw.flush()
    return time.perf_counter() - started, sink


def run_summary(bands: int) -> float:
    """Seconds of wall time for ``bands`` bands, one simulated day each."""
    started = time.perf_counter()
    for seed in range(bands):
        person = Person.from_preset("office_worker_week", seed=1000 + seed, start_utc=T0)
        SummaryModel(1000 + seed).records(person, T0, DAY, location_allowed=True)
    return time.perf_counter() - started


def child_rss(days: int) -> int:
    """Peak RSS (kB) of a fresh process simulating ``days`` at signal fidelity."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(days)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bands", type=int, default=50, help="summary fleet size")
    args = parser.parse_args()
    if args.rss_child:
        run_signal(args.rss_child)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return
    wall, sink = run_signal(1)
    records = {s.name: n for s, n in sink.counts.items() if n}
    print(f"signal: 1 day in {wall:.2f} s; records {records}")
    summary_wall = run_summary(args.bands)
    print(f"summary: {args.bands} band-days in {summary_wall:.2f} s")
    rss_1 = child_rss(1)
    rss_7 = child_rss(7)
    print(f"peak RSS: 1 day {rss_1} kB, 7 days {rss_7} kB")
    print(
        json.dumps(
            {
                "bench": "sim_speed",
                "signal_x_realtime": round(DAY / wall, 1),
                "summary_x_realtime": round(args.bands * DAY / summary_wall, 1),
                "rss_ratio_7d_1d": round(rss_7 / rss_1, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
