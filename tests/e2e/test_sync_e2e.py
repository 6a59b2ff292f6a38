"""End to end through the real pieces: simulated band -> bleak backend -> sync client ->
reference ingest. The band's own consent log is the oracle for what may reach the ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bleak.exc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud_ingest.server import IngestServer
from device_sim.clock import ManualClock
from device_sim.radio import LinkFault
from protocol.errors import KmebandError
from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    ConsentCategory,
    StreamId,
    record_time,
)
from sync_client.activation import create_account
from tests.e2e.e2e_helpers import (
    DAY,
    EPOCH,
    SYNC_ONCE,
    HubProcess,
    Rig,
    band_records,
    consented_intervals,
    expected_upload,
    live,
    make_band,
    may_upload,
    seqs,
    subprocess_env,
)

HOUR = 3600.0


def assert_ingest_matches(rig: Rig, before: dict[StreamId, list]) -> None:  # type: ignore[type-arg]
    """The ingest holds exactly the consented part of ``before``, each record once."""
    expected = expected_upload(before, rig.band.consent)
    held = rig.held()
    for stream in StreamId:
        got = sorted(held.get(stream, []), key=lambda r: r.seq)
        assert seqs(got) == sorted(set(seqs(got))), f"{stream.name}: a record is held twice"
        assert got == expected[stream], f"{stream.name}: ingest differs from the band's consent"
        for stored in got:  # and, said directly: nothing outside a consented interval
            t = record_time(stored.record)
            assert may_upload(rig.band.consent, STREAM_CONSENT[stream], t)


def delivered_records(rig: Rig) -> int:
    """Records the client counts as delivered: equal to the ingest's only if none was sent twice."""
    return sum(row["delivered_records"] for row in rig.outbox.stats(rig.pseudonym).values())


async def test_a_week_with_consent_changes_lands_exactly_the_consented_records(
    tmp_path: Path,
) -> None:
    clock = ManualClock(EPOCH)
    band = make_band(tmp_path, clock, fidelity="summary")
    # the wearer changes consent on the band's own screen at chosen moments of the week
    timeline = [
        (1.5 * DAY, ConsentCategory.HEART_RATE, False),
        (3.25 * DAY, ConsentCategory.HEART_RATE, True),
        (4.0 * DAY, ConsentCategory.UX_PROGRAM, False),
        (5.5 * DAY, ConsentCategory.LOCATION, False),  # still withdrawn at sync: none go
        (6.0 * DAY, ConsentCategory.SLEEP, False),
        (6.5 * DAY, ConsentCategory.SLEEP, True),
    ]
    for at, category, granted in timeline:
        live(band, EPOCH + at)
        band.set_consent(category, granted)
    live(band, EPOCH + 7 * DAY)
    before = band_records(band)
    assert before[StreamId.GNSS_FIXES], "the week must hold fixes the client has to withhold"
    async with Rig(tmp_path, band) as rig:
        report = await rig.sync()
        assert all(s.error is None and s.complete for s in report.streams)
        assert report.upload is not None and report.upload.rejected == 0
        assert_ingest_matches(rig, before)
        held = rig.held()
        assert not held.get(StreamId.GNSS_FIXES)
        assert not held.get(StreamId.TELEMETRY)
        by_stream = {s.stream: s for s in report.streams}
        assert by_stream[StreamId.GNSS_FIXES].withheld == len(before[StreamId.GNSS_FIXES])
        # heart rate in the gap was never recorded, nor the activity minutes' avg_hr: the
        # band's one consent gate cleared it before storing, so the phone had nothing to clear
        gap = [
            m.record
            for m in before[StreamId.ACTIVITY_MINUTES]
            if EPOCH + 1.5 * DAY <= record_time(m.record) < EPOCH + 3.25 * DAY
        ]
        assert gap and all(m.avg_hr == 0 for m in gap)  # type: ignore[union-attr]
        assert any(m.record.avg_hr for m in before[StreamId.ACTIVITY_MINUTES])  # type: ignore[union-attr]
        assert by_stream[StreamId.ACTIVITY_MINUTES].fields_cleared == 0
        assert delivered_records(rig) == sum(len(v) for v in held.values())
        # everything handled (stored or withheld) is freed on the band, nothing more
        for stream in StreamId:
            assert band.flash.count(stream) == 0


