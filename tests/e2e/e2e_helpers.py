"""Wiring for the end-to-end tests: simulated bands, the bleak backend, the sync client and
the reference ingest, all real, in one process (:class:`Rig`), plus what the tests check
against (:func:`band_records`, :func:`ingest_records`, :func:`expected_upload`).

The band's own consent store is the oracle: a record belongs in the ingest when its
category was granted at the record's time (by the band's log) and is still granted when
the client syncs; nothing else may be there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_ingest.server import IngestConfig, IngestServer
from device_sim.band.consent_store import ConsentStore
from device_sim.band.flash import DEFAULT_CAPACITY_BYTES
from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner, use_radio
from device_sim.bleak_backend.bonds import BondStore
from device_sim.clock import ManualClock
from device_sim.radio import ATT_CID, LinkFault, Radio
from protocol.errors import KmebandError
from protocol.kme.profile import KME_RECORD_SYNC_DATA
from protocol.kme.records import (
    FIELD_CONSENT,
    STREAM_CONSENT,
    ConsentCategory,
    StoredRecord,
    StreamId,
    record_time,
)
from sync_client.activation import AccountFile, ClientKeys, create_account
from sync_client.ble import Backend
from sync_client.outbox import Outbox
from sync_client.session import SyncOptions, SyncReport, SyncSession

#: A fixed start of the simulated life (2024-03-04 00:00 UTC, a Monday): no wall clock.
EPOCH = 1_709_510_400.0
DAY = 86400.0

#: Which record seqs the ingest holds, per stream (each list in arrival order).
Held = dict[StreamId, list[StoredRecord]]


class PasskeyNotShownError(KmebandError):
    """The band never showed a passkey while pairing."""


def make_band(
    tmp: Path,
    clock: ManualClock,
    *,
    seed: int = 11,
    scenario: str = "office_worker_week",
    fidelity: str = "summary",
    flash_capacity: int | None = None,
) -> SimulatedBand:
    """A band whose recorded life starts at the clock's now (simulate it forward)."""
    config = BandConfig(
        seed=seed,
        scenario=scenario,
        fidelity=fidelity,
        state_dir=tmp / f"band-{seed}",
        flash_capacity=flash_capacity or DEFAULT_CAPACITY_BYTES,
    )
    return SimulatedBand(config, clock)


def live(band: SimulatedBand, until: float, step_s: float = 6 * 3600.0) -> None:
    """Simulate the band's life up to ``until`` and move its clock there."""
    clock = band.clock
    assert isinstance(clock, ManualClock)
    t = band.simulated_until
    while t < until:
        t = min(until, t + step_s)
        band.simulate_until(t)
    if until > clock.now():
        clock.jump(until - clock.now())


def band_records(band: SimulatedBand) -> dict[StreamId, list[StoredRecord]]:
    """Every record the band's flash holds now, per stream."""
    out: dict[StreamId, list[StoredRecord]] = {}
    for stream in StreamId:
        first, nxt = band.flash.first_seq(stream), band.flash.next_seq(stream)
        out[stream] = list(band.flash.read(stream, first, nxt - first)) if nxt > first else []
    return out


def consented_intervals(
    consent: ConsentStore, category: ConsentCategory, min_policy_version: int = 0
) -> list[tuple[int, int | None]]:
    """``[start, end)`` intervals of ``category`` by the band's log (grants of an older
    policy version than ``min_policy_version`` count as none)."""
    if min_policy_version <= 1:
        return consent.intervals(category)  # the band's own index
    out: list[tuple[int, int | None]] = []
    start: int | None = None
    for entry in consent.log():
        if entry.category is not category:
            continue
        if entry.granted and entry.policy_version >= min_policy_version:
            start = entry.time if start is None else start
        elif start is not None:
            if entry.time > start:
                out.append((start, entry.time))
            start = None
    if start is not None:
        out.append((start, None))
    return out


def may_upload(
    consent: ConsentStore, category: ConsentCategory, t: int, min_policy_version: int = 0
) -> bool:
    """The band's own answer: granted at ``t`` by its log, and still granted now."""
    intervals = consented_intervals(consent, category, min_policy_version)
    return (
        bool(intervals)
        and intervals[-1][1] is None
        and any(start <= t and (end is None or t < end) for start, end in intervals)
    )


