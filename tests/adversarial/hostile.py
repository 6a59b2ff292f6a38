"""Hostile request bodies for the ingest, shared by the adversarial tests and
``bench/adversarial.py``: each is cheap to send and was expensive (or fatal) to receive."""

from __future__ import annotations

import cbor2

from protocol.kme.records import HeartRateSample, StoredRecord, StreamId

#: The seq the huge-span case stores, erases, then sends again beside seq 0.
FAR_SEQ = 2**40


def big_rational_envelope(digits_bytes: int = 250_000) -> bytes:
    """An envelope whose version is a tag-30 rational of two ``digits_bytes``-byte
    integers: cbor2 normalises it with a big-integer gcd that takes seconds."""
    big = int.from_bytes(b"\xfd" * digits_bytes, "big")
    rational = cbor2.CBORTag(30, [big, big - 1])
    return cbor2.dumps([rational, [0x20, 1, 2], b"h", b"\x00" * 32, b"\x00" * 16])


def bignum_envelope(digits_bytes: int = 100_000) -> bytes:
    """An envelope whose version is a tag-2 bignum."""
    return cbor2.dumps(
        [int.from_bytes(b"\xff" * digits_bytes, "big"), [0x20, 1, 2], b"h", b"\x00" * 32, b"\0"]
    )


def nested_json(depth: int = 100_000) -> bytes:
    """A JSON document nested ``depth`` deep: json.loads raises RecursionError on it."""
    return b"[" * depth + b"]" * depth


def span_records(*seqs: int, start: int) -> list[StoredRecord]:
    """Heart-rate records at the given sequence numbers, a second apart."""
    return [
        StoredRecord(StreamId.HR_SAMPLES, seq, HeartRateSample(start + i, 120, 70, 3))
        for i, seq in enumerate(seqs)
    ]


__all__ = [
    "FAR_SEQ",
    "big_rational_envelope",
    "bignum_envelope",
    "nested_json",
    "span_records",
]
