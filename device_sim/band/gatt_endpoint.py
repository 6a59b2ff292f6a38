"""The band's radio side: advertising, pairing, the GATT server and every service handler.

:class:`BandGattEndpoint` is a radio :class:`~device_sim.radio.medium.Peripheral` for one
:class:`~device_sim.band.simulated_band.SimulatedBand`. Per connection it runs a
:class:`~protocol.ble.gatt.GattServer` (ATT, CID 4) whose permission checks use the link's
security level, and an :class:`~protocol.ble.smp.SmpResponder` (SMP, CID 6) that shows a fresh
passkey on the band's display for every pairing attempt. Bonds are kept per central
address; a central proves it holds one when it starts encryption.

Service behaviour (docs/protocol.md has the wire formats):

- Device Information, Battery (read + notify on change), Heart Rate (live 1 Hz
  notifications from the firmware while subscribed), User Data (the profile store),
  Current Time (the band's clock with its own drift; writes set it).
- Consent: state and signed change-log pages; ``SetConsent`` from the owner only.
- Alarms and Device Control: alarms, time zone, find-band, reboot, factory reset.
- Activation: binds the band to an owner key once; each connection proves ownership with
  a challenge/response before owner-only requests (record sync, consent, factory reset).
- Record Sync: :class:`~protocol.kme.record_sync.BandSyncSender` over the flash; chunks are
  notified as fast as the link takes them, and a range is freed only when the owner's
  client acknowledges it.

Control-point results go out as indications, one at a time: the next waits for the
client's confirmation, as ATT requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.band.firmware.alarms import Alarm as FirmwareAlarm
from device_sim.band.live import LiveHeartRate
from device_sim.band.simulated_band import SimulatedBand
from device_sim.radio.medium import (
    ATT_CID,
    SMP_CID,
    AdvertisingData,
    DisconnectReason,
    PeripheralLink,
    encryption_proof,
)
from protocol.ble import sig_codecs as sig
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
from protocol.ble.smp import (
    DisplayPasskey,
    PairingAborted,
    PairingComplete,
    SendPdu,
    SmpResponder,
    passkey_from_bytes,
)
from protocol.ble.smp_pdu import DeviceAddress
from protocol.ble.smp_rate_limit import PairingRateLimiter
from protocol.errors import KmebandError
from protocol.kme import control as ctl
from protocol.kme import profile as P
from protocol.kme.access import READ_ACCESS, WRITE_ACCESS, Access, refusal, request_access
from protocol.kme.consent import ConsentChange, ConsentError, ConsentLog, ConsentRecord
from protocol.kme.ownership import activation_statement, check_owner_proof
from protocol.kme.record_sync import (
    BandSyncSender,
    FreeRecords,
    IndicateControl,
    NotifyData,
    TransferFinished,
)

log = logging.getLogger(__name__)

#: Company identifier used in the manufacturer data (0xFFFF: reserved for testing).
COMPANY_ID = 0xFFFF
#: Chunks notified before the sender yields to the event loop (keeps other tasks alive).
CHUNKS_PER_YIELD = 64
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_RequestHandler = Callable[["_Connection", int, ctl.ControlMessage, bytes], None]


@dataclass
class _Connection:
    """One central's connection to the band."""

    link: PeripheralLink
    server: GattServer
    smp: SmpResponder | None = None
    owner: bool = False
    nonce: bytes | None = None
    log_page: int = 0
    consent_record: bytes = b""
    sender: BandSyncSender | None = None
    indications: deque[tuple[int, bytes]] = field(default_factory=deque)
    pump: asyncio.Task[None] | None = None
    #: run once the client confirmed every queued indication (or the link dropped)
    after_answer: Callable[[], None] | None = None