async def test_a_signal_fidelity_day_lands_exactly_the_consented_records(tmp_path: Path) -> None:
    clock = ManualClock(EPOCH)
    band = make_band(tmp_path, clock, seed=23, scenario="athlete_week", fidelity="signal")
    live(band, EPOCH + 7 * HOUR)
    band.set_consent(ConsentCategory.HEART_RATE, False)
    live(band, EPOCH + 15 * HOUR)
    band.set_consent(ConsentCategory.HEART_RATE, True)
    band.set_consent(ConsentCategory.UX_PROGRAM, False)
    live(band, EPOCH + DAY)
    before = band_records(band)
    assert before[StreamId.HR_SAMPLES] and before[StreamId.ACTIVITY_MINUTES]
    async with Rig(tmp_path, band) as rig:
        report = await rig.sync()
        assert all(s.error is None and s.complete for s in report.streams)
        assert_ingest_matches(rig, before)
        hr = rig.held()[StreamId.HR_SAMPLES]
        gap = [r for r in hr if EPOCH + 7 * HOUR <= record_time(r.record) < EPOCH + 15 * HOUR]
        assert hr and not gap


def band_freed_only_what_was_stored(rig: Rig) -> None:
    for stream in StreamId:
        stored = rig.outbox.stored_up_to(rig.pseudonym, int(stream))
        assert rig.band.flash.first_seq(stream) <= stored + 1, (
            f"{stream.name}: the band freed records the client never stored"
        )


async def attempt(rig: Rig, drop_after: int) -> tuple[bool, int]:
    """One sync on a link that drops after ``drop_after`` frames: (completed, chunks seen)."""
    rig.inject(LinkFault(drop_after_pdus=drop_after))
    before = rig.capture.sync_data_notifications
    try:
        report = await rig.sync(connect_attempts=1, timeout_s=2.0)
    except (KmebandError, bleak.exc.BleakError, TimeoutError):
        band_freed_only_what_was_stored(rig)
        return False, rig.capture.sync_data_notifications - before
    band_freed_only_what_was_stored(rig)
    done = all(s.complete and s.error is None for s in report.streams)
    return done, rig.capture.sync_data_notifications - before


async def test_dropping_the_link_at_every_point_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    clock = ManualClock(EPOCH)
    band = make_band(tmp_path, clock, seed=31, fidelity="summary")
    live(band, EPOCH + 12 * HOUR)
    before = band_records(band)
    async with Rig(tmp_path, band) as rig:
        # Phase 1: successive connections drop after k = 1, 2, 3, ... frames, through every
        # point of the setup (pairing, encryption, activation, ownership, consent) until
        # the first record chunk gets through.
        k, chunks, done = 0, 0, False
        while not chunks and not done:
            k += 1
            assert k < 1000, "no chunk ever got through"
            done, chunks = await attempt(rig, k)
        # Phase 2: the rest of the transfer, chunk by chunk. Each connection resumes where
        # the last one stopped and drops right after its first data notification (k is
        # steered from where the previous connection's first chunk crossed), so a drop
        # lands at every chunk boundary.
        mid_transfer_drops = 0
        for _ in range(3000):
            if done:
                break
            cursors = rig.cursors()
            done, chunks = await attempt(rig, k)
            handle = rig.capture.last_handle
            assert handle is not None
            if chunks and not done:
                mid_transfer_drops += 1
            first = rig.capture.first_data_frame.get(handle)
            if rig.cursors() == cursors or first is None:
                k += 1  # setup grew (a stream finished) or a chunk spans notifications
            else:
                k = first + 1
        assert done, "the sync never completed"
        assert mid_transfer_drops >= 40, "too few drops landed between chunks"
        assert_ingest_matches(rig, before)
        assert delivered_records(rig) == sum(len(v) for v in rig.held().values())
        for stream in StreamId:
            assert band.flash.count(stream) == 0
        assert rig.outbox.pending_count() == 0


