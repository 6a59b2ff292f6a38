"""The client's consent view: log to intervals, filtering, withdrawal purging the outbox."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme.control.consent import ConsentFlag, ConsentLogEntry, ConsentSource, ConsentState
from protocol.kme.control.schema import encode_control
from protocol.kme.records import STREAM_CONSENT, ConsentCategory, StreamId, record_time
from sync_client.consent import (
    AllowedIntervals,
    BandConsent,
    ConsentClientError,
    all_may_upload,
    allowed_intervals,
    filter_record,
    purge_withdrawn,
    read_band_consent,
)
from sync_client.outbox import Outbox, QueuedBatch
from tests.sync_client.band_fakes import activity_minutes

A, HR = ConsentCategory.ACTIVITY, ConsentCategory.HEART_RATE


def entry(
    index: int, category: ConsentCategory, granted: bool, t: int, policy: int = 3
) -> ConsentLogEntry:
    return ConsentLogEntry(index, category, granted, policy, t, 0, ConsentSource.OWNER_CLIENT)


def test_log_folds_into_intervals() -> None:
    log = [
        entry(0, A, True, 100),
        entry(1, HR, True, 150),
        entry(2, A, False, 200),
        entry(3, A, True, 300),
        entry(4, A, True, 310),  # a repeated grant does not restart the interval
    ]
    allowed = allowed_intervals(log)
    assert allowed.grants[A] == ((100, 200), (300, None))
    assert allowed.grants[HR] == ((150, None),)
    assert allowed.allows(A, 100) and allowed.allows(A, 199) and not allowed.allows(A, 200)
    assert not allowed.allows(A, 99) and allowed.allows(A, 10**9)
    assert not allowed.allows(ConsentCategory.LOCATION, 150)


def test_grants_under_an_outdated_policy_do_not_count() -> None:
    log = [entry(0, A, True, 100, policy=1), entry(1, A, True, 400, policy=2)]
    assert allowed_intervals(log, min_policy_version=2).grants[A] == ((400, None),)
    # re-granting under an old version closes the interval
    log2 = [entry(0, A, True, 100, policy=2), entry(1, A, True, 400, policy=1)]
    assert allowed_intervals(log2, min_policy_version=2).grants[A] == ((100, 400),)


EVENTS = st.lists(
    st.tuples(st.sampled_from([A, HR]), st.booleans(), st.integers(0, 120_000), st.integers(1, 3)),
    max_size=12,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(events=EVENTS, min_policy=st.integers(1, 3))
def test_kept_exactly_when_consented_then_and_still_consented_now(
    events: list[tuple[ConsentCategory, bool, int, int]], min_policy: int
) -> None:
    events.sort(key=lambda e: e[2])
    log = [entry(i, c, g, t, p) for i, (c, g, t, p) in enumerate(events)]
    allowed = allowed_intervals(log, min_policy_version=min_policy)
    records = activity_minutes(60 * 30, start=60)

    def granted_at(category: ConsentCategory, t: int) -> bool:
        # the log replayed directly: the state of the last change at or before t
        state = False
        for e in log:
            if e.category is category and e.time <= t:
                state = e.granted and e.policy_version >= min_policy
        return state

    def may_upload(category: ConsentCategory, t: int) -> bool:
        # granted at the record's time, and not withdrawn since (granted at the end of time)
        return granted_at(category, t) and granted_at(category, 10**12)

    # the puller's path: one span check per chunk, else filter_record per record
    for chunk in (records[i : i + 97] for i in range(0, len(records), 97)):
        times = [record_time(r.record) for r in chunk]
        as_is = all_may_upload(StreamId.ACTIVITY_MINUTES, min(times), max(times), allowed)
        for r, t in zip(chunk, times, strict=True):
            kept = filter_record(r, allowed)
            assert (kept is not None) == may_upload(STREAM_CONSENT[r.stream], t)
            if as_is:
                assert kept is r  # the fast path lets the chunk go as it is: it must be
            if kept is None:
                continue
            if may_upload(HR, t):
                assert kept.record == r.record
            else:
                assert kept.record.avg_hr == 0  # type: ignore[union-attr]
                assert dataclasses.replace(kept.record, avg_hr=r.record.avg_hr) == r.record  # type: ignore[type-var, union-attr]


def queued(band: bytes, stream: StreamId, seq: int) -> QueuedBatch:
    return QueuedBatch(
        bytes([seq]) * 16, band, int(stream), int(STREAM_CONSENT[stream]), seq, seq, 1, b"x", 0.0
    )


def test_withdrawal_on_the_band_purges_that_categorys_queued_batches(tmp_path: Path) -> None:
    band = b"\x01" * 32
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.commit(
            band, StreamId.ACTIVITY_MINUTES, 1, [queued(band, StreamId.ACTIVITY_MINUTES, 1)]
        )
        outbox.commit(band, StreamId.HR_SAMPLES, 2, [queued(band, StreamId.HR_SAMPLES, 2)])
        outbox.commit(band, StreamId.SLEEP_EPOCHS, 3, [queued(band, StreamId.SLEEP_EPOCHS, 3)])
        flags = tuple(ConsentFlag(c, c is not HR, 3, 500, 0) for c in ConsentCategory)
        consent = BandConsent(ConsentState(flags, 0), (), b"record", AllowedIntervals({}))
        assert purge_withdrawn(outbox, band, consent) == {int(HR): 1}
        left = {q.stream for q in outbox.due(now=float("inf"))}
        assert left == {StreamId.ACTIVITY_MINUTES, StreamId.SLEEP_EPOCHS}
        # cursors stay: purged data is never fetched again
        assert outbox.stored_up_to(band, StreamId.HR_SAMPLES) == 2


class SilentPageSelect:
    """A band that answers the consent state read but never the log page select write."""

    async def read_gatt_char(self, char_specifier: Any, **kwargs: Any) -> bytearray:
        flags = tuple(ConsentFlag(c, True, 3, 500, 0) for c in ConsentCategory)
        return bytearray(encode_control(ConsentState(flags, 2)))

    async def write_gatt_char(self, char_specifier: Any, data: Any, response: Any = None) -> None:
        await asyncio.sleep(3600)

    async def start_notify(self, char_specifier: Any, callback: Any, **kwargs: Any) -> None:
        pass

    async def stop_notify(self, char_specifier: Any) -> None:
        pass


async def test_a_band_that_never_takes_the_page_select_is_a_typed_error() -> None:
    with pytest.raises(ConsentClientError, match="in time"):
        await read_band_consent(SilentPageSelect(), timeout_s=0.01)
