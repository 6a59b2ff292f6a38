"""The band's radio side: advertising, pairing, the GATT server per connection, nothing more.

:class:`BandGattEndpoint` is a radio :class:`~device_sim.radio.medium.Peripheral` for one
:class:`~device_sim.band.simulated_band.SimulatedBand`. Per connection it runs a
:class:`~protocol.ble.gatt.GattServer` (ATT, CID 4) whose permission checks use the link's
security level, and an :class:`~protocol.ble.smp.SmpResponder` (SMP, CID 6) that shows a
fresh passkey on the band's display for every pairing attempt; bonds go to the band's
:class:`~device_sim.band.owner_store.OwnerStore`, and a central proves it holds one when it
starts encryption.

What each characteristic and control point does is firmware: the service handlers of
:mod:`device_sim.band.services` read and change the band's state and answer with values or
effects; this endpoint checks the rule of :mod:`protocol.kme.access` before calling them,
indicates their answers one at a time (the next waits for the client's confirmation, as
ATT requires), pumps record-sync chunks as fast as the link takes them, notifies live
heart rate and battery, and drops links when the band reboots, loses power or is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.band.auth_deadline import AUTH_TIMEOUT_S, AuthenticationDeadline
from device_sim.band.live import LiveHeartRate
from device_sim.band.services import (
    ActivationService,
    AfterAnswer,
    AlarmService,
    Answer,
    AnswerBytes,
    BandConnection,
    ConsentService,
    DeviceControlService,
    DeviceService,
    DropLinks,
    Effect,
    PumpRecordSync,
    RecordSyncService,
    Service,
    TimeService,
    UserDataService,
)
from device_sim.band.services.connection import RawRequest, Read, Request, Write
from device_sim.band.services.device import COMPANY_ID
from device_sim.band.simulated_band import SimulatedBand
from device_sim.radio.medium import (
    ATT_CID,
    SMP_CID,
    AdvertisingData,
    DisconnectReason,
    PeripheralLink,
    encryption_proof,
)
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt import (
    AttributeDatabase,
    GattRejection,
    GattServer,
    IndicationConfirmed,
    MtuChanged,
    SubscriptionChanged,
    ValueWritten,
)
from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.sig_codecs import (
    HeartRateMeasurement,
    encode_battery_level,
    encode_heart_rate_measurement,
)
from protocol.ble.smp import (
    DisplayPasskey,
    PairingAborted,
    PairingComplete,
    SendPdu,
    SmpResponder,
    passkey_from_bytes,
)
from protocol.ble.smp_pdu import DeviceAddress
from protocol.ble.smp_rate_limit import FailureBackoff, PairingRateLimiter
from protocol.kme.access import READ_ACCESS, WRITE_ACCESS, Access, refusal, request_access
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.schema import (
    ControlDecodeError,
    UnsupportedVersionError,
    decode_control,
    encode_control,
)
from protocol.kme.profile import (
    BAND_PROFILE,
    BATTERY_LEVEL,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    KME_RECORD_SYNC_CONTROL_POINT,
    KME_RECORD_SYNC_DATA,
    KME_RECORD_SYNC_SERVICE,
    with_values,
)
from protocol.kme.record_sync import NotifyData

log = logging.getLogger(__name__)

#: Chunks notified before the pump yields to the event loop (keeps other tasks alive).
CHUNKS_PER_YIELD = 64
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_NOT_OWNER = "prove ownership (owner challenge) first"


@dataclass
class _Connection:
    """One central's connection: its radio link, GATT server and SMP responder."""

    link: PeripheralLink
    server: GattServer
    state: BandConnection
    smp: SmpResponder | None = None
    indications: deque[tuple[int, bytes]] = field(default_factory=deque)
    pump: asyncio.Task[None] | None = None
    #: run once the client confirmed every queued indication (or the link dropped)
    after_answer: Callable[[], None] | None = None


