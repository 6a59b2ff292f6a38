"""Consent log semantics, the record filter, and the band-signed consent record."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme.batch import consent_digest_of
from protocol.kme.consent import (
    CONSENT_RECORD_CONTEXT,
    CategoryState,
    ConsentChange,
    ConsentLog,
    ConsentLogError,
    ConsentRecord,
    ConsentRecordError,
    ConsentSignatureError,
    filter_records,
)
from protocol.kme.control.consent import ConsentSource, ConsentState
from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    ActivityClass,
    ActivityMinute,
    ConsentCategory,
    GnssFix,
    HeartRateSample,
    SleepEpoch,
    SleepStage,
    StoredRecord,
    StreamId,
    TelemetryEvent,
    TelemetryKind,
    record_time,
)

ACT, HR, LOC = ConsentCategory.ACTIVITY, ConsentCategory.HEART_RATE, ConsentCategory.LOCATION
BAND, OWNER = ConsentSource.BAND, ConsentSource.OWNER_CLIENT
SEED = bytes(range(32))


def public_of(seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def change(t: int, category: ConsentCategory, granted: bool, version: int = 3) -> ConsentChange:
    return ConsentChange(t, category, granted, version, OWNER)


def minute(t: int, hr: int = 72) -> StoredRecord:
    record = ActivityMinute(t, 60, 10, ActivityClass.WALK, 2, hr, True)
    return StoredRecord(StreamId.ACTIVITY_MINUTES, t // 60, record)


SAMPLE_LOG = ConsentLog(
    [
        change(1000, ACT, True, 2),
        change(1000, HR, True, 2),
        change(2000, HR, False),
        change(3000, ACT, True, 3),  # re-grant under a newer policy: no gap
        change(4000, ACT, False),
        change(4000, ACT, True),  # same second: the later change wins
        change(5000, HR, True),
        change(6000, ACT, False),
    ]
)


# ------------------------------------------------------------------------ log semantics


def test_state_before_any_change_is_withdrawn() -> None:
    assert ConsentLog().state_at(10**9)[ACT] == CategoryState(False, 0, None)
    assert not SAMPLE_LOG.is_consented(ACT, 999)


def test_boundaries_are_half_open() -> None:
    assert SAMPLE_LOG.is_consented(ACT, 1000)
    assert SAMPLE_LOG.is_consented(HR, 1999)
    assert not SAMPLE_LOG.is_consented(HR, 2000)
    assert SAMPLE_LOG.is_consented(ACT, 4000)  # withdrawn and re-granted in the same second
    assert not SAMPLE_LOG.is_consented(ACT, 6000)


def test_intervals_merge_regrants_and_respect_min_policy_version() -> None:
    assert SAMPLE_LOG.intervals(ACT) == [(1000, 6000)]
    assert SAMPLE_LOG.intervals(HR) == [(1000, 2000), (5000, None)]
    assert SAMPLE_LOG.intervals(ACT, min_policy_version=3) == [(3000, 6000)]
    assert SAMPLE_LOG.intervals(LOC) == []
    assert not SAMPLE_LOG.is_consented(ACT, 2500, min_policy_version=3)
    assert SAMPLE_LOG.is_consented(ACT, 3500, min_policy_version=3)


def test_state_at_reports_policy_and_since() -> None:
    state = SAMPLE_LOG.state_at(3500)
    assert state[ACT] == CategoryState(True, 3, 3000)
    assert state[HR] == CategoryState(False, 3, 2000)


def test_log_is_append_only_in_time_order() -> None:
    log = ConsentLog([change(100, ACT, True)])
    with pytest.raises(ConsentLogError, match="time order"):
        log.append(change(99, ACT, False))
    assert log.append(change(100, ACT, False)) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"timestamp": -1},
        {"policy_version": 70000},
        {"granted": 1},
        {"category": 3},
        {"source": 2},
    ],
)
def test_invalid_change_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ConsentLogError):
        replace(change(0, ACT, True), **bad)  # type: ignore[arg-type]


def test_log_round_trips_through_canonical_cbor_and_band_entries() -> None:
    data = SAMPLE_LOG.encode()
    assert ConsentLog.decode(data) == SAMPLE_LOG
    assert ConsentLog.from_entries(SAMPLE_LOG.entries()) == SAMPLE_LOG
    with pytest.raises(ConsentLogError):
        ConsentLog.from_entries(SAMPLE_LOG.entries(first_index=1))


def test_current_state_is_the_consent_state_message() -> None:
    state = SAMPLE_LOG.current_state()
    assert isinstance(state, ConsentState)
    assert state.log_length == len(SAMPLE_LOG)
    flags = {f.category: f for f in state.flags}
    assert set(flags) == set(ConsentCategory)
    assert not flags[ACT].granted and flags[ACT].changed_at == 6000
    assert flags[HR].granted and flags[HR].policy_version == 3
    assert not flags[LOC].granted and flags[LOC].changed_at == 0


# -------------------------------------------------------------------------- the filter


def test_filter_withholds_outside_and_clears_hr_without_its_consent() -> None:
    records = [minute(t) for t in (900, 1000, 1500, 2500, 5500, 6000)]
    allowed, withheld = filter_records(records, SAMPLE_LOG)
    assert withheld == 2  # 900 and 6000
    assert [r.record.start for r in allowed] == [1000, 1500, 2500, 5500]  # type: ignore[union-attr]
    assert [r.record.avg_hr for r in allowed] == [72, 72, 0, 72]  # type: ignore[union-attr]


def test_filter_keeps_order_across_streams() -> None:
    log = ConsentLog([change(0, c, True) for c in ConsentCategory])
    records = [
        minute(60),
        StoredRecord(StreamId.HR_SAMPLES, 1, HeartRateSample(61, 0, 70, 3)),
        StoredRecord(StreamId.SLEEP_EPOCHS, 1, SleepEpoch(30, 0, SleepStage.REM)),
    ]
    assert filter_records(records, log) == (records, 0)
    assert filter_records([], log) == ([], 0)


# ------------------------------------------------------------------------- properties

CATEGORIES = st.sampled_from(list(ConsentCategory))


@st.composite
def timelines(draw: st.DrawFn) -> ConsentLog:
    t = 0
    changes = []
    for _ in range(draw(st.integers(0, 25))):
        t += draw(st.integers(0, 400))
        changes.append(
            ConsentChange(
                t,
                draw(CATEGORIES),
                draw(st.booleans()),
                draw(st.integers(1, 4)),
                draw(st.sampled_from(list(ConsentSource))),
            )
        )
    return ConsentLog(changes)


def _record_at(stream: StreamId, t: int, seq: int) -> StoredRecord:
    if stream == StreamId.ACTIVITY_MINUTES:
        return StoredRecord(stream, seq, ActivityMinute(t, 0, 5, ActivityClass.LIGHT, 1, 80, True))
    if stream == StreamId.HR_SAMPLES:
        return StoredRecord(stream, seq, HeartRateSample(t, 0, 80, 2))
    if stream == StreamId.SLEEP_EPOCHS:
        return StoredRecord(stream, seq, SleepEpoch(t, 0, SleepStage.LIGHT))
    if stream == StreamId.GNSS_FIXES:
        return StoredRecord(stream, seq, GnssFix(t, 0, 1, 2, 3, 4))
    return StoredRecord(StreamId.TELEMETRY, seq, TelemetryEvent(t, 0, TelemetryKind.BOOT))


RECORDS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                StreamId.ACTIVITY_MINUTES,
                StreamId.HR_SAMPLES,
                StreamId.SLEEP_EPOCHS,
                StreamId.GNSS_FIXES,
                StreamId.TELEMETRY,
            ]
        ),
        st.integers(0, 12_000),
    ),
    max_size=60,
).map(lambda pairs: [_record_at(s, t, i) for i, (s, t) in enumerate(pairs)])


def oracle(log: ConsentLog, category: ConsentCategory, t: int, min_version: int | None) -> bool:
    """Scan the log: the last change of the category at or before t decides."""
    decision = False
    for c in log.changes:
        if c.category == category and c.timestamp <= t:
            decision = c.granted and (min_version is None or c.policy_version >= min_version)
    return decision


@settings(max_examples=200, deadline=None, derandomize=True)
@given(log=timelines(), records=RECORDS, min_version=st.none() | st.integers(1, 4))
def test_filter_never_leaks_and_never_withholds_a_consented_record(
    log: ConsentLog, records: list[StoredRecord], min_version: int | None
) -> None:
    allowed, withheld = filter_records(records, log, min_version)
    expected = [
        r
        for r in records
        if oracle(log, STREAM_CONSENT[r.stream], record_time(r.record), min_version)
    ]
    assert [(r.stream, r.seq) for r in allowed] == [(r.stream, r.seq) for r in expected]
    assert withheld == len(records) - len(expected)
    for kept in allowed:
        for (stream, name), category in FIELD_CONSENT.items():
            if kept.stream == stream:
                t = record_time(kept.record)
                original = next(r for r in records if r.seq == kept.seq).record
                wanted = getattr(original, name) if oracle(log, category, t, min_version) else 0
                assert getattr(kept.record, name) == wanted


@settings(max_examples=150, deadline=None, derandomize=True)
@given(log=timelines(), category=CATEGORIES, t=st.integers(0, 12_000))
def test_intervals_state_and_is_consented_agree(
    log: ConsentLog, category: ConsentCategory, t: int
) -> None:
    inside = any(s <= t and (e is None or t < e) for s, e in log.intervals(category))
    assert inside == log.is_consented(category, t) == oracle(log, category, t, None)
    assert log.state_at(t)[category].granted == inside


@settings(max_examples=100, deadline=None, derandomize=True)
@given(log=timelines(), start=st.integers(0, 12_000), length=st.integers(0, 5_000))
def test_consent_record_decides_like_the_full_log_inside_its_range(
    log: ConsentLog, start: int, length: int
) -> None:
    end = start + length
    record = ConsentRecord.covering(log, start, end, issued_at=end + 5)
    decoded = ConsentRecord.decode(record.encode())
    assert decoded == record
    partial = decoded.log()
    for t in range(start, end + 1, max(1, length // 40)):
        for category in ConsentCategory:
            assert partial.is_consented(category, t) == log.is_consented(category, t)


# ------------------------------------------------------------------- consent record


def signed_sample() -> ConsentRecord:
    return ConsentRecord.covering(SAMPLE_LOG, 1500, 5500, issued_at=7000).sign(SEED)


def test_sign_verify_and_digest() -> None:
    record = signed_sample()
    record.verify(public_of(SEED))
    assert record.signature is not None and len(record.signature) == 64
    assert record == signed_sample()  # Ed25519 is deterministic
    assert record.digest() == consent_digest_of(record.encode())
    decoded = ConsentRecord.decode(record.encode())
    decoded.verify(public_of(SEED))
    assert decoded.digest() == record.digest()
    assert record.signed_bytes().startswith(CONSENT_RECORD_CONTEXT)


def test_covering_keeps_only_deciding_entries() -> None:
    record = ConsentRecord.covering(SAMPLE_LOG, 2500, 4500, issued_at=4500)
    # ACT decided by 1000 (still granted), HR by 2000; then 3000, 4000, 4000 inside
    assert [e.index for e in record.entries] == [0, 2, 3, 4, 5]
    assert record.covers(2500) and record.covers(4500) and not record.covers(4501)


def test_wrong_key_or_tampering_fails_verification() -> None:
    record = signed_sample()
    with pytest.raises(ConsentSignatureError):
        record.verify(public_of(bytes(32)))
    with pytest.raises(ConsentSignatureError):
        replace(record, covers_to=5600).verify(public_of(SEED))
    withdrawn = replace(record.entries[0], granted=not record.entries[0].granted)
    with pytest.raises(ConsentSignatureError):
        replace(record, entries=(withdrawn, *record.entries[1:])).verify(public_of(SEED))
    with pytest.raises(ConsentSignatureError, match="not signed"):
        replace(record, signature=None).verify(public_of(SEED))


def test_record_cannot_cover_the_future_or_a_reversed_range() -> None:
    with pytest.raises(ConsentLogError):
        ConsentRecord.covering(SAMPLE_LOG, 100, 200, issued_at=150)
    with pytest.raises(ConsentLogError):
        ConsentRecord.covering(SAMPLE_LOG, 300, 200, issued_at=400)


def test_non_canonical_or_malformed_bytes_rejected() -> None:
    data = signed_sample().encode()
    import cbor2

    raw = cbor2.loads(data)
    loose = cbor2.dumps(dict(reversed(list(raw.items()))))  # same map, keys out of order
    assert loose != data
    with pytest.raises(ConsentRecordError, match="canonical"):
        ConsentRecord.decode(loose)
    with pytest.raises(ConsentRecordError):
        ConsentRecord.decode(b"\xff\x00")
    raw[1] = raw[2] + 1  # covers_from after covers_to
    with pytest.raises(ConsentRecordError):
        ConsentRecord.decode(cbor2.dumps(raw, canonical=True))


def test_messages_never_carry_keys() -> None:
    with pytest.raises(ConsentLogError) as info:
        signed_sample().sign(SEED[:31])
    assert SEED[:31].hex() not in str(info.value)