@dataclass
class KillAt:
    """When to SIGKILL a client run: ``after_s`` seconds after it starts syncing, or on
    reading its ``pulled``-th pull progress line, or its ``delivered``-th delivered batch,
    whichever comes first (None: never on that count)."""

    after_s: float | None = None
    pulled: int | None = None
    delivered: int | None = None

    def due(self, counts: Counter[str]) -> bool:
        return (self.pulled is not None and counts["pulled"] >= self.pulled) or (
            self.delivered is not None and counts["delivered"] >= self.delivered
        )


@dataclass
class Run:
    killed: bool
    counts: Counter[str]
    final: dict[str, Any]


async def run_client(
    hub: HubProcess, client_dir: Path, ingest_key: str, *, kill: KillAt | None = None
) -> Run:
    """Run tests/e2e/sync_once.py; SIGKILL it at ``kill``, or let it finish (and read the
    band's status then)."""
    env = subprocess_env(KMEBAND_HUB=hub.hub, KMEBAND_BOND_DIR=str(client_dir / "bonds"))
    args = [str(client_dir), hub.bands[0], ingest_key]
    if kill is None:
        args.append("--status")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SYNC_ONCE), *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    started = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert started == {"event": "starting"}
    loop = asyncio.get_running_loop()
    deadline = None if kill is None or kill.after_s is None else loop.time() + kill.after_s
    counts: Counter[str] = Counter()
    final: dict[str, Any] = {}
    while True:
        wait = 60.0 if deadline is None else deadline - loop.time()
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), max(0.0, wait))
        except TimeoutError:
            assert deadline is not None, "the client stopped talking for a minute"
            break  # the kill time came
        if not line:
            assert await proc.wait() == 0
            return Run(False, counts, final)
        event = json.loads(line)
        counts[event.get("event", "final")] += 1
        final = event
        if kill is not None and kill.due(counts):
            break
    with contextlib.suppress(ProcessLookupError):  # it may have exited just now
        proc.send_signal(signal.SIGKILL)
    code = await proc.wait()
    # it may have finished on its own just before the signal
    return Run(code == -signal.SIGKILL, counts, final)


def stored_records(client_dir: Path) -> int:
    """How far the client's outbox cursors have moved, summed over streams."""
    if not (client_dir / "outbox.db").exists():
        return 0
    with sqlite3.connect(client_dir / "outbox.db") as db:
        # a client killed while creating its outbox leaves the file before its tables
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'cursors'").fetchone()
        if exists is None:
            return 0
        return int(db.execute("SELECT COALESCE(SUM(stored_seq), 0) FROM cursors").fetchone()[0])