def expected_upload(
    records: dict[StreamId, list[StoredRecord]],
    consent: ConsentStore,
    min_policy_version: int = 0,
) -> dict[StreamId, list[StoredRecord]]:
    """What the ingest should hold of ``records``: consented ones, fields cleared as needed."""
    v = min_policy_version
    out: dict[StreamId, list[StoredRecord]] = {}
    for stream, items in records.items():
        kept = []
        for stored in items:
            t = record_time(stored.record)
            if not may_upload(consent, STREAM_CONSENT[stream], t, v):
                continue
            record = stored.record
            for (s, name), category in FIELD_CONSENT.items():
                cleared = not may_upload(consent, category, t, v)
                if s is stream and getattr(record, name) and cleared:
                    record = dataclasses.replace(record, **{name: 0})  # type: ignore[type-var]
            kept.append(StoredRecord(stream, stored.seq, record))
        out[stream] = kept
    return out


def ingest_records(ingest: IngestServer, account: AccountFile, band: bytes) -> Held:
    """Every record the ingest holds for ``band`` (a pseudonym), per stream."""
    store = ingest.store
    assert store is not None
    account_id = store.account_for_token(account.token)
    assert account_id is not None
    held: Held = defaultdict(list)
    for segment in store.segments_of(account_id):
        if segment.band == band:
            held[segment.stream].extend(segment.body.records())
    return held


def seqs(records: list[StoredRecord]) -> list[int]:
    return sorted(r.seq for r in records)


async def read_passkey(radio: Any, address: str, *, tries: int = 500) -> str:
    """Read the passkey off the band's display, as the user would."""
    for _ in range(tries):
        text = await radio.read_display(address)
        if text:
            return str(text)
        await asyncio.sleep(0.002)
    raise PasskeyNotShownError("the band never showed a passkey")


