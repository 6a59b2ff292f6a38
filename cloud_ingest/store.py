"""The ingest's SQLite store: accounts, bands, batches, record segments, consent, profile.

Records are kept as *segments*: one row per accepted batch holding its body (the
compressed columnar CBOR the client sealed), keyed by band, stream and sequence range.
That keeps the hot path to two inserts per batch whatever its size, while sequence-level
deduplication stays exact: a batch that overlaps stored ranges is trimmed to the records
not yet held before it is stored. Every write is one transaction; WAL mode lets exports
read while batches land.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import KmebandError
from protocol.kme.batch import (
    BatchBody,
    BatchHeader,
    decode_body,
    encode_batch_plaintext,
)
from protocol.kme.records import ConsentCategory, StoredRecord, StreamId

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bands (
    pseudonym BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    public_key BLOB NOT NULL,
    registered INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    batch_id BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    received INTEGER NOT NULL,
    firmware_version TEXT NOT NULL,
    model TEXT NOT NULL,
    client_os TEXT NOT NULL,
    client_version TEXT NOT NULL,
    created INTEGER NOT NULL,
    consent_digest BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_range ON segments(band, stream, last_seq);
CREATE INDEX IF NOT EXISTS segments_by_account ON segments(account_id, stream);
CREATE TABLE IF NOT EXISTS erased_through (
    band BLOB NOT NULL,
    stream INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (band, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consent_records (
    digest BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    band BLOB NOT NULL,
    record BLOB NOT NULL,
    received INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS withdrawals (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    category INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (account_id, category)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    profile TEXT NOT NULL,
    updated INTEGER NOT NULL
);
"""


class StoreError(KmebandError):
    """The ingest database cannot be opened or is not an ingest database."""


