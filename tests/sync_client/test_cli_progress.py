"""The sync command's status line: counts only, redrawn in place, rate-limited, cleared."""

from __future__ import annotations

import io

from protocol.kme.records import StreamId
from sync_client.cli import SyncProgress
from sync_client.puller import Progress
from sync_client.uploader import UploadReport


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_redraws_one_line_at_most_ten_times_a_second_and_clears_it() -> None:
    out, clock = io.StringIO(), Clock()
    progress = SyncProgress(out, per_s=10.0, clock=clock)
    progress.pulled(Progress(StreamId.HR_SAMPLES, 1200, 9000, 2.0))
    clock.now = 0.05
    progress.pulled(Progress(StreamId.HR_SAMPLES, 1300, 9500, 2.05))  # too soon: skipped
    clock.now = 0.2
    progress.delivered(UploadReport(delivered_batches=3, delivered_records=250))
    text = out.getvalue()
    assert "\n" not in text  # one line, redrawn with carriage returns
    frames = text.split("\r")[1:]
    assert frames[0] == "pulling hr_samples: 1200 records (600/s)"
    assert frames[1].rstrip() == "uploading: 3 batches, 250 records delivered"
    assert len(frames[1]) >= len(frames[0])  # a shorter frame blanks the longer one's tail
    assert "1300" not in text
    progress.clear()
    assert out.getvalue().endswith("\r" + " " * len(frames[1].rstrip()) + "\r")
