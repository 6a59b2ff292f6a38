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

Each batch row carries ``categories``, the bitmask (``1 << category``) of every consent
category its records need: the stream's own, plus the category of each field that holds a
value in it (``avg_hr`` of activity minutes needs heart-rate consent). A withdrawal purges
every batch whose mask has the withdrawn bit. A batch whose fields need more than the
stream's category is queued together with a *fallback*: the same records with those fields
cleared, sealed as a second batch whose ``fallback_of`` names the first. The fallback is
never offered while its primary is queued; delivering the primary drops it, and purging
the primary (a field's consent withdrawn) lets it go instead, so a withdrawal drops the
field and never the records the user still consents to.

Nothing in here is plaintext health data: the envelopes are sealed before they arrive.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from protocol.errors import KmebandError

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id BLOB PRIMARY KEY,
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    category INTEGER NOT NULL,
    categories INTEGER NOT NULL DEFAULT 0,
    fallback_of BLOB,
    parked INTEGER NOT NULL DEFAULT 0,
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


#: Columns added after the first release of the outbox, added to older files when opened.
_ADDED_COLUMNS = (
    ("categories", "INTEGER NOT NULL DEFAULT 0"),
    ("fallback_of", "BLOB"),
    ("parked", "INTEGER NOT NULL DEFAULT 0"),
)

#: A batch an older client parked (next attempt further away than this) counts as parked.
_OLD_PARK_S = 24 * 3600.0

#: A live batch: not a fallback whose primary is still queued.
_LIVE = (
    "(fallback_of IS NULL OR NOT EXISTS "
    "(SELECT 1 FROM batches AS p WHERE p.batch_id = batches.fallback_of))"
)

_BATCH_COLUMNS = (
    "batch_id, band, stream, category, first_seq, last_seq, records, envelope, created,"
    " attempts, categories, fallback_of"
)


class OutboxError(KmebandError):
    """The outbox file cannot be used; the message says why and what to do."""


class OutboxDamagedError(OutboxError):
    """The outbox file is damaged (a corrupt page, not a database): it cannot be used."""


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> OutboxError:
    if isinstance(exc, sqlite3.OperationalError):
        return OutboxError(
            f"the outbox at {path} could not be used ({exc.__class__.__name__}: busy, or the "
            "disk failed): make sure no other kmeband runs on this client directory, check "
            "the disk, and try again"
        )
    return OutboxDamagedError(
        f"the outbox at {path} is damaged ({exc.__class__.__name__}): move the file away "
        "(with its -wal and -shm files); the next sync starts a fresh outbox and pulls again "
        "what the band still holds (the ingest drops what it already has), but batches "
        "queued only in the damaged file are lost"
    )


_F = TypeVar("_F", bound=Callable[..., Any])


def _typed_errors(method: _F) -> _F:
    """SQLite errors of the outbox's file leave as an OutboxError that says what to do."""

    @functools.wraps(method)
    def guarded(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a broken rule or a misuse is a bug in kmeband, not a damaged file
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None

    return cast(_F, guarded)


class CursorRegressionError(OutboxError):
    """A cursor would move backwards: that would re-upload stored data."""


@dataclass(frozen=True)
class QueuedBatch:
    """A sealed batch as the outbox holds it.

    ``category`` is the stream's consent category; ``categories`` the bitmask of every
    category the batch's content needs (0 stands for just ``1 << category``).
    ``fallback_of`` names the primary batch this one stands in for (see the module doc).
    """

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
    categories: int = 0
    fallback_of: bytes | None = None

    @property
    def needs(self) -> int:
        """The bitmask of consent categories this batch needs."""
        return self.categories | (1 << self.category)


class Outbox:
    """Sealed batches and stream cursors in one SQLite file (WAL mode)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._make_private()
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a crash of this process (SIGKILL) in WAL mode;
            # FULL also survives power loss, which is what a phone needs.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None
        self._make_private()

    def _make_private(self) -> None:
        """Create the file 0600 before SQLite opens it, and keep -wal/-shm 0600 too.

        SQLite creates the -wal and -shm files with the database file's mode, so the file
        must be private before the first connect, not after (a umask of 022 would leave the
        write-ahead log, which holds the newest batches, readable by others).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        for suffix in ("", "-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.chmod(0o600)

    def _upgrade(self) -> None:
        """Add the columns a file made by an older client lacks (its rows keep their meaning)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(batches)")}
        for name, definition in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE batches ADD COLUMN {name} {definition}")
        if "parked" not in have:
            # older clients parked refused batches by a far next attempt only
            self._db.execute(
                "UPDATE batches SET parked=1 WHERE next_attempt > ?", (time.time() + _OLD_PARK_S,)
            )
        self._db.execute("CREATE INDEX IF NOT EXISTS batches_fallback ON batches (fallback_of)")

    @_typed_errors
    def check(self) -> None:
        """Read every page (SQLite's quick_check): raise OutboxDamagedError if one is bad."""
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise _damaged(self.path, sqlite3.DatabaseError("quick_check"))

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``with self._transaction() as db:`` commits on success, rolls back on any error.

        IMMEDIATE takes the write lock up front, so a transaction that reads before it
        writes (a cursor check, a count) never fails halfway on a busy file.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may have rolled back already
                db.execute("ROLLBACK")
            raise

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cursors -------------------------------------------------------------------------
    @_typed_errors
    def stored_up_to(self, band: bytes, stream: int) -> int:
        """The last sequence number of ``stream`` durably handled (0 when none)."""
        row = self._db.execute(
            "SELECT stored_seq FROM cursors WHERE band=? AND stream=?", (band, stream)
        ).fetchone()
        return int(row[0]) if row else 0

    @_typed_errors
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
        with self._transaction() as db:
            current = db.execute(
                "SELECT stored_seq FROM cursors WHERE band=? AND stream=?", (band, stream)
            ).fetchone()
            if current is not None and up_to_seq < current[0]:
                raise CursorRegressionError(
                    f"stream {stream}: cannot move the stored cursor back from {current[0]} "
                    f"to {up_to_seq}; this is a bug in the caller"
                )
            db.executemany(
                "INSERT OR IGNORE INTO batches (batch_id, band, stream, category, categories,"
                " fallback_of, first_seq, last_seq, records, envelope, created)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        b.batch_id,
                        b.band,
                        b.stream,
                        b.category,
                        b.needs,
                        b.fallback_of,
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

    # -- upload side ---------------------------------------------------------------------
    @_typed_errors
    def due(
        self, limit: int = 64, now: float | None = None, *, band: bytes | None = None
    ) -> list[QueuedBatch]:
        """Live batches whose next attempt is due, of ``band`` (None: of every band).

        In record order: by creation second, then band, stream and first sequence, so the
        batches of one stream go up in sequence order (batch ids are random).
        """
        now = time.time() if now is None else now
        where, args = self._band_filter(band)
        rows = self._db.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE next_attempt <= ? AND {_LIVE}{where}"
            " ORDER BY created, band, stream, first_seq LIMIT ?",
            (now, *args, limit),
        ).fetchall()
        return [QueuedBatch(*row) for row in rows]

    @staticmethod
    def _band_filter(band: bytes | None) -> tuple[str, tuple[bytes, ...]]:
        return ("", ()) if band is None else (" AND band=?", (band,))

    @_typed_errors
    def pending_count(self, band: bytes | None = None) -> int:
        """Live batches queued (a fallback counts only once its primary is gone)."""
        where, args = self._band_filter(band)
        sql = f"SELECT COUNT(*) FROM batches WHERE {_LIVE}{where}"
        return int(self._db.execute(sql, args).fetchone()[0])

    @_typed_errors
    def next_attempt_at(self, band: bytes | None = None) -> float | None:
        """When the next live batch (of ``band``) is due; None when none is queued."""
        where, args = self._band_filter(band)
        sql = f"SELECT MIN(next_attempt) FROM batches WHERE {_LIVE}{where}"
        row = self._db.execute(sql, args).fetchone()
        return None if row[0] is None else float(row[0])

    @_typed_errors
    def delivered(self, batch: QueuedBatch) -> None:
        """The ingest stored ``batch``: remove it (and its fallback) and count it."""
        with self._transaction() as db:
            gone = db.execute("DELETE FROM batches WHERE batch_id=?", (batch.batch_id,)).rowcount
            db.execute("DELETE FROM batches WHERE fallback_of=?", (batch.batch_id,))
            if gone:
                db.execute(
                    "INSERT INTO delivered (band, stream, batches, records) VALUES (?,?,1,?) "
                    "ON CONFLICT(band, stream) DO UPDATE SET batches=batches+1, "
                    "records=records+excluded.records",
                    (batch.band, batch.stream, batch.records),
                )

    @_typed_errors
    def retry_later(self, batch_id: bytes, at: float) -> None:
        """Record a failed attempt; the batch stays queued until ``at``."""
        self._db.execute(
            "UPDATE batches SET attempts=attempts+1, next_attempt=? WHERE batch_id=?",
            (at, batch_id),
        )

    @_typed_errors
    def park(self, batch_id: bytes, until: float) -> None:
        """The ingest refused the batch: keep it (never silent loss), out of the way."""
        self._db.execute(
            "UPDATE batches SET attempts=attempts+1, next_attempt=?, parked=1 WHERE batch_id=?",
            (until, batch_id),
        )

    @_typed_errors
    def unpark(self, band: bytes | None = None) -> int:
        """Make every parked batch (of ``band``) due again; return how many.

        Called when whatever made the ingest refuse them may have been fixed (a new
        session, a repaired account): a batch refused again is parked again.
        """
        where, args = self._band_filter(band)
        return int(
            self._db.execute(
                f"UPDATE batches SET next_attempt=0, parked=0 WHERE parked=1{where}", args
            ).rowcount
        )

    # -- registration with the ingest ------------------------------------------------------
    @_typed_errors
    def is_registered(self, band: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM registrations WHERE band=?", (band,)).fetchone()
        return row is not None

    @_typed_errors
    def mark_registered(self, band: bytes) -> None:
        self._db.execute("INSERT OR IGNORE INTO registrations (band) VALUES (?)", (band,))

    # -- consent ---------------------------------------------------------------------------
    @_typed_errors
    def purge_category(self, band: bytes, category: int) -> int:
        """Delete every queued batch of ``band`` that needs the withdrawn ``category``.

        Returns how many live batches went. A fallback that does not need the category
        survives its primary and is uploaded instead (the field is dropped, the records
        stay). Records that leave the outbox with no fallback are counted as withheld.
        """
        bit = 1 << category
        with self._transaction() as db:
            doomed = "band=? AND ((categories | (1 << category)) & ?) != 0"
            live = db.execute(
                f"SELECT batch_id, stream, records FROM batches WHERE {doomed} AND {_LIVE}",
                (band, bit),
            ).fetchall()
            db.execute(f"DELETE FROM batches WHERE {doomed}", (band, bit))
            lost: dict[int, int] = {}
            for batch_id, stream, records in live:
                kept = db.execute(
                    "SELECT 1 FROM batches WHERE fallback_of=?", (batch_id,)
                ).fetchone()
                if kept is None:
                    lost[stream] = lost.get(stream, 0) + records
            db.executemany(
                "INSERT INTO withheld (band, stream, records) VALUES (?,?,?) "
                "ON CONFLICT(band, stream) DO UPDATE SET records=records+excluded.records",
                [(band, stream, n) for stream, n in lost.items()],
            )
        return len(live)

    @_typed_errors
    def drop_all(self) -> int:
        """Delete every queued batch and every band's registration mark (the account they
        were for is gone); cursors stay, so nothing already pulled is pulled twice.
        Returns how many batches went."""
        with self._transaction() as db:
            dropped = int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
            db.execute("DELETE FROM batches")
            db.execute("DELETE FROM registrations")
        return dropped

    # -- reporting -------------------------------------------------------------------------
    @_typed_errors
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
            f"SELECT stream, COUNT(*), SUM(records) FROM batches WHERE band=? AND {_LIVE}"
            " GROUP BY stream",
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