class BandGattEndpoint:
    """A SimulatedBand on the radio: implements the radio's Peripheral protocol.

    ``auth_timeout_s`` is how many seconds of the band's clock a link may stay without
    being authenticated before the band drops it (None: no bound; docs/pairing.md).
    """

    def __init__(
        self,
        band: SimulatedBand,
        *,
        seed: int | None = None,
        auth_timeout_s: float | None = AUTH_TIMEOUT_S,
    ) -> None:
        self.band = band
        self._rng = np.random.default_rng(band.config.seed if seed is None else seed)
        self.display: str | None = None  # what the band's screen shows (passkeys)
        self.on_display: Callable[[str], None] | None = None
        self.limiter = PairingRateLimiter()
        self._connections: dict[int, _Connection] = {}
        # An unauthenticated link gets auth_timeout_s band seconds (docs/pairing.md)
        self.auth_deadline = AuthenticationDeadline(
            band.clock, auth_timeout_s, self._authenticated, self._drop_unauthenticated
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._last_battery = -1
        self.live_hr = LiveHeartRate(band.person, band.config.seed)
        self.record_sync = RecordSyncService(band)
        self.activation = ActivationService(band, self._random_bytes)
        self.db = self._build_database(
            DeviceService(band, self.live_hr).handlers(),
            UserDataService(band).handlers(),
            TimeService(band).handlers(),
            ConsentService(band).handlers(),
            AlarmService(band).handlers(),
            DeviceControlService(band).handlers(),
            self.activation.handlers(),
            self.record_sync.handlers(),
        )
        self._bytes_sent = 0
        band.on_factory_reset(self._after_factory_reset)
        band.radio = self

    @property
    def address(self) -> str:
        return self.band.address

    @property
    def activated(self) -> bool:
        return self.band.activated

    @property
    def owner_limiter(self) -> FailureBackoff:
        """The owner-proof back-off (per band: a central can change its address)."""
        return self.activation.owner_limiter

    # -- what the band's battery asks of its radio ---------------------------------------
    @property
    def connected(self) -> bool:
        return bool(self._connections)

    def take_bytes_sent(self) -> int:
        sent, self._bytes_sent = self._bytes_sent, 0
        return sent

    # -- radio Peripheral ------------------------------------------------------------------
    def advertising_data(self) -> AdvertisingData | None:
        if not self.band.battery.is_on or self._connections:
            return None  # off, or busy with its one connection
        band_id = bytes.fromhex(self.address.replace(":", ""))[-3:]
        return AdvertisingData(
            local_name=self.band.config.name,
            service_uuids=(str(HEART_RATE_SERVICE), str(KME_RECORD_SYNC_SERVICE)),
            manufacturer_data={COMPANY_ID: b"\x01" + band_id},
            tx_power=0,
        )

    def on_connect(self, link: PeripheralLink) -> None:
        rx_mtu = link.fault.max_mtu or 517
        server = GattServer(self.db, rx_mtu=max(23, rx_mtu), connection=link.handle)
        state = BandConnection(link.handle, mtu=server.mtu)
        self._connections[link.handle] = _Connection(link, server, state)
        self.auth_deadline.connected(link.handle)

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None:
        self.auth_deadline.disconnected(link.handle)
        conn = self._connections.pop(link.handle, None)
        if conn is None:
            return
        if conn.smp is not None and conn.smp.in_progress:
            # The passkey leaves the screen with the link. Leaving is no failed guess: a
            # round's bit is revealed only to a right guess, and the next attempt shows a
            # fresh passkey (and a link that drops mid-pairing must not lock the owner out).
            self.display = None
        self._run_after_answer(conn)  # the request stands even if its answer was not confirmed
        self.record_sync.connection_lost()
        if conn.pump is not None:
            conn.pump.cancel()
        self.band.flash.flush()

    def on_frame(self, link: PeripheralLink, cid: int, payload: bytes) -> None:
        conn = self._connections.get(link.handle)
        if conn is None:
            return
        if cid == ATT_CID:
            self._on_att(conn, payload)
        elif cid == SMP_CID:
            self._on_smp(conn, payload)

    def on_encryption_request(
        self, link: PeripheralLink, skd: bytes, proof: bytes
    ) -> SecurityLevel | None:
        bond = self.band.owner.bonds.get(link.central_address)
        if bond is None or not hmac.compare_digest(proof, encryption_proof(bond.ltk, skd)):
            return None
        return bond.security_level

    def _authenticated(self, handle: int) -> bool:
        conn = self._connections.get(handle)
        return (
            conn is None or conn.state.owner or conn.link.security_level > SecurityLevel.NO_SECURITY
        )

    def _drop_unauthenticated(self, handle: int) -> None:
        conn = self._connections.get(handle)
        if conn is not None:
            conn.link.disconnect(DisconnectReason.REMOTE_USER_TERMINATED)

    # -- background: live values -----------------------------------------------------------
    def start(self) -> None:
        """Start the live heart-rate and battery notifications (one per band second)."""
        if not self._tasks:
            self._tasks.append(asyncio.get_running_loop().create_task(self._live()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _live(self) -> None:
        clock = self.band.clock
        while True:
            await clock.sleep(1.0)
            self.push_live_values()

    def push_live_values(self) -> None:
        """Notify subscribers of this second's heart rate (with its RR intervals) and, when it
        changed, the battery level (:mod:`device_sim.band.live`)."""
        hr_handle = self.db.value_handle(HEART_RATE_MEASUREMENT)
        battery = self.band.battery.percent
        battery_changed = battery != self._last_battery
        self._last_battery = battery
        measurement: HeartRateMeasurement | None = None
        for conn in list(self._connections.values()):
            if conn.server.subscription(hr_handle)[0]:
                # Measured once, and only while someone listens: idle bands do no work here.
                if measurement is None:
                    measurement = self.live_hr.measurement(self.band.clock.now())
                # The newest intervals that fit this link's payload (HRS 3.1.1.5: drop the
                # oldest).
                room = measurement.max_rr_intervals(conn.server.mtu - 3)
                fitted = dataclasses.replace(
                    measurement, rr_intervals=measurement.rr_intervals[-room:] if room else ()
                )
                hrm = encode_heart_rate_measurement(fitted)
                self._send_att(conn, conn.server.notify(hr_handle, hrm))
            if battery_changed:
                battery_handle = self.db.value_handle(BATTERY_LEVEL)
                self._send_att(
                    conn, conn.server.notify(battery_handle, encode_battery_level(battery))
                )

    # -- faults and power cycles -----------------------------------------------------------
    def kill_battery(self) -> None:
        """The battery dies: links drop (remote power off), advertising stops, flash is kept.

        The band records nothing until it is charged (its wearer's plan puts it on the
        charger; or advance its battery with ``on_charger``)."""
        self.band.battery.deplete()
        self.reboot()

    def reboot(self) -> None:
        """Drop every connection as a power cycle would; state survives (it is persisted)."""
        for conn in list(self._connections.values()):
            conn.link.disconnect(DisconnectReason.REMOTE_POWER_OFF)
        self.record_sync.forget()
        self.band.flash.flush()

    def _after_factory_reset(self) -> None:
        """The band forgot its owner and wearer: no link, cursor or passkey outlives that."""
        self.display = None
        self.reboot()

    # -- ATT -------------------------------------------------------------------------------
    def _send_att(self, conn: _Connection, pdu: bytes | None) -> None:
        if pdu is not None and conn.link.connected:
            conn.link.send(ATT_CID, pdu)
            self._bytes_sent += len(pdu)

    def _on_att(self, conn: _Connection, payload: bytes) -> None:
        result = conn.server.receive(payload, conn.link.security_level)
        self._send_att(conn, result.response)
        for event in result.events:
            if isinstance(event, ValueWritten):
                self._on_write(conn, event.handle, event.value)
            elif isinstance(event, IndicationConfirmed):
                self._next_indication(conn)
                if not conn.indications and conn.server.indication_pending is None:
                    self._run_after_answer(conn)
            elif isinstance(event, MtuChanged):
                conn.state.mtu = event.mtu
            elif isinstance(event, SubscriptionChanged):
                pass  # live values check subscriptions when they push

    @staticmethod
    def _run_after_answer(conn: _Connection) -> None:
        action, conn.after_answer = conn.after_answer, None
        if action is not None:
            action()

    def _indicate(self, conn: _Connection, handle: int, value: bytes) -> None:
        conn.indications.append((handle, value))
        if conn.server.indication_pending is None:
            self._next_indication(conn)

    def _next_indication(self, conn: _Connection) -> None:
        while conn.indications and conn.server.indication_pending is None:
            handle, value = conn.indications.popleft()
            self._send_att(conn, conn.server.indicate(handle, value))

    # -- SMP -------------------------------------------------------------------------------
    def _on_smp(self, conn: _Connection, payload: bytes) -> None:
        if conn.smp is None or conn.smp.finished:
            now = self.band.clock.now()
            conn.smp = SmpResponder(
                local_address=DeviceAddress.parse(self.address, random=True),
                peer_address=DeviceAddress.parse(conn.link.central_address),
                private_key=self._pairing_key(),
                random_bytes=self._random_bytes,
                passkey=passkey_from_bytes(self._random_bytes(8)),
                repeated_attempts=not self.limiter.allows(now),
            )
        for event in conn.smp.receive(payload):
            if isinstance(event, SendPdu):
                if conn.link.connected:
                    conn.link.send(SMP_CID, event.data)
            elif isinstance(event, DisplayPasskey):
                self.display = event.digits
                if self.on_display is not None:
                    self.on_display(event.digits)
            elif isinstance(event, PairingComplete):
                self.limiter.record_success()
                self.band.owner.add_bond(conn.link.central_address, event.bond)
                self.display = None
            elif isinstance(event, PairingAborted):
                self._pairing_failed(conn.smp)

    def _pairing_failed(self, smp: SmpResponder) -> None:
        """Count a failed pairing only if it could test a passkey (smp_rate_limit.py)."""
        if smp.passkey_shown:
            self.limiter.record_failure(self.band.clock.now())
            self.display = None

    def _random_bytes(self, n: int) -> bytes:
        return self._rng.bytes(n)

    def _pairing_key(self) -> ec.EllipticCurvePrivateKey:
        """A fresh P-256 key per pairing, drawn from the band's seeded generator so that the
        same seed gives the same pairing on the air (a simulated band is deterministic)."""
        scalar = int.from_bytes(self._random_bytes(32), "big") % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    # -- the attribute database: every handler behind its access rule ----------------------
    def _build_database(self, *services: Service) -> AttributeDatabase:
        static = {u: v for s in services for u, v in s.static.items()}
        db = AttributeDatabase.from_services(with_values(BAND_PROFILE, static))
        unguarded = [u for u, a in READ_ACCESS.items() if a is not Access.LINK and u in static]
        assert not unguarded, f"owner-only values must be read through a handler: {unguarded}"
        self._requests: dict[int, tuple[uuid.UUID, Request]] = {}
        self._raw_requests: dict[int, tuple[uuid.UUID, RawRequest]] = {}
        for service in services:
            for char_uuid, read in service.reads.items():
                db.set_read_hook(
                    db.value_handle(char_uuid), self._guarded_read(READ_ACCESS[char_uuid], read)
                )
            for char_uuid, write in service.writes.items():
                db.set_write_hook(
                    db.value_handle(char_uuid),
                    self._guarded_write(WRITE_ACCESS[char_uuid], write),
                )
            for char_uuid, request in service.requests.items():
                self._requests[db.value_handle(char_uuid)] = (char_uuid, request)
            for char_uuid, raw in service.raw_requests.items():
                self._raw_requests[db.value_handle(char_uuid)] = (char_uuid, raw)
        return db

    def _state(self, connection: object) -> BandConnection:
        return self._connections[connection].state  # type: ignore[index]

    def _allowed(self, access: Access, state: BandConnection) -> bool:
        return access.allows(activated=self.band.activated, owner=state.owner)

    def _guarded_read(self, access: Access, read: Read) -> Callable[[int, object], bytes]:
        def hook(handle: int, connection: object) -> bytes:
            state = self._state(connection)
            if not self._allowed(access, state):
                raise GattRejection(AttErrorCode.INSUFFICIENT_AUTHORIZATION, _NOT_OWNER)
            return read(state)

        return hook

    def _guarded_write(self, access: Access, write: Write) -> Callable[[int, bytes, object], None]:
        def hook(handle: int, value: bytes, connection: object) -> None:
            state = self._state(connection)
            if not self._allowed(access, state):
                raise GattRejection(AttErrorCode.INSUFFICIENT_AUTHORIZATION, _NOT_OWNER)
            write(state, value)

        return hook

    # -- control points --------------------------------------------------------------------
    def _on_write(self, conn: _Connection, handle: int, value: bytes) -> None:
        raw_entry = self._raw_requests.get(handle)
        if raw_entry is not None:
            char_uuid, raw = raw_entry
            # a SIG control point: the access table keeps it open (no CBOR refusal exists)
            assert WRITE_ACCESS[char_uuid] is Access.LINK
            self._apply(conn, handle, raw(conn.state, value))
            return
        entry = self._requests.get(handle)
        if entry is None:
            return
        control_point, request = entry
        try:
            message = decode_control(value)
        except UnsupportedVersionError:
            self._apply(conn, handle, [Answer(ControlResult(0, ControlStatus.UNSUPPORTED))])
            return
        except ControlDecodeError:
            self._apply(conn, handle, [Answer(ControlResult(0, ControlStatus.INVALID_REQUEST))])
            return
        access = request_access(control_point, type(message))
        if access is None:
            answer = ControlResult(message.MESSAGE_TYPE, ControlStatus.UNSUPPORTED)
            self._apply(conn, handle, [Answer(answer)])
        elif not self._allowed(access, conn.state):
            self._apply(conn, handle, [Answer(refusal(message, ControlStatus.NOT_OWNER))])
        else:
            self._apply(conn, handle, request(conn.state, message, value))

    def _apply(self, conn: _Connection, handle: int, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Answer):
                self._indicate(conn, handle, encode_control(effect.message))
            elif isinstance(effect, AnswerBytes):
                self._indicate(conn, handle, effect.value)
            elif isinstance(effect, AfterAnswer):
                conn.after_answer = effect.action
                if not conn.indications and conn.server.indication_pending is None:
                    self._run_after_answer(conn)
            elif isinstance(effect, DropLinks):
                asyncio.get_running_loop().call_soon(self.reboot)
            elif isinstance(effect, PumpRecordSync):
                self._pump_record_sync(conn)

    # -- record sync: the pump -------------------------------------------------------------
    def _pump_record_sync(self, conn: _Connection) -> None:
        """Send what the sender has; hand chunk notifications to a pacing task."""
        out = self.record_sync.next_out(conn.state)
        while out is not None:
            if isinstance(out, NotifyData):
                data_handle = self.db.value_handle(KME_RECORD_SYNC_DATA)
                self._send_att(conn, conn.server.notify(data_handle, out.payload))
                if conn.pump is None or conn.pump.done():
                    conn.pump = asyncio.get_running_loop().create_task(self._pump(conn))
                return  # the pump sends the rest, yielding to the loop as it goes
            self._indicate(conn, self.db.value_handle(KME_RECORD_SYNC_CONTROL_POINT), out.payload)
            out = self.record_sync.next_out(conn.state)

    async def _pump(self, conn: _Connection) -> None:
        data_handle = self.db.value_handle(KME_RECORD_SYNC_DATA)
        cp_handle = self.db.value_handle(KME_RECORD_SYNC_CONTROL_POINT)
        sent = 0
        while conn.link.connected:
            out = self.record_sync.next_out(conn.state)
            if out is None:
                return
            if isinstance(out, NotifyData):
                self._send_att(conn, conn.server.notify(data_handle, out.payload))
                sent += 1
                if sent % CHUNKS_PER_YIELD == 0:
                    await asyncio.sleep(0)
            else:
                self._indicate(conn, cp_handle, out.payload)


__all__ = ["CHUNKS_PER_YIELD", "COMPANY_ID", "BandGattEndpoint"]
