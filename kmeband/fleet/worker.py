"""One wave of a fleet in one process: bands created, simulated, synced, checked, released.

:func:`run_wave` is the entry point a worker process runs (a module-level function of
picklable arguments, so it works with the ``spawn`` start method). A wave puts its bands on
one in-process radio with one virtual clock; every band gets its own seeded person and
firmware (summary fidelity), its own phone (client keys, bonds, outbox, ingest account) and
its own schedule. Events of the whole wave run in time order: before a band syncs, its life
is simulated up to that moment, then the phone syncs through the real path (bleak backend,
GATT record sync, outbox, HPKE sealing, HTTP upload). After the closing sync each band's
account is exported from the ingest and checked (:mod:`.accounting`), and everything of the
wave is released, so a worker's memory depends on the wave size, not on the fleet size.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner, use_radio
from device_sim.bleak_backend.bonds import BondStore
from device_sim.clock import ManualClock
from device_sim.radio import LinkFault, Radio
from kmeband.fleet.accounting import BandLedger, StreamAccount
from kmeband.fleet.memory import peak_rss_kb
from kmeband.fleet.schedule import ArrivalPattern, Event, EventKind, scenario_for
from protocol.errors import KmebandError
from protocol.kme.ownership import private_key_from_seed
from protocol.kme.records import ConsentCategory, StreamId
from sync_client.activation import AccountFile, ClientKeys, create_account
from sync_client.ble import Backend
from sync_client.outbox import Outbox, QueuedBatch
from sync_client.session import SyncOptions, SyncSession, load_ingest_key

#: Where every fleet's simulated life starts (2024-03-04 00:00 UTC, a Monday): no wall clock.
EPOCH = 1_709_510_400.0
#: The firmware's simulation step in a fleet. A band makes the very same records whatever
#: the step (the summary model works per minute inside a block); ten-minute blocks cost a
#: quarter of one-minute ones, and a phone that syncs mid-block gets that block's records
#: at its next sync.
FLEET_BLOCK_S = 600
#: Where the simulated phones keep their outboxes: memory-backed when the system has it
#: (the outbox's own code runs unchanged; only the disk's flush latency is spared, which
#: is the phone's, not the ingest's, and would otherwise dominate a fleet's sync time).
PHONE_STORAGE = "/dev/shm" if Path("/dev/shm").is_dir() else None
#: How many times a phone tries one sync before it gives up until its next scheduled one.
SYNC_ATTEMPTS = 6
#: A phone whose sync failed tries again this long (virtual seconds) later.
RETRY_AFTER_S = 60.0


class FleetSyncError(KmebandError):
    """A band's closing sync never completed: its records cannot be accounted for."""


@dataclass(frozen=True)
class Faults:
    """Fault rates over the fleet: ``link_drop`` is the chance that a sync attempt's link
    drops (after a seeded number of frames, 1..``link_drop_max_frames``)."""

    link_drop: float = 0.0
    link_drop_max_frames: int = 400


@dataclass(frozen=True)
class WaveSpec:
    """Everything a worker needs to run one wave (picklable)."""

    ingest_url: str
    ingest_key: bytes
    band_indices: tuple[int, ...]
    days: float
    seed: int
    mix: tuple[tuple[str, float], ...]
    pattern: ArrivalPattern = field(default_factory=ArrivalPattern)
    faults: Faults = field(default_factory=Faults)
    fidelity: str = "summary"


