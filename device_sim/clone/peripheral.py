"""A recorded device served on the simulated radio.

:class:`ClonePeripheral` lays the snapshot's table out with
:meth:`~protocol.ble.gatt_database.AttributeDatabase.from_services` (handles from 0x0001
without gaps, CCCDs first among a characteristic's descriptors, as the band's table and most
stacks lay theirs out; a device whose table has gaps gets the same layout at shifted
handles, reported by :attr:`ClonePeripheral.handles_match`), answers reads with the recorded
values (and a value that could not be read with the ATT error the device gave), keeps what
centrals write, and replays the recorded notifications to subscribers on its clock: looped
with the recording's length as the period, each shifted by a seeded uniform jitter when
asked. It does not pair (it answers Pairing Not Supported): the recording has no keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_sim.clock import Clock
from device_sim.radio.medium import (
    ATT_CID,
    SMP_CID,
    AdvertisingData,
    DisconnectReason,
    PeripheralLink,
)
from protocol.ble.device_snapshot import DeviceSnapshot, SnapshotFormatError, from_json
from protocol.ble.gatt_database import AttributeDatabase, GattRejection
from protocol.ble.gatt_model import Properties, SecurityLevel
from protocol.ble.gatt_server import GattServer
from protocol.errors import UsageError

#: SMP Pairing Failed, reason Pairing Not Supported (Vol 3 Part H 3.5.5).
_PAIRING_NOT_SUPPORTED = bytes((0x05, 0x05))
#: A recording whose notifications all came at once still replays at this period.
MIN_PERIOD_S = 0.1


def load_snapshot(path: Path) -> DeviceSnapshot:
    """Read and check a device.json; SnapshotFormatError names what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; record one with 'kmeband clone'") from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotFormatError(
            f"device.json: not JSON (line {getattr(exc, 'lineno', '?')}); "
            "record the device again with 'kmeband clone'"
        ) from None
    return from_json(doc)


def clone_address(index: int = 0) -> str:
    """A static random address for the ``index``-th clone (distinct from every band's)."""
    raw = bytearray(hashlib.sha256(b"kmeband-clone" + index.to_bytes(4, "big")).digest()[:6])
    raw[0] |= 0xC0  # static random: the two top bits set
    return ":".join(f"{b:02X}" for b in raw)


@dataclass
class _Link:
    link: PeripheralLink
    server: GattServer


class ClonePeripheral:
    """A radio Peripheral that serves a :class:`DeviceSnapshot` and replays its notifications."""

    def __init__(
        self,
        snapshot: DeviceSnapshot,
        clock: Clock,
        *,
        address: str | None = None,
        jitter_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        if jitter_s < 0:
            raise UsageError("the replay jitter cannot be negative")
        self.snapshot = snapshot
        self.clock = clock
        self.jitter_s = jitter_s
        self._address = address or clone_address()
        self._rng = np.random.default_rng(seed)
        self.db = AttributeDatabase.from_services(snapshot.to_services())
        self._value_handles: dict[str, int] = {}
        self._properties: dict[int, Properties] = {}
        for service in self.db.services:
            for entry in service.characteristics:
                self._value_handles.setdefault(str(entry.uuid), entry.value_handle)
                self._properties[entry.value_handle] = entry.definition.properties
        for recorded, entry in zip(
            (c for s in snapshot.services for c in s.characteristics),
            (c for s in self.db.services for c in s.characteristics),
            strict=True,
        ):
            if recorded.value is None and recorded.read_error is not None:
                self.db.set_read_hook(entry.value_handle, _refuse(recorded.read_error))
        self._links: dict[int, _Link] = {}
        self._task: asyncio.Task[None] | None = None
        self.replayed = 0

    @property
    def display(self) -> str | None:
        """A recording has no screen and no keys: a clone never shows a passkey."""
        return None

    @property
    def handles_match(self) -> bool:
        """Whether the clone's handles are the recorded ones (not when the device had gaps)."""
        laid_out = [
            (
                s.handle,
                [(c.declaration_handle, c.value_handle, c.end_handle) for c in s.characteristics],
            )
            for s in self.db.services
        ]
        recorded = [
            (
                s.handle,
                [
                    (
                        c.handle,
                        c.handle + 1,
                        c.descriptors[-1].handle if c.descriptors else c.handle + 1,
                    )
                    for c in s.characteristics
                ],
            )
            for s in self.snapshot.services
        ]
        return laid_out == recorded

    # -- radio Peripheral -----------------------------------------------------------------
    @property
    def address(self) -> str:
        return self._address

    def advertising_data(self) -> AdvertisingData | None:
        if self._links:
            return None  # one connection at a time, as the band
        uuids = self.snapshot.advertised_uuids or tuple(s.uuid for s in self.snapshot.services)
        return AdvertisingData(
            local_name=self.snapshot.name,
            service_uuids=tuple(str(u) for u in uuids),
            manufacturer_data=dict(self.snapshot.manufacturer_data),
        )

    def on_connect(self, link: PeripheralLink) -> None:
        rx_mtu = link.fault.max_mtu or 517
        self._links[link.handle] = _Link(
            link, GattServer(self.db, rx_mtu=max(23, rx_mtu), connection=link.handle)
        )

    def on_frame(self, link: PeripheralLink, cid: int, payload: bytes) -> None:
        state = self._links.get(link.handle)
        if state is None:
            return
        if cid == ATT_CID:
            result = state.server.receive(payload, link.security_level)
            if result.response is not None and link.connected:
                link.send(ATT_CID, result.response)
        elif cid == SMP_CID and link.connected:
            link.send(SMP_CID, _PAIRING_NOT_SUPPORTED)

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None:
        self._links.pop(link.handle, None)

    def on_encryption_request(
        self, link: PeripheralLink, skd: bytes, proof: bytes
    ) -> SecurityLevel | None:
        return None  # no bonds: the clone never paired

    # -- replay ---------------------------------------------------------------------------
    def start(self) -> None:
        """Replay the recorded notifications, looped, until :meth:`stop`."""
        if self._task is None and self.snapshot.notifications:
            self._task = asyncio.get_running_loop().create_task(self._replay())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _replay(self) -> None:
        notes = self.snapshot.notifications
        period = max(self.snapshot.recorded_s, notes[-1].t, MIN_PERIOD_S)
        cycle_start = self.clock.now()
        while True:
            for note in notes:
                jitter = self._rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0
                due = cycle_start + max(0.0, note.t + jitter)
                wait = due - self.clock.now()
                if wait > 0:
                    await self.clock.sleep(wait)
                self.push(str(note.characteristic), note.value)
            cycle_start += period
            wait = cycle_start - self.clock.now()
            await self.clock.sleep(max(wait, 0.0))

    def push(self, char_uuid: str, value: bytes) -> int:
        """Notify (or indicate) ``value`` to every subscriber; returns how many got it."""
        handle = self._value_handles.get(char_uuid)
        if handle is None:
            return 0
        sent = 0
        notify = bool(self._properties[handle] & Properties.NOTIFY)
        for state in list(self._links.values()):
            server = state.server
            pdu = server.notify(handle, value) if notify else None
            if pdu is None and server.indication_pending is None:
                pdu = server.indicate(handle, value)
            if pdu is not None and state.link.connected:
                state.link.send(ATT_CID, pdu)
                sent += 1
        self.replayed += 1
        return sent


def _refuse(code: int):  # type: ignore[no-untyped-def]
    def hook(handle: int, connection: object) -> bytes:
        raise GattRejection(code, "as the recorded device answered")

    return hook
