"""Proof that nothing was lost or stored twice: per band and stream, the ingest must hold
seqs 1..n exactly once, where n is the band's own counter, less what consent withheld.

The phone's outbox counts what it withheld (records whose consent category was not
granted): those seqs are legitimately absent. So for each (band, stream):

- ``duplicated`` = stored copies beyond the first of any seq;
- ``unexpected`` = distinct seqs outside 1..n (the band never made them);
- ``lost`` = n - withheld - distinct seqs within 1..n (never negative: when the ingest
  holds more than n - withheld distinct seqs, the excess is counted as ``unexpected``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from protocol.kme.records import StreamId
from sync_client.activation import AccountFile


@dataclass
class StreamAccount:
    """The outcome of the check for one stream of one band."""

    made: int = 0
    withheld: int = 0
    held: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def add(self, other: StreamAccount) -> None:
        """Add ``other``'s counts to these (totals over streams, bands, waves)."""
        for name in ("made", "withheld", "held", "lost", "duplicated", "unexpected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def check_stream(made: int, withheld: int, held_seqs: Iterable[int]) -> StreamAccount:
    """Check one stream: ``made`` is the band's counter (seqs 1..made exist),
    ``withheld`` what the phone held back for consent, ``held_seqs`` every seq the ingest
    holds (one entry per stored copy)."""
    counts = Counter(held_seqs)
    inside = sum(1 for seq in counts if 1 <= seq <= made)
    account = StreamAccount(made=made, withheld=withheld, held=sum(counts.values()))
    account.duplicated = sum(c - 1 for c in counts.values())
    account.unexpected = len(counts) - inside
    expected = made - withheld
    account.lost = max(0, expected - inside)
    account.unexpected += max(0, inside - expected)
    return account


def seqs_in_export(export: dict[str, object], stream_name: str) -> list[int]:
    """Every stored seq of one stream in an account's JSON export (``GET /v1/export``)."""
    records = export.get("records")
    if not isinstance(records, dict):
        return []
    return [int(r["seq"]) for r in records.get(stream_name, [])]


@dataclass
class BandLedger:
    """What one band made (its counters: seqs 1..made per stream) and what its phone
    withheld for consent, with the phone's account to find its records at the ingest.
    The account's bearer token is a secret: the ledger is never printed or logged."""

    index: int
    account: AccountFile
    made: dict[int, int] = field(default_factory=dict)
    withheld: dict[int, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"BandLedger(index={self.index}, <account>)"


@dataclass
class HeldByIngest:
    """What the ingest holds for one account: every stored seq per stream, and batches."""

    seqs: dict[int, list[int]] = field(default_factory=dict)
    batches: int = 0


def held_in_store(store: Any, ledger: BandLedger) -> HeldByIngest:
    """Read the seqs straight from an ingest store (the embedded ingest)."""
    held = HeldByIngest()
    account_id = store.account_for_token(ledger.account.token)
    if account_id is None:
        return held
    for segment in store.segments_of(account_id):
        held.seqs.setdefault(int(segment.stream), []).extend(segment.body.seqs)
    held.batches = len(store.batches_of(account_id))
    return held


async def held_by_export(ledger: BandLedger) -> HeldByIngest:
    """Read the seqs through the ingest's export (``GET /v1/export``): any ingest URL."""
    from sync_client.rights import export_data

    export = json.loads((await export_data(ledger.account, "json")).body)
    held = HeldByIngest(batches=len(export.get("batches", [])))
    for stream in StreamId:
        held.seqs[int(stream)] = seqs_in_export(export, stream.name.lower())
    return held


def check_band(ledger: BandLedger, held: HeldByIngest) -> list[tuple[StreamId, StreamAccount]]:
    """Check every stream of one band."""
    return [
        (
            stream,
            check_stream(
                ledger.made.get(int(stream), 0),
                ledger.withheld.get(int(stream), 0),
                held.seqs.get(int(stream), []),
            ),
        )
        for stream in StreamId
    ]
