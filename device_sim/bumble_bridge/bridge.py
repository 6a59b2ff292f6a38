"""Serve one simulated peripheral through a bumble Device.

:class:`BumbleBridge` gives a radio :class:`~device_sim.radio.medium.Peripheral` (a band's
``BandGattEndpoint``, a clone, any test peripheral) a bumble Device of its own: it advertises
the peripheral's advertising data, lays the peripheral's attribute table out in bumble's GATT
server at the same handles (bumble's own GAP and GATT services are left out so that the
band's table is the whole table), and for each central that connects opens a
:class:`~device_sim.bumble_bridge.att_relay.RelayLink` to the peripheral.

With ``direct_att=True`` bumble's GATT server steps aside for bridged connections: the ATT
PDUs a central sends reach the peripheral's own ATT/GATT server as bytes, and its answers,
notifications and indications go back through bumble's L2CAP untouched. That is how the
interop suite has bumble's independent GATT client parse kmeband's own server bytes.

Security: bumble's SMP pairs (LE Secure Connections, MITM, bonding) with the passkey of a
:class:`~device_sim.bumble_bridge.pairing.PasskeyDisplay`; the relay link carries the
resulting LE security mode 1 level (Vol 3 Part C 10.2.1) to the peripheral, whose own
permission checks decide every access. The level is worked out here rather than taken from
bumble's ``Connection.authenticated``, which bumble sets after any pairing and any LE
encryption, Just Works included; a link is authenticated only when the pairing that made its
key used the passkey (or, for a bonded central, when its stored key says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bumble import hci
from bumble.att import ATT_Error, ErrorCode
from bumble.core import UUID
from bumble.device import Connection, Device, DeviceConfiguration
from bumble.gatt import Characteristic, CharacteristicValue, Descriptor, Service
from bumble.host import Host
from bumble.transport.common import TransportSink, TransportSource

from device_sim.bumble_bridge.att_relay import RelayAttError, RelayClosedError, RelayLink
from device_sim.bumble_bridge.pairing import PasskeyDisplay, pairing_config
from device_sim.radio.medium import ATT_CID, AdvertisingData, DisconnectReason, Peripheral
from protocol.ble.gatt_database import AttributeDatabase, AttributeKind
from protocol.ble.gatt_model import Permissions, SecurityLevel
from protocol.ble.uuids import uuid_to_att
from protocol.errors import KmebandError

log = logging.getLogger(__name__)

#: Legacy advertising and scan response payloads hold 31 octets each (Vol 6 Part B 2.3.1).
MAX_AD_PAYLOAD = 31
_AD_FLAGS = 0x01
_AD_UUID16_COMPLETE = 0x03
_AD_UUID128_COMPLETE = 0x07
_AD_NAME_SHORT = 0x08
_AD_NAME_COMPLETE = 0x09
_AD_TX_POWER = 0x0A
_AD_MANUFACTURER = 0xFF
#: Relay links are numbered from here, clear of the simulated radio's link handles.
RELAY_HANDLE_BASE = 0x10000
#: LE General Discoverable, BR/EDR not supported.
_FLAGS_LE_ONLY = 0x06

_PERMISSIONS = (
    (Permissions.READABLE, Characteristic.Permissions.READABLE),
    (Permissions.WRITABLE, Characteristic.Permissions.WRITEABLE),
    (Permissions.READ_ENCRYPTED, Characteristic.Permissions.READ_REQUIRES_ENCRYPTION),
    (Permissions.WRITE_ENCRYPTED, Characteristic.Permissions.WRITE_REQUIRES_ENCRYPTION),
    (Permissions.READ_AUTHENTICATED, Characteristic.Permissions.READ_REQUIRES_AUTHENTICATION),
    (Permissions.WRITE_AUTHENTICATED, Characteristic.Permissions.WRITE_REQUIRES_AUTHENTICATION),
)


class BridgeError(KmebandError):
    """The peripheral cannot be served through bumble as asked."""


def bumble_address(address: str) -> hci.Address:
    """A kmeband address (``AA:BB:..``, a static random one for bands) as bumble's."""
    return hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)


