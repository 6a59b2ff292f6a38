"""A bleak scanner backend over the simulated radio."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)

from device_sim.bleak_backend.port import current_port
from device_sim.radio.medium import AdvertisementReport

#: How often the scanner polls the radio for advertisements (wall seconds).
SCAN_PERIOD_S = 0.05


def advertisement_data(report: AdvertisementReport) -> AdvertisementData:
    d = report.data
    return AdvertisementData(
        local_name=d.local_name,
        manufacturer_data=dict(d.manufacturer_data),
        service_data={},
        service_uuids=[u.lower() for u in d.service_uuids],
        tx_power=d.tx_power,
        rssi=report.rssi,
        platform_data=(report,),
    )


class SimBleakScanner(BaseBleakScanner):
    """Scans the simulated radio: use as ``BleakScanner(backend=SimBleakScanner)``."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        port = await current_port()
        await self._poll_once(port)  # the first reports are there as soon as start() returns
        self._task = asyncio.get_running_loop().create_task(self._poll(port))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self, port: Any) -> None:
        while True:
            await asyncio.sleep(SCAN_PERIOD_S)
            await self._poll_once(port)

    async def _poll_once(self, port: Any) -> None:
        for report in await port.scan():
            adv = advertisement_data(report)
            if not self.is_allowed_uuid(adv.service_uuids):
                continue
            device = self.create_or_update_device(
                report.address, report.address, report.data.local_name, report, adv
            )
            self.call_detection_callbacks(device, adv)
