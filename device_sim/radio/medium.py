"""The in-process radio medium: advertisements, connections and L2CAP frames.

A band is a :class:`Peripheral`: it says what it advertises and handles frames on its
side of each :class:`PeripheralLink`. A central (the bleak backend) scans and connects
through the :class:`CentralPort` interface, which both this in-process :class:`Radio` and
the hub's remote proxy implement, so the two carriers behave the same.

Frames are delivered synchronously in "fast" mode (no link model): a send calls the other
side's handler before it returns. With a :class:`~device_sim.radio.link_model.LinkModel`
frames queue per link and arrive at connection events computed on the radio's Clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from device_sim.clock import Clock
from device_sim.radio.link_model import LinkModel
from protocol.ble.gatt_model import SecurityLevel
from protocol.errors import KmebandError, UsageError

ATT_CID = 0x0004
SMP_CID = 0x0006

#: RSSI below which a receiver no longer hears a transmitter (typical LE sensitivity).
SENSITIVITY_DBM = -95.0


class RadioError(KmebandError):
    """A radio operation failed: unknown address, out of range, or a dead link."""


class UnknownAddressError(RadioError):
    """No band with the requested address is on the radio (BLE's "device not found")."""


class EncryptionRefusedError(RadioError):
    """The band holds no bond matching the central's key (LL_REJECT_IND, PIN or Key Missing)."""


def encryption_proof(ltk: bytes, skd: bytes) -> bytes:
    """What a central sends to start encryption: proof that it holds the LTK.

    Stands in for the link layer's encryption start (Vol 6 Part B 5.1.3): there the session
    key is derived from the LTK and both sides' SKD halves, and a wrong LTK fails the MIC.
    Here the band checks ``HMAC-SHA256(ltk, skd)`` against its bond; the LTK never crosses
    the radio (or the hub socket).
    """
    return hmac.new(ltk, skd, hashlib.sha256).digest()


class DisconnectReason(enum.IntEnum):
    """Why a link went down, as HCI error codes (Core Specification Vol 1, Part F)."""

    CONNECTION_TIMEOUT = 0x08  # supervision timeout: out of range, or the peer vanished
    REMOTE_USER_TERMINATED = 0x13
    REMOTE_POWER_OFF = 0x15  # the band rebooted or its battery died
    LOCAL_HOST_TERMINATED = 0x16
    CONNECTION_FAILED_TO_BE_ESTABLISHED = 0x3E


@dataclass(frozen=True)
class AdvertisingData:
    """What a peripheral puts in its advertisements."""

    local_name: str | None
    service_uuids: tuple[str, ...] = ()
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    tx_power: int = 0  # dBm, as in the TX Power Level AD type
    connectable: bool = True


@dataclass(frozen=True)
class AdvertisementReport:
    """One advertisement as a scanner received it, with the RSSI it measured."""

    address: str
    data: AdvertisingData
    rssi: int


@dataclass
class LinkFault:
    """Faults injected into one link, seeded and scriptable.

    - ``drop_after_pdus``: the link drops (supervision timeout) once this many frames
      have crossed it in either direction.
    - ``drop_at``: the link drops at this simulated time (checked as frames cross).
    - ``max_mtu``: the band's GATT server offers at most this ATT MTU (a small forced MTU).
    - ``extra_latency_s``: every frame takes this much longer (a slow link; needs a clock).
    """

    drop_after_pdus: int | None = None
    drop_at: float | None = None
    max_mtu: int | None = None
    extra_latency_s: float = 0.0


class Peripheral(Protocol):
    """What the radio needs from a band."""

    @property
    def address(self) -> str: ...

    def advertising_data(self) -> AdvertisingData | None:
        """What to advertise now, or None when the band is not advertising."""

    def on_connect(self, link: PeripheralLink) -> None: ...

    def on_frame(self, link: PeripheralLink, cid: int, payload: bytes) -> None: ...

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None: ...

    @property
    def display(self) -> str | None:
        """What the band's screen shows now: the six-digit passkey while pairing, else None.

        The radio hands it to whoever asks (:meth:`CentralPort.read_display`), standing in
        for a user who looks at the band and types the digits into the phone.
        """

    def on_encryption_request(
        self, link: PeripheralLink, skd: bytes, proof: bytes
    ) -> SecurityLevel | None:
        """Check ``proof == encryption_proof(bond.ltk, skd)`` for the central's bond.

        Return the bond's security level to encrypt the link, or None to refuse.
        """


class CaptureSink(Protocol):
    """Receives every frame for a capture file (see device_sim.radio.capture)."""

    def connected(self, timestamp: float, handle: int, peer_address: str) -> None: ...

    def frame(
        self, timestamp: float, handle: int, from_central: bool, cid: int, payload: bytes
    ) -> None: ...

    def disconnected(self, timestamp: float, handle: int, reason: int) -> None: ...

    def encrypted(self, timestamp: float, handle: int) -> None: ...


FrameHandler = Callable[[int, bytes], None]
DisconnectHandler = Callable[[DisconnectReason], None]


class CentralLink(Protocol):
    """The central's end of a connection."""

    @property
    def handle(self) -> int: ...

    @property
    def peer_address(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def max_mtu(self) -> int | None: ...

    @property
    def security_level(self) -> SecurityLevel: ...

    def send(self, cid: int, payload: bytes) -> None: ...

    async def start_encryption(self, ltk: bytes, timeout_s: float = 5.0) -> SecurityLevel:
        """Encrypt the link with a bond's LTK; EncryptionRefusedError if the band has none."""

    async def disconnect(self) -> None: ...


class CentralPort(Protocol):
    """How a central reaches the radio: in-process or through the hub."""

    async def scan(self, duration_s: float = 0.0) -> list[AdvertisementReport]: ...

    async def read_display(self, address: str) -> str | None:
        """What the band's screen shows (a user looking at it): the passkey while pairing."""

    async def connect(
        self,
        address: str,
        *,
        central_address: str,
        on_frame: FrameHandler,
        on_disconnect: DisconnectHandler,
        timeout_s: float = 10.0,
    ) -> CentralLink: ...


class _Pump:
    """Carries frames of one link through the link model, in connection-event order."""

    def __init__(self, link: Link, model: LinkModel, clock: Clock) -> None:
        self._link = link
        self._model = model
        self._clock = clock
        self._queue: deque[tuple[bool, int, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._slot = 0  # packets used since the link was made
        self._origin = clock.now()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def push(self, from_central: bool, cid: int, payload: bytes) -> None:
        self._queue.append((from_central, cid, payload))
        self._wakeup.set()

    async def _run(self) -> None:
        model = self._model
        per_event = model.packets_per_interval
        interval = model.conn_interval_ms / 1000.0
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            from_central, cid, payload = self._queue.popleft()
            # The frame's last packet goes in connection event (slot // per_event); it
            # arrives at the end of that event's packet train.
            now_slot = math.floor((self._clock.now() - self._origin) / interval) * per_event
            self._slot = max(self._slot, now_slot)
            self._slot += model.packets_for(len(payload) + 4)
            last = self._slot - 1
            event, index = divmod(last, per_event)
            arrive = (
                self._origin
                + event * interval
                + (index + 1) * model.packet_time_s(model.data_length)
                + self._link.fault.extra_latency_s
            )
            await self._clock.sleep_until(arrive)
            self._link._deliver(from_central, cid, payload)

    def close(self) -> None:
        self._task.cancel()


class Link:
    """One connection between a central and a peripheral, with both of its ends."""

    def __init__(
        self,
        radio: Radio,
        handle: int,
        peripheral: Peripheral,
        central_address: str,
        on_frame: FrameHandler,
        on_disconnect: DisconnectHandler,
        fault: LinkFault,
    ) -> None:
        self.radio = radio
        self.handle = handle
        self.peripheral = peripheral
        self.central_address = central_address
        self._on_central_frame = on_frame
        self._on_central_disconnect = on_disconnect
        self.fault = fault
        self.connected = True
        self.security_level = SecurityLevel.NO_SECURITY
        self.frames = 0
        self.bytes = 0
        self.central = _CentralEnd(self)
        self.peripheral_end = PeripheralLink(self)
        self._pump: _Pump | None = None
        if radio.link_model is not None:
            self._pump = _Pump(self, radio.link_model, radio.clock)

    def _send(self, from_central: bool, cid: int, payload: bytes) -> None:
        if not self.connected:
            raise RadioError(
                "the link is down: reconnect before sending (the band may have gone out of "
                "range, rebooted, or run out of battery)"
            )
        fault = self.fault
        if fault.drop_at is not None and self.radio.clock.now() >= fault.drop_at:
            self.drop(DisconnectReason.CONNECTION_TIMEOUT)
            return
        self.frames += 1
        self.bytes += len(payload)
        capture = self.radio.capture
        if capture is not None:
            capture.frame(self.radio.clock.now(), self.handle, from_central, cid, payload)
        if self._pump is not None:
            self._pump.push(from_central, cid, payload)
        else:
            self._deliver(from_central, cid, payload)
        if fault.drop_after_pdus is not None and self.frames >= fault.drop_after_pdus:
            self.drop(DisconnectReason.CONNECTION_TIMEOUT)

    def start_encryption(self, ltk: bytes) -> SecurityLevel:
        skd = self.radio.random_bytes(16)
        return self.encrypt_with_proof(skd, encryption_proof(ltk, skd))

    def encrypt_with_proof(self, skd: bytes, proof: bytes) -> SecurityLevel:
        """The band's half of encryption start (the hub calls this for remote centrals)."""
        if not self.connected:
            raise RadioError("the link is down: reconnect before starting encryption")
        level = self.peripheral.on_encryption_request(self.peripheral_end, skd, proof)
        if level is None or level <= SecurityLevel.NO_SECURITY:
            raise EncryptionRefusedError(
                "the band has no bond for this central (PIN or Key Missing): pair again"
            )
        self.security_level = SecurityLevel(level)
        if self.radio.capture is not None:
            self.radio.capture.encrypted(self.radio.clock.now(), self.handle)
        return self.security_level

    def _deliver(self, from_central: bool, cid: int, payload: bytes) -> None:
        if not self.connected:
            return  # frames in flight when a link dies are lost, as on the air
        if from_central:
            self.peripheral.on_frame(self.peripheral_end, cid, payload)
        else:
            self._on_central_frame(cid, payload)

    def drop(self, reason: DisconnectReason, *, by_central: bool | None = None) -> None:
        """Take the link down; each side hears the reason from its own point of view."""
        if not self.connected:
            return
        self.connected = False
        if self._pump is not None:
            self._pump.close()
        self.radio._forget(self)
        if self.radio.capture is not None:
            self.radio.capture.disconnected(self.radio.clock.now(), self.handle, int(reason))
        central_reason = reason
        peripheral_reason = reason
        if by_central is True:
            central_reason = DisconnectReason.LOCAL_HOST_TERMINATED
            peripheral_reason = DisconnectReason.REMOTE_USER_TERMINATED
        elif by_central is False:
            central_reason = (
                reason
                if reason != DisconnectReason.LOCAL_HOST_TERMINATED
                else DisconnectReason.REMOTE_USER_TERMINATED
            )
            peripheral_reason = DisconnectReason.LOCAL_HOST_TERMINATED
        with contextlib.suppress(Exception):  # a broken band handler must not hide the drop
            self.peripheral.on_disconnect(self.peripheral_end, peripheral_reason)
        self._on_central_disconnect(central_reason)


class _CentralEnd:
    """The central's view of a :class:`Link` (implements CentralLink)."""

    def __init__(self, link: Link) -> None:
        self._link = link

    @property
    def handle(self) -> int:
        return self._link.handle

    @property
    def peer_address(self) -> str:
        return self._link.peripheral.address

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def max_mtu(self) -> int | None:
        return self._link.fault.max_mtu

    @property
    def security_level(self) -> SecurityLevel:
        return self._link.security_level

    def send(self, cid: int, payload: bytes) -> None:
        self._link._send(True, cid, payload)

    async def start_encryption(self, ltk: bytes, timeout_s: float = 5.0) -> SecurityLevel:
        return self._link.start_encryption(ltk)

    def encrypt_with_proof(self, skd: bytes, proof: bytes) -> SecurityLevel:
        return self._link.encrypt_with_proof(skd, proof)

    async def disconnect(self) -> None:
        self._link.drop(DisconnectReason.LOCAL_HOST_TERMINATED, by_central=True)


class PeripheralLink:
    """The band's view of a :class:`Link`."""

    def __init__(self, link: Link) -> None:
        self._link = link

    @property
    def handle(self) -> int:
        return self._link.handle

    @property
    def central_address(self) -> str:
        return self._link.central_address

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def fault(self) -> LinkFault:
        return self._link.fault

    @property
    def security_level(self) -> SecurityLevel:
        """The link's current security: what the GATT server checks permissions against."""
        return self._link.security_level

    def send(self, cid: int, payload: bytes) -> None:
        self._link._send(False, cid, payload)

    def disconnect(
        self, reason: DisconnectReason = DisconnectReason.REMOTE_USER_TERMINATED
    ) -> None:
        self._link.drop(reason, by_central=False)


class Radio:
    """The in-process medium: bands attach, centrals scan and connect (a CentralPort).

    RSSI follows a log-distance path-loss model with seeded shadowing noise:
    ``rssi = tx_power - 41 dB - 20 log10(distance_m) + N(0, 2 dB)``; below -95 dBm a band
    is out of range (not seen, no connection, and a live link drops with a supervision
    timeout when the band moves out of range).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int = 0,
        link_model: LinkModel | None = None,
        capture: CaptureSink | None = None,
    ) -> None:
        self.clock = clock
        self.link_model = link_model
        self.capture = capture
        self._rng = np.random.default_rng(seed)
        self._peripherals: dict[str, Peripheral] = {}
        self._distance: dict[str, float] = {}
        self._links: dict[int, Link] = {}
        self._next_handle = 0x0040
        self._pending_faults: dict[str, deque[LinkFault]] = {}

    # -- bands -------------------------------------------------------------------------
    def attach(self, peripheral: Peripheral, distance_m: float = 1.0) -> None:
        address = peripheral.address
        if address in self._peripherals:
            raise UsageError("a band with that address is already on this radio")
        self._peripherals[address] = peripheral
        self.set_distance(address, distance_m)

    def detach(self, address: str) -> None:
        for link in [lk for lk in self._links.values() if lk.peripheral.address == address]:
            link.drop(DisconnectReason.CONNECTION_TIMEOUT)
        self._peripherals.pop(address, None)
        self._distance.pop(address, None)

    @property
    def addresses(self) -> list[str]:
        return list(self._peripherals)

    def set_distance(self, address: str, distance_m: float) -> None:
        """Move a band; beyond range its links drop with a supervision timeout."""
        self._require(address)
        if not distance_m > 0:
            raise UsageError("distance must be > 0 metres")
        self._distance[address] = distance_m
        if self._mean_rssi(address) < SENSITIVITY_DBM:
            for link in [lk for lk in self._links.values() if lk.peripheral.address == address]:
                link.drop(DisconnectReason.CONNECTION_TIMEOUT)

    def inject_fault(self, address: str, fault: LinkFault) -> None:
        """Apply ``fault`` to the next connection made to ``address``."""
        self._require(address)
        self._pending_faults.setdefault(address, deque()).append(fault)

    def links_to(self, address: str) -> list[Link]:
        return [lk for lk in self._links.values() if lk.peripheral.address == address]

    async def read_display(self, address: str) -> str | None:
        """What the band's screen shows now (a passkey during pairing), as a user would see it."""
        self._require(address)
        return self._peripherals[address].display

    def drop_links(self, address: str, reason: DisconnectReason) -> None:
        """Drop every link to a band (used for reboots and dead batteries)."""
        for link in self.links_to(address):
            link.drop(reason)

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes from the radio's seeded generator (encryption start's SKD)."""
        return self._rng.bytes(n)

    # -- centrals (CentralPort) --------------------------------------------------------
    async def scan(self, duration_s: float = 0.0) -> list[AdvertisementReport]:
        if duration_s > 0:
            await self.clock.sleep(duration_s)
        reports = []
        for address, peripheral in self._peripherals.items():
            data = peripheral.advertising_data()
            if data is None:
                continue
            rssi = self._sample_rssi(address, data.tx_power)
            if rssi < SENSITIVITY_DBM:
                continue
            reports.append(AdvertisementReport(address=address, data=data, rssi=rssi))
        return reports

    async def connect(
        self,
        address: str,
        *,
        central_address: str,
        on_frame: FrameHandler,
        on_disconnect: DisconnectHandler,
        timeout_s: float = 10.0,
    ) -> CentralLink:
        peripheral = self._peripherals.get(address)
        if peripheral is None:
            raise UnknownAddressError(
                "no band with that address is on this radio: scan again for the current list"
            )
        data = peripheral.advertising_data()
        if data is None or not data.connectable:
            raise RadioError(
                "the band is not accepting connections (already connected, off, or out of "
                "battery): disconnect other centrals or charge it, then retry"
            )
        if self._mean_rssi(address) < SENSITIVITY_DBM:
            raise RadioError("the band is out of range: move closer and retry")
        faults = self._pending_faults.get(address)
        fault = faults.popleft() if faults else LinkFault()
        handle = self._next_handle
        self._next_handle = 0x0040 + ((self._next_handle - 0x0040 + 1) % 0x0EFF)
        link = Link(self, handle, peripheral, central_address, on_frame, on_disconnect, fault)
        self._links[handle] = link
        if self.capture is not None:
            self.capture.connected(self.clock.now(), handle, address)
        peripheral.on_connect(link.peripheral_end)
        return link.central

    # -- internals ---------------------------------------------------------------------
    def _forget(self, link: Link) -> None:
        self._links.pop(link.handle, None)

    def _require(self, address: str) -> None:
        if address not in self._peripherals:
            raise UnknownAddressError("no band with that address is on this radio")

    def _mean_rssi(self, address: str, tx_power: int = 0) -> float:
        return tx_power - 41.0 - 20.0 * math.log10(self._distance[address])

    def _sample_rssi(self, address: str, tx_power: int) -> int:
        return round(self._mean_rssi(address, tx_power) + float(self._rng.normal(0.0, 2.0)))