def advertising_payloads(ad: AdvertisingData) -> tuple[bytes, bytes]:
    """The advertising data and scan response for ``ad``, each within 31 octets.

    Flags, service UUIDs and TX power go first into the advertisement; what does not fit,
    the name and the manufacturer data follow in the scan response; a name too long for the
    room left is sent shortened (AD type 0x08), as Core Specification Supplement 1.2 allows.
    """
    uuids = [uuid_to_att(uuid.UUID(u)) for u in ad.service_uuids]
    items: list[tuple[int, bytes]] = [(_AD_FLAGS, bytes((_FLAGS_LE_ONLY,)))]
    short = b"".join(u for u in uuids if len(u) == 2)
    long = b"".join(u for u in uuids if len(u) == 16)
    if short:
        items.append((_AD_UUID16_COMPLETE, short))
    if long:
        items.append((_AD_UUID128_COMPLETE, long))
    items.append((_AD_TX_POWER, (ad.tx_power & 0xFF).to_bytes(1, "little")))
    for company, data in sorted(ad.manufacturer_data.items()):
        items.append((_AD_MANUFACTURER, company.to_bytes(2, "little") + data))
    payloads = [bytearray(), bytearray()]
    for ad_type, data in items:
        for payload in payloads:
            if len(payload) + 2 + len(data) <= MAX_AD_PAYLOAD:
                payload += bytes((len(data) + 1, ad_type)) + data
                break
    if ad.local_name:
        name = ad.local_name.encode("utf-8")
        for payload in (payloads[1], payloads[0]):
            room = MAX_AD_PAYLOAD - len(payload) - 2
            if room >= min(len(name), 4):
                kind = _AD_NAME_COMPLETE if len(name) <= room else _AD_NAME_SHORT
                part = name[:room]
                payload += bytes((len(part) + 1, kind)) + part
                break
    return bytes(payloads[0]), bytes(payloads[1])


def _bumble_permissions(perms: Permissions) -> Characteristic.Permissions:
    out = Characteristic.Permissions(0)
    for ours, theirs in _PERMISSIONS:
        if perms & ours:
            out |= theirs
    return out


@dataclass
class _Bridged:
    """One central's connection through bumble to the peripheral."""

    connection: Connection
    link: RelayLink
    outbox: asyncio.Queue[tuple[bool, int, bytes]] = field(default_factory=asyncio.Queue)
    pump: asyncio.Task[None] | None = None
    pairing: bool = False
    passkey_shown: bool = False
    security_known: asyncio.Event = field(default_factory=asyncio.Event)


