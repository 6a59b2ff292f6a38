"""Per-band PNG reports: hypnogram, heart rate, steps per hour and alarm events.

Reads records from the ingest's store (or any iterable of (band, StoredRecord) pairs) and
draws one figure per band with matplotlib, an optional extra
(``pip install 'kmeband[report]'``). Band names in the files are short digests of the
pseudonyms: no identifier reaches a file name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from protocol.errors import KmebandError
from protocol.kme.records import (
    ActivityMinute,
    AlarmEvent,
    HeartRateSample,
    SleepEpoch,
    SleepStage,
    StoredRecord,
)


class ReportUnavailable(KmebandError):
    """matplotlib is not installed."""


def band_label(pseudonym: bytes) -> str:
    return "band-" + hashlib.sha256(pseudonym).hexdigest()[:8]


def records_from_store(store: Any, account_id: int) -> Iterable[tuple[bytes, StoredRecord]]:
    for segment in store.segments_of(account_id):
        for stored in segment.body.records():
            yield segment.band, stored


def write_reports(store: Any, account_id: int, out_dir: Path) -> list[Path]:
    """One PNG per band of the account, in ``out_dir``; returns the paths written."""
    return draw_reports(records_from_store(store, account_id), out_dir)


def draw_reports(records: Iterable[tuple[bytes, StoredRecord]], out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportUnavailable(
            "matplotlib is not installed: pip install 'kmeband[report]' to draw reports"
        ) from None
    by_band: dict[bytes, list[StoredRecord]] = defaultdict(list)
    for band, one in records:
        by_band[band].append(one)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for band, band_records in sorted(by_band.items()):
        fig = _figure(plt, band_label(band), [s.record for s in band_records])
        path = out_dir / f"{band_label(band)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _local(t: int, tz: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t + tz * 60, dt.UTC).replace(tzinfo=None)


def _figure(plt: Any, title: str, records: list[Any]) -> Any:
    fig, axes = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
    fig.suptitle(f"{title}: sleep, heart rate and steps (local time)")
    epochs = sorted((r for r in records if isinstance(r, SleepEpoch)), key=lambda r: r.start)
    ax = axes[0]
    if epochs:
        depth = {SleepStage.WAKE: 3, SleepStage.REM: 2, SleepStage.LIGHT: 1, SleepStage.DEEP: 0}
        xs: list[dt.datetime] = []
        ys: list[float] = []
        for prev, e in zip([None, *epochs], epochs, strict=False):
            if prev is not None and e.start - prev.start > 30:
                # a gap between nights: end the line so it does not cross the day
                xs.append(_local(prev.start + 30, prev.tz_offset_min))
                ys.append(float("nan"))
            xs.append(_local(e.start, e.tz_offset_min))
            ys.append(depth[e.stage])
        ax.step(xs, ys, where="post", linewidth=0.8)
    ax.set_yticks([0, 1, 2, 3], ["deep", "light", "REM", "wake"])
    ax.set_ylabel("sleep stage")
    alarms = [r for r in records if isinstance(r, AlarmEvent)]
    for a in alarms:
        ax.axvline(_local(a.timestamp, a.tz_offset_min), color="tab:red", linewidth=0.8)
    hr = sorted(
        (r for r in records if isinstance(r, HeartRateSample) and r.bpm),
        key=lambda r: r.timestamp,
    )
    if hr:
        axes[1].plot(
            [_local(r.timestamp, r.tz_offset_min) for r in hr],
            [r.bpm for r in hr],
            linewidth=0.4,
        )
    axes[1].set_ylabel("heart rate (bpm)")
    hours: dict[dt.datetime, int] = defaultdict(int)
    for r in records:
        if isinstance(r, ActivityMinute):
            hours[_local(r.start, r.tz_offset_min).replace(minute=0)] += r.steps
    if hours:
        xs = sorted(hours)
        axes[2].bar(xs, [hours[x] for x in xs], width=1 / 24, align="edge")
    axes[2].set_ylabel("steps per hour")
    if alarms:
        axes[0].plot([], [], color="tab:red", label="alarm events")
        axes[0].legend(loc="upper right")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
