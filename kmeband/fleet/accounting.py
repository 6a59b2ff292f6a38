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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


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