class BandGattEndpoint:
    """A SimulatedBand on the radio: implements the radio's Peripheral protocol."""

    def __init__(self, band: SimulatedBand, *, seed: int | None = None) -> None:
        self.band = band
        self._rng = np.random.default_rng(band.config.seed if seed is None else seed)
        self.display: str | None = None  # what the band's screen shows (passkeys)
        self.on_display: Callable[[str], None] | None = None
        self.limiter = PairingRateLimiter()
        self._connections: dict[int, _Connection] = {}
        # One record-sync sender for the life of the firmware (docs/records.md): what was
        # sent stays known across connections, so a client can acknowledge records it
        # stored on an earlier connection whose link dropped before its acknowledgement.
        self._record_sender: BandSyncSender | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_battery = -1
        self._live_hr = LiveHeartRate(band.person, band.config.seed)
        self.db = self._build_database()
        band.on_factory_reset(self._after_factory_reset)

    @property
    def address(self) -> str:
        return self.band.address

    @property
    def activated(self) -> bool:
        return self.band.owner.activated

    # -- radio Peripheral ------------------------------------------------------------------
    def advertising_data(self) -> AdvertisingData | None:
        if not self.band.battery.is_on or self._connections:
            return None  # off, or busy with its one connection
        band_id = bytes.fromhex(self.address.replace(":", ""))[-3:]
        return AdvertisingData(
            local_name=self.band.config.name,
            service_uuids=(str(P.HEART_RATE_SERVICE), str(P.KME_RECORD_SYNC_SERVICE)),
            manufacturer_data={COMPANY_ID: b"\x01" + band_id},
            tx_power=0,
        )

    def on_connect(self, link: PeripheralLink) -> None:
        rx_mtu = link.fault.max_mtu or 517
        server = GattServer(self.db, rx_mtu=max(23, rx_mtu), connection=link.handle)
        self._connections[link.handle] = _Connection(link, server)
        self.band.connected_centrals += 1

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None:
        conn = self._connections.pop(link.handle, None)
        if conn is None:
            return
        self.band.connected_centrals -= 1
        self._run_after_answer(conn)  # the request stands even if its answer was not confirmed
        if conn.sender is not None:
            conn.sender.connection_lost()
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
        measurement = self._live_hr.measurement(self.band.clock.now())
        hr_handle = self.db.value_handle(P.HEART_RATE_MEASUREMENT)
        battery = self.band.battery.percent
        battery_changed = battery != self._last_battery
        self._last_battery = battery
        for conn in list(self._connections.values()):
            # The newest intervals that fit this link's payload (HRS 3.1.1.5: drop the oldest).
            room = measurement.max_rr_intervals(conn.server.mtu - 3)
            fitted = dataclasses.replace(
                measurement, rr_intervals=measurement.rr_intervals[-room:] if room else ()
            )
            self._send_att(
                conn, conn.server.notify(hr_handle, sig.encode_heart_rate_measurement(fitted))
            )
            if battery_changed:
                self._send_att(
                    conn,
                    conn.server.notify(
                        self.db.value_handle(P.BATTERY_LEVEL), sig.encode_battery_level(battery)
                    ),
                )

    # -- faults ----------------------------------------------------------------------------
    def kill_battery(self) -> None:
        """The battery dies: links drop (remote power off), advertising stops, flash is kept.

        The band records nothing until it is charged (its wearer's plan puts it on the
        charger; or advance its battery with ``on_charger``)."""
        self.band.battery.deplete()
        for conn in list(self._connections.values()):
            conn.link.disconnect(DisconnectReason.REMOTE_POWER_OFF)
        self._record_sender = None  # RAM state: a power cycle forgets what was sent
        self.band.flash.flush()

    def reboot(self) -> None:
        """Drop every connection as a power cycle would; state survives (it is persisted)."""
        for conn in list(self._connections.values()):
            conn.link.disconnect(DisconnectReason.REMOTE_POWER_OFF)
        self._record_sender = None  # RAM state: a power cycle forgets what was sent
        self.band.flash.flush()

    def _after_factory_reset(self) -> None:
        """The band forgot its owner and wearer: no link, cursor or passkey outlives that."""
        self.display = None
        self.reboot()

    # -- ATT -------------------------------------------------------------------------------
    def _send_att(self, conn: _Connection, pdu: bytes | None) -> None:
        if pdu is not None and conn.link.connected:
            conn.link.send(ATT_CID, pdu)
            self.band.count_sent(len(pdu))

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
            elif isinstance(event, MtuChanged) and conn.sender is not None:
                conn.sender.payload_size = min(event.mtu - 3, P.MAX_RECORD_CHUNK)
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
                self.limiter.record_failure(self.band.clock.now())
                self.display = None

    def _random_bytes(self, n: int) -> bytes:
        return self._rng.bytes(n)

    def _pairing_key(self) -> ec.EllipticCurvePrivateKey:
        """A fresh P-256 key per pairing, drawn from the band's seeded generator so that the
        same seed gives the same pairing on the air (a simulated band is deterministic)."""
        scalar = int.from_bytes(self._random_bytes(32), "big") % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    # -- the attribute database ------------------------------------------------------------
    def _build_database(self) -> AttributeDatabase:
        band = self.band
        ident = band.identity
        values = {
            P.DEVICE_NAME: sig.encode_utf8s(band.config.name),
            P.APPEARANCE: sig.encode_appearance(P.BAND_APPEARANCE),
            P.MANUFACTURER_NAME: sig.encode_utf8s("KME Smart"),
            P.MODEL_NUMBER: sig.encode_utf8s(ident.model),
            P.SERIAL_NUMBER: sig.encode_utf8s(ident.serial),
            P.HARDWARE_REVISION: sig.encode_utf8s(ident.hardware_revision),
            P.FIRMWARE_REVISION: sig.encode_utf8s(ident.firmware_revision),
            P.SOFTWARE_REVISION: sig.encode_utf8s(ident.software_revision),
            P.PNP_ID: sig.encode_pnp_id(
                sig.PnpId(sig.VendorIdSource.BLUETOOTH_SIG, COMPANY_ID, 0x0007, 0x0100)
            ),
            P.BODY_SENSOR_LOCATION: sig.encode_body_sensor_location(sig.BodySensorLocation.WRIST),
        }
        db = AttributeDatabase.from_services(P.with_values(P.BAND_PROFILE, values))
        h = db.value_handle
        reads: dict[Any, Callable[[Any], bytes]] = {
            P.BATTERY_LEVEL: lambda c: sig.encode_battery_level(band.battery.percent),
            P.CURRENT_TIME: lambda c: self._current_time(),
            P.LOCAL_TIME_INFORMATION: lambda c: self._local_time(),
            P.AGE: lambda c: sig.encode_age(band.profile.profile.age),
            P.DATE_OF_BIRTH: lambda c: sig.encode_date_of_birth(
                sig.DateOfBirth(
                    band.profile.profile.date_of_birth.year,
                    band.profile.profile.date_of_birth.month,
                    band.profile.profile.date_of_birth.day,
                )
            ),
            P.GENDER: lambda c: sig.encode_gender(sig.Gender(int(band.profile.profile.gender))),
            P.HEIGHT: lambda c: sig.encode_height(band.profile.profile.height_cm),
            P.WEIGHT: lambda c: sig.encode_weight(sig.weight_units(band.profile.profile.weight_kg)),
            P.USER_INDEX: lambda c: sig.encode_user_index(band.profile.profile.user_index),
            P.DATABASE_CHANGE_INCREMENT: lambda c: sig.encode_database_change_increment(
                band.profile.profile.database_change_increment
            ),
            P.KME_CONSENT_STATE: lambda c: self._consent_state(),
            P.KME_CONSENT_CHANGE_LOG: self._consent_log_page,
            P.KME_CONSENT_RECORD: self._consent_record,
            P.KME_ALARM_LIST: lambda c: ctl.encode_control(self._alarm_list()),
            P.KME_ACTIVATION_STATE: lambda c: ctl.encode_control(
                ctl.ActivationState(self.activated, (ctl.SCHEMA_VERSION,))
            ),
            P.KME_BAND_IDENTITY: lambda c: ctl.encode_control(
                ctl.BandIdentity(ctl.KeyAlgorithm.ED25519, band.identity.public_key_bytes)
            ),
            P.KME_BAND_CERTIFICATE: lambda c: band.certificate.encode(),
            P.KME_RECORD_SYNC_STATUS: self._sync_status,
        }
        for char_uuid, read in reads.items():
            db.set_read_hook(
                h(char_uuid), _read_hook(self._guarded_read(READ_ACCESS[char_uuid], read))
            )
        # a rule above the link needs a hook to enforce it: static values are LINK only
        unguarded = [u for u, a in READ_ACCESS.items() if a is not Access.LINK and u not in reads]
        assert not unguarded, f"owner-only reads without a read hook: {unguarded}"
        writes: dict[Any, Callable[[bytes, object], None]] = {
            P.AGE: lambda v, c: self._profile_update(age=sig.decode_age(v)),
            P.HEIGHT: lambda v, c: self._profile_update(height_cm=sig.decode_height(v)),
            P.WEIGHT: lambda v, c: self._profile_update(weight_kg=sig.decode_weight(v) * 0.005),
            P.GENDER: lambda v, c: self._profile_update(gender=int(sig.decode_gender(v))),
            P.DATE_OF_BIRTH: self._write_dob,
            P.DATABASE_CHANGE_INCREMENT: self._write_change_increment,
            P.CURRENT_TIME: self._write_current_time,
            P.LOCAL_TIME_INFORMATION: self._write_local_time,
            P.HEART_RATE_CONTROL_POINT: self._write_hr_control,
        }
        for char_uuid, write in writes.items():
            guarded = self._guarded_write(WRITE_ACCESS[char_uuid], write)
            db.set_write_hook(h(char_uuid), _write_hook(guarded))
        handlers: dict[Any, _RequestHandler] = {
            P.KME_CONSENT_CONTROL_POINT: self._consent_control,
            P.KME_ALARM_CONTROL_POINT: self._alarm_control,
            P.KME_DEVICE_CONTROL_POINT: self._device_control,
            P.KME_ACTIVATION_CONTROL_POINT: self._activation_control,
            P.KME_RECORD_SYNC_CONTROL_POINT: self._record_sync_control,
        }
        self._control_points = {h(u): (u, handler) for u, handler in handlers.items()}
        self._user_control_point = h(P.USER_CONTROL_POINT)
        return db

    # -- ownership: protocol.kme.access is the rule table ---------------------------------
    def _allowed(self, access: Access, connection: object) -> bool:
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        return access.allows(activated=self.activated, owner=conn is not None and conn.owner)

    def _guarded_read(self, access: Access, read: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
        def guarded(connection: Any) -> bytes:
            if not self._allowed(access, connection):
                raise GattRejection(
                    AttErrorCode.INSUFFICIENT_AUTHORIZATION,
                    "prove ownership (owner challenge) first",
                )
            return read(connection)

        return guarded

    def _guarded_write(
        self, access: Access, write: Callable[[bytes, object], None]
    ) -> Callable[[bytes, object], None]:
        def guarded(value: bytes, connection: object) -> None:
            if not self._allowed(access, connection):
                raise GattRejection(
                    AttErrorCode.INSUFFICIENT_AUTHORIZATION,
                    "prove ownership (owner challenge) first",
                )
            write(value, connection)

        return guarded

    # -- writes ----------------------------------------------------------------------------
    def _on_write(self, conn: _Connection, handle: int, value: bytes) -> None:
        if handle == self._user_control_point:
            self._user_control(conn, handle, value)
            return
        entry = self._control_points.get(handle)
        if entry is None:
            return
        control_point, handler = entry
        message = self._decode(conn, handle, value)
        if message is None:
            return
        access = request_access(control_point, type(message))
        if access is None:
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.UNSUPPORTED)
        elif not access.allows(activated=self.activated, owner=conn.owner):
            answer = refusal(message, ctl.ControlStatus.NOT_OWNER)
            self._indicate(conn, handle, ctl.encode_control(answer))
        else:
            handler(conn, handle, message, value)

    def _profile_update(self, **changes: Any) -> None:
        try:
            self.band.profile.update(**changes)
        except Exception:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "value out of range") from None

    def _write_dob(self, value: bytes, conn: object) -> None:
        try:
            dob = sig.decode_date_of_birth(value)
            self._profile_update(date_of_birth=dt.date(dob.year, dob.month, dob.day))
        except sig.SigCodecError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad date") from None

    def _write_change_increment(self, value: bytes, conn: object) -> None:
        try:
            self.band.profile.set_change_increment(sig.decode_database_change_increment(value))
        except sig.SigCodecError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad change increment") from None

    def _write_hr_control(self, value: bytes, conn: object) -> None:
        try:
            sig.decode_heart_rate_control_point(value)
        except sig.SigCodecError:
            raise GattRejection(sig.HR_CONTROL_POINT_NOT_SUPPORTED, "unknown op") from None
        self._live_hr.reset_energy_expended()  # the one op code: Reset Energy Expended

    def _band_now(self) -> float:
        return self.band.clock.now() + self.band.clock_offset_s

    def _current_time(self) -> bytes:
        tz = dt.timedelta(minutes=self.band.firmware.tz_offset_min)
        local = dt.datetime.fromtimestamp(self._band_now(), dt.UTC).astimezone(dt.timezone(tz))
        return sig.encode_current_time(sig.CurrentTime.from_datetime(local.replace(tzinfo=None)))

    def _local_time(self) -> bytes:
        return sig.encode_local_time_information(
            sig.LocalTimeInformation.from_offsets(self.band.firmware.tz_offset_min, 0)
        )

    def _write_current_time(self, value: bytes, conn: object) -> None:
        try:
            ct = sig.decode_current_time(value)
        except sig.SigCodecError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad current time") from None
        tz = dt.timezone(dt.timedelta(minutes=self.band.firmware.tz_offset_min))
        when = ct.to_datetime().replace(tzinfo=tz).timestamp()
        self.band.clock_offset_s = when - self.band.clock.now()

    def _write_local_time(self, value: bytes, conn: object) -> None:
        try:
            info = sig.decode_local_time_information(value)
        except sig.SigCodecError:
            raise GattRejection(
                AttErrorCode.VALUE_NOT_ALLOWED, "bad local time information"
            ) from None
        offset = info.total_offset_min
        if offset is None:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "time zone unknown")
        self.band.firmware.set_tz_offset(offset, self.band.clock.now())

    def _user_control(self, conn: _Connection, handle: int, value: bytes) -> None:
        # The band keeps one wearer's data and registers no further users: every op code
        # is answered "Op Code not supported" (UDS 4.9.2), echoing the request's op code.
        op = sig.peek_user_control_opcode(value) or 0
        self._indicate(
            conn,
            handle,
            bytes(
                [
                    sig.UserControlOpCode.RESPONSE_CODE,
                    op & 0xFF,
                    sig.UserControlResult.OP_CODE_NOT_SUPPORTED,
                ]
            ),
        )

    # -- control points --------------------------------------------------------------------
    def _decode(self, conn: _Connection, handle: int, value: bytes) -> ctl.ControlMessage | None:
        try:
            return ctl.decode_control(value)
        except ctl.UnsupportedVersionError:
            self._result(conn, handle, 0, ctl.ControlStatus.UNSUPPORTED)
        except ctl.ControlDecodeError:
            self._result(conn, handle, 0, ctl.ControlStatus.INVALID_REQUEST)
        return None

    def _result(
        self, conn: _Connection, handle: int, request_type: int, status: ctl.ControlStatus
    ) -> None:
        self._indicate(conn, handle, ctl.encode_control(ctl.ControlResult(request_type, status)))

    def _consent_state(self) -> bytes:
        flags = self.band.consent.flags()
        return ctl.encode_control(ctl.ConsentState(flags, len(self.band.consent)))

    def _consent_log_page(self, connection: object) -> bytes:
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        first = conn.log_page if conn is not None else 0
        entries = tuple(self.band.consent.log(first, ctl.MAX_LOG_PAGE_ENTRIES))
        page = ctl.ConsentLogPage(first, len(self.band.consent), entries)
        signature = self.band.identity.sign(ctl.unsigned_encoding(page))
        return ctl.encode_control(ctl.ConsentLogPage(first, page.total, entries, signature))

    def _consent_control(
        self, conn: _Connection, handle: int, message: ctl.ControlMessage, value: bytes
    ) -> None:
        if isinstance(message, ctl.SelectConsentLogPage):
            conn.log_page = message.first_index
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.OK)
        elif isinstance(message, ctl.RequestConsentRecord):
            status = self._sign_consent_record(conn, message)
            self._result(conn, handle, message.MESSAGE_TYPE, status)
        elif isinstance(message, ctl.SetConsent):
            try:
                entry = self.band.consent.set(
                    message.category,
                    message.granted,
                    message.policy_version,
                    source=ctl.ConsentSource.OWNER_CLIENT,
                    tz_offset_min=self.band.firmware.tz_offset_min,
                )
            except KmebandError:
                answer = ctl.ConsentResult(ctl.ControlStatus.INVALID_REQUEST)
            else:
                answer = ctl.ConsentResult(ctl.ControlStatus.OK, entry.index)
            self._indicate(conn, handle, ctl.encode_control(answer))
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.UNSUPPORTED)

    def _consent_record(self, connection: object) -> bytes:
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        return conn.consent_record if conn is not None else b""

    def _sign_consent_record(
        self, conn: _Connection, request: ctl.RequestConsentRecord
    ) -> ctl.ControlStatus:
        """Sign the record of the consent governing the requested range (owner only)."""
        now = int(self.band.clock.now())
        covers_to = min(request.covers_to, now)  # a record never speaks of the future
        if covers_to < request.covers_from:
            return ctl.ControlStatus.INVALID_REQUEST
        log = ConsentLog(ConsentChange.from_entry(e) for e in self.band.consent.log())
        try:
            record = ConsentRecord.covering(log, request.covers_from, covers_to, now)
        except ConsentError:
            return ctl.ControlStatus.LIMIT_REACHED
        signed = dataclasses.replace(
            record, signature=self.band.identity.sign(record.signed_bytes())
        )
        encoded = signed.encode()
        if len(encoded) > P.MAX_CONTROL_VALUE:
            return ctl.ControlStatus.LIMIT_REACHED
        conn.consent_record = encoded
        return ctl.ControlStatus.OK

    def _alarm_list(self) -> ctl.AlarmList:
        return ctl.AlarmList(
            tuple(
                ctl.Alarm(a.id, a.hour, a.minute, a.weekdays, a.smart_window_min, a.enabled)
                for a in self.band.firmware.alarms
                if a.id < ctl.MAX_ALARMS
            )
        )

    def _alarm_control(
        self, conn: _Connection, handle: int, message: ctl.ControlMessage, value: bytes
    ) -> None:
        now = self.band.clock.now()
        if isinstance(message, ctl.ListAlarms):
            self._indicate(conn, handle, ctl.encode_control(self._alarm_list()))
        elif isinstance(message, ctl.SetAlarm):
            a = message.alarm
            self.band.firmware.set_alarm(
                FirmwareAlarm(
                    a.alarm_id, a.hour, a.minute, a.weekdays, a.smart_window_min, a.enabled
                ),
                now,
            )
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.OK)
        elif isinstance(message, ctl.DeleteAlarm):
            known = any(a.id == message.alarm_id for a in self.band.firmware.alarms)
            if known:
                self.band.firmware.remove_alarm(message.alarm_id)
            status = ctl.ControlStatus.OK if known else ctl.ControlStatus.NOT_FOUND
            self._result(conn, handle, message.MESSAGE_TYPE, status)
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.UNSUPPORTED)

    def _device_control(
        self, conn: _Connection, handle: int, message: ctl.ControlMessage, value: bytes
    ) -> None:
        if isinstance(message, ctl.SetTimeZone):
            offset = message.utc_offset_min + message.dst_offset_min
            self.band.firmware.set_tz_offset(offset, self.band.clock.now())
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.OK)
        elif isinstance(message, ctl.FindBand):
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.OK)
        elif isinstance(message, ctl.Reboot):
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.OK)
            asyncio.get_running_loop().call_soon(self.reboot)
        elif isinstance(message, ctl.FactoryReset):
            # answered first, reset once the client confirmed the answer: the reset drops
            # this link with every other one
            conn.after_answer = self.band.factory_reset
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.OK)
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.UNSUPPORTED)

    def _activation_control(
        self, conn: _Connection, handle: int, message: ctl.ControlMessage, value: bytes
    ) -> None:
        if isinstance(message, ctl.ActivationRequest):
            if self.activated:
                result = ctl.ActivationResult(ctl.ControlStatus.ALREADY_ACTIVATED)
            else:
                band_public = self.band.identity.public_key_bytes
                statement = activation_statement(
                    message.owner_public_key, message.account_tag, message.client_nonce, band_public
                )
                result = ctl.ActivationResult(
                    ctl.ControlStatus.OK, band_public, self.band.identity.sign(statement)
                )
                self.band.owner.activate(message.owner_public_key, message.account_tag)
                conn.owner = True
            self._indicate(conn, handle, ctl.encode_control(result))
        elif isinstance(message, ctl.RequestOwnerChallenge):
            if not self.activated:
                answer = ctl.OwnerChallenge(ctl.ControlStatus.NOT_ACTIVATED)
            else:
                conn.nonce = self._random_bytes(16)
                answer = ctl.OwnerChallenge(ctl.ControlStatus.OK, conn.nonce)
            self._indicate(conn, handle, ctl.encode_control(answer))
        elif isinstance(message, ctl.OwnerProof):
            nonce, conn.nonce = conn.nonce, None  # single use, whatever the outcome
            owner_key = self.band.owner.key
            ok = (
                owner_key is not None
                and nonce is not None
                and check_owner_proof(
                    owner_key, self.band.identity.public_key_bytes, nonce, message
                )
            )
            conn.owner = ok
            status = ctl.ControlStatus.OK if ok else ctl.ControlStatus.AUTH_FAILED
            self._result(conn, handle, message.MESSAGE_TYPE, status)
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ctl.ControlStatus.UNSUPPORTED)

    # -- record sync -----------------------------------------------------------------------
    def _sender(self, conn: _Connection) -> BandSyncSender:
        if conn.sender is None:
            size = max(20, min(conn.server.mtu - 3, P.MAX_RECORD_CHUNK))
            if self._record_sender is None:
                self._record_sender = BandSyncSender(self.band.flash, size)
            else:
                self._record_sender.payload_size = size
            conn.sender = self._record_sender
        return conn.sender

    def _sync_status(self, connection: object) -> bytes:
        conn = self._connections[connection]  # type: ignore[index]
        return ctl.encode_control(self._sender(conn).status())

    def _record_sync_control(
        self, conn: _Connection, handle: int, message: ctl.ControlMessage, value: bytes
    ) -> None:
        sender = self._sender(conn)
        sender.receive_control(value)
        self._drain_sender(conn)

    def _drain_sender(self, conn: _Connection) -> None:
        """Handle the sender's events; hand chunk notifications to a pacing task."""
        sender = conn.sender
        assert sender is not None
        data_handle = self.db.value_handle(P.KME_RECORD_SYNC_DATA)
        while True:
            event = sender.next_event()
            if event is None:
                return
            if isinstance(event, NotifyData):
                self._send_att(conn, conn.server.notify(data_handle, event.payload))
                if conn.pump is None or conn.pump.done():
                    conn.pump = asyncio.get_running_loop().create_task(self._pump(conn))
                return  # the pump sends the rest, yielding to the loop as it goes
            if isinstance(event, IndicateControl):
                self._indicate(
                    conn, self.db.value_handle(P.KME_RECORD_SYNC_CONTROL_POINT), event.payload
                )
            elif isinstance(event, FreeRecords):
                self.band.flash.free_up_to(event.stream, event.up_to_seq)
            elif isinstance(event, TransferFinished):
                self.band.flash.flush()

    async def _pump(self, conn: _Connection) -> None:
        sender = conn.sender
        assert sender is not None
        data_handle = self.db.value_handle(P.KME_RECORD_SYNC_DATA)
        cp_handle = self.db.value_handle(P.KME_RECORD_SYNC_CONTROL_POINT)
        sent = 0
        while conn.link.connected:
            event = sender.next_event()
            if event is None:
                return
            if isinstance(event, NotifyData):
                self._send_att(conn, conn.server.notify(data_handle, event.payload))
                sent += 1
                if sent % CHUNKS_PER_YIELD == 0:
                    await asyncio.sleep(0)
            elif isinstance(event, IndicateControl):
                self._indicate(conn, cp_handle, event.payload)
            elif isinstance(event, FreeRecords):
                self.band.flash.free_up_to(event.stream, event.up_to_seq)
            elif isinstance(event, TransferFinished):
                self.band.flash.flush()


def _read_hook(read: Callable[[Any], bytes]) -> Callable[[int, object], bytes]:
    def hook(handle: int, connection: object) -> bytes:
        return read(connection)

    return hook


def _write_hook(write: Callable[[bytes, object], None]) -> Callable[[int, bytes, object], None]:
    def hook(handle: int, value: bytes, connection: object) -> None:
        write(value, connection)

    return hook