async def test_sigkill_of_the_client_at_random_points_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    """Kills land all along a sync: during setup (timed), mid-pull (on the client's own pull
    progress lines, so a fast or a loaded machine alike gets kills while records move) and
    mid-upload (on its delivered-batch lines). The ingest ends up with every record once."""
    rng = random.Random(20240304)
    client_dir = tmp_path / "client"
    with HubProcess(tmp_path / "hub", backlog_days=2.0) as hub:
        async with IngestServer(tmp_path / "ingest.db", tmp_path / "ingest-keys") as ingest:
            account = await create_account(ingest.url)
            account.save(client_dir)
            assert ingest.keys is not None
            key = ingest.keys.x25519_public.hex()
            store = ingest.store
            assert store is not None
            kills = {"setup": 0, "pull": 0, "upload": 0}
            moved = {"pull": 0, "upload": 0}  # kills after which more was stored / uploaded

            async def trial(phase: str, kill: KillAt) -> Run:
                before = (stored_records(client_dir), store.record_count())
                run = await run_client(hub, client_dir, key, kill=kill)
                after = (stored_records(client_dir), store.record_count())
                if run.killed:
                    kills[phase] += 1
                    if phase == "pull" and after[0] > before[0]:
                        moved["pull"] += 1
                    if phase == "upload" and after[1] > before[1]:
                        moved["upload"] += 1
                return run

            # setup: pairing, encryption, ownership, consent; timed kills, or at the first
            # chunk at the latest
            for _ in range(6):
                await trial("setup", KillAt(after_s=rng.uniform(0.0, 0.1), pulled=1, delivered=1))
            # the pull: each run is killed a few chunks in, or at its first delivered batch
            # once the pull is through
            for _ in range(80):
                run = await trial("pull", KillAt(pulled=rng.randint(1, 40), delivered=1))
                if run.counts["delivered"] or not run.killed:
                    break
            # the upload: each run is killed a few batches in, until one runs to its end
            for _ in range(40):
                run = await trial("upload", KillAt(delivered=rng.randint(1, 4)))
                if not run.killed:
                    break
            final = await run_client(hub, client_dir, key)
            out = final.final
            assert not out["errors"] and out["rejected"] == 0
            account_id = store.account_for_token(account.token)
            held: dict[StreamId, list[int]] = {s: [] for s in StreamId}
            for segment in store.segments_of(account_id):
                held[segment.stream].extend(r.seq for r in segment.body.records())
            for stream in StreamId:
                last = out["next_seq"][str(int(stream))] - 1
                assert sorted(held[stream]) == list(range(1, last + 1)), (
                    f"{stream.name}: the ingest does not hold 1..{last} exactly once"
                )
            total = sum(len(v) for v in held.values())
            assert total > 20000
            assert sum(kills.values()) >= 15, f"too few runs were killed: {kills}"
            assert moved["pull"] >= 3, f"too few kills landed mid-pull: {kills} {moved}"
            assert moved["upload"] >= 2, f"too few kills landed mid-upload: {kills} {moved}"
    with sqlite3.connect(client_dir / "outbox.db") as db:
        queued = db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        delivered = db.execute("SELECT COALESCE(SUM(records), 0) FROM delivered").fetchone()[0]
    assert queued == 0
    # every record was put in exactly one batch by the client (the ingest would hide a
    # second copy by trimming it; the client's own count would not match then)
    assert delivered == sum(len(v) for v in held.values())


CATEGORIES = (
    ConsentCategory.ACTIVITY,
    ConsentCategory.HEART_RATE,
    ConsentCategory.SLEEP,
    ConsentCategory.LOCATION,
    ConsentCategory.UX_PROGRAM,
)
consent_changes = st.lists(
    st.tuples(
        st.integers(1, 47),  # at this half hour of the day
        st.sampled_from(CATEGORIES),
        st.booleans(),  # grant (True) or withdraw
        st.booleans(),  # a grant shows a newer privacy-policy version
    ),
    max_size=8,
)


