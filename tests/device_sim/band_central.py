"""A bare central for tests: drives the sans-IO GATT client and SMP initiator over a radio.

It speaks to the band exactly as any central would (ATT on CID 4, SMP on CID 6), without
bleak in between, so band behaviour is tested on its own.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.radio import ATT_CID, SMP_CID, DisconnectReason, Radio
from protocol.ble.gatt import (
    GattClient,
    GattProfile,
    Indication,
    Notification,
    ProcedureCompleted,
    ProcedureFailed,
    ProcedureStart,
)
from protocol.ble.smp import PairingAborted, PairingComplete, PasskeyNeeded, SendPdu, SmpInitiator
from protocol.ble.smp_bond import Bond
from protocol.ble.smp_pdu import DeviceAddress

CENTRAL_ADDRESS = "C0:11:22:33:44:55"


class Central:
    """One connection from a test to a band."""

    def __init__(
        self, radio: Radio, address: str, *, seed: int = 0, mtu: int | None = None
    ) -> None:
        self.radio = radio
        self.address = address
        self.client = GattClient() if mtu is None else GattClient(rx_mtu=mtu)
        self.results: dict[int, Any] = {}
        self.notifications: list[tuple[int, bytes]] = []
        self.indications: list[tuple[int, bytes]] = []
        self.disconnects: list[DisconnectReason] = []
        self.smp: SmpInitiator | None = None
        self.smp_events: list[Any] = []
        self._rng = random.Random(seed)
        self.link: Any = None
        self.profile: GattProfile | None = None

    async def connect(self) -> Central:
        self.link = await self.radio.connect(
            self.address,
            central_address=CENTRAL_ADDRESS,
            on_frame=self._on_frame,
            on_disconnect=self.disconnects.append,
        )
        await self.run(self.client.exchange_mtu())
        self.profile = await self.run(self.client.discover_profile())
        return self

    def _on_frame(self, cid: int, payload: bytes) -> None:
        if cid == ATT_CID:
            to_send, events = self.client.receive(payload)
            for event in events:
                if isinstance(event, ProcedureCompleted | ProcedureFailed):
                    self.results[event.procedure_id] = event
                elif isinstance(event, Notification):
                    self.notifications.append((event.handle, event.value))
                elif isinstance(event, Indication):
                    self.indications.append((event.handle, event.value))
            for pdu in to_send:
                if self.link is not None and self.link.connected:
                    self.link.send(ATT_CID, pdu)
        elif cid == SMP_CID and self.smp is not None:
            self._smp(self.smp.receive(payload))

    async def run(self, start: ProcedureStart) -> Any:
        """Run a GATT procedure to completion; raise its error if it failed."""
        if start.pdu is not None:
            self.link.send(ATT_CID, start.pdu)
        for _ in range(1000):
            if start.procedure_id in self.results:
                break
            await asyncio.sleep(0)
        result = self.results.pop(start.procedure_id)
        if isinstance(result, ProcedureFailed):
            raise result.error
        return result.result

    def handle(self, char_uuid: Any) -> int:
        assert self.profile is not None
        return self.profile.characteristic(char_uuid).value_handle

    async def read(self, char_uuid: Any) -> bytes:
        return bytes(await self.run(self.client.read(self.handle(char_uuid))))

    async def write(self, char_uuid: Any, value: bytes) -> None:
        await self.run(self.client.write(self.handle(char_uuid), value))

    async def subscribe(self, char_uuid: Any, *, indicate: bool = False) -> None:
        assert self.profile is not None
        cccd = self.profile.characteristic(char_uuid).cccd_handle
        assert cccd is not None
        await self.run(self.client.subscribe(cccd, notify=not indicate, indicate=indicate))

    async def control(self, char_uuid: Any, value: bytes) -> bytes:
        """Write a control point and wait for its indicated answer."""
        before = len(self.indications)
        await self.write(char_uuid, value)
        for _ in range(1000):
            if len(self.indications) > before:
                return self.indications[before][1]
            await asyncio.sleep(0)
        raise AssertionError("no indication came back")

    # -- pairing ----------------------------------------------------------------------------
    def _smp(self, events: list[Any]) -> None:
        for event in events:
            self.smp_events.append(event)
            if isinstance(event, SendPdu):
                self.link.send(SMP_CID, event.data)

    async def pair(self, passkey_of: Any) -> Bond:
        """Pair with LE SC passkey entry; ``passkey_of()`` reads the band's display."""
        self.smp = SmpInitiator(
            local_address=DeviceAddress.parse(CENTRAL_ADDRESS),
            peer_address=DeviceAddress.parse(self.address, random=True),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            random_bytes=self._rng.randbytes,
        )
        self.smp_events = []
        self._smp(self.smp.start())
        for _ in range(1000):
            if any(isinstance(e, PasskeyNeeded | PairingAborted) for e in self.smp_events):
                break
            await asyncio.sleep(0)
        if self.smp.awaiting_passkey:
            self._smp(self.smp.supply_passkey(int(passkey_of())))
        for event in self.smp_events:
            if isinstance(event, PairingComplete):
                await self.link.start_encryption(event.bond.ltk)
                return event.bond
            if isinstance(event, PairingAborted):
                raise AssertionError(f"pairing failed: {event.reason.name}")
        raise AssertionError("pairing did not finish")
