"""Which compressor earns its keep for batch bodies: none, zlib, bz2 or lzma (all stdlib).

For 1000-record batches of each stream, the columnar canonical-CBOR body is compressed
with each candidate; we report the size, the compress time on the phone and the
decompress time on the ingest (median of repeats). The figures are in docs/ingest.md.
Last line: {"bench": "batch_compression", ...} with bytes per record per codec.
"""

from __future__ import annotations

import bz2
import json
import lzma
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_records import realistic_records

from protocol.kme.batch import encode_batch_plaintext
from protocol.kme.records import StreamId

CONSENT = bytes(120)  # about the size of a signed consent record
RECORDS = 1000
REPEATS = 30

Codec = tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]
CODECS: dict[str, Codec] = {
    "none": (lambda b: b, lambda b: b),
    "zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress),
    "zlib-6": (lambda b: zlib.compress(b, 6), zlib.decompress),
    "zlib-9": (lambda b: zlib.compress(b, 9), zlib.decompress),
    "bz2-9": (lambda b: bz2.compress(b, 9), bz2.decompress),
    "lzma-0": (lambda b: lzma.compress(b, preset=0), lzma.decompress),
    "lzma-6": (lambda b: lzma.compress(b, preset=6), lzma.decompress),
}


def _median_us(fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    streams = [
        StreamId.HR_SAMPLES,
        StreamId.ACTIVITY_MINUTES,
        StreamId.SLEEP_EPOCHS,
        StreamId.GNSS_FIXES,
    ]
    totals = {name: 0 for name in CODECS}
    print(f"{'stream':18} {'codec':7} {'bytes':>7} {'B/rec':>6} {'comp us':>8} {'decomp us':>9}")
    for stream in streams:
        records = realistic_records(stream, RECORDS, seed=7)
        raw = zlib.decompress(encode_batch_plaintext(records, CONSENT))
        for name, (compress, decompress) in CODECS.items():
            packed = compress(raw)
            assert decompress(packed) == raw
            comp_us = _median_us(lambda c=compress, r=raw: c(r))
            decomp_us = _median_us(lambda d=decompress, p=packed: d(p))
            totals[name] += len(packed)
            print(
                f"{stream.name:18} {name:7} {len(packed):7d} {len(packed) / RECORDS:6.2f} "
                f"{comp_us:8.0f} {decomp_us:9.0f}"
            )
    per_record = {name: round(size / (RECORDS * len(streams)), 3) for name, size in totals.items()}
    print(json.dumps({"bench": "batch_compression", "bytes_per_record": per_record}))


if __name__ == "__main__":
    main()
