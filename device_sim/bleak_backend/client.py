"""A bleak client backend over the simulated radio.

Use it as ``BleakClient(address_or_device, backend=SimBleakClient)`` (or everywhere at once
with :func:`device_sim.bleak_backend.install`). ``connect()`` links to the band through
:func:`~device_sim.bleak_backend.port.current_port`, exchanges the ATT MTU (offering 247,
or less when the link forces a smaller one), discovers the whole profile and, when a bond
with the band is known, encrypts the link with it. ``pair()`` runs LE Secure Connections
passkey entry (see :mod:`device_sim.bleak_backend.pairing` for where the passkey comes
from). ATT Error Responses raise bleak's ``BleakGATTProtocolError``; a lost link raises
:class:`~device_sim.bleak_backend.att_bearer.SimLinkLostError` (a ``BleakError``).

Backend-specific constructor keywords: ``passkey_callback`` (used by ``pair()``),
``bond_store`` (a :class:`~device_sim.bleak_backend.bonds.BondStore`; default
:func:`~device_sim.bleak_backend.bonds.default_bond_store`) and ``mtu`` (the ATT MTU to
offer, 23..517, default 247).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from device_sim.bleak_backend.agent import PasskeyRequest
from device_sim.bleak_backend.att_bearer import AttBearer, SimLinkLostError
from device_sim.bleak_backend.bonds import BondStore, central_address, default_bond_store
from device_sim.bleak_backend.pairing import PairingSession, PasskeyCallback
from device_sim.bleak_backend.port import current_port
from device_sim.radio.medium import (
    ATT_CID,
    SMP_CID,
    CentralLink,
    CentralPort,
    DisconnectReason,
    EncryptionRefusedError,
    UnknownAddressError,
)
from protocol.ble.gatt_client import DiscoveredCharacteristic, GattClient, GattProfile
from protocol.ble.gatt_model import SecurityLevel
from protocol.errors import KmebandError
from protocol.kme.profile import DEVICE_NAME

#: The ATT MTU offered by default: 244-octet notification payloads (ATT_MTU - 3).
DEFAULT_MTU_OFFER = 247

_PROPERTY_BITS = sorted(CHARACTERISTIC_PROPERTIES.items())


class BandUnreachableError(BleakError, KmebandError):
    """The band could not be reached (out of range, not connectable, or no radio)."""


def property_names(bits: int) -> list[CharacteristicPropertyName]:
    """Characteristic properties as bleak spells them, in bit order."""
    return [name for bit, name in _PROPERTY_BITS if bits & bit]


def build_service_collection(
    profile: GattProfile,
    max_write_without_response_size: Callable[[], int],
    wanted: set[str] | None = None,
) -> BleakGATTServiceCollection:
    """Bleak's view of a discovered profile; ``obj`` holds the discovered entries.

    A characteristic's ``handle`` is its declaration handle, as bleak's OS backends report
    it; the value handle is ``characteristic.obj.value_handle``.
    """
    collection = BleakGATTServiceCollection()
    for svc in profile:
        service_uuid = str(svc.uuid)
        if wanted and service_uuid not in wanted:
            continue
        service = BleakGATTService(svc, svc.handle, service_uuid)
        collection.add_service(service)
        for char in svc.characteristics:
            characteristic = BleakGATTCharacteristic(
                char,
                char.declaration_handle,
                str(char.uuid),
                property_names(int(char.properties)),
                max_write_without_response_size,
                service,
            )
            collection.add_characteristic(characteristic)
            for desc in char.descriptors:
                collection.add_descriptor(
                    BleakGATTDescriptor(desc, desc.handle, str(desc.uuid), characteristic)
                )
    return collection


class SimBleakClient(BaseBleakClient):
    """Connects to a simulated band: ``BleakClient(device, backend=SimBleakClient)``."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        services: set[str] | None = None,
        passkey_callback: PasskeyCallback | None = None,
        bond_store: BondStore | None = None,
        mtu: int = DEFAULT_MTU_OFFER,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._advertised_name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._device_name: str | None = None
        self._wanted_services = set(services) if services else None
        self._passkey_callback = passkey_callback
        self._bond_store = bond_store
        self._mtu_offer = mtu
        self._link: CentralLink | None = None
        self._bearer: AttBearer | None = None
        self._pairing: PairingSession | None = None
        self._port: CentralPort | None = None
        self._callbacks: dict[int, NotifyCallback] = {}
        self._closing = False

    # -- properties ------------------------------------------------------------------------

    @property
    def bond_store(self) -> BondStore:
        return self._bond_store if self._bond_store is not None else default_bond_store()

    @property
    def name(self) -> str:
        return self._advertised_name or self._device_name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._bearer.client.mtu if self._bearer is not None else 23

    @property
    def is_connected(self) -> bool:
        link = self._link
        return link is not None and link.connected and not self._bearer_closed()

    @property
    def security_level(self) -> SecurityLevel:
        """The link's security now (NO_SECURITY when not connected)."""
        return self._link.security_level if self._link is not None else SecurityLevel.NO_SECURITY

    def _bearer_closed(self) -> bool:
        return self._bearer is None or self._bearer.closed

    # -- connection ------------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self.is_connected:
            return
        try:
            # The timeout bounds making the link. What follows (MTU exchange, discovery,
            # encryption) is bounded by progress: the ATT bearer's transaction timer, which
            # restarts whenever a PDU arrives, so a slow link's long discovery completes.
            async with asyncio.timeout(self._timeout):
                await self._open_link()
            await self._set_up_gatt()
            await self._restore_security()
        except TimeoutError:
            await self._drop_quietly()
            raise BandUnreachableError(
                f"connecting to the band took longer than {self._timeout:g} s: move closer "
                "or check that the simulated radio is running, then retry"
            ) from None
        except BaseException:
            await self._drop_quietly()
            raise
        if pair and self.security_level < SecurityLevel.AUTHENTICATED_ENCRYPTION:
            try:
                await self.pair()
            except BaseException:
                await self._drop_quietly()
                raise

    async def _open_link(self) -> None:
        try:
            port = await current_port()
        except KmebandError as exc:
            raise BandUnreachableError(str(exc)) from None
        self._port = port
        self._closing = False
        self._callbacks = {}
        rx_mtu = max(23, min(self._mtu_offer, 517))
        self._bearer = AttBearer(
            GattClient(rx_mtu=rx_mtu),
            self._send_att,
            self._on_value,
            self._on_att_timeout,
            self._timeout,
        )
        try:
            self._link = await port.connect(
                self.address,
                central_address=central_address(),
                on_frame=self._on_frame,
                on_disconnect=self._on_disconnect,
                timeout_s=self._timeout,
            )
        except UnknownAddressError as exc:
            self._bearer = None
            raise BleakDeviceNotFoundError(self.address, str(exc)) from None
        except KmebandError as exc:
            self._bearer = None
            raise BandUnreachableError(str(exc)) from None
        if not self._link.connected:
            raise SimLinkLostError("the band dropped the connection as it was made: retry")

    async def _set_up_gatt(self) -> None:
        bearer = self._bearer
        link = self._link
        assert bearer is not None and link is not None
        if link.max_mtu is not None and link.max_mtu < bearer.client.rx_mtu:
            bearer.client.rx_mtu = max(23, link.max_mtu)
        client = bearer.client
        await bearer.run(client.exchange_mtu)
        profile: GattProfile = await bearer.run(client.discover_profile)
        self.services = build_service_collection(
            profile, self._max_write_without_response_size, self._wanted_services
        )
        self._device_name = None
        if self._advertised_name is None:
            with contextlib.suppress(BleakError, KmebandError):
                char = profile.characteristic(DEVICE_NAME)
                raw: bytes = await bearer.run(lambda: client.read(char.value_handle))
                self._device_name = raw.decode("utf-8", errors="replace") or None

    async def _restore_security(self) -> None:
        link = self._link
        assert link is not None
        bond = self.bond_store.get(central_address(), self.address)
        if bond is None:
            return
        try:
            await link.start_encryption(bond.ltk)
        except EncryptionRefusedError:
            # The band no longer knows us (it was reset or unpaired): the bond is useless.
            self.bond_store.forget(central_address(), self.address)
        except KmebandError as exc:
            raise SimLinkLostError(f"encrypting the link failed ({exc}): reconnect") from None

    def _max_write_without_response_size(self) -> int:
        return self.mtu_size - 3

    async def disconnect(self) -> None:
        link = self._link
        self._closing = True
        if self._bearer is not None:
            self._bearer.close(SimLinkLostError("the client disconnected: connect again"))
        if link is not None and link.connected:
            with contextlib.suppress(KmebandError):
                await link.disconnect()

    async def _drop_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.disconnect()

    # -- radio callbacks -------------------------------------------------------------------

    def _send_att(self, pdu: bytes) -> None:
        link = self._link
        if link is None:
            raise SimLinkLostError("not connected: call connect() first")
        link.send(ATT_CID, pdu)

    def _on_frame(self, cid: int, payload: bytes) -> None:
        if cid == ATT_CID:
            if self._bearer is not None:
                self._bearer.feed(payload)
        elif cid == SMP_CID and self._pairing is not None:
            self._pairing.feed(payload)
        # A Security Request outside pair() is left to the application: it calls pair().

    def _on_value(self, handle: int, value: bytes) -> None:
        callback = self._callbacks.get(handle)
        if callback is not None:
            callback(bytearray(value))

    def _on_disconnect(self, reason: DisconnectReason) -> None:
        if self._bearer is not None:
            self._bearer.close(
                SimLinkLostError(
                    f"the link to the band dropped ({reason.name.lower().replace('_', ' ')}): "
                    "reconnect"
                )
            )
        if self._pairing is not None:
            self._pairing.link_lost()
        if not self._closing and self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    def _on_att_timeout(self) -> None:
        link = self._link
        if link is not None and link.connected:
            task = asyncio.get_running_loop().create_task(link.disconnect())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- pairing ---------------------------------------------------------------------------

    async def pair(
        self,
        *args: Any,
        passkey: int | str | None = None,
        passkey_callback: PasskeyCallback | None = None,
        **kwargs: Any,
    ) -> None:
        """Pair with LE Secure Connections passkey entry, encrypt the link, store the bond.

        The passkey comes from ``passkey``, else ``passkey_callback`` (here or given to the
        BleakClient constructor; sync or async, returning the six digits the band shows),
        else the ``KMEBAND_PASSKEY`` environment variable, else the phone's pairing agent
        (:mod:`device_sim.bleak_backend.agent`: ``KMEBAND_PAIRING_AGENT``).
        """
        link = self._link
        if link is None or not self.is_connected:
            raise SimLinkLostError("not connected: call connect() before pair()")
        if link.security_level >= SecurityLevel.AUTHENTICATED_ENCRYPTION:
            return
        session = PairingSession(
            lambda pdu: link.send(SMP_CID, pdu), central=central_address(), band=self.address
        )
        self._pairing = session
        port, address = self._port, self.address

        async def read_display() -> str | None:
            return None if port is None else await port.read_display(address)

        request = PasskeyRequest(address=address, name=self.name, read_display=read_display)
        try:
            bond = await session.run(passkey, passkey_callback or self._passkey_callback, request)
        finally:
            self._pairing = None
        try:
            await link.start_encryption(bond.ltk)
        except KmebandError as exc:
            raise SimLinkLostError(f"encrypting the link after pairing failed ({exc})") from None
        self.bond_store.put(central_address(), self.address, bond)

    async def unpair(self) -> None:
        """Forget this central's bond with the band and disconnect."""
        self.bond_store.forget(central_address(), self.address)
        await self.disconnect()

    # -- GATT ------------------------------------------------------------------------------

    def _require_bearer(self) -> AttBearer:
        bearer = self._bearer
        if bearer is None:
            raise SimLinkLostError("not connected: call connect() first")
        return bearer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        bearer = self._require_bearer()
        handle = characteristic.obj.value_handle
        client = bearer.client
        return bytearray(await bearer.run(lambda: client.read(handle)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        bearer = self._require_bearer()
        client = bearer.client
        return bytearray(await bearer.run(lambda: client.read(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        bearer = self._require_bearer()
        handle = characteristic.obj.value_handle
        value = bytes(data)
        if not response:
            bearer.write_command(handle, value)
            return
        client = bearer.client
        await bearer.run(lambda: client.write(handle, value))

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        bearer = self._require_bearer()
        client = bearer.client
        value = bytes(data)
        await bearer.run(lambda: client.write(descriptor.handle, value))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        bearer = self._require_bearer()
        char: DiscoveredCharacteristic = characteristic.obj
        cccd = char.cccd_handle
        props = characteristic.properties
        if cccd is None or not ({"notify", "indicate"} & set(props)):
            raise BleakError(
                f"characteristic {characteristic.uuid} cannot notify or indicate: "
                "subscribe to one whose properties include 'notify' or 'indicate'"
            )
        notify = "notify" in props  # notifications are preferred when both are offered
        # Register first: the band may push a value as soon as the CCCD is written.
        self._callbacks[char.value_handle] = callback
        client = bearer.client
        try:
            await bearer.run(lambda: client.subscribe(cccd, notify=notify, indicate=not notify))
        except BaseException:
            self._callbacks.pop(char.value_handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        bearer = self._require_bearer()
        char: DiscoveredCharacteristic = characteristic.obj
        cccd = char.cccd_handle
        if cccd is None:
            raise BleakError(f"characteristic {characteristic.uuid} has no notifications to stop")
        client = bearer.client
        try:
            await bearer.run(lambda: client.unsubscribe(cccd))
        finally:
            self._callbacks.pop(char.value_handle, None)
