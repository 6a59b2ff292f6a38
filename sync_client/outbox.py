"""The durable outbox: sealed batches waiting for upload, and how far each stream is stored.

One SQLite file in WAL mode. It holds ciphertext only (HPKE-sealed batches) plus the
bookkeeping needed for exactly-once delivery:

- ``batches``: one row per sealed batch, keyed by its batch id (idempotent: committing the
  same batch id twice stores it once).
- ``cursors``: per (band pseudonym, stream), the last sequence number durably handled
  (sealed into a batch, or withheld for lack of consent). A batch row and the cursor move
  are written in ONE transaction, so after a crash (even SIGKILL at any instant) either
  both are there or neither is: the band is acknowledged only up to the cursor, so it
  resends what was not stored and the client drops what was.
- ``withheld``: counts of records withheld by consent, per band and stream.
- ``registrations``: bands the ingest has confirmed it knows (registration at activation
  can fail or be cut short; the next sync tries again before uploading).

Nothing in here is plaintext health data: the envelopes are sealed before they arrive.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import KmebandError

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id BLOB PRIMARY KEY,
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    category INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    records INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_due ON batches (next_attempt, created);
CREATE TABLE IF NOT EXISTS cursors (
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    stored_seq INTEGER NOT NULL,
    PRIMARY KEY (band, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS withheld (
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (band, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registrations (
    band BLOB PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivered (
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    batches INTEGER NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (band, stream)
) WITHOUT ROWID;
"""


class OutboxError(KmebandError):
    """The outbox file cannot be used; the message says why and what to do."""


class CursorRegressionError(OutboxError):
    """A cursor would move backwards: that would re-upload stored data."""


@dataclass(frozen=True)
class QueuedBatch:
    """A sealed batch as the outbox holds it."""

    batch_id: bytes
    band: bytes
    stream: int
    category: int
    first_seq: int
    last_seq: int
    records: int
    envelope: bytes
    created: float
    attempts: int = 0


