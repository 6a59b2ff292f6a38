"""The outbox: atomic batch + cursor commits, idempotence, purge, and SIGKILL safety."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import sqlite3
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


def test_dropping_everything_keeps_the_cursors(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.commit(BAND, 1, 10, [batch(1, 1, 5), batch(2, 6, 10)])
        box.commit(BAND, 2, 4, [batch(3, 1, 4, stream=2)])
        box.mark_registered(BAND)
        assert box.drop_all() == 3
        assert box.pending_count() == 0 and not box.is_registered(BAND)
        # what was pulled is not pulled again (the band freed it)
        assert (box.stored_up_to(BAND, 1), box.stored_up_to(BAND, 2)) == (10, 4)
        assert box.drop_all() == 0


def test_delivery_purge_and_stats(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.commit(BAND, 1, 10, [batch(1, 1, 10, category=1)])
        box.commit(BAND, 2, 20, [batch(2, 1, 20, category=2, stream=2)], withheld=3)
        box.delivered(batch(1, 1, 10))
        box.delivered(batch(1, 1, 10))  # delivered twice counts once
        assert box.purge_category(BAND, 2) == 1
        stats = box.stats(BAND)
        assert stats[1]["delivered_records"] == 10 and stats[1]["delivered_batches"] == 1
        # the purged batch's 20 records are counted as withheld: never silent loss
        assert stats[2]["queued_batches"] == 0 and stats[2]["withheld"] == 3 + 20
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


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_write_ahead_log_and_shared_memory_files_are_private_too(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old = os.umask(0o022)  # a common default: files readable by everyone
    try:
        with Outbox(path) as box:
            box.commit(BAND, 1, 10, [batch(1, 1, 10)])
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert wal.exists() and shm.exists()  # WAL mode keeps them while open
            assert (mode(path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
        # an existing file someone made readable is made private again on open
        path.chmod(0o644)
        with Outbox(path) as box:
            assert box.pending_count() == 1
            assert mode(path) == 0o600
            assert mode(Path(f"{path}-wal")) == 0o600
    finally:
        os.umask(old)


def test_due_goes_in_record_order_within_one_second(tmp_path: Path) -> None:
    # batch ids are random: within one creation second they must not decide the order
    ids = [bytes([255 - i]) * 16 for i in range(6)]
    with Outbox(tmp_path / "outbox.db") as box:
        for i, batch_id in enumerate(ids):
            q = QueuedBatch(batch_id, BAND, 1, 1, i * 10 + 1, i * 10 + 10, 10, b"x", 5.0)
            box.commit(BAND, 1, i * 10 + 10, [q])
        assert [b.first_seq for b in box.due(now=1e12)] == [1, 11, 21, 31, 41, 51]


def test_due_and_pending_count_can_be_limited_to_one_band(tmp_path: Path) -> None:
    other = b"\x09" * 32
    with Outbox(tmp_path / "outbox.db") as box:
        box.commit(BAND, 1, 10, [batch(1, 1, 10)])
        theirs = dataclasses.replace(batch(2, 1, 10), band=other)
        box.commit(other, 1, 10, [theirs])
        assert [b.band for b in box.due(now=1e12, band=BAND)] == [BAND]
        assert [b.band for b in box.due(now=1e12, band=other)] == [other]
        assert len(box.due(now=1e12)) == 2
        assert box.pending_count(BAND) == 1 and box.pending_count() == 2
        box.retry_later(theirs.batch_id, at=500.0)
        assert box.next_attempt_at(BAND) == 0.0 and box.next_attempt_at(other) == 500.0


def test_parked_batches_come_back_when_unparked(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        box.commit(BAND, 1, 20, [batch(1, 1, 10), batch(2, 11, 20)])
        box.park(batch(1, 1, 10).batch_id, until=1e15)
        box.retry_later(batch(2, 11, 20).batch_id, at=50.0)  # backing off: not parked
        assert [b.first_seq for b in box.due(now=100.0)] == [11]
        assert box.unpark(BAND) == 1
        assert [b.first_seq for b in box.due(now=100.0)] == [1, 11]
        assert box.unpark(BAND) == 0


HR = 2  # ConsentCategory.HEART_RATE: the category avg_hr needs


def with_heart_rate(n: int, first: int, last: int) -> list[QueuedBatch]:
    """An activity batch carrying avg_hr, and its fallback without it (as the batcher seals)."""
    primary = dataclasses.replace(batch(n, first, last), categories=(1 << 1) | (1 << HR))
    fallback = dataclasses.replace(
        batch(n + 100, first, last), fallback_of=primary.batch_id, categories=1 << 1
    )
    return [primary, fallback]


def test_a_fallback_stands_in_only_once_its_primary_is_purged(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        primary, fallback = with_heart_rate(1, 1, 10)
        box.commit(BAND, 1, 10, [primary, fallback])
        assert [b.batch_id for b in box.due(now=1e12)] == [primary.batch_id]
        assert box.pending_count() == 1 and box.stats(BAND)[1]["queued_records"] == 10
        assert box.purge_category(BAND, 3) == 0  # sleep: neither needs it
        assert box.purge_category(BAND, HR) == 1
        assert [b.batch_id for b in box.due(now=1e12)] == [fallback.batch_id]
        assert box.stats(BAND)[1]["withheld"] == 0  # the records are still queued
        assert box.purge_category(BAND, 1) == 1  # activity withdrawn: now they go
        assert box.pending_count() == 0 and box.stats(BAND)[1]["withheld"] == 10


def test_delivering_a_primary_drops_its_fallback(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as box:
        primary, fallback = with_heart_rate(1, 1, 10)
        box.commit(BAND, 1, 10, [primary, fallback])
        box.delivered(primary)
        assert box.due(now=1e12) == [] and box.purge_category(BAND, HR) == 0
        assert box.stats(BAND)[1]["delivered_records"] == 10


def test_a_file_of_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.execute(
            "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (b"a" * 16, BAND, 2, 2, 1, 5, 5, b"x", 1.0, 1, 1e15),  # parked by an old client
        )
        db.execute(
            "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (b"b" * 16, BAND, 1, 1, 1, 5, 5, b"y", 1.0, 0, 0.0),
        )
    with Outbox(path) as box:
        assert [b.needs for b in box.due(now=1e12)] == [1 << 1]
        assert box.unpark(BAND) == 1
        assert box.purge_category(BAND, HR) == 1
        assert [b.batch_id for b in box.due(now=1e12)] == [b"b" * 16]


FIRST_RELEASE_SCHEMA = """
CREATE TABLE batches (
    batch_id BLOB PRIMARY KEY, band BLOB NOT NULL, stream INTEGER NOT NULL,
    category INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    records INTEGER NOT NULL, envelope BLOB NOT NULL, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX batches_due ON batches (next_attempt, created);
"""


@pytest.mark.parametrize(
    ("table", "event", "change"),
    [
        ("registrations", "DELETE", lambda box: box.drop_all()),
        ("delivered", "INSERT", lambda box: box.delivered(batch(1, 1, 5))),
        ("withheld", "INSERT", lambda box: box.purge_category(BAND, 1)),
    ],
)
def test_a_write_failing_halfway_leaves_the_outbox_as_it_was(  # type: ignore[no-untyped-def]
    tmp_path: Path, table: str, event: str, change
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.commit(BAND, 1, 10, [batch(1, 1, 5), batch(2, 6, 10)])
        box.mark_registered(BAND)
        # the transaction's last statement fails (a full disk would do the same)
        db = sqlite3.connect(path)
        db.execute(
            f"CREATE TRIGGER refuse BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
        db.commit()
        with pytest.raises(sqlite3.IntegrityError):
            change(box)
        assert box.pending_count() == 2 and box.is_registered(BAND)
        assert box.stats(BAND)[1]["withheld"] == 0
        # no transaction was left open: the outbox takes the next write
        box.commit(BAND, 1, 12, [batch(3, 11, 12)])
        assert box.pending_count() == 3
        db.close()
