"""A small GATT peripheral: any profile on the radio, for testing bleak code in isolation.

:class:`ProfilePeripheral` serves a profile (``SIG_ONLY_PROFILE`` or ``BAND_PROFILE``) with a
:class:`~protocol.ble.gatt_server.GattServer` per link on the ATT channel, answers LE Secure
Connections pairing on the SMP channel with an :class:`~protocol.ble.smp.SmpResponder` showing
a seeded six-digit passkey (:attr:`ProfilePeripheral.displayed_passkey`), keeps the bonds
it made, and encrypts a link when the central proves it holds one of them
(``proof == encryption_proof(ltk, skd)``). It has no firmware: tests push values with
:meth:`ProfilePeripheral.notify` and :meth:`ProfilePeripheral.indicate`.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.bleak_backend.pairing import band_device_address
from device_sim.radio import ATT_CID, SMP_CID, DisconnectReason, PeripheralLink, encryption_proof
from device_sim.radio.medium import AdvertisingData
from protocol.ble.gatt_database import AttributeDatabase
from protocol.ble.gatt_model import SecurityLevel, ServiceDefinition
from protocol.ble.gatt_server import GattServer
from protocol.ble.smp import (
    Bond,
    DeviceAddress,
    DisplayPasskey,
    PairingComplete,
    SendPdu,
    SmpResponder,
)


@dataclass
class _LinkState:
    link: PeripheralLink
    server: GattServer
    smp: SmpResponder | None = None
    written: list[tuple[int, bytes]] = field(default_factory=list)


class ProfilePeripheral:
    """A radio Peripheral that serves ``profile`` and pairs with passkey entry."""

    def __init__(
        self,
        address: str,
        profile: tuple[ServiceDefinition, ...],
        *,
        name: str | None = "KME Test Band",
        advertised_uuids: tuple[str, ...] = (),
        seed: int = 0,
    ) -> None:
        self._address = address
        self.name = name
        self.database = AttributeDatabase.from_services(profile)
        self.advertised_uuids = advertised_uuids or tuple(str(s.uuid) for s in profile)
        self._rng = random.Random(seed)
        self.links: dict[int, _LinkState] = {}
        self.bonds: dict[str, Bond] = {}
        self.displayed_passkey: str | None = None
        self.disconnects: list[DisconnectReason] = []
        self.pairings_completed = 0

    # -- radio Peripheral ----------------------------------------------------------------
    @property
    def address(self) -> str:
        return self._address

    @property
    def display(self) -> str | None:
        """The passkey shown for the latest pairing (what a user would read off the band)."""
        return self.displayed_passkey

    def advertising_data(self) -> AdvertisingData | None:
        return AdvertisingData(local_name=self.name, service_uuids=self.advertised_uuids)

    def on_connect(self, link: PeripheralLink) -> None:
        self.links[link.handle] = _LinkState(link, GattServer(self.database, connection=link))

    def on_frame(self, link: PeripheralLink, cid: int, payload: bytes) -> None:
        state = self.links[link.handle]
        if cid == ATT_CID:
            response, _events = state.server.receive(payload, link.security_level)
            if response is not None:
                link.send(ATT_CID, response)
        elif cid == SMP_CID:
            self._on_smp(state, payload)

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None:
        self.links.pop(link.handle, None)
        self.disconnects.append(reason)

    def on_encryption_request(
        self, link: PeripheralLink, skd: bytes, proof: bytes
    ) -> SecurityLevel | None:
        bond = self.bonds.get(link.central_address.upper())
        if bond is None or proof != encryption_proof(bond.ltk, skd):
            return None
        return bond.security_level

    # -- pairing -------------------------------------------------------------------------
    def _on_smp(self, state: _LinkState, payload: bytes) -> None:
        if state.smp is None or state.smp.finished:
            passkey = self._rng.randrange(1_000_000)
            state.smp = SmpResponder(
                local_address=band_device_address(self._address),
                peer_address=DeviceAddress.parse(state.link.central_address),
                private_key=ec.generate_private_key(ec.SECP256R1()),
                random_bytes=os.urandom,
                passkey=passkey,
            )
        for event in state.smp.receive(payload):
            if isinstance(event, SendPdu):
                state.link.send(SMP_CID, event.data)
            elif isinstance(event, DisplayPasskey):
                self.displayed_passkey = event.digits
            elif isinstance(event, PairingComplete):
                self.bonds[state.link.central_address.upper()] = event.bond
                self.pairings_completed += 1

    def forget_bonds(self) -> None:
        """A factory reset of the pairing state: every central must pair again."""
        self.bonds.clear()

    # -- pushing values ------------------------------------------------------------------
    def value_handle(self, char_uuid: uuid.UUID) -> int:
        return self.database.value_handle(char_uuid)

    def notify(self, char_uuid: uuid.UUID, value: bytes) -> int:
        """Notify ``value`` to every subscribed link; returns how many got it."""
        handle = self.database.value_handle(char_uuid)
        sent = 0
        for state in list(self.links.values()):
            pdu = state.server.notify(handle, value)
            if pdu is not None and state.link.connected:
                state.link.send(ATT_CID, pdu)
                sent += 1
        return sent

    def indicate(self, char_uuid: uuid.UUID, value: bytes) -> int:
        """Indicate ``value`` to every link subscribed to indications."""
        handle = self.database.value_handle(char_uuid)
        sent = 0
        for state in list(self.links.values()):
            pdu = state.server.indicate(handle, value)
            if pdu is not None and state.link.connected:
                state.link.send(ATT_CID, pdu)
                sent += 1
        return sent

    def indication_pending(self) -> bool:
        return any(s.server.indication_pending is not None for s in self.links.values())