class Outbox:
    """Sealed batches and stream cursors in one SQLite file (WAL mode)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a crash of this process (SIGKILL) in WAL mode;
            # FULL also survives power loss, which is what a phone needs.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(
                f"the outbox at {self.path} cannot be opened ({exc.__class__.__name__}): "
                "move the file away to start a fresh outbox (queued batches in it are lost)"
            ) from None
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cursors -------------------------------------------------------------------------
    def stored_up_to(self, band: bytes, stream: int) -> int:
        """The last sequence number of ``stream`` durably handled (0 when none)."""
        row = self._db.execute(
            "SELECT stored_seq FROM cursors WHERE band=? AND stream=?", (band, stream)
        ).fetchone()
        return int(row[0]) if row else 0

    def commit(
        self,
        band: bytes,
        stream: int,
        up_to_seq: int,
        batches: Iterable[QueuedBatch] = (),
        withheld: int = 0,
    ) -> None:
        """Store ``batches`` and move the stream's cursor to ``up_to_seq``, atomically.

        A batch id already present is kept as it is (idempotent). The cursor never moves
        backwards: a lower ``up_to_seq`` raises CursorRegressionError and writes nothing.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = db.execute(
                "SELECT stored_seq FROM cursors WHERE band=? AND stream=?", (band, stream)
            ).fetchone()
            if current is not None and up_to_seq < current[0]:
                raise CursorRegressionError(
                    f"stream {stream}: cannot move the stored cursor back from {current[0]} "
                    f"to {up_to_seq}; this is a bug in the caller"
                )
            db.executemany(
                "INSERT OR IGNORE INTO batches (batch_id, band, stream, category, first_seq,"
                " last_seq, records, envelope, created) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        b.batch_id,
                        b.band,
                        b.stream,
                        b.category,
                        b.first_seq,
                        b.last_seq,
                        b.records,
                        b.envelope,
                        b.created,
                    )
                    for b in batches
                ],
            )
            db.execute(
                "INSERT INTO cursors (band, stream, stored_seq) VALUES (?,?,?) "
                "ON CONFLICT(band, stream) DO UPDATE SET stored_seq=excluded.stored_seq",
                (band, stream, up_to_seq),
            )
            if withheld:
                db.execute(
                    "INSERT INTO withheld (band, stream, records) VALUES (?,?,?) "
                    "ON CONFLICT(band, stream) DO UPDATE SET records=records+excluded.records",
                    (band, stream, withheld),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- upload side ---------------------------------------------------------------------
    def due(self, limit: int = 64, now: float | None = None) -> list[QueuedBatch]:
        """Batches whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        rows = self._db.execute(
            "SELECT batch_id, band, stream, category, first_seq, last_seq, records, envelope,"
            " created, attempts FROM batches WHERE next_attempt <= ? ORDER BY created, batch_id"
            " LIMIT ?",
            (now, limit),
        ).fetchall()
        return [QueuedBatch(*row) for row in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])

    def next_attempt_at(self) -> float | None:
        row = self._db.execute("SELECT MIN(next_attempt) FROM batches").fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, batch: QueuedBatch) -> None:
        """The ingest stored ``batch``: remove it and count it."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            gone = db.execute("DELETE FROM batches WHERE batch_id=?", (batch.batch_id,)).rowcount
            if gone:
                db.execute(
                    "INSERT INTO delivered (band, stream, batches, records) VALUES (?,?,1,?) "
                    "ON CONFLICT(band, stream) DO UPDATE SET batches=batches+1, "
                    "records=records+excluded.records",
                    (batch.band, batch.stream, batch.records),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def retry_later(self, batch_id: bytes, at: float) -> None:
        """Record a failed attempt; the batch stays queued until ``at``."""
        self._db.execute(
            "UPDATE batches SET attempts=attempts+1, next_attempt=? WHERE batch_id=?",
            (at, batch_id),
        )

    # -- registration with the ingest ------------------------------------------------------
    def is_registered(self, band: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM registrations WHERE band=?", (band,)).fetchone()
        return row is not None

    def mark_registered(self, band: bytes) -> None:
        self._db.execute("INSERT OR IGNORE INTO registrations (band) VALUES (?)", (band,))

    # -- consent ---------------------------------------------------------------------------
    def purge_category(self, band: bytes, category: int) -> int:
        """Delete every queued batch of ``band`` in a withdrawn consent category."""
        return int(
            self._db.execute(
                "DELETE FROM batches WHERE band=? AND category=?", (band, category)
            ).rowcount
        )

    # -- reporting -------------------------------------------------------------------------
    def stats(self, band: bytes) -> Mapping[int, dict[str, int]]:
        """Per stream: stored cursor, queued batches/records, delivered, withheld."""
        out: dict[int, dict[str, int]] = {}

        def row(stream: int) -> dict[str, int]:
            return out.setdefault(
                int(stream),
                {
                    "stored_seq": 0,
                    "queued_batches": 0,
                    "queued_records": 0,
                    "delivered_batches": 0,
                    "delivered_records": 0,
                    "withheld": 0,
                },
            )

        db = self._db
        for stream, seq in db.execute(
            "SELECT stream, stored_seq FROM cursors WHERE band=?", (band,)
        ):
            row(stream)["stored_seq"] = seq
        for stream, n, r in db.execute(
            "SELECT stream, COUNT(*), SUM(records) FROM batches WHERE band=? GROUP BY stream",
            (band,),
        ):
            row(stream).update(queued_batches=n, queued_records=r or 0)
        for stream, n, r in db.execute(
            "SELECT stream, batches, records FROM delivered WHERE band=?", (band,)
        ):
            row(stream).update(delivered_batches=n, delivered_records=r)
        for stream, n in db.execute("SELECT stream, records FROM withheld WHERE band=?", (band,)):
            row(stream)["withheld"] = n
        return out