async def consent_timeline_round(
    directory: Path,
    changes: list[tuple[int, ConsentCategory, bool, bool]],
    mid_sync_at: int | None,
    min_policy_version: int,
    defer_mid_upload: bool = False,
) -> None:
    """Consent changes on the band, a sync at ``mid_sync_at`` (which only queues, uploading
    nothing, with ``defer_mid_upload``) and one at the end; the ingest must hold exactly
    what the band's log allowed, fields (avg_hr) included."""
    clock = ManualClock(EPOCH)
    band = make_band(directory, clock, seed=61, scenario="athlete_week", fidelity="summary")
    v = min_policy_version
    expected: dict[StreamId, dict[int, Any]] = {s: {} for s in StreamId}
    # records pulled by a sync that did not upload, as its consent allowed them then
    waiting: dict[StreamId, list[Any]] = {s: [] for s in StreamId}
    async with Rig(directory, band) as rig:
        moments = sorted(changes, key=lambda c: c[0])
        syncs = [] if mid_sync_at is None else [(mid_sync_at, None)]
        events = sorted([*moments, *syncs], key=lambda e: (e[0], len(e)))
        for event in [*events, (48, None)]:
            live(band, EPOCH + event[0] * 1800.0)
            if len(event) == 4:
                _, category, granted, newer = event
                version = max(1, band.consent.flag(category).policy_version) + int(newer)
                band.set_consent(category, granted, policy_version=version)
                continue
            # a sync: the band's log says what may be pulled, as of now
            pulled = expected_upload(band_records(band), band.consent, v)
            if defer_mid_upload and event[0] == mid_sync_at:
                for stream, records in pulled.items():
                    waiting[stream].extend(records)
                report = await rig.sync(min_policy_version=v, upload=False)
                assert report.upload is None
                assert all(s.error is None for s in report.streams)
                continue
            # what waited in the outbox goes only as far as the log still allows it now
            for stream, records in expected_upload(waiting, band.consent, v).items():
                expected[stream].update((r.seq, r) for r in records)
            waiting = {s: [] for s in StreamId}
            for stream, records in pulled.items():
                expected[stream].update((r.seq, r) for r in records)
            report = await rig.sync(min_policy_version=v)
            assert all(s.error is None for s in report.streams)
            assert report.upload is not None and report.upload.rejected == 0
        held = rig.held()
        for stream in StreamId:
            got = sorted(held.get(stream, []), key=lambda r: r.seq)
            assert len({r.seq for r in got}) == len(got), f"{stream.name}: held twice"
            want = [expected[stream][seq] for seq in sorted(expected[stream])]
            assert got == want, f"{stream.name}: the ingest differs from the band's consent"
            for stored in got:  # nothing outside a consented interval of the band's log
                t = record_time(stored.record)
                intervals = consented_intervals(band.consent, STREAM_CONSENT[stream], v)
                assert any(a <= t and (b is None or t < b) for a, b in intervals)
                for (s, name), category in FIELD_CONSENT.items():  # fields too (avg_hr)
                    if s is stream and getattr(stored.record, name):
                        field_intervals = consented_intervals(band.consent, category, v)
                        assert any(a <= t and (b is None or t < b) for a, b in field_intervals)


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(
    changes=[
        (6, ConsentCategory.HEART_RATE, False, False),
        (12, ConsentCategory.HEART_RATE, True, True),
        (20, ConsentCategory.LOCATION, False, False),
        (30, ConsentCategory.SLEEP, False, False),
        (34, ConsentCategory.SLEEP, True, True),
        (40, ConsentCategory.ACTIVITY, True, True),
    ],
    mid_sync_at=24,
    min_policy_version=2,
    defer_mid_upload=False,
)
@example(
    changes=[
        (4, ConsentCategory.LOCATION, False, False),
        (10, ConsentCategory.LOCATION, True, False),
        (16, ConsentCategory.HEART_RATE, False, False),
        (22, ConsentCategory.UX_PROGRAM, False, False),
        (28, ConsentCategory.HEART_RATE, True, False),
        (44, ConsentCategory.LOCATION, False, False),
    ],
    mid_sync_at=26,
    min_policy_version=0,
    defer_mid_upload=True,
)
@example(
    # queued at 5:00, heart rate withdrawn at 6:00, uploaded at the end: avg_hr of the
    # queued minutes must not go, the minutes must
    changes=[(12, ConsentCategory.HEART_RATE, False, False)],
    mid_sync_at=10,
    min_policy_version=0,
    defer_mid_upload=True,
)
@example(
    # queued, activity withdrawn and granted again (a new interval): the queued minutes
    # were made in the old interval, which the band's log still allows
    changes=[
        (14, ConsentCategory.ACTIVITY, False, False),
        (16, ConsentCategory.ACTIVITY, True, False),
        (18, ConsentCategory.SLEEP, False, False),
    ],
    mid_sync_at=12,
    min_policy_version=0,
    defer_mid_upload=True,
)
@given(
    changes=consent_changes,
    mid_sync_at=st.none() | st.integers(2, 46),
    min_policy_version=st.sampled_from([0, 2]),
    defer_mid_upload=st.booleans(),
)
def test_random_consent_timelines_upload_nothing_outside_a_consented_interval(
    tmp_path_factory: pytest.TempPathFactory,
    changes: list[tuple[int, ConsentCategory, bool, bool]],
    mid_sync_at: int | None,
    min_policy_version: int,
    defer_mid_upload: bool,
) -> None:
    directory = tmp_path_factory.mktemp("timeline")
    asyncio.run(
        consent_timeline_round(
            directory, changes, mid_sync_at, min_policy_version, defer_mid_upload
        )
    )
