"""Sync end to end: band flash to ingest store through the bleak backend, timed and sized.

* week_sync_s: one band with a 7-day backlog in signal fidelity (simulated before the
  timer starts), on an in-process Radio without the link model ("fast radio"), synced by
  a SyncSession through the simulated bleak backend into an in-process IngestServer on
  loopback: pull every stream, filter by consent, seal, commit to the outbox, acknowledge,
  upload, until the ingest has stored every batch. Pairing and activation happen in an
  untimed first session that pulls no stream; the timed session is a phone's ordinary
  sync (connect, encrypt with the bond, prove ownership, read consent, pull, upload).
* records: records the timed sync queued (all of them: the band's defaults grant every
  category it records).
* air_bytes: bytes of ATT Handle Value Notification values on the Record Sync Data
  characteristic during the timed sync, counted by a capture sink on the radio.
* activity_bytes_per_minute: the activity-minute stream's chunk bytes on the air (chunk
  header and CRC included) divided by the activity minutes it carried.
* client_peak_rss_mb_30d: ``kmeband sim`` in a subprocess holds one band with a 30-day
  backlog (summary fidelity, to keep the setup short; record counts are alike) and a
  64 MiB flash; this script re-runs itself as the client in a subprocess (one
  SyncSession, pairing included) and reports that process's peak RSS (VmHWM; see
  :func:`peak_rss_kb` for why not ``ru_maxrss``).

Last line: {"bench": "sync_e2e", "week_sync_s": x, "records": n, "air_bytes": n,
"activity_bytes_per_minute": x, "client_peak_rss_mb_30d": x}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from sync_client.ble import Backend

EPOCH = 1_709_510_400.0  # 2024-03-04 00:00 UTC
DAY = 86400.0
#: No rate limit in the bench (it measures the client, not the ingest's throttling).
UNTHROTTLED_RATE = 1e9
ATT_HANDLE_VALUE_NTF = 0x1B
ATT_CID_VALUE = 0x0004  # the ATT fixed channel (device_sim.radio.ATT_CID)


class SyncDataCounter:
    """Capture sink: bytes of Record Sync Data notification values."""

    def __init__(self) -> None:
        self.data_handle = -1
        self.bytes = 0
        self.frames: dict[int, int] = defaultdict(int)

    def connected(self, timestamp: float, handle: int, peer_address: str) -> None:
        pass

    def frame(
        self, timestamp: float, handle: int, from_central: bool, cid: int, payload: bytes
    ) -> None:
        if (
            not from_central
            and cid == ATT_CID_VALUE
            and payload[:1] == bytes([ATT_HANDLE_VALUE_NTF])
            and int.from_bytes(payload[1:3], "little") == self.data_handle
        ):
            self.bytes += len(payload) - 3

    def disconnected(self, timestamp: float, handle: int, reason: int) -> None:
        pass

    def encrypted(self, timestamp: float, handle: int) -> None:
        pass


def sim_backend() -> Backend:
    from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
    from sync_client.ble import Backend

    return Backend(SimBleakScanner, SimBleakClient)


async def week(days: float, fidelity: str, work: Path) -> dict[str, float]:
    # imported here: the 30-day client process (client_main) must not carry the band
    from cloud_ingest.server import IngestConfig, IngestServer
    from device_sim.band.gatt_endpoint import BandGattEndpoint
    from device_sim.band.simulated_band import BandConfig, SimulatedBand
    from device_sim.bleak_backend import BondStore, use_radio
    from device_sim.clock import ManualClock
    from device_sim.radio import Radio
    from protocol.kme.profile import KME_RECORD_SYNC_DATA
    from protocol.kme.records import StreamId
    from sync_client.activation import ClientKeys, create_account
    from sync_client.outbox import Outbox
    from sync_client.session import SyncOptions, SyncSession

    unthrottled = IngestConfig(rate_per_band=UNTHROTTLED_RATE, burst_per_band=UNTHROTTLED_RATE)
    clock = ManualClock(EPOCH)
    band = SimulatedBand(
        BandConfig(
            seed=7,
            scenario="office_worker_week",
            fidelity=fidelity,
            state_dir=work / "band",
            flash_capacity=64 * 1024 * 1024,
        ),
        clock,
    )
    t0 = time.perf_counter()
    band.simulate_until(EPOCH + days * DAY)
    clock.jump(days * DAY)
    print(f"simulated {days:g} days ({fidelity}) in {time.perf_counter() - t0:.1f} s", flush=True)
    counter = SyncDataCounter()
    radio = Radio(clock, seed=3, capture=counter)
    endpoint = BandGattEndpoint(band)
    counter.data_handle = endpoint.db.value_handle(KME_RECORD_SYNC_DATA)
    radio.attach(endpoint)
    bonds = BondStore()
    try:
        with use_radio(radio):
            async with IngestServer(
                work / "ingest.db", work / "ingest-keys", config=unthrottled
            ) as ingest:
                account = await create_account(ingest.url)
                keys = ClientKeys.load_or_create(work / "client")
                with Outbox(work / "client" / "outbox.db") as outbox:

                    async def passkey() -> str:
                        for _ in range(1000):
                            text = await radio.read_display(band.address)
                            if text:
                                return text
                            await asyncio.sleep(0.001)
                        raise RuntimeError("no passkey shown")

                    def session(streams: tuple[StreamId, ...]) -> SyncSession:
                        return SyncSession(
                            band.address,
                            keys,
                            outbox,
                            ingest.public_key,
                            account,
                            backend=sim_backend(),
                            options=SyncOptions(set_clock=False, streams=streams),
                            passkey_callback=passkey,  # type: ignore[arg-type]
                            backend_options={"bond_store": bonds},
                        )

                    await session(()).run()  # pair, activate, register (untimed)
                    counter.bytes = 0
                    t0 = time.perf_counter()
                    report = await session(tuple(StreamId)).run()
                    seconds = time.perf_counter() - t0
                    assert ingest.store is not None
                    stored = ingest.store.record_count()
    finally:
        band.close()
    queued = sum(s.queued for s in report.streams)
    if stored != queued or outbox_pending(work) or any(s.error for s in report.streams):
        raise SystemExit(f"the sync did not land every record: {stored} stored of {queued}")
    activity = next(s for s in report.streams if s.stream == StreamId.ACTIVITY_MINUTES)
    for s in report.streams:
        print(
            f"  {s.stream.name.lower():17s} {s.queued:7d} records {s.air_bytes:8d} air bytes "
            f"{s.batches:4d} batches",
            flush=True,
        )
    return {
        "week_sync_s": round(seconds, 3),
        "records": queued,
        "air_bytes": counter.bytes,
        "activity_bytes_per_minute": round(activity.air_bytes / max(1, activity.queued), 3),
    }


def outbox_pending(work: Path) -> int:
    from sync_client.outbox import Outbox

    with Outbox(work / "client" / "outbox.db") as outbox:
        return outbox.pending_count()


# -- 30 days: hub and client in their own processes ------------------------------------------


async def month_rss(days: float, work: Path) -> float:
    from cloud_ingest.server import IngestConfig, IngestServer
    from sync_client.activation import create_account

    unthrottled = IngestConfig(rate_per_band=UNTHROTTLED_RATE, burst_per_band=UNTHROTTLED_RATE)
    hub_sock = work / "hub.sock"
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kmeband.cli",
            "sim",
            "--json",
            "--hub",
            f"unix:{hub_sock}",
            "--state-dir",
            str(work / "bands"),
            "--speed",
            "0.000001",
            "--fidelity",
            "summary",
            "--backlog-days",
            repr(days),
            "--flash-capacity",
            str(64 * 1024 * 1024),
            "--seed",
            "9",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert hub.stdout is not None
        t0 = time.perf_counter()
        ready = json.loads(hub.stdout.readline())
        print(f"hub with a {days:g}-day backlog up in {time.perf_counter() - t0:.1f} s", flush=True)
        async with IngestServer(
            work / "ingest30.db", work / "ingest30-keys", config=unthrottled
        ) as ingest:
            account = await create_account(ingest.url)
            client_dir = work / "client30"
            account.save(client_dir)
            assert ingest.keys is not None
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--client",
                str(client_dir),
                ready["bands"][0],
                ingest.keys.x25519_public.hex(),
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "KMEBAND_HUB": ready["hub"],
                    "KMEBAND_BOND_DIR": str(client_dir / "bonds"),
                },
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise SystemExit("the 30-day client failed")
            result = json.loads(out.decode().splitlines()[-1])
            assert ingest.store is not None
            stored = ingest.store.record_count()
            print(
                f"30-day sync: {result['queued']} records queued, {stored} stored, "
                f"{time.perf_counter() - t0:.1f} s with process start",
                flush=True,
            )
            if stored != result["queued"]:
                raise SystemExit("the 30-day sync did not land every record")
            return round(float(result["peak_rss_kb"]) / 1024.0, 1)
    finally:
        hub.send_signal(signal.SIGINT)
        try:
            hub.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            hub.kill()


async def client_main(client_dir: Path, address: str, ingest_key: bytes) -> None:
    """The 30-day client process: one SyncSession, pairing included."""
    from device_sim.radio.hub_client import RemoteRadio
    from sync_client.activation import AccountFile, ClientKeys
    from sync_client.outbox import Outbox
    from sync_client.session import SyncOptions, SyncSession, load_ingest_key

    keys = ClientKeys.load_or_create(client_dir)
    account = AccountFile.load(client_dir)
    async with RemoteRadio(os.environ["KMEBAND_HUB"]) as eyes:

        async def passkey() -> str:
            for _ in range(1000):
                text = await eyes.read_display(address)
                if text:
                    return text
                await asyncio.sleep(0.005)
            raise RuntimeError("no passkey shown")

        with Outbox(client_dir / "outbox.db") as outbox:
            report = await SyncSession(
                address,
                keys,
                outbox,
                load_ingest_key(ingest_key),
                account,
                backend=sim_backend(),
                options=SyncOptions(set_clock=False, timeout_s=30.0),
                passkey_callback=passkey,  # type: ignore[arg-type]
            ).run()
    queued = sum(s.queued for s in report.streams)
    print(json.dumps({"queued": queued, "peak_rss_kb": peak_rss_kb()}), flush=True)


def peak_rss_kb() -> int:
    """This process's peak RSS since exec: VmHWM, else ru_maxrss.

    On Linux ``ru_maxrss`` of an exec'd child starts from its parent's RSS at fork (the
    forked copy counts), which here would be the bench's simulated week; VmHWM belongs to
    the process image the client runs in.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, client_dir, address, key = sys.argv
        asyncio.run(client_main(Path(client_dir), address, bytes.fromhex(key)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=7.0, help="backlog of the timed sync")
    parser.add_argument("--fidelity", choices=("signal", "summary"), default="signal")
    parser.add_argument("--rss-days", type=float, default=30.0, help="backlog for the RSS run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kmeband-sync-e2e-") as tmp:
        work = Path(tmp)
        figures = asyncio.run(week(args.days, args.fidelity, work))
        figures["client_peak_rss_mb_30d"] = asyncio.run(month_rss(args.rss_days, work))
    print(json.dumps({"bench": "sync_e2e", **figures}))


if __name__ == "__main__":
    main()
