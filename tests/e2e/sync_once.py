"""One sync of one band on a hub, as a separate client process (the tests SIGKILL it).

Usage: ``python tests/e2e/sync_once.py CLIENT_DIR BAND_ADDRESS INGEST_KEY_HEX [--status]``
with ``KMEBAND_HUB`` naming the hub and ``KMEBAND_BOND_DIR`` keeping the bonds. The
client directory holds the keys, the account file and the outbox across runs. The
passkey is read off the band's display through the hub. It prints
``{"event": "starting"}`` once its imports are done (the SIGKILL test times from there),
then one line per step of data moving (``{"event": "pulled"}`` after each pull progress
report, ``{"event": "delivered"}`` after each batch the ingest accepted: the SIGKILL test
kills on these), and at the end one JSON line with what it queued and any stream errors; with
``--status`` that line also has the band's Record Sync Status, read as the owner:
``"next_seq": {stream number: next_seq}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from device_sim.bleak_backend import SimBleakClient, SimBleakScanner
from device_sim.radio.hub_client import RemoteRadio
from protocol.errors import KmebandError
from protocol.kme.control.record_sync import StreamList
from protocol.kme.control.schema import decode_as
from protocol.kme.profile import KME_RECORD_SYNC_STATUS
from sync_client.activation import AccountFile, ClientKeys, ensure_owner
from sync_client.ble import Backend, BandLink, connect
from sync_client.outbox import Outbox
from sync_client.puller import Progress
from sync_client.session import SyncOptions, SyncSession, load_ingest_key
from sync_client.uploader import UploadReport

BACKEND = Backend(SimBleakScanner, SimBleakClient)


class NoPasskeyError(KmebandError):
    """The band never showed a passkey."""


def passkey_reader(eyes: RemoteRadio, address: str) -> object:
    async def passkey() -> str:
        for _ in range(1000):
            text = await eyes.read_display(address)
            if text:
                return text
            await asyncio.sleep(0.005)
        raise NoPasskeyError("the band never showed a passkey")

    return passkey


async def read_status(address: str, keys: ClientKeys, eyes: RemoteRadio) -> dict[int, int]:
    client = await connect(
        address,
        backend=BACKEND,
        passkey_callback=passkey_reader(eyes, address),  # type: ignore[arg-type]
    )
    try:
        link = BandLink(client, 10.0)
        await ensure_owner(link, keys)
        status = decode_as(await link.read(KME_RECORD_SYNC_STATUS), StreamList)
        return {int(s.stream): s.next_seq for s in status.streams}
    finally:
        await client.disconnect()


def say(event: str) -> None:
    print(json.dumps({"event": event}), flush=True)


def pulled(_progress: Progress) -> None:
    say("pulled")


def delivered(_report: UploadReport) -> None:
    say("delivered")


async def main(client_dir: Path, address: str, ingest_key: bytes, status: bool) -> int:
    print(json.dumps({"event": "starting"}), flush=True)  # imports done: the kill clock starts
    keys = ClientKeys.load_or_create(client_dir)
    account = AccountFile.load(client_dir)
    async with RemoteRadio(os.environ["KMEBAND_HUB"]) as eyes:
        with Outbox(client_dir / "outbox.db") as outbox:
            session = SyncSession(
                address,
                keys,
                outbox,
                load_ingest_key(ingest_key),
                account,
                backend=BACKEND,
                options=SyncOptions(
                    set_clock=False, timeout_s=5.0, on_progress=pulled, on_upload=delivered
                ),
                passkey_callback=passkey_reader(eyes, address),  # type: ignore[arg-type]
            )
            report = await session.run()
        out: dict[str, object] = {
            "queued": sum(s.queued for s in report.streams),
            "errors": [s.error for s in report.streams if s.error],
            "rejected": report.upload.rejected if report.upload else None,
        }
        if status:
            out["next_seq"] = await read_status(address, keys, eyes)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        asyncio.run(main(Path(args[0]), args[1], bytes.fromhex(args[2]), "--status" in args[3:]))
    )
