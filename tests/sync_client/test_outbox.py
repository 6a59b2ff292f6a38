"""The outbox: atomic batch + cursor commits, idempotence, purge, and SIGKILL safety."""

from __future__ import annotations

import itertools
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_client.outbox import CursorRegressionError, Outbox, OutboxError, QueuedBatch

BAND = b"\x01" * 32


def batch(n: int, first: int, last: int, category: int = 1, stream: int = 1) -> QueuedBatch:
    return QueuedBatch(
        batch_id=n.to_bytes(16, "big"),
        band=BAND,
        stream=stream,
        category=category,
        first_seq=first,
        last_seq=last,
        records=last - first + 1,
        envelope=b"sealed" + bytes([n % 256]),
        created=float(n),
    )


def test_commit_moves_cursor_with_batches_and_is_idempotent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        assert box.stored_up_to(BAND, 1) == 0
        box.commit(BAND, 1, 10, [batch(1, 1, 10)])
        box.commit(BAND, 1, 10, [batch(1, 1, 10)])  # a retried commit changes nothing
        assert box.stored_up_to(BAND, 1) == 10
        assert [b.batch_id for b in box.due(now=1e12)] == [batch(1, 1, 10).batch_id]
        with pytest.raises(CursorRegressionError):
            box.commit(BAND, 1, 5, [batch(2, 1, 5)])
        assert box.pending_count() == 1  # the failed commit wrote nothing


def test_delivery_purge_and_stats(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.commit(BAND, 1, 10, [batch(1, 1, 10, category=1)])
        box.commit(BAND, 2, 20, [batch(2, 1, 20, category=2, stream=2)], withheld=3)
        box.delivered(batch(1, 1, 10))
        box.delivered(batch(1, 1, 10))  # delivered twice counts once
        assert box.purge_category(BAND, 2) == 1
        stats = box.stats(BAND)
        assert stats[1]["delivered_records"] == 10 and stats[1]["delivered_batches"] == 1
        assert stats[2]["queued_batches"] == 0 and stats[2]["withheld"] == 3
        assert stats[2]["stored_seq"] == 20


def test_retry_later_hides_a_batch_until_due(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.commit(BAND, 1, 10, [batch(1, 1, 10)])
        box.retry_later(batch(1, 1, 10).batch_id, at=100.0)
        assert box.due(now=99.0) == []
        assert box.due(now=100.0)[0].attempts == 1
        assert box.next_attempt_at() == 100.0


def test_file_is_private_and_garbage_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="move the file away"):
        Outbox(bad)
    assert bad.read_bytes() == b"this is not sqlite" * 100  # left untouched


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_cursor_is_the_end_of_the_last_committed_batch(tmp_path_factory, sizes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("ob") / "outbox.db"
    with Outbox(path) as box:
        seq = 0
        for i, size in enumerate(sizes):
            box.commit(BAND, 1, seq + size, [batch(i, seq + 1, seq + size)])
            seq += size
        queued = box.due(limit=1000, now=1e12)
        covered = sorted((b.first_seq, b.last_seq) for b in queued)
        # no gap, no overlap, and the cursor is exactly the end
        assert covered[0][0] == 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(covered))
        assert covered[-1][1] == box.stored_up_to(BAND, 1) == seq


WRITER = textwrap.dedent(
    """
    import sys
    from sync_client.outbox import Outbox, QueuedBatch
    box = Outbox(sys.argv[1])
    band = b"\\x01" * 32
    seq = box.stored_up_to(band, 1)
    n = 0
    while True:
        n += 1
        b = QueuedBatch(seq.to_bytes(8, "big") + bytes(8), band, 1, 1, seq + 1, seq + 7, 7,
                        b"x" * 300, float(n))
        box.commit(band, 1, seq + 7, [b])
        seq += 7
        if n == 5:
            print("ready", flush=True)
    """
)


def test_sigkill_at_random_points_never_splits_a_batch_from_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for delay in (0.0, 0.013, 0.031, 0.057, 0.089):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Outbox(path) as box:
            queued = sorted(box.due(limit=100_000, now=1e12), key=lambda b: b.first_seq)
            assert queued[-1].last_seq == box.stored_up_to(BAND, 1)
            assert all(a.last_seq + 1 == b.first_seq for a, b in itertools.pairwise(queued))
