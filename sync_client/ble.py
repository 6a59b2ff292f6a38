"""The bleak session with a band: scan, connect, pair, read device info, set the clock.

Bands are reached only through bleak's public API (``BleakScanner``, ``BleakClient``), so
the same code talks to a real band and to a simulated one. Which bleak backend to use is
the caller's choice: pass ``backend=`` classes, or set ``KMEBAND_BLEAK_BACKEND`` to a
module name (e.g. ``device_sim.bleak_backend``) whose ``SimBleakScanner`` and
``SimBleakClient`` are then used; unset means bleak's platform backend.

A band that offers only SIG services (a third-party heart-rate band) is reported plainly
as :attr:`BandInfo.kme` False: battery, device information and live heart rate still work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from protocol.ble.sig_codecs import (
    AdjustReason,
    CurrentTime,
    LocalTimeInformation,
    decode_current_time,
    decode_local_time_information,
    encode_current_time,
    encode_local_time_information,
)
from protocol.errors import KmebandError
from protocol.kme.control.schema import (
    ControlDecodeError,
    ControlMessage,
    decode_as,
    encode_control,
)
from protocol.kme.profile import (
    BATTERY_LEVEL,
    CURRENT_TIME,
    FIRMWARE_REVISION,
    HEART_RATE_SERVICE,
    KME_ACTIVATION_SERVICE,
    KME_CONSENT_SERVICE,
    KME_RECORD_SYNC_SERVICE,
    LOCAL_TIME_INFORMATION,
    MODEL_NUMBER,
    SERIAL_NUMBER,
)
from sync_client.link_activity import LinkActivity

_M = TypeVar("_M", bound=ControlMessage)

BACKEND_ENV = "KMEBAND_BLEAK_BACKEND"

#: Services a scan filters on: every KME service, plus Heart Rate for SIG-only bands.
KME_SERVICE_UUIDS = (
    str(KME_RECORD_SYNC_SERVICE),
    str(KME_CONSENT_SERVICE),
    str(KME_ACTIVATION_SERVICE),
)
SCAN_SERVICE_UUIDS = (*KME_SERVICE_UUIDS, str(HEART_RATE_SERVICE))

#: A band clock further off than this is set (and any time-zone change is written).
MAX_CLOCK_DRIFT_S = 2.0
#: How often a wait for an indication checks that the link is still up.
LINK_POLL_S = 0.05


class BleError(KmebandError):
    """Talking to a band over Bluetooth failed; the message says what to try."""


class BandNotFoundError(BleError):
    """No band answered the scan or the connect; check it is near and awake."""


@dataclass(frozen=True)
class Backend:
    """The bleak backend classes to use (None: bleak's platform default)."""

    scanner: type | None = None
    client: type | None = None


def backend_from_env(environ: dict[str, str] | None = None) -> Backend:
    """Resolve ``KMEBAND_BLEAK_BACKEND`` (a module with SimBleakScanner/SimBleakClient)."""
    name = (environ if environ is not None else dict(os.environ)).get(BACKEND_ENV, "")
    if not name:
        return Backend()
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise BleError(
            f"{BACKEND_ENV}={name!r} cannot be imported; unset it or name an installed module"
        ) from None
    scanner = getattr(module, "SimBleakScanner", None) or getattr(module, "BleakScanner", None)
    client = getattr(module, "SimBleakClient", None) or getattr(module, "BleakClient", None)
    if scanner is None or client is None:
        raise BleError(f"{BACKEND_ENV}={name!r} has no scanner and client backend classes")
    return Backend(scanner, client)


@dataclass(frozen=True)
class FoundBand:
    """A band seen in a scan. ``address`` is for connecting only: never logged or uploaded."""

    address: str
    name: str | None
    rssi: int | None
    kme: bool


async def scan(timeout_s: float = 5.0, backend: Backend | None = None) -> list[FoundBand]:
    """Scan for bands advertising a KME service (or Heart Rate, for SIG-only bands)."""
    backend = backend or backend_from_env()
    kwargs: dict[str, Any] = {"service_uuids": list(SCAN_SERVICE_UUIDS)}
    if backend.scanner is not None:
        kwargs["backend"] = backend.scanner
    try:
        seen: dict[str, tuple[BLEDevice, AdvertisementData]] = await BleakScanner.discover(
            timeout=timeout_s, return_adv=True, **kwargs
        )
    except Exception as exc:
        raise BleError(f"scanning failed ({exc.__class__.__name__}); is Bluetooth on?") from None
    found = []
    for device, adv in seen.values():
        uuids = {u.lower() for u in adv.service_uuids}
        kme = any(u in uuids for u in KME_SERVICE_UUIDS)
        found.append(FoundBand(device.address, adv.local_name or device.name, adv.rssi, kme))
    return sorted(found, key=lambda b: -(b.rssi or -999))


@dataclass(frozen=True)
class BandInfo:
    """What a band says about itself. ``serial`` stays on the phone (pseudonymised)."""

    kme: bool
    model: str
    firmware_version: str
    serial: str
    battery_pct: int | None

    def describe(self) -> str:
        kind = "KME band" if self.kme else "SIG-only band: live heart rate, battery and info"
        return f"{kind}, model {self.model}, firmware {self.firmware_version}"


class BandLink:
    """One connected band: GATT helpers with a timeout on every operation.

    A timeout follows progress (:class:`~sync_client.link_activity.LinkActivity`): an
    operation fails when nothing moved on the link for ``timeout_s``, not when it took
    that long; share one ``activity`` between everything that uses the same connection.
    """

    def __init__(
        self, client: BleakClient, timeout_s: float = 10.0, activity: LinkActivity | None = None
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.activity = activity if activity is not None else LinkActivity(timeout_s)
        self._indications: dict[str, asyncio.Queue[bytes]] = {}

    def has_service(self, uuid: object) -> bool:
        return self.client.services.get_service(str(uuid)) is not None

    def has_char(self, uuid: object) -> bool:
        return self.client.services.get_characteristic(str(uuid)) is not None

    async def _timed(self, op: Awaitable[Any], what: str) -> Any:
        try:
            return await self.activity.wait(op)
        except TimeoutError:
            raise BleError(f"the band did not answer {what} in time; move closer") from None
        except KmebandError:
            raise
        except Exception as exc:
            raise BleError(f"{what} failed ({exc.__class__.__name__})") from None

    async def read(self, uuid: object) -> bytes:
        return bytes(await self._timed(self.client.read_gatt_char(str(uuid)), "a read"))

    async def write(self, uuid: object, data: bytes) -> None:
        await self._timed(self.client.write_gatt_char(str(uuid), data, response=True), "a write")

    async def subscribe_control(self, uuid: object) -> None:
        """Take indications of a control point into a queue for :meth:`request`."""
        key = str(uuid)
        if key in self._indications:
            return
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._indications[key] = queue

        def on_value(_characteristic: object, data: bytearray) -> None:
            self.activity.touch()
            queue.put_nowait(bytes(data))

        await self._timed(self.client.start_notify(key, on_value), "a subscription")

    async def request(self, uuid: object, message: ControlMessage, *answers: type[_M]) -> _M:
        """Write a CBOR request to a control point and await its indicated answer."""
        await self.subscribe_control(uuid)
        queue = self._indications[str(uuid)]
        while not queue.empty():
            queue.get_nowait()
        await self.write(uuid, encode_control(message))
        raw = await self._answer(queue, "a control request")
        try:
            return decode_as(raw, *answers)
        except ControlDecodeError as exc:
            raise BleError(f"the band's answer is malformed ({exc})") from None

    async def next_indication(self, uuid: object) -> bytes:
        await self.subscribe_control(uuid)
        queue = self._indications[str(uuid)]
        return await self._answer(queue, "an indication")

    async def _answer(self, queue: asyncio.Queue[bytes], what: str) -> bytes:
        """Await an indication, but give up at once when the link drops (not at the timeout),
        and at the timeout only when nothing has moved on the link for that long."""
        while True:
            # an answer that arrived just before the link dropped still counts (a band
            # may answer, then drop the link on purpose: factory reset, reboot)
            if not queue.empty():
                return queue.get_nowait()
            if not self.client.is_connected:
                raise BleError(f"the link to the band dropped while awaiting {what}; sync again")
            remaining = self.timeout_s - self.activity.idle_for()
            if remaining <= 0:
                raise BleError(f"the band did not answer {what} in time; move closer")
            try:
                value = await asyncio.wait_for(queue.get(), min(LINK_POLL_S, remaining))
            except TimeoutError:
                continue
            self.activity.touch()
            return value

    async def read_info(self) -> BandInfo:
        """Device Information and battery; works on SIG-only bands too."""

        async def text(uuid: object) -> str:
            if not self.has_char(uuid):
                return ""
            return (await self.read(uuid)).decode("utf-8", "replace").rstrip("\x00")

        battery = None
        if self.has_char(BATTERY_LEVEL):
            raw = await self.read(BATTERY_LEVEL)
            battery = raw[0] if raw else None
        return BandInfo(
            kme=self.has_service(KME_RECORD_SYNC_SERVICE),
            model=await text(MODEL_NUMBER),
            firmware_version=await text(FIRMWARE_REVISION),
            serial=await text(SERIAL_NUMBER),
            battery_pct=battery,
        )

    async def sync_clock(self, now: dt.datetime, *, max_drift_s: float = MAX_CLOCK_DRIFT_S) -> bool:
        """Set Current Time when the band's clock drifted or its time zone differs.

        ``now`` is the phone's aware local time. Returns whether the band was written.
        """
        if not self.has_char(CURRENT_TIME):
            return False
        offset_min = int((now.utcoffset() or dt.timedelta(0)).total_seconds() // 60)
        reason = AdjustReason.NONE
        if self.has_char(LOCAL_TIME_INFORMATION):
            try:
                local = decode_local_time_information(await self.read(LOCAL_TIME_INFORMATION))
                tz_changed = local.total_offset_min != offset_min
            except KmebandError:
                tz_changed = True
            if tz_changed and offset_min % 15 == 0:
                info = LocalTimeInformation.from_offsets(offset_min, 0)
                await self.write(LOCAL_TIME_INFORMATION, encode_local_time_information(info))
                reason |= AdjustReason.CHANGE_OF_TIME_ZONE
        try:
            band_dt = decode_current_time(await self.read(CURRENT_TIME)).to_datetime()
            drift = abs((band_dt - now.replace(tzinfo=None)).total_seconds())
        except KmebandError:
            drift = float("inf")  # an unknown or invalid band time: set it
        if drift > max_drift_s or reason:
            if drift > max_drift_s:
                reason |= AdjustReason.MANUAL_TIME_UPDATE
            value = CurrentTime.from_datetime(now.replace(tzinfo=None), reason)
            await self.write(CURRENT_TIME, encode_current_time(value))
            return True
        return False


PasskeyCallback = Callable[[], int | str]


async def connect(
    address: str,
    *,
    backend: Backend | None = None,
    attempts: int = 3,
    timeout_s: float = 10.0,
    passkey_callback: PasskeyCallback | None = None,
    disconnected_callback: Callable[[BleakClient], None] | None = None,
    backend_options: dict[str, Any] | None = None,
) -> BleakClient:
    """Connect with retries; pair when a passkey callback is given.

    ``timeout_s`` goes to the bleak client, whose backend bounds each attempt with it (the
    simulated one bounds making the link by it and every later step by progress, so a slow
    link's long discovery is not cut off); pairing is bounded by the Security Manager's
    30-second timer, which restarts with every SMP PDU.
    """
    backend = backend or backend_from_env()
    kwargs: dict[str, Any] = dict(backend_options or {})
    if backend.client is not None:
        kwargs["backend"] = backend.client
    if passkey_callback is not None:
        kwargs.setdefault("passkey_callback", passkey_callback)
    last: str = "no attempt"
    for attempt in range(max(1, attempts)):
        client = BleakClient(
            address, disconnected_callback=disconnected_callback, timeout=timeout_s, **kwargs
        )
        try:
            await client.connect()
            if passkey_callback is not None:
                await client.pair()
            return client
        except Exception as exc:  # bleak raises BleakError, OSError and TimeoutError
            last = exc.__class__.__name__
            with contextlib.suppress(Exception):  # the failed attempt's link is gone already
                await asyncio.wait_for(client.disconnect(), timeout_s)
            if attempt + 1 < attempts:  # no point waiting after the last attempt
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
    raise BandNotFoundError(
        f"could not connect to the band after {attempts} attempts ({last}); "
        "check it is near, awake and not connected to another phone"
    )


__all__ = [
    "BACKEND_ENV",
    "Backend",
    "BandInfo",
    "BandLink",
    "BandNotFoundError",
    "BleError",
    "FoundBand",
    "backend_from_env",
    "connect",
    "scan",
]