class BumbleBridge:
    """A radio Peripheral served as a real BLE peripheral by a bumble Device."""

    def __init__(
        self,
        peripheral: Peripheral,
        database: AttributeDatabase,
        host: Host,
        *,
        passkey_display: PasskeyDisplay | None = None,
        direct_att: bool = False,
    ) -> None:
        self.peripheral = peripheral
        self.direct_att = direct_att
        self.database = database
        self.passkey_display = passkey_display
        ad = peripheral.advertising_data()
        config = DeviceConfiguration(
            name=(ad.local_name if ad is not None and ad.local_name else "kmeband"),
            address=bumble_address(peripheral.address),
            gap_service_enabled=False,
            gatt_service_enabled=False,
        )
        self.device = Device(config=config, host=host)
        self._connections: dict[int, _Bridged] = {}
        self._characteristics: dict[int, Characteristic[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.device.add_services(self._mirror())
        self._check_handles()
        self.device.pairing_config_factory = self._pairing_config
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)

    @classmethod
    def with_hci(
        cls,
        peripheral: Peripheral,
        database: AttributeDatabase,
        source: TransportSource,
        sink: TransportSink,
        *,
        passkey_display: PasskeyDisplay | None = None,
        direct_att: bool = False,
    ) -> BumbleBridge:
        """A bridge on an HCI controller reached through a bumble transport."""
        return cls(
            peripheral,
            database,
            Host(controller_source=source, controller_sink=sink),
            passkey_display=passkey_display,
            direct_att=direct_att,
        )

    # -- life ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Power the controller on and advertise."""
        await self.device.power_on()
        await self._advertise()

    async def close(self) -> None:
        """Disconnect every central and stop advertising."""
        self._closing = True
        for bridged in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await bridged.connection.disconnect()
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        for task in list(self._tasks):
            task.cancel()
        for bridged in list(self._connections.values()):
            self._drop(bridged, DisconnectReason.LOCAL_HOST_TERMINATED)
        with contextlib.suppress(Exception):
            await self.device.power_off()

    async def _advertise(self) -> None:
        ad = self.peripheral.advertising_data()
        if ad is None or self._closing:
            return
        adv, scan = advertising_payloads(ad)
        await self.device.start_advertising(
            own_address_type=hci.OwnAddressType.RANDOM,
            advertising_data=adv,
            scan_response_data=scan,
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the table ------------------------------------------------------------------------
    def _mirror(self) -> list[Service]:
        services = []
        for service in self.database.services:
            characteristics = []
            for entry in service.characteristics:
                value = self.database.attribute(entry.value_handle)
                descriptors = [
                    Descriptor(
                        _att_uuid(attr.type),
                        _bumble_permissions(attr.permissions),
                        CharacteristicValue(
                            read=self._reader(attr.handle), write=self._writer(attr.handle)
                        ),
                    )
                    for attr in (
                        self.database.attribute(h)
                        for h in range(entry.value_handle + 1, entry.end_handle + 1)
                    )
                    if attr.kind in (AttributeKind.CCCD, AttributeKind.DESCRIPTOR)
                ]
                characteristic: Characteristic[Any] = Characteristic(
                    _att_uuid(entry.uuid),
                    Characteristic.Properties(int(entry.definition.properties) & 0xFF),
                    _bumble_permissions(value.permissions),
                    CharacteristicValue(
                        read=self._reader(entry.value_handle),
                        write=self._writer(entry.value_handle),
                    ),
                    descriptors,
                )
                self._characteristics[entry.value_handle] = characteristic
                characteristics.append(characteristic)
            services.append(
                Service(
                    _att_uuid(service.uuid), characteristics, primary=service.definition.primary
                )
            )
        return services

    def _check_handles(self) -> None:
        # The central sees bumble's handles and the peripheral notifies with its own; the
        # layouts agree by construction, and a central that caches handles relies on it.
        for handle, characteristic in self._characteristics.items():
            if characteristic.handle != handle:
                raise BridgeError(
                    f"bumble laid characteristic {characteristic.uuid} out at handle "
                    f"0x{characteristic.handle:04X}, the peripheral at 0x{handle:04X}; "
                    "the peripheral's table must start at handle 0x0001 without gaps"
                )

    def _reader(self, handle: int) -> Callable[[Connection], Awaitable[bytes]]:
        async def read(connection: Connection) -> bytes:
            link = await self._link_for(connection)
            try:
                return await link.read(handle)
            except RelayAttError as exc:
                raise ATT_Error(exc.error_code, handle) from None
            except RelayClosedError:
                raise ATT_Error(ErrorCode.UNLIKELY_ERROR, handle) from None

        return read

    def _writer(self, handle: int) -> Callable[[Connection, bytes], Awaitable[None]]:
        async def write(connection: Connection, value: bytes) -> None:
            link = await self._link_for(connection)
            try:
                await link.write(handle, bytes(value))
            except RelayAttError as exc:
                raise ATT_Error(exc.error_code, handle) from None
            except RelayClosedError:
                raise ATT_Error(ErrorCode.UNLIKELY_ERROR, handle) from None

        return write

    async def _link_for(self, connection: Connection) -> RelayLink:
        bridged = self._connections.get(connection.handle)
        if bridged is None:
            raise ATT_Error(ErrorCode.UNLIKELY_ERROR)
        # A request right after encryption waits until the link's level is known.
        await bridged.security_known.wait()
        return bridged.link

    # -- connections ------------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        link = RelayLink(
            # Above every simulated radio handle: a band may be on both at once.
            RELAY_HANDLE_BASE + connection.handle,
            connection.peer_address.to_string(with_type_qualifier=False),
            on_notification=lambda h, v: self._queue(connection, False, h, v),
            on_indication=lambda h, v: self._queue(connection, True, h, v),
            on_disconnect_request=lambda reason: self._spawn(connection.disconnect(int(reason))),
        )
        bridged = _Bridged(connection, link)
        bridged.security_known.set()
        self._connections[connection.handle] = bridged
        link.attach(lambda pdu: self.peripheral.on_frame(cast(Any, link), ATT_CID, pdu))
        if self.direct_att:
            link.send_directly(lambda pdu: connection.send_l2cap_pdu(ATT_CID, pdu))
            connection.gatt_server = cast(Any, _DirectAtt(self, bridged))
        self.peripheral.on_connect(cast(Any, link))
        bridged.pump = asyncio.ensure_future(self._pump(bridged))
        connection.on(connection.EVENT_DISCONNECTION, lambda reason: self._on_lost(bridged, reason))
        connection.on(
            connection.EVENT_CONNECTION_ATT_MTU_UPDATE,
            lambda: self._spawn(self._exchange_mtu(bridged)),
        )
        connection.on(connection.EVENT_PAIRING_START, lambda: self._pairing_started(bridged))
        connection.on(connection.EVENT_PAIRING, lambda keys: self._paired(bridged, keys))
        connection.on(
            connection.EVENT_PAIRING_FAILURE, lambda reason: self._pairing_failed(bridged)
        )
        connection.on(
            connection.EVENT_CONNECTION_ENCRYPTION_CHANGE, lambda: self._encrypted(bridged)
        )

    async def _exchange_mtu(self, bridged: _Bridged) -> None:
        with contextlib.suppress(RelayAttError, RelayClosedError):
            await bridged.link.exchange_mtu(bridged.connection.att_mtu)

    def _on_lost(self, bridged: _Bridged, reason: int) -> None:
        self._drop(bridged, _reason(reason))
        if not self._closing:
            self._spawn(self._advertise())

    def _drop(self, bridged: _Bridged, reason: DisconnectReason) -> None:
        if self._connections.pop(bridged.connection.handle, None) is None:
            return
        bridged.link.close()
        bridged.security_known.set()
        if bridged.pump is not None:
            bridged.pump.cancel()
        if bridged.pairing and self.passkey_display is not None:
            self.passkey_display.finished(False)
        self.peripheral.on_disconnect(cast(Any, bridged.link), reason)

    # -- security ---------------------------------------------------------------------------
    def _pairing_config(self, connection: Connection) -> Any:
        bridged = self._connections.get(connection.handle)
        display = self.passkey_display
        if display is not None and bridged is not None:
            display = _ConnectionDisplay(display, bridged)
        return pairing_config(display)

    def _pairing_started(self, bridged: _Bridged) -> None:
        bridged.pairing = True
        bridged.passkey_shown = False

    def _paired(self, bridged: _Bridged, keys: Any) -> None:
        bridged.pairing = False
        ltk = keys.ltk or keys.ltk_peripheral
        authenticated = bool(ltk is not None and ltk.authenticated)
        bridged.link.security_level = _level(True, authenticated, bridged.connection.sc)
        if self.passkey_display is not None:
            self.passkey_display.finished(True)

    def _pairing_failed(self, bridged: _Bridged) -> None:
        bridged.pairing = False
        if self.passkey_display is not None:
            self.passkey_display.finished(False)

    def _encrypted(self, bridged: _Bridged) -> None:
        connection = bridged.connection
        if not connection.is_encrypted:
            bridged.link.security_level = SecurityLevel.NO_SECURITY
        elif bridged.pairing:
            # The key was just made: a passkey on the screen means MITM protection.
            bridged.link.security_level = _level(True, bridged.passkey_shown, sc=True)
        else:
            bridged.security_known.clear()
            self._spawn(self._bonded_level(bridged))

    async def _bonded_level(self, bridged: _Bridged) -> None:
        try:
            keys = None
            if self.device.keystore is not None:
                keys = await self.device.keystore.get(str(bridged.connection.peer_address))
            ltk = None if keys is None else (keys.ltk or keys.ltk_peripheral)
            authenticated = bool(ltk is not None and ltk.authenticated)
            bridged.link.security_level = _level(True, authenticated, bridged.connection.sc)
        finally:
            bridged.security_known.set()

    # -- notifications and indications -------------------------------------------------------
    def _queue(self, connection: Connection, indicate: bool, handle: int, value: bytes) -> None:
        bridged = self._connections.get(connection.handle)
        if bridged is not None:
            bridged.outbox.put_nowait((indicate, handle, value))

    async def _pump(self, bridged: _Bridged) -> None:
        # One queue keeps the peripheral's order; an indication holds the queue until the
        # central confirms it, as the band itself sends the next one only then.
        while True:
            indicate, handle, value = await bridged.outbox.get()
            characteristic = self._characteristics.get(handle)
            if characteristic is None:
                continue
            try:
                if indicate:
                    await self.device.indicate_subscriber(
                        bridged.connection, characteristic, value, force=True
                    )
                    bridged.link.confirm_indication()
                else:
                    await self.device.notify_subscriber(
                        bridged.connection, characteristic, value, force=True
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost link or a central that never confirms
                log.debug("bridged %s not delivered: %s", "indication" if indicate else "ntf", exc)


class _DirectAtt:
    """Stands in for bumble's GATT server on one connection: PDUs go to the peripheral."""

    def __init__(self, bridge: BumbleBridge, bridged: _Bridged) -> None:
        self._bridge = bridge
        self._bridged = bridged

    def on_gatt_pdu(self, _bearer: Any, att_pdu: Any) -> None:
        link = self._bridged.link
        if link.connected:
            self._bridge.peripheral.on_frame(cast(Any, link), ATT_CID, bytes(att_pdu))


class _ConnectionDisplay:
    """The peripheral's display, noting for one connection that a passkey was shown."""

    def __init__(self, display: PasskeyDisplay, bridged: _Bridged) -> None:
        self._display = display
        self._bridged = bridged

    def allows_pairing(self) -> bool:
        return self._display.allows_pairing()

    def new_passkey(self) -> int:
        return self._display.new_passkey()

    def show(self, digits: str) -> None:
        self._bridged.passkey_shown = True
        self._display.show(digits)

    def finished(self, success: bool) -> None:
        self._display.finished(success)


def _level(encrypted: bool, authenticated: bool, sc: bool) -> SecurityLevel:
    if not encrypted:
        return SecurityLevel.NO_SECURITY
    if not authenticated:
        return SecurityLevel.UNAUTHENTICATED_ENCRYPTION
    if sc:
        return SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS
    return SecurityLevel.AUTHENTICATED_ENCRYPTION


def _reason(code: int) -> DisconnectReason:
    try:
        return DisconnectReason(code)
    except ValueError:
        return DisconnectReason.CONNECTION_TIMEOUT


def _att_uuid(value: Any) -> UUID:
    return UUID.from_bytes(uuid_to_att(value))
