"""Sync a real KME band through bleak's own operating-system backend.

    python examples/real_band_sync.py AA:BB:CC:DD:EE:FF      (or set KMEBAND_BAND_ADDRESS)

The code path is the one every simulated sync takes (``sync_client.session.SyncSession``
over bleak's public API); only the backend differs. The client directory
(``KMEBAND_CLIENT_DIR`` or ``~/.kmeband``) holds the keys and, after
``kmeband pair ADDRESS --ingest URL``, the account; ``KMEBAND_INGEST_KEY`` is the
ingest's X25519 key (base64url) that batches are sealed to.

Without a Bluetooth adapter, or without a band address, it prints why it skips and exits 0.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

ADDRESS_ENV = "KMEBAND_BAND_ADDRESS"
INGEST_KEY_ENV = "KMEBAND_INGEST_KEY"


def adapter_missing() -> str | None:
    """Why no Bluetooth adapter can be used here, or None when one seems present."""
    if sys.platform.startswith("linux"):
        adapters = Path("/sys/class/bluetooth")
        if not adapters.is_dir() or not any(adapters.glob("hci*")):
            return "no Bluetooth adapter found (/sys/class/bluetooth has no hci device)"
        if not Path("/run/dbus/system_bus_socket").exists():
            return "BlueZ is not reachable (no D-Bus system bus socket)"
    return None


def skip(reason: str) -> int:
    print(f"real_band_sync: skipping: {reason}")
    return 0


async def sync(address: str) -> int:
    from sync_client.activation import AccountFile, ClientKeys, client_dir
    from sync_client.ble import Backend
    from sync_client.outbox import Outbox
    from sync_client.session import SyncSession, load_ingest_key

    directory = client_dir()
    keys = ClientKeys.load_or_create(directory)
    account = AccountFile.load(directory)
    raw_key = os.environ.get(INGEST_KEY_ENV, "")
    if not raw_key:
        # batches are sealed to the ingest's key before they touch disk: without it, stop
        print(f"real_band_sync: set {INGEST_KEY_ENV} to the ingest's key (GET /v1/keys)")
        return 2
    ingest_key = load_ingest_key(base64.urlsafe_b64decode(raw_key + "=="))

    def passkey() -> str:
        return input("passkey shown on the band: ").strip()

    with Outbox(directory / "outbox.db") as outbox:
        session = SyncSession(
            address, keys, outbox, ingest_key, account, backend=Backend(), passkey_callback=passkey
        )
        report = await session.run()
    for s in report.streams:
        print(f"{s.stream.name.lower():<18} {s.queued:>6} queued {s.withheld:>6} withheld")
    print("uploaded" if report.upload is not None else "queued (no account to upload to yet)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    address = args[0] if args else os.environ.get(ADDRESS_ENV, "")
    if os.environ.get("KMEBAND_BLEAK_BACKEND") or os.environ.get("KMEBAND_HUB"):
        return skip("a simulated backend is configured (unset KMEBAND_BLEAK_BACKEND/KMEBAND_HUB)")
    reason = adapter_missing()
    if reason:
        return skip(reason)
    if not address:
        return skip(f"no band address given (pass it as an argument or set {ADDRESS_ENV})")
    return asyncio.run(sync(address))


if __name__ == "__main__":
    sys.exit(main())
