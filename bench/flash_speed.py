"""How fast the band's flash takes a week of records, reads them back, and reopens.

A week: 10,080 activity minutes, 120,960 HR samples (one per 5 s), 20,160 sleep epochs.
Last line: {"bench": "flash", "week_append_flush_s": x, "read_all_chunks_s": x,
"reopen_s": x, "file_bytes": n}.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from device_sim.band.flash import Flash
from protocol.kme.records import (
    ActivityClass,
    ActivityMinute,
    HeartRateSample,
    Record,
    SleepEpoch,
    SleepStage,
    StreamId,
)

T0 = 1_767_225_600


def week() -> list[tuple[StreamId, Record]]:
    out: list[tuple[StreamId, Record]] = []
    out += [
        (
            StreamId.ACTIVITY_MINUTES,
            ActivityMinute(T0 + 60 * i, 60, i % 120, ActivityClass.WALK, 1, 72, True),
        )
        for i in range(10_080)
    ]
    out += [
        (StreamId.HR_SAMPLES, HeartRateSample(T0 + 5 * i, 60, 60 + i % 80, 3))
        for i in range(120_960)
    ]
    out += [
        (StreamId.SLEEP_EPOCHS, SleepEpoch(T0 + 30 * i, 60, SleepStage(i % 4)))
        for i in range(20_160)
    ]
    return out


def main() -> None:
    records = week()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "band.flash"
        flash = Flash.open(path)
        start = time.perf_counter()
        for stream, record in records:
            flash.append(stream, record)
        flash.flush()
        append_s = time.perf_counter() - start

        start = time.perf_counter()
        total = 0
        for stream in (StreamId.ACTIVITY_MINUTES, StreamId.HR_SAMPLES, StreamId.SLEEP_EPOCHS):
            seq = flash.first_seq(stream)
            while chunk := flash.read(stream, seq, 512):
                total += len(chunk)
                seq = chunk[-1].seq + 1
        read_s = time.perf_counter() - start
        assert total == len(records)
        flash.close()

        start = time.perf_counter()
        Flash.open(path).close()
        reopen_s = time.perf_counter() - start
        size = path.stat().st_size
    print(
        f"{len(records)} records: append+flush {append_s:.3f} s, read {read_s:.3f} s, "
        f"reopen {reopen_s:.3f} s, file {size} bytes"
    )
    print(
        json.dumps(
            {
                "bench": "flash",
                "week_append_flush_s": round(append_s, 4),
                "read_all_chunks_s": round(read_s, 4),
                "reopen_s": round(reopen_s, 4),
                "file_bytes": size,
            }
        )
    )


if __name__ == "__main__":
    main()