@dataclass(frozen=True, slots=True)
class Band:
    """A band registered to an account: its pseudonym and its Ed25519 public key."""

    pseudonym: bytes
    account_id: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What storing a batch did: records stored and records already held."""

    stored: int
    duplicates: int
    replay: bool  # the batch id was seen before: nothing was written


@dataclass(frozen=True, slots=True)
class Segment:
    """Stored records of one band and stream, decoded."""

    band: bytes
    stream: StreamId
    body: BatchBody


def token_hash(token: str) -> bytes:
    """Tokens are 256-bit random: one SHA-256 makes the stored value useless to a thief."""
    return hashlib.sha256(token.encode("utf-8")).digest()


#: WAL pages after which a commit checkpoints by itself when no background checkpointer
#: keeps up (SQLite's default is 1000): a backstop that bounds the WAL file.
BACKSTOP_CHECKPOINT_PAGES = 16_384


class _Checkpointer:
    """Copies committed WAL frames into the database file from a thread of its own.

    A checkpoint ends in fsyncs; run by a commit, they stall the event loop for
    milliseconds every few hundred batches. A PASSIVE checkpoint on a second connection
    never blocks the writer, and sqlite3 releases the GIL while it works. Durability is
    unchanged: a transaction is in the WAL file when COMMIT returns, checkpointed or not.
    """

    def __init__(self, path: str, interval_s: float) -> None:
        self._path, self._interval_s = path, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # the next round or the commit backstop checkpoints instead
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class IngestStore:
    """The ingest's SQLite database (WAL mode); one connection, used from one thread.

    ``background_checkpoint`` moves WAL checkpoints off the request path onto a thread
    (the serving ingest turns it on); :meth:`close` stops it.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        background_checkpoint: bool = False,
        checkpoint_interval_s: float = 0.25,
    ) -> None:
        self._checkpointer: _Checkpointer | None = None
        self._path = Path(path)
        # The store holds health records in the clear (they were sealed only for transit):
        # create it, and SQLite's -wal and -shm files, readable by this user only.
        previous_umask = os.umask(0o077)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (SIGKILL): COMMIT returns once the
            # transaction is written to the WAL file, which the OS keeps if the process dies.
            # Only a power cut may lose the last transactions (FULL would fsync every
            # commit to cover that); the client's outbox then sends those batches again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Caches of what the hot path would otherwise query for every batch.
            self._erased: set[tuple[bytes, int]] = {
                (bytes(b), int(st))
                for b, st in self._db.execute("SELECT band, stream FROM erased_through")
            }
            self._known_consent: set[bytes] = set()
            if background_checkpoint:
                self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
                self._checkpointer = _Checkpointer(str(path), checkpoint_interval_s)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the ingest database {Path(path).name}: {exc}; "
                "check the path, or move a damaged file away"
            ) from exc
        finally:
            os.umask(previous_umask)
        for suffix in ("", "-wal", "-shm"):  # a file made earlier under a looser umask
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)

    def read_view(self) -> IngestStore:
        """A second, read-only store on the same file for a long read (an export) on
        another thread: it reads one consistent snapshot (WAL) and never blocks writers.
        Close it when done."""
        view = IngestStore.__new__(IngestStore)
        view._checkpointer = None
        view._erased, view._known_consent = set(), set()
        view._db = sqlite3.connect(
            f"file:{self._path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        view._path = self._path
        view._db.execute("BEGIN")  # one snapshot for the whole read
        return view

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._db.close()

    # -- transactions ---------------------------------------------------------------

    class _Transaction:
        def __init__(self, db: sqlite3.Connection) -> None:
            self._db = db

        def __enter__(self) -> sqlite3.Connection:
            self._db.execute("BEGIN IMMEDIATE")
            return self._db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                self._db.execute("COMMIT")
            else:
                self._db.execute("ROLLBACK")

    def transaction(self) -> IngestStore._Transaction:
        """``with store.transaction() as db:`` commits on success, rolls back on any error."""
        return IngestStore._Transaction(self._db)

    # -- accounts and bands ------------------------------------------------------------

    def create_account(self, token: str, now: int) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO accounts(token_hash, created) VALUES (?, ?)", (token_hash(token), now)
            )
            return int(cursor.lastrowid or 0)

    def account_for_token(self, token: str) -> int | None:
        row = self._db.execute(
            "SELECT id FROM accounts WHERE token_hash = ?", (token_hash(token),)
        ).fetchone()
        return None if row is None else int(row[0])

    def band(self, pseudonym: bytes) -> Band | None:
        row = self._db.execute(
            "SELECT account_id, public_key FROM bands WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()
        return None if row is None else Band(pseudonym, int(row[0]), bytes(row[1]))

    def register_band(self, account_id: int, pseudonym: bytes, public_key: bytes, now: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO bands(pseudonym, account_id, public_key, registered) VALUES (?,?,?,?) "
                "ON CONFLICT(pseudonym) DO UPDATE SET public_key = excluded.public_key, "
                "registered = excluded.registered WHERE bands.account_id = excluded.account_id",
                (pseudonym, account_id, public_key, now),
            )

    def bands_of(self, account_id: int) -> list[tuple[bytes, int]]:
        rows = self._db.execute(
            "SELECT pseudonym, registered FROM bands WHERE account_id = ? ORDER BY registered",
            (account_id,),
        )
        return [(bytes(p), int(r)) for p, r in rows]

    # -- batches ---------------------------------------------------------------------

    def has_batch(self, batch_id: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
        return row is not None

    def store_batch(
        self,
        account_id: int,
        header: BatchHeader,
        body: BatchBody,
        plaintext: bytes,
        consent_digest: bytes,
        now: int,
    ) -> StoreOutcome:
        """Store a verified batch in one transaction, trimmed to records not yet held."""
        new_consent = consent_digest not in self._known_consent
        try:
            with self.transaction() as db:
                held = self._held_mask(db, header, body)
                kept = (
                    None
                    if held is None
                    else [r for r, h in zip(body.records(), held.tolist(), strict=True) if not h]
                )
                stored = header.count if kept is None else len(kept)
                # The batch row goes first: a replayed id fails here, before anything else.
                db.execute(
                    "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        header.batch_id,
                        account_id,
                        header.band,
                        int(header.stream),
                        header.first_seq,
                        header.last_seq,
                        stored,
                        now,
                        header.firmware_version,
                        header.model,
                        header.client_os,
                        header.client_version,
                        header.created,
                        consent_digest,
                    ),
                )
                if kept is None:
                    db.execute(
                        "INSERT INTO segments(account_id, band, stream, first_seq, last_seq, "
                        "count, body) VALUES (?,?,?,?,?,?,?)",
                        (
                            account_id,
                            header.band,
                            int(header.stream),
                            header.first_seq,
                            header.last_seq,
                            header.count,
                            plaintext,
                        ),
                    )
                elif kept:
                    self._insert_segment(db, account_id, header.band, kept, body.consent_record)
                if new_consent:
                    db.execute(
                        "INSERT OR IGNORE INTO consent_records VALUES (?,?,?,?,?)",
                        (consent_digest, account_id, header.band, body.consent_record, now),
                    )
        except sqlite3.IntegrityError:
            if self.has_batch(header.batch_id):
                return StoreOutcome(0, header.count, replay=True)
            raise
        if new_consent:
            self._known_consent.add(consent_digest)
        return StoreOutcome(stored, header.count - stored, replay=False)

    def _held_mask(self, db: sqlite3.Connection, header: BatchHeader, body: BatchBody) -> Any:
        """Per record of the batch, whether its sequence number is already stored or erased
        (a numpy bool array), or None when none is.

        O(records), never O(sequence span): the batch's own sequence numbers are compared
        with the erased bound and with the sequence numbers of the stored segments that
        hold any of them. Nothing enumerates the numbers between first and last, which an
        uploader chooses freely (0 and 2**40 in one batch of two records).
        """
        incoming = np.frombuffer(body.seqs, dtype=np.int64)
        held = np.zeros(len(incoming), dtype=bool)
        if (header.band, int(header.stream)) in self._erased:
            row = db.execute(
                "SELECT last_seq FROM erased_through WHERE band = ? AND stream = ?",
                (header.band, int(header.stream)),
            ).fetchone()
            if row is not None and row[0] >= header.first_seq:
                held |= incoming <= int(row[0])
        overlapping = db.execute(
            "SELECT first_seq, last_seq, count, body FROM segments "
            "WHERE band = ? AND stream = ? AND last_seq >= ? AND first_seq <= ?",
            (header.band, int(header.stream), header.first_seq, header.last_seq),
        )
        for first, last, count, blob in overlapping:
            # decode a stored segment only if one of the incoming numbers falls in its range
            lo = int(np.searchsorted(incoming, first, side="left"))
            hi = int(np.searchsorted(incoming, last, side="right"))
            if lo >= hi:
                continue
            stored = decode_body(header.stream, blob, count=count, first_seq=first, last_seq=last)
            held[lo:hi] |= np.isin(
                incoming[lo:hi], np.frombuffer(stored.seqs, dtype=np.int64), assume_unique=True
            )
        return held if held.any() else None

    def _insert_segment(
        self,
        db: sqlite3.Connection,
        account_id: int,
        band: bytes,
        records: Sequence[StoredRecord],
        consent_record: bytes,
    ) -> None:
        db.execute(
            "INSERT INTO segments(account_id, band, stream, first_seq, last_seq, count, body) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                account_id,
                band,
                int(records[0].stream),
                records[0].seq,
                records[-1].seq,
                len(records),
                encode_batch_plaintext(records, consent_record),
            ),
        )

    # -- reading for the data subject ------------------------------------------------------

    def segments_of(self, account_id: int) -> Iterator[Segment]:
        """The account's segments, stream by stream (then band, then sequence), decoded
        one at a time as they are iterated."""
        rows = self._db.execute(
            "SELECT band, stream, first_seq, last_seq, count, body FROM segments "
            "WHERE account_id = ? ORDER BY stream, band, first_seq",
            (account_id,),
        )
        for band, stream, first, last, count, blob in rows:
            sid = StreamId(stream)
            body = decode_body(sid, blob, count=count, first_seq=first, last_seq=last)
            yield Segment(bytes(band), sid, body)

    def account_ids(self) -> list[int]:
        """Every account in the store, oldest first (for operators' tools such as reports)."""
        return [int(row[0]) for row in self._db.execute("SELECT id FROM accounts ORDER BY id")]

    def record_count(self, account_id: int | None = None) -> int:
        if account_id is None:
            row = self._db.execute("SELECT COALESCE(SUM(count), 0) FROM segments").fetchone()
        else:
            row = self._db.execute(
                "SELECT COALESCE(SUM(count), 0) FROM segments WHERE account_id = ?", (account_id,)
            ).fetchone()
        return int(row[0])

    def batches_of(self, account_id: int) -> list[dict[str, Any]]:
        cursor = self._db.execute(
            "SELECT batch_id, band, stream, first_seq, last_seq, stored, received, "
            "firmware_version, model, client_os, client_version, created "
            "FROM batches WHERE account_id = ? ORDER BY received, batch_id",
            (account_id,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def consent_records_of(self, account_id: int) -> list[tuple[bytes, bytes, int]]:
        rows = self._db.execute(
            "SELECT band, record, received FROM consent_records WHERE account_id = ? "
            "ORDER BY received, digest",
            (account_id,),
        )
        return [(bytes(b), bytes(r), int(t)) for b, r, t in rows]

    # -- profile, withdrawals, erasure ---------------------------------------------------

    def profile(self, account_id: int) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT profile FROM profiles WHERE account_id = ?", (account_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def set_profile(self, account_id: int, profile: dict[str, Any], now: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO profiles VALUES (?,?,?) ON CONFLICT(account_id) DO UPDATE SET "
                "profile = excluded.profile, updated = excluded.updated",
                (account_id, json.dumps(profile, sort_keys=True), now),
            )

    def withdrawals(self, account_id: int) -> dict[ConsentCategory, int]:
        rows = self._db.execute(
            "SELECT category, at FROM withdrawals WHERE account_id = ?", (account_id,)
        )
        return {ConsentCategory(c): int(at) for c, at in rows}

    def withdraw(
        self, account_id: int, category: ConsentCategory, now: int, erase_streams: Sequence[int]
    ) -> int:
        """Record a withdrawal; optionally erase the category's stored records. Returns erased."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO withdrawals VALUES (?,?,?) ON CONFLICT(account_id, category) "
                "DO UPDATE SET at = excluded.at",
                (account_id, int(category), now),
            )
            erased = 0
            for stream in erase_streams:
                erased += self._erase(db, account_id, stream)
            return erased

    def clear_withdrawal(self, account_id: int, category: ConsentCategory) -> None:
        with self.transaction() as db:
            db.execute(
                "DELETE FROM withdrawals WHERE account_id = ? AND category = ?",
                (account_id, int(category)),
            )

    def erase_account_data(self, account_id: int) -> int:
        """Erase every record, batch, consent record and the profile. Returns records erased."""
        with self.transaction() as db:
            return self._erase_all(db, account_id)

    def _erase_all(self, db: sqlite3.Connection, account_id: int) -> int:
        erased = 0
        streams = db.execute(
            "SELECT DISTINCT stream FROM segments WHERE account_id = ?", (account_id,)
        ).fetchall()
        for (stream,) in streams:
            erased += self._erase(db, account_id, int(stream))
        db.execute("DELETE FROM batches WHERE account_id = ?", (account_id,))
        db.execute("DELETE FROM consent_records WHERE account_id = ?", (account_id,))
        self._known_consent.clear()
        db.execute("DELETE FROM profiles WHERE account_id = ?", (account_id,))
        return erased

    def delete_account(self, account_id: int) -> tuple[int, list[bytes]]:
        """Erase everything of the account (as :meth:`erase_account_data`), then the account
        itself: its token stops working and its bands' registrations go, so a band can be
        activated for another account. What was erased stays erased (``erased_through``
        outlives the account). Returns (records erased, the bands that were registered)."""
        with self.transaction() as db:
            bands = [
                bytes(b)
                for (b,) in db.execute(
                    "SELECT pseudonym FROM bands WHERE account_id = ?", (account_id,)
                ).fetchall()
            ]
            erased = self._erase_all(db, account_id)
            db.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            return erased, bands

    def _erase(self, db: sqlite3.Connection, account_id: int, stream: int) -> int:
        bands = db.execute(
            "SELECT DISTINCT band FROM segments WHERE account_id = ? AND stream = ?",
            (account_id, stream),
        ).fetchall()
        self._erased.update((bytes(b), stream) for (b,) in bands)
        # Remember how far each band's stream was erased, so that a replay of old batches
        # (their ids are forgotten with them) cannot bring erased records back.
        db.execute(
            "INSERT INTO erased_through(band, stream, last_seq) "
            "SELECT band, stream, MAX(last_seq) FROM segments "
            "WHERE account_id = ? AND stream = ? GROUP BY band "
            "ON CONFLICT(band, stream) DO UPDATE SET "
            "last_seq = MAX(erased_through.last_seq, excluded.last_seq)",
            (account_id, stream),
        )
        row = db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM segments WHERE account_id = ? AND stream = ?",
            (account_id, stream),
        ).fetchone()
        db.execute("DELETE FROM segments WHERE account_id = ? AND stream = ?", (account_id, stream))
        return int(row[0])

    def snapshot(self) -> dict[str, int]:
        """Row counts per table: what tests compare to prove nothing was partly written."""
        tables = [
            "accounts",
            "bands",
            "batches",
            "segments",
            "consent_records",
            "withdrawals",
            "profiles",
            "erased_through",
        ]
        return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}