@dataclass
class WaveResult:
    """What one wave did (counts and timings only: no identifiers, no health data)."""

    bands: int = 0
    #: records and batches the ingest holds for the bands (filled in by the check)
    records: int = 0
    batches: int = 0
    #: record bytes that crossed the air in completed syncs (Record Sync Data payloads)
    air_bytes: int = 0
    #: sealed batch bytes the phones queued for the ingest (HTTP request bodies)
    wire_bytes: int = 0
    syncs: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: the accounting's totals over every checked stream (filled in by the check)
    checked: StreamAccount = field(default_factory=StreamAccount)
    #: (band index, stream name) of every stream whose check failed
    problems: list[tuple[int, str]] = field(default_factory=list)
    #: what each band made and its phone withheld, for the check after the run
    ledgers: list[BandLedger] = field(default_factory=list)
    simulate_s: float = 0.0
    sync_s: float = 0.0
    peak_rss_kb: int = 0
    #: when the wave finished (wall seconds, time.time()): for throughput over time
    finished_at: float = 0.0

    def merge(self, other: WaveResult) -> None:
        """Add ``other``'s counts to these (peak RSS: the larger)."""
        for name in (
            "bands",
            "records",
            "batches",
            "air_bytes",
            "wire_bytes",
            "syncs",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("simulate_s", "sync_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies_ms.extend(other.latencies_ms)
        self.checked.add(other.checked)
        self.errors.update(other.errors)
        self.problems.extend(other.problems)
        self.ledgers.extend(other.ledgers)
        self.peak_rss_kb = max(self.peak_rss_kb, other.peak_rss_kb)
        self.finished_at = max(self.finished_at, other.finished_at)

    def add_account(self, index: int, stream: StreamId, account: StreamAccount) -> None:
        self.checked.add(account)
        if not account.ok:
            self.problems.append((index, stream.name.lower()))


class CountingOutbox(Outbox):
    """The phone's outbox, counting the sealed bytes it queues for the wire."""

    sealed_bytes = 0

    def commit(
        self,
        band: bytes,
        stream: int,
        up_to_seq: int,
        batches: Iterable[QueuedBatch] = (),
        withheld: int = 0,
    ) -> None:
        batches = list(batches)
        super().commit(band, stream, up_to_seq, batches, withheld)
        self.sealed_bytes += sum(len(b.envelope) for b in batches)


@dataclass
class Phone:
    """One band with its own phone: keys, bonds, outbox, account."""

    index: int
    band: SimulatedBand
    endpoint: BandGattEndpoint
    radio: Radio
    keys: ClientKeys
    outbox: CountingOutbox
    bonds: BondStore
    account: AccountFile
    events: list[Event]
    rng: np.random.Generator


def phone_keys(seed: int, index: int) -> ClientKeys:
    """The seeded identity of the phone of band ``index`` (its account and owner keys)."""
    base = hashlib.sha256(f"kmeband-fleet-phone:{seed}:{index}".encode()).digest()
    owner = hashlib.sha256(base + b"owner").digest()
    return ClientKeys(hashlib.sha256(base + b"account").digest(), private_key_from_seed(owner))


def band_seed(seed: int, index: int) -> int:
    """A band's own seed (distinct addresses and persons across the fleet)."""
    return int.from_bytes(
        hashlib.sha256(f"kmeband-fleet-band:{seed}:{index}".encode()).digest()[:6]
    )


def warm_up(linger_s: float) -> None:
    """A worker's first task: its imports are done by now; linger so that the pool hands
    the other start-up tasks to the other workers."""
    time.sleep(linger_s)


def run_wave(spec: WaveSpec) -> WaveResult:
    """Run one wave to the end (blocking): the worker process's entry point."""
    return asyncio.run(_run_wave(spec))


async def _run_wave(spec: WaveSpec) -> WaveResult:
    result = WaveResult(bands=len(spec.band_indices))
    ingest_key = load_ingest_key(spec.ingest_key)
    clock = ManualClock(start=EPOCH)
    radio = Radio(clock, seed=spec.seed)
    tmp = Path(tempfile.mkdtemp(prefix="kmeband-fleet-", dir=PHONE_STORAGE))
    phones: list[Phone] = []
    try:
        with use_radio(radio):
            for index in spec.band_indices:
                phones.append(await _make_phone(spec, index, clock, radio, tmp))
            queue = sorted(
                ((event, i) for i, phone in enumerate(phones) for event in phone.events),
                key=lambda item: (item[0].at, item[1]),
            )
            for event, i in queue:
                phone = phones[i]
                at = EPOCH + event.at
                if at > clock.now():
                    clock.jump(at - clock.now())
                t0 = time.perf_counter()
                phone.band.simulate_until(at)
                result.simulate_s += time.perf_counter() - t0
                if event.kind is EventKind.WITHDRAW_LOCATION:
                    phone.band.set_consent(ConsentCategory.LOCATION, False)
                    continue
                last = event is phone.events[-1]
                await _sync(phone, ingest_key, spec.faults, result, last=last)
            result.ledgers.extend(_ledger(phone) for phone in phones)
    finally:
        for phone in phones:
            phone.outbox.close()
            phone.band.close()
            radio.detach(phone.endpoint.address)
        shutil.rmtree(tmp, ignore_errors=True)
    result.wire_bytes = sum(p.outbox.sealed_bytes for p in phones)
    result.peak_rss_kb = peak_rss_kb()
    result.finished_at = time.time()
    return result


async def _make_phone(
    spec: WaveSpec, index: int, clock: ManualClock, radio: Radio, tmp: Path
) -> Phone:
    seed = band_seed(spec.seed, index)
    band = SimulatedBand(
        BandConfig(
            seed=seed,
            scenario=scenario_for(spec.mix, spec.seed, index),
            fidelity=spec.fidelity,
            block_s=FLEET_BLOCK_S,
        ),
        clock,
    )
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    return Phone(
        index=index,
        band=band,
        endpoint=endpoint,
        radio=radio,
        keys=phone_keys(spec.seed, index),
        outbox=CountingOutbox(tmp / f"phone-{index}" / "outbox.db"),
        bonds=BondStore(),
        account=await create_account(spec.ingest_url),
        events=spec.pattern.events(spec.seed, index, spec.days),
        rng=np.random.default_rng([spec.seed, index, 0xFA17]),
    )


async def _sync(
    phone: Phone, ingest_key: object, faults: Faults, result: WaveResult, *, last: bool
) -> None:
    """One scheduled sync, retried (a minute of virtual time apart) while links drop."""
    radio_clock = phone.band.clock
    assert isinstance(radio_clock, ManualClock)
    started = time.perf_counter()
    for attempt in range(SYNC_ATTEMPTS):
        # the last attempt of the closing sync is spared faults: the fleet must end synced
        spare = last and attempt == SYNC_ATTEMPTS - 1
        if not spare and faults.link_drop and phone.rng.random() < faults.link_drop:
            frames = int(phone.rng.integers(1, faults.link_drop_max_frames + 1))
            phone.radio.inject_fault(phone.endpoint.address, LinkFault(drop_after_pdus=frames))
        try:
            report = await _session(phone, ingest_key).run()
        except (KmebandError, TimeoutError, OSError) as exc:
            result.errors[type(exc).__name__] += 1
            radio_clock.jump(RETRY_AFTER_S)
            continue
        except Exception as exc:  # bleak's own errors, from the simulated backend
            if type(exc).__module__.split(".")[0] != "bleak":
                raise
            result.errors[type(exc).__name__] += 1
            radio_clock.jump(RETRY_AFTER_S)
            continue
        failed = [s for s in report.streams if s.error is not None or not s.complete]
        result.air_bytes += sum(s.air_bytes for s in report.streams)
        if report.upload is not None and report.upload.rejected:
            result.errors["upload_rejected"] += report.upload.rejected
        if failed or (report.upload is not None and report.upload.rejected):
            result.errors["incomplete_sync"] += 1
            radio_clock.jump(RETRY_AFTER_S)
            continue
        result.syncs += 1
        result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
        result.sync_s += time.perf_counter() - started
        return
    result.sync_s += time.perf_counter() - started
    if last:
        raise FleetSyncError(
            f"band {phone.index}'s closing sync failed {SYNC_ATTEMPTS} times; lower the fault rates"
        )


def _session(phone: Phone, ingest_key: object) -> SyncSession:
    radio = phone.radio

    async def passkey() -> str:
        for _ in range(500):
            text = await radio.read_display(phone.endpoint.address)
            if text:
                return str(text)
            await asyncio.sleep(0.001)
        raise FleetSyncError("a band never showed its passkey while pairing")

    return SyncSession(
        phone.endpoint.address,
        phone.keys,
        phone.outbox,
        ingest_key,  # type: ignore[arg-type]
        phone.account,
        backend=Backend(SimBleakScanner, SimBleakClient),
        options=SyncOptions(set_clock=False, timeout_s=5.0, connect_attempts=1),
        passkey_callback=passkey,  # type: ignore[arg-type]
        backend_options={"bond_store": phone.bonds},
    )


def _ledger(phone: Phone) -> BandLedger:
    pseudonym = phone.keys.band_pseudonym(phone.band.identity.serial)
    withheld = {s: row["withheld"] for s, row in phone.outbox.stats(pseudonym).items()}
    return BandLedger(
        index=phone.index,
        account=phone.account,
        made={int(s): phone.band.flash.next_seq(s) - 1 for s in StreamId},
        withheld={int(s): n for s, n in withheld.items() if n},
    )
