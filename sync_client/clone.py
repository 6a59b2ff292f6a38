"""``kmeband clone``: record a BLE device through bleak as a :class:`DeviceSnapshot`.

Any bleak backend will do (the OS adapter, or the simulated radio through
``KMEBAND_BLEAK_BACKEND``), as for every other phone-side command. The recording connects,
walks the GATT table bleak discovered, reads every readable characteristic and descriptor
(a refused read is kept as the ATT error the device answered), subscribes to everything that
notifies or indicates and keeps what arrives for ``record_s`` seconds.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from bleak import BleakClient, BleakScanner

from protocol.ble.att import AttErrorCode
from protocol.ble.device_snapshot import (
    PROPERTY_NAMES,
    CharacteristicSnapshot,
    DescriptorSnapshot,
    DeviceSnapshot,
    RecordedNotification,
    ServiceSnapshot,
)
from protocol.ble.gatt_model import CLIENT_CHARACTERISTIC_CONFIGURATION, Properties
from protocol.errors import KmebandError
from sync_client.ble import Backend, PasskeyCallback, backend_from_env, connect

_CCCD = str(CLIENT_CHARACTERISTIC_CONFIGURATION)
_HEX_CODE = re.compile(r"0x([0-9a-fA-F]{1,2})\b")


class CloneError(KmebandError):
    """The device could not be recorded."""


def att_error_code(exc: BaseException) -> int:
    """The ATT error behind a failed bleak read: the backend's code, or one named in its text.

    Backends report it differently (an ``error_code`` attribute, "Insufficient
    Authentication", "0x05", a D-Bus error name); Unlikely Error when none can be found.
    """
    code = getattr(exc, "error_code", None)
    if isinstance(code, int) and 0x01 <= code <= 0xFF:
        return code
    text = str(exc)
    squashed = re.sub(r"[^a-z]", "", text.lower())
    for error in AttErrorCode:
        if error.name.replace("_", "").lower() in squashed:
            return int(error)
    match = _HEX_CODE.search(text)
    if match:
        return int(match.group(1), 16)
    return int(AttErrorCode.UNLIKELY_ERROR)


async def _read(client: BleakClient, target: Any, reader: Any) -> tuple[bytes | None, int | None]:
    try:
        return bytes(await reader(target)), None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # bleak raises BleakError, or its backend's own errors
        return None, att_error_code(exc)


async def record(client: BleakClient, record_s: float, name: str | None = None) -> DeviceSnapshot:
    """Record the device ``client`` is connected to."""
    services = []
    notifying: list[Any] = []
    for service in sorted(client.services, key=lambda s: s.handle):
        chars = []
        for char in sorted(service.characteristics, key=lambda c: c.handle):
            bits = Properties(0)
            for prop in char.properties:
                bits |= PROPERTY_NAMES.get(prop, Properties(0))
            value = error = None
            if bits & Properties.READ:
                value, error = await _read(client, char, client.read_gatt_char)
            descriptors = []
            for desc in sorted(char.descriptors, key=lambda d: d.handle):
                desc_value = None
                if desc.uuid != _CCCD:  # its state is per connection, not the device's
                    desc_value, _ = await _read(client, desc.handle, client.read_gatt_descriptor)
                descriptors.append(
                    DescriptorSnapshot(uuid.UUID(desc.uuid), desc.handle, desc_value)
                )
            if bits & (Properties.NOTIFY | Properties.INDICATE):
                notifying.append(char)
            chars.append(
                CharacteristicSnapshot(
                    uuid.UUID(char.uuid), char.handle, bits, value, error, tuple(descriptors)
                )
            )
        services.append(ServiceSnapshot(uuid.UUID(service.uuid), service.handle, tuple(chars)))

    loop = asyncio.get_running_loop()
    start = loop.time()
    heard: list[RecordedNotification] = []
    subscribed = []
    for char in notifying:

        def on_value(_sender: Any, data: bytearray, char_uuid: str = char.uuid) -> None:
            heard.append(
                RecordedNotification(loop.time() - start, uuid.UUID(char_uuid), bytes(data))
            )

        try:
            await client.start_notify(char, on_value)
            subscribed.append(char)
        except asyncio.CancelledError:
            raise
        except Exception:  # protected (needs pairing) or refused: nothing to record there
            continue
    await asyncio.sleep(record_s)
    for char in subscribed:
        try:
            await client.stop_notify(char)
        except asyncio.CancelledError:
            raise
        except Exception:  # the link may be gone; what was heard is kept
            continue
    return DeviceSnapshot(
        name, tuple(services), notifications=tuple(heard), recorded_s=float(record_s)
    )


async def clone_device(
    address: str,
    *,
    record_s: float = 10.0,
    scan_s: float = 2.0,
    backend: Backend | None = None,
    passkey_callback: PasskeyCallback | None = None,
) -> DeviceSnapshot:
    """Connect to ``address`` (pairing first when a passkey callback is given) and record it."""
    backend = backend or backend_from_env()
    name, advertised, maker = await _advertisement(address, backend, scan_s)
    client = await connect(address, backend=backend, passkey_callback=passkey_callback)
    try:
        snapshot = await record(client, record_s, name)
    finally:
        await client.disconnect()
    return DeviceSnapshot(
        name,
        snapshot.services,
        advertised,
        maker,
        snapshot.notifications,
        snapshot.recorded_s,
    )


async def _advertisement(
    address: str, backend: Backend, scan_s: float
) -> tuple[str | None, tuple[uuid.UUID, ...], tuple[tuple[int, bytes], ...]]:
    """What the device advertises (name, service UUIDs, manufacturer data), if it is seen."""
    kwargs: dict[str, Any] = {}
    if backend.scanner is not None:
        kwargs["backend"] = backend.scanner
    try:
        seen = await BleakScanner.discover(timeout=scan_s, return_adv=True, **kwargs)
    except asyncio.CancelledError:
        raise
    except Exception:  # scanning is best effort: the GATT table is the clone
        return None, (), ()
    for device, adv in seen.values():
        if device.address.upper() == address.upper():
            uuids = tuple(uuid.UUID(u) for u in adv.service_uuids)
            maker = tuple(sorted((k, bytes(v)) for k, v in adv.manufacturer_data.items()))
            return adv.local_name or device.name, uuids, maker
    return None, (), ()
