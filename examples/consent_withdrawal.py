"""Consent withdrawal, seen end to end: band, client and ingest all honour it.

A simulated band (in this process) records 12 hours of its wearer's life; the phone-side
client pairs, activates and syncs it to a reference ingest (loopback, temporary
directory). Then the owner withdraws heart-rate consent from the client, the band lives
12 more hours, and the client syncs again. The ingest must hold heart-rate samples from
before the withdrawal only, while other streams keep flowing:

    python examples/consent_withdrawal.py

Prints per-stream counts for both syncs and what the ingest holds; exits 1 if any
heart-rate sample from after the withdrawal reached the ingest.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

from cloud_ingest.server import IngestServer
from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend import SimBleakClient, SimBleakScanner, use_radio
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from kmeband.report import records_from_store
from protocol.kme.records import ConsentCategory, StreamId, record_time
from sync_client.activation import ClientKeys, create_account, ensure_owner
from sync_client.ble import Backend, BandLink, connect
from sync_client.consent import set_consent
from sync_client.outbox import Outbox
from sync_client.session import SyncOptions, SyncReport, SyncSession

HALF_DAY_S = 12 * 3600
BACKEND = Backend(SimBleakScanner, SimBleakClient)


def show(title: str, report: SyncReport) -> None:
    print(title)
    for s in report.streams:
        print(f"  {s.stream.name.lower():<18} {s.queued:>5} queued {s.withheld:>5} withheld")


async def run(workdir: Path) -> int:
    clock = ManualClock()
    radio = Radio(clock, seed=0)
    band = SimulatedBand(BandConfig(seed=11, fidelity="summary"), clock, start=clock.now())
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    with use_radio(radio):
        async with IngestServer(workdir / "ingest.db", workdir / "ingest-keys") as ingest:
            account = await create_account(ingest.url)
            keys = ClientKeys.load_or_create(workdir / "client")
            with Outbox(workdir / "client" / "outbox.db") as outbox:

                async def sync() -> SyncReport:
                    session = SyncSession(
                        endpoint.address,
                        keys,
                        outbox,
                        ingest.public_key,
                        account,
                        backend=BACKEND,
                        options=SyncOptions(set_clock=False),
                        passkey_callback=lambda: endpoint.display or "",
                    )
                    return await session.run()

                band.simulate_until(clock.now() + HALF_DAY_S)
                await clock.advance(HALF_DAY_S)
                show("first sync (all consents granted):", await sync())

                # the owner withdraws heart-rate consent from the phone
                client = await connect(endpoint.address, backend=BACKEND)
                try:
                    link = BandLink(client)
                    await ensure_owner(link, keys)
                    info = await link.read_info()
                    await set_consent(
                        client,
                        ConsentCategory.HEART_RATE,
                        False,
                        1,
                        outbox=outbox,
                        band=keys.band_pseudonym(info.serial),
                    )
                finally:
                    await client.disconnect()
                withdrawn_at = clock.now()
                print("heart-rate consent withdrawn from the client")

                band.simulate_until(clock.now() + HALF_DAY_S)
                await clock.advance(HALF_DAY_S)
                show("second sync (heart rate withdrawn):", await sync())

            assert ingest.store is not None
            account_id = ingest.store.account_for_token(account.token)
            assert account_id is not None
            held: Counter[StreamId] = Counter()
            late_hr = late_avg_hr = 0
            for _band, stored in records_from_store(ingest.store, account_id):
                held[stored.stream] += 1
                if stored.stream == StreamId.HR_SAMPLES:
                    late_hr += record_time(stored.record) >= withdrawn_at
                elif stored.stream == StreamId.ACTIVITY_MINUTES:
                    # the minute's average heart rate needs heart-rate consent too
                    late = record_time(stored.record) >= withdrawn_at
                    late_avg_hr += late and stored.record.avg_hr != 0  # type: ignore[union-attr]
    band.close()
    print("the ingest holds:")
    for stream, n in sorted(held.items()):
        print(f"  {stream.name.lower():<18} {n:>5}")
    print(f"heart-rate samples after the withdrawal in the ingest: {late_hr}")
    print(f"activity minutes after the withdrawal with an average heart rate: {late_avg_hr}")
    early_hr = held[StreamId.HR_SAMPLES]
    if late_hr or late_avg_hr or not early_hr or held[StreamId.ACTIVITY_MINUTES] < 2 * 12 * 60 - 2:
        print("consent was NOT honoured end to end")
        return 1
    print("consent honoured end to end")
    return 0


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="kmeband-consent-") as tmp:
        return asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