@contextmanager
def bond_dir(path: Path) -> Iterator[None]:
    """Keep the backend's default bonds in ``path`` for the block (restored afterwards)."""
    previous = os.environ.get("KMEBAND_BOND_DIR")
    os.environ["KMEBAND_BOND_DIR"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("KMEBAND_BOND_DIR", None)
        else:
            os.environ["KMEBAND_BOND_DIR"] = previous


ATT_HANDLE_VALUE_NTF = 0x1B


class FrameCounter:
    """A radio capture sink that counts frames per connection and Record Sync Data bytes.

    ``sync_data_bytes`` sums the values (ATT payloads, without the 3-byte opcode and
    handle) of every notification on the Record Sync Data characteristic.
    """

    def __init__(self) -> None:
        self.data_handle: int | None = None
        self.frames: dict[int, int] = defaultdict(int)
        self.sync_data_bytes = 0
        self.sync_data_notifications = 0
        self.connections = 0
        self.last_handle: int | None = None
        #: per connection: how many frames had crossed when its first data chunk did
        self.first_data_frame: dict[int, int] = {}

    def connected(self, timestamp: float, handle: int, peer_address: str) -> None:
        self.connections += 1
        self.frames[handle] = 0
        self.first_data_frame.pop(handle, None)
        self.last_handle = handle

    def frame(
        self, timestamp: float, handle: int, from_central: bool, cid: int, payload: bytes
    ) -> None:
        self.frames[handle] += 1
        if (
            not from_central
            and cid == ATT_CID
            and len(payload) >= 3
            and payload[0] == ATT_HANDLE_VALUE_NTF
            and int.from_bytes(payload[1:3], "little") == self.data_handle
        ):
            self.sync_data_bytes += len(payload) - 3
            self.sync_data_notifications += 1
            self.first_data_frame.setdefault(handle, self.frames[handle])

    def disconnected(self, timestamp: float, handle: int, reason: int) -> None:
        pass

    def encrypted(self, timestamp: float, handle: int) -> None:
        pass


@dataclass
class Rig:
    """One band on an in-process radio, the ingest on loopback, and a client's state."""

    tmp: Path
    band: SimulatedBand
    ingest_config: IngestConfig = field(default_factory=IngestConfig)
    radio: Radio = field(init=False)
    endpoint: BandGattEndpoint = field(init=False)
    ingest: IngestServer = field(init=False)
    account: AccountFile = field(init=False)
    keys: ClientKeys = field(init=False)
    outbox: Outbox = field(init=False)
    bonds: BondStore = field(init=False)
    capture: FrameCounter = field(init=False)
    _stack: AsyncExitStack = field(init=False)

    async def __aenter__(self) -> Rig:
        clock = self.band.clock
        self._stack = AsyncExitStack()
        self.capture = FrameCounter()
        self.radio = Radio(clock, seed=5, capture=self.capture)
        self.endpoint = BandGattEndpoint(self.band)
        self.capture.data_handle = self.endpoint.db.value_handle(KME_RECORD_SYNC_DATA)
        self.radio.attach(self.endpoint)
        self._stack.enter_context(use_radio(self.radio))
        self.ingest = await self._stack.enter_async_context(
            IngestServer(
                self.tmp / "ingest.db", self.tmp / "ingest-keys", config=self.ingest_config
            )
        )
        self.account = await create_account(self.ingest.url)
        self.keys = ClientKeys.load_or_create(self.tmp / "client")
        self.outbox = self._stack.enter_context(Outbox(self.tmp / "client" / "outbox.db"))
        self.bonds = BondStore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self.band.close()

    @property
    def pseudonym(self) -> bytes:
        return self.keys.band_pseudonym(self.band.identity.serial)

    def inject(self, fault: LinkFault) -> None:
        self.radio.inject_fault(self.band.address, fault)

    async def sync(self, **options: Any) -> SyncReport:
        """One sync session through the bleak backend (pairs on first use)."""
        options.setdefault("set_clock", False)
        options.setdefault("timeout_s", 5.0)

        async def passkey() -> str:
            return await read_passkey(self.radio, self.band.address)

        session = SyncSession(
            self.band.address,
            self.keys,
            self.outbox,
            self.ingest.public_key,
            self.account,
            backend=Backend(SimBleakScanner, SimBleakClient),
            options=SyncOptions(**options),
            passkey_callback=passkey,  # type: ignore[arg-type]
            backend_options={"bond_store": self.bonds},
        )
        return await session.run()

    def cursors(self) -> list[int]:
        """The client's stored cursor of every stream of this band."""
        return [self.outbox.stored_up_to(self.pseudonym, int(s)) for s in StreamId]

    def held(self) -> Held:
        return ingest_records(self.ingest, self.account, self.pseudonym)


ROOT = Path(__file__).resolve().parents[2]
SYNC_ONCE = Path(__file__).resolve().with_name("sync_once.py")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a kmeband child process run from the source tree."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


@dataclass
class HubProcess:
    """``kmeband sim`` in a subprocess: bands on a Unix-socket hub, stopped on exit."""

    directory: Path
    backlog_days: float
    seed: int = 41
    flash_capacity: int | None = None
    fidelity: str = "summary"
    speed: float = 0.000001
    hub: str = ""
    bands: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None

    def __enter__(self) -> HubProcess:
        command = [
            sys.executable,
            "-m",
            "kmeband.cli",
            "sim",
            "--json",
            "--hub",
            f"unix:{self.directory / 'hub.sock'}",
            "--state-dir",
            str(self.directory / "bands"),
            "--speed",
            repr(self.speed),
            "--fidelity",
            self.fidelity,
            "--backlog-days",
            repr(self.backlog_days),
            "--seed",
            str(self.seed),
        ]
        if self.flash_capacity is not None:
            command += ["--flash-capacity", str(self.flash_capacity)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=subprocess_env()
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if event.get("event") == "ready":
                self.hub, self.bands = event["hub"], event["bands"]
                return self
        raise HubNotReadyError("the hub process ended before it was ready")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


class HubNotReadyError(KmebandError):
    """``kmeband sim`` did not start."""


def timed() -> Iterator[float]:
    """Seconds since the first ``next()`` (for progress notes in failures, never asserted)."""
    start = time.perf_counter()
    while True:
        yield time.perf_counter() - start
