"""``kmeband demo``: the whole system on one machine, in under a minute.

It starts the reference ingest (SQLite in a data directory), puts three simulated bands
with different lives on a hub socket, simulates a week of their wearers' lives, and syncs
each band through the bleak backend: pair (reading the passkey off the band's display),
activate, read consent, pull every stream, seal, queue and upload. Half-way through the
week one wearer withdraws location consent on the band; the second sync shows it honoured
(no GNSS fix after the withdrawal leaves the phone). Finally it checks that the ingest
holds exactly what the client queued, prints a table, and writes a PNG report per band
(with matplotlib installed). Every wearer has a weekday smart alarm, so alarm events flow
through the whole chain too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_ingest.server import IngestServer
from device_sim.band.firmware.alarms import Alarm as FirmwareAlarm
from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from device_sim.bleak_backend.port import HUB_ENV
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from device_sim.radio.hub_client import RemoteRadio
from device_sim.radio.hub_server import HubServer
from device_sim.radio.hub_wire import HubAddress
from protocol.errors import KmebandError
from protocol.kme.records import ConsentCategory, StreamId, record_time
from sync_client.activation import AccountFile, ClientKeys, create_account
from sync_client.ble import Backend
from sync_client.outbox import Outbox
from sync_client.session import SyncOptions, SyncReport, SyncSession

#: The demo's wearers: seed, person-model preset, what the band is called in the table.
DEMO_BANDS: tuple[tuple[int, str], ...] = (
    (101, "office_worker_week"),
    (102, "athlete_week"),
    (103, "shift_worker"),
)
#: The band (index into DEMO_BANDS) whose wearer withdraws a consent half-way, and which.
WITHDRAWING_BAND = 1
WITHDRAWN = ConsentCategory.LOCATION
MARKER = ".kmeband-demo"


class DemoError(KmebandError):
    """The demo could not run, or its end-to-end check failed."""


@dataclass
class StreamRow:
    """One line of the summary table."""

    band: str
    stream: StreamId
    synced: int = 0
    withheld: int = 0
    air_bytes: int = 0
    batches: int = 0
    in_ingest: int = 0


@dataclass
class DemoResult:
    """What the demo did; ``ok`` when the ingest holds exactly what was queued."""

    data_dir: Path
    rows: list[StreamRow] = field(default_factory=list)
    seconds: float = 0.0
    sync_seconds: dict[str, float] = field(default_factory=dict)
    reports: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


Progress = Callable[[str, float], None]


def prepare_data_dir(path: Path) -> Path:
    """Empty a previous demo's directory; refuse to touch a directory that is not one."""
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise DemoError(
                f"{path} exists and was not made by 'kmeband demo': choose another "
                "--data-dir or remove it yourself"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("made by kmeband demo; removed by the next run\n")
    return path


async def run_demo(
    data_dir: Path,
    *,
    days: float = 7.0,
    fidelity: str = "summary",
    progress: Progress | None = None,
    report: bool = True,
) -> DemoResult:
    """Run the demo in ``data_dir`` (emptied first); see the module docstring."""
    started = time.perf_counter()
    say = progress or (lambda step, fraction: None)
    data_dir = prepare_data_dir(data_dir)
    result = DemoResult(data_dir)
    clock = ManualClock(start=float(int(time.time()) - int(days * 86400)))
    radio = Radio(clock, seed=7)
    endpoints: list[BandGattEndpoint] = []
    for seed, scenario in DEMO_BANDS:
        band = SimulatedBand(
            BandConfig(
                seed=seed, scenario=scenario, fidelity=fidelity, state_dir=data_dir / f"band-{seed}"
            ),
            clock,
        )
        # every wearer wakes with a smart alarm on weekdays (a 30-minute window before 07:00)
        band.firmware.set_alarm(
            FirmwareAlarm(0, 7, 0, weekdays=0x1F, smart_window_min=30), clock.now()
        )
        endpoint = BandGattEndpoint(band)
        radio.attach(endpoint)
        endpoints.append(endpoint)
    names = {e.address: f"band {i + 1} ({e.band.config.scenario})" for i, e in enumerate(endpoints)}
    hub = HubServer(radio, HubAddress.parse(f"unix:{data_dir / 'hub.sock'}"))
    hub_address = await hub.start()
    previous_hub = os.environ.get(HUB_ENV)
    os.environ[HUB_ENV] = str(hub_address)
    totals: dict[tuple[str, StreamId], StreamRow] = {}
    try:
        async with IngestServer(data_dir / "ingest.db", data_dir / "ingest-keys") as ingest:
            account = await create_account(ingest.url)
            keys = ClientKeys.load_or_create(data_dir / "client")
            with Outbox(data_dir / "client" / "outbox.db") as outbox:
                async with RemoteRadio(str(hub_address)) as eyes:
                    half = clock.now() + days * 86400 / 2
                    end = clock.now() + days * 86400
                    labels = (
                        f"simulate days 0-{days / 2:g}",
                        f"simulate days {days / 2:g}-{days:g}",
                    )
                    for phase, until in enumerate((half, end)):
                        _simulate(endpoints, until, say, labels[phase])
                        await clock.advance(until - clock.now())
                        if phase == 0:
                            # the wearer turns location off on the band's own screen
                            endpoints[WITHDRAWING_BAND].band.set_consent(WITHDRAWN, False)
                        for endpoint in endpoints:
                            name = names[endpoint.address]
                            say(f"sync {name}", 0.0)
                            t0 = time.perf_counter()
                            report_ = await _sync(endpoint, keys, outbox, ingest, account, eyes)
                            result.sync_seconds[name] = result.sync_seconds.get(name, 0.0) + (
                                time.perf_counter() - t0
                            )
                            _accumulate(totals, name, report_)
                            say(f"sync {name}", 1.0)
                assert ingest.store is not None
                _check(result, totals, ingest.store, account, keys, endpoints, names)
                result.rows = sorted(totals.values(), key=lambda r: (r.band, r.stream))
                if report:
                    result.reports = _reports(ingest.store, account, data_dir, say)
    finally:
        if previous_hub is None:
            os.environ.pop(HUB_ENV, None)
        else:
            os.environ[HUB_ENV] = previous_hub
        await hub.close()
        for endpoint in endpoints:
            endpoint.band.close()
    result.seconds = time.perf_counter() - started
    return result


def _simulate(endpoints: list[BandGattEndpoint], until: float, say: Progress, label: str) -> None:
    total = len(endpoints)
    for i, endpoint in enumerate(endpoints):
        band = endpoint.band
        start = band.simulated_until
        t = start
        while t < until:
            t = min(until, t + 6 * 3600.0)
            band.simulate_until(t)
            say(label, (i + (t - start) / max(until - start, 1.0)) / total)
        say(label, (i + 1) / total)


async def _sync(
    endpoint: BandGattEndpoint,
    keys: ClientKeys,
    outbox: Outbox,
    ingest: IngestServer,
    account: AccountFile,
    eyes: RemoteRadio,
) -> SyncReport:
    async def passkey() -> str:
        # the user reads the passkey off the band's screen
        for _ in range(100):
            text = await eyes.read_display(endpoint.address)
            if text:
                return text
            await asyncio.sleep(0.01)
        raise DemoError("the band never showed a passkey")

    session = SyncSession(
        endpoint.address,
        keys,
        outbox,
        ingest.public_key,
        account,
        backend=Backend(SimBleakScanner, SimBleakClient),
        options=SyncOptions(set_clock=False),
        passkey_callback=passkey,  # type: ignore[arg-type]
    )
    return await session.run()


def _accumulate(
    totals: dict[tuple[str, StreamId], StreamRow], name: str, report: SyncReport
) -> None:
    for s in report.streams:
        row = totals.setdefault((name, s.stream), StreamRow(name, s.stream))
        row.synced += s.queued
        row.withheld += s.withheld
        row.air_bytes += s.air_bytes
        row.batches += s.batches


def _check(
    result: DemoResult,
    totals: dict[tuple[str, StreamId], StreamRow],
    store: Any,
    account: AccountFile,
    keys: ClientKeys,
    endpoints: list[BandGattEndpoint],
    names: dict[str, str],
) -> None:
    """The ingest must hold exactly what was queued, and nothing after the withdrawal."""
    account_id = store.account_for_token(account.token)
    held: dict[tuple[bytes, StreamId], list[tuple[int, int]]] = defaultdict(list)
    for segment in store.segments_of(account_id):
        for stored in segment.body.records():
            held[(segment.band, stored.stream)].append((stored.seq, record_time(stored.record)))
    for endpoint in endpoints:
        name = names[endpoint.address]
        pseudonym = keys.band_pseudonym(endpoint.band.identity.serial)
        for stream in StreamId:
            seqs = [seq for seq, _ in held.get((pseudonym, stream), [])]
            row = totals.setdefault((name, stream), StreamRow(name, stream))
            row.in_ingest = len(seqs)
            if len(seqs) != len(set(seqs)):
                result.problems.append(f"{name}: {stream.name} has records stored twice")
            if len(seqs) != row.synced:
                result.problems.append(
                    f"{name}: {stream.name}: the ingest holds {len(seqs)} records, "
                    f"the client queued {row.synced}"
                )
        withdrawals = [
            e.time for e in endpoint.band.consent.log() if e.category == WITHDRAWN and not e.granted
        ]
        if withdrawals:
            late = [
                t for _, t in held.get((pseudonym, StreamId.GNSS_FIXES), []) if t >= withdrawals[0]
            ]
            if late:
                result.problems.append(
                    f"{name}: {len(late)} location records after the withdrawal reached the ingest"
                )


def _reports(store: Any, account: AccountFile, data_dir: Path, say: Progress) -> list[Path]:
    from kmeband.report import ReportUnavailable, write_reports

    say("report", 0.0)
    try:
        paths = write_reports(store, store.account_for_token(account.token), data_dir / "reports")
    except ReportUnavailable as exc:
        print(f"kmeband demo: no PNG report: {exc}", file=sys.stderr)
        return []
    say("report", 1.0)
    return paths
