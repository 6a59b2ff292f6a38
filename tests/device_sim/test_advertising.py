"""What a band advertises is what docs/protocol.md says, and it fits a legacy advertisement."""

from __future__ import annotations

from pathlib import Path

from bleak import BleakScanner

from device_sim.bleak_backend import SimBleakScanner
from protocol.ble.uuids import alias16
from protocol.kme.profile import HEART_RATE_SERVICE, KME_RECORD_SYNC_SERVICE

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
LEGACY_ADV_BYTES = 31
FLAGS_AD_BYTES = 3


def _uuid_list_bytes(uuids: list[str]) -> int:
    """AD structures for complete 16- and 128-bit service UUID lists (length, type, data)."""
    from uuid import UUID

    short = [u for u in uuids if alias16(UUID(u)) is not None]
    long = [u for u in uuids if alias16(UUID(u)) is None]
    return (2 + 2 * len(short) if short else 0) + (2 + 16 * len(long) if long else 0)


async def test_a_band_advertises_heart_rate_and_record_sync_only(kme_band_factory) -> None:  # type: ignore[no-untyped-def]
    endpoint = kme_band_factory(seed=3)
    found = await BleakScanner.discover(timeout=0.5, backend=SimBleakScanner, return_adv=True)
    _device, adv = found[endpoint.address]
    assert sorted(adv.service_uuids) == sorted(
        [str(HEART_RATE_SERVICE), str(KME_RECORD_SYNC_SERVICE)]
    )
    assert FLAGS_AD_BYTES + _uuid_list_bytes(adv.service_uuids) <= LEGACY_ADV_BYTES
    text = DOC.read_text()
    assert "the Heart Rate service\n`0x180D`, the **Record Sync** service UUID" in text
