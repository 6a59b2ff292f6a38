"""Record a trace, replay it through the firmware, compare with a golden output.

    python examples/trace_replay_golden.py [--golden tests/golden/walk-seed42.records.json]

The QA loop in three calls: ``record_trace`` simulates 10 minutes of a seeded wearer (the
same options as the project's golden trace), ``replay_blocks`` runs the firmware over it,
and ``compare_records`` lists how the output differs from the golden records. Prints the
record counts and either "identical" or the differences; exits 1 when they differ. The
same steps on the command line: ``kmeband record``, then ``kmeband replay --compare``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from device_sim.trace.cli import (
    RecordOptions,
    compare_records,
    load_records_json,
    record_trace,
    records_json,
    replay_blocks,
)
from device_sim.trace.format import TraceReader

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = REPO / "tests" / "golden" / "walk-seed42.records.json"
# default_day, seed 42, 2026-01-01T12:25:00Z for 10 minutes: desk work, then a walk
OPTIONS = RecordOptions(scenario="default_day", seed=42, start_utc=1_767_270_300.0, duration_s=600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kmeband-trace-") as tmp:
        trace = Path(tmp) / "walk.kmetrace"
        record_trace(trace, OPTIONS)
        print(f"recorded {OPTIONS.duration_s} s to a trace of {trace.stat().st_size} bytes")
        records = replay_blocks(TraceReader(trace).sensor_blocks())
    counts = Counter(r.stream.name.lower() for r in records)
    print("replayed: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    differences = compare_records(json.loads(records_json(records)), load_records_json(args.golden))
    if differences:
        print("records differ from the golden output:")
        for line in differences:
            print(f"  {line}")
        return 1
    print(f"identical to the golden output ({args.golden.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
