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
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.band.auth_deadline import AUTH_TIMEOUT_S, AuthenticationDeadline
from device_sim.band.firmware.alarms import Alarm as FirmwareAlarm
from device_sim.band.live import LiveHeartRate
from device_sim.band.simulated_band import SimulatedBand
from device_sim.band.state_file import (
    StateFileCorruptError,
    read_checked,
    refuse_if_shared,
    write_checked,
)
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
    HR_CONTROL_POINT_NOT_SUPPORTED,
    BodySensorLocation,
    CurrentTime,
    DateOfBirth,
    Gender,
    LocalTimeInformation,
    PnpId,
    SigCodecError,
    UserControlOpCode,
    UserControlResult,
    VendorIdSource,
    decode_age,
    decode_current_time,
    decode_date_of_birth,
    decode_gender,
    decode_heart_rate_control_point,
    decode_height,
    decode_local_time_information,
    decode_weight,
    encode_age,
    encode_appearance,
    encode_battery_level,
    encode_body_sensor_location,
    encode_current_time,
    encode_database_change_increment,
    encode_date_of_birth,
    encode_gender,
    encode_heart_rate_measurement,
    encode_height,
    encode_local_time_information,
    encode_pnp_id,
    encode_user_index,
    encode_utf8s,
    encode_weight,
    peek_user_control_opcode,
    weight_units,
)
from protocol.ble.smp import (
    DisplayPasskey,
    PairingAborted,
    PairingComplete,
    SendPdu,
    SmpResponder,
    passkey_from_bytes,
)
from protocol.ble.smp_bond import Bond, BondFormatError
from protocol.ble.smp_pdu import DeviceAddress
from protocol.ble.smp_rate_limit import PairingRateLimiter
from protocol.errors import KmebandError
from protocol.kme.consent import ConsentChange, ConsentError, ConsentLog, ConsentRecord
from protocol.kme.control.activation import (
    ActivationRequest,
    ActivationResult,
    ActivationState,
    BandPublicKey,
    KeyAlgorithm,
    OwnerChallenge,
    OwnerProof,
    RequestOwnerChallenge,
)
from protocol.kme.control.alarms import (
    MAX_ALARMS,
    Alarm,
    AlarmList,
    DeleteAlarm,
    ListAlarms,
    SetAlarm,
)
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import (
    MAX_LOG_PAGE_ENTRIES,
    ConsentLogPage,
    ConsentResult,
    ConsentSource,
    ConsentState,
    RequestConsentRecord,
    SelectConsentLogPage,
    SetConsent,
)
from protocol.kme.control.device_control import FactoryReset, FindBand, Reboot, SetTimeZone
from protocol.kme.control.schema import (
    SCHEMA_VERSION,
    ControlDecodeError,
    ControlMessage,
    UnsupportedVersionError,
    decode_control,
    encode_control,
    unsigned_encoding,
)
from protocol.kme.ownership import activation_statement, check_owner_proof, owner_proof_limiter
from protocol.kme.profile import (
    AGE,
    APPEARANCE,
    BAND_APPEARANCE,
    BAND_PROFILE,
    BATTERY_LEVEL,
    BODY_SENSOR_LOCATION,
    CURRENT_TIME,
    DATABASE_CHANGE_INCREMENT,
    DATE_OF_BIRTH,
    DEVICE_NAME,
    FIRMWARE_REVISION,
    GENDER,
    HARDWARE_REVISION,
    HEART_RATE_CONTROL_POINT,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    HEIGHT,
    KME_ACTIVATION_CONTROL_POINT,
    KME_ACTIVATION_STATE,
    KME_ALARM_CONTROL_POINT,
    KME_ALARM_LIST,
    KME_BAND_IDENTITY,
    KME_CONSENT_CHANGE_LOG,
    KME_CONSENT_CONTROL_POINT,
    KME_CONSENT_RECORD,
    KME_CONSENT_STATE,
    KME_DEVICE_CONTROL_POINT,
    KME_RECORD_SYNC_CONTROL_POINT,
    KME_RECORD_SYNC_DATA,
    KME_RECORD_SYNC_SERVICE,
    KME_RECORD_SYNC_STATUS,
    LOCAL_TIME_INFORMATION,
    MANUFACTURER_NAME,
    MAX_CONTROL_VALUE,
    MAX_RECORD_CHUNK,
    MODEL_NUMBER,
    PNP_ID,
    SERIAL_NUMBER,
    SOFTWARE_REVISION,
    USER_CONTROL_POINT,
    USER_INDEX,
    WEIGHT,
    with_values,
)
from protocol.kme.record_sync import (
    BandSyncSender,
    FreeRecords,
    IndicateControl,
    NotifyData,
    TransferFinished,
)

log = logging.getLogger(__name__)

_OWNER_MAGIC = b"KMEOWNER"
_BONDS_MAGIC = b"KMEBONDS"
#: Company identifier used in the manufacturer data (0xFFFF: reserved for testing).
COMPANY_ID = 0xFFFF
#: Chunks notified before the sender yields to the event loop (keeps other tasks alive).
CHUNKS_PER_YIELD = 64
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: Personal data only the owner's client may read or write once the band is activated.
OWNER_ONLY = frozenset(
    {
        AGE,
        DATE_OF_BIRTH,
        GENDER,
        HEIGHT,
        WEIGHT,
        KME_CONSENT_STATE,
        KME_CONSENT_CHANGE_LOG,
        KME_CONSENT_RECORD,
        KME_ALARM_LIST,
    }
)


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
        self.owner_limiter = owner_proof_limiter()  # per band: a central can change address
        self.clock_offset_s = 0.0  # the band's own clock drift from true UTC
        self._bonds: dict[str, Bond] = {}
        self._owner_key: bytes | None = None
        self._account_tag: bytes | None = None
        self._connections: dict[int, _Connection] = {}
        # An unauthenticated link gets auth_timeout_s band seconds (docs/pairing.md)
        self.auth_deadline = AuthenticationDeadline(
            band.clock, auth_timeout_s, self._authenticated, self._drop_unauthenticated
        )
        # One record-sync sender for the life of the firmware (docs/records.md): what was
        # sent stays known across connections, so a client can acknowledge records it
        # stored on an earlier connection whose link dropped before its acknowledgement.
        self._record_sender: BandSyncSender | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_battery = -1
        self._live_hr = LiveHeartRate(band.person, band.config.seed)
        self.db = self._build_database()
        self._load_persistent()

    @property
    def address(self) -> str:
        return self.band.address

    @property
    def activated(self) -> bool:
        return self._owner_key is not None

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
        self._connections[link.handle] = _Connection(link, server)
        self.band.connected_centrals += 1
        self.auth_deadline.connected(link.handle)

    def on_disconnect(self, link: PeripheralLink, reason: DisconnectReason) -> None:
        self.auth_deadline.disconnected(link.handle)
        conn = self._connections.pop(link.handle, None)
        if conn is None:
            return
        self.band.connected_centrals -= 1
        if conn.smp is not None and conn.smp.in_progress:
            # The passkey leaves the screen with the link. Leaving is no failed guess: a
            # round's bit is revealed only to a right guess, and the next attempt shows a
            # fresh passkey (and a link that drops mid-pairing must not lock the owner out).
            self.display = None
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
        bond = self._bonds.get(link.central_address)
        if bond is None or not hmac.compare_digest(proof, encryption_proof(bond.ltk, skd)):
            return None
        return bond.security_level

    def _authenticated(self, handle: int) -> bool:
        conn = self._connections.get(handle)
        return conn is None or conn.owner or conn.link.security_level > SecurityLevel.NO_SECURITY

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
        measurement = self._live_hr.measurement(self.band.clock.now())
        hr_handle = self.db.value_handle(HEART_RATE_MEASUREMENT)
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
                conn, conn.server.notify(hr_handle, encode_heart_rate_measurement(fitted))
            )
            if battery_changed:
                self._send_att(
                    conn,
                    conn.server.notify(
                        self.db.value_handle(BATTERY_LEVEL),
                        encode_battery_level(battery),
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
            elif isinstance(event, MtuChanged) and conn.sender is not None:
                conn.sender.payload_size = min(event.mtu - 3, MAX_RECORD_CHUNK)
            elif isinstance(event, SubscriptionChanged):
                pass  # live values check subscriptions when they push

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
                self._bonds[conn.link.central_address] = event.bond
                self.display = None
                self._save_bonds()
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

    # -- the attribute database ------------------------------------------------------------
    def _build_database(self) -> AttributeDatabase:
        band = self.band
        ident = band.identity
        values = {
            DEVICE_NAME: encode_utf8s(band.config.name),
            APPEARANCE: encode_appearance(BAND_APPEARANCE),
            MANUFACTURER_NAME: encode_utf8s("KME Smart"),
            MODEL_NUMBER: encode_utf8s(ident.model),
            SERIAL_NUMBER: encode_utf8s(ident.serial),
            HARDWARE_REVISION: encode_utf8s(ident.hardware_revision),
            FIRMWARE_REVISION: encode_utf8s(ident.firmware_revision),
            SOFTWARE_REVISION: encode_utf8s(ident.software_revision),
            PNP_ID: encode_pnp_id(PnpId(VendorIdSource.BLUETOOTH_SIG, COMPANY_ID, 0x0007, 0x0100)),
            BODY_SENSOR_LOCATION: encode_body_sensor_location(BodySensorLocation.WRIST),
        }
        db = AttributeDatabase.from_services(with_values(BAND_PROFILE, values))
        h = db.value_handle
        reads: dict[Any, Callable[[Any], bytes]] = {
            BATTERY_LEVEL: lambda c: encode_battery_level(band.battery.percent),
            CURRENT_TIME: lambda c: self._current_time(),
            LOCAL_TIME_INFORMATION: lambda c: self._local_time(),
            AGE: lambda c: encode_age(band.profile.profile.age),
            DATE_OF_BIRTH: lambda c: encode_date_of_birth(
                DateOfBirth(
                    band.profile.profile.date_of_birth.year,
                    band.profile.profile.date_of_birth.month,
                    band.profile.profile.date_of_birth.day,
                )
            ),
            GENDER: lambda c: encode_gender(Gender(int(band.profile.profile.gender))),
            HEIGHT: lambda c: encode_height(band.profile.profile.height_cm),
            WEIGHT: lambda c: encode_weight(weight_units(band.profile.profile.weight_kg)),
            USER_INDEX: lambda c: encode_user_index(band.profile.profile.user_index),
            DATABASE_CHANGE_INCREMENT: lambda c: encode_database_change_increment(
                band.profile.profile.database_change_increment
            ),
            KME_CONSENT_STATE: lambda c: self._consent_state(),
            KME_CONSENT_CHANGE_LOG: self._consent_log_page,
            KME_CONSENT_RECORD: self._consent_record,
            KME_ALARM_LIST: lambda c: encode_control(self._alarm_list()),
            KME_ACTIVATION_STATE: lambda c: encode_control(
                ActivationState(self.activated, (SCHEMA_VERSION,))
            ),
            KME_BAND_IDENTITY: lambda c: encode_control(
                BandPublicKey(KeyAlgorithm.ED25519, band.identity.public_key_bytes)
            ),
            KME_RECORD_SYNC_STATUS: self._sync_status,
        }
        for char_uuid, read in reads.items():
            if char_uuid in OWNER_ONLY:
                read = self._owner_only_read(read)
            db.set_read_hook(h(char_uuid), _read_hook(read))
        writes: dict[Any, Callable[[bytes, object], None]] = {
            AGE: lambda v, c: self._profile_update(age=decode_age(v)),
            HEIGHT: lambda v, c: self._profile_update(height_cm=decode_height(v)),
            WEIGHT: lambda v, c: self._profile_update(weight_kg=decode_weight(v) * 0.005),
            GENDER: lambda v, c: self._profile_update(gender=int(decode_gender(v))),
            DATE_OF_BIRTH: self._write_dob,
            CURRENT_TIME: self._write_current_time,
            LOCAL_TIME_INFORMATION: self._write_local_time,
            HEART_RATE_CONTROL_POINT: self._write_hr_control,
        }
        for char_uuid, write in writes.items():
            if char_uuid in OWNER_ONLY:
                write = self._owner_only_write(write)
            db.set_write_hook(h(char_uuid), _write_hook(write))
        self._control_points = {
            h(KME_CONSENT_CONTROL_POINT): self._consent_control,
            h(KME_ALARM_CONTROL_POINT): self._alarm_control,
            h(KME_DEVICE_CONTROL_POINT): self._device_control,
            h(KME_ACTIVATION_CONTROL_POINT): self._activation_control,
            h(KME_RECORD_SYNC_CONTROL_POINT): self._record_sync_control,
            h(USER_CONTROL_POINT): self._user_control,
        }
        return db

    # -- ownership -------------------------------------------------------------------------
    def _check_owner(self, connection: object) -> None:
        """Once the band has an owner, personal data is the owner's client's alone."""
        if not self.activated:
            return  # unowned: the user is setting it up on an authenticated link
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        if conn is None or not conn.owner:
            raise GattRejection(
                AttErrorCode.INSUFFICIENT_AUTHORIZATION, "prove ownership (owner challenge) first"
            )

    def _owner_only_read(self, read: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
        def guarded(connection: Any) -> bytes:
            self._check_owner(connection)
            return read(connection)

        return guarded

    def _owner_only_write(
        self, write: Callable[[bytes, object], None]
    ) -> Callable[[bytes, object], None]:
        def guarded(value: bytes, connection: object) -> None:
            self._check_owner(connection)
            write(value, connection)

        return guarded

    # -- writes ----------------------------------------------------------------------------
    def _on_write(self, conn: _Connection, handle: int, value: bytes) -> None:
        handler = self._control_points.get(handle)
        if handler is not None:
            handler(conn, handle, value)

    def _profile_update(self, **changes: Any) -> None:
        try:
            self.band.profile.update(**changes)
        except Exception:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "value out of range") from None

    def _write_dob(self, value: bytes, conn: object) -> None:
        try:
            dob = decode_date_of_birth(value)
            self._profile_update(date_of_birth=dt.date(dob.year, dob.month, dob.day))
        except SigCodecError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad date") from None

    def _write_hr_control(self, value: bytes, conn: object) -> None:
        try:
            decode_heart_rate_control_point(value)
        except SigCodecError:
            raise GattRejection(HR_CONTROL_POINT_NOT_SUPPORTED, "unknown op") from None
        self._live_hr.reset_energy_expended()  # the one op code: Reset Energy Expended

    def _band_now(self) -> float:
        return self.band.clock.now() + self.clock_offset_s

    def _current_time(self) -> bytes:
        tz = dt.timedelta(minutes=self.band.firmware.tz_offset_min)
        local = dt.datetime.fromtimestamp(self._band_now(), dt.UTC).astimezone(dt.timezone(tz))
        return encode_current_time(CurrentTime.from_datetime(local.replace(tzinfo=None)))

    def _local_time(self) -> bytes:
        return encode_local_time_information(
            LocalTimeInformation.from_offsets(self.band.firmware.tz_offset_min, 0)
        )

    def _write_current_time(self, value: bytes, conn: object) -> None:
        try:
            ct = decode_current_time(value)
        except SigCodecError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad current time") from None
        tz = dt.timezone(dt.timedelta(minutes=self.band.firmware.tz_offset_min))
        when = ct.to_datetime().replace(tzinfo=tz).timestamp()
        self.clock_offset_s = when - self.band.clock.now()

    def _write_local_time(self, value: bytes, conn: object) -> None:
        try:
            info = decode_local_time_information(value)
        except SigCodecError:
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
        op = peek_user_control_opcode(value) or 0
        self._indicate(
            conn,
            handle,
            bytes(
                [
                    UserControlOpCode.RESPONSE_CODE,
                    op & 0xFF,
                    UserControlResult.OP_CODE_NOT_SUPPORTED,
                ]
            ),
        )

    # -- control points --------------------------------------------------------------------
    def _decode(self, conn: _Connection, handle: int, value: bytes) -> ControlMessage | None:
        try:
            return decode_control(value)
        except UnsupportedVersionError:
            self._result(conn, handle, 0, ControlStatus.UNSUPPORTED)
        except ControlDecodeError:
            self._result(conn, handle, 0, ControlStatus.INVALID_REQUEST)
        return None

    def _result(
        self, conn: _Connection, handle: int, request_type: int, status: ControlStatus
    ) -> None:
        self._indicate(conn, handle, encode_control(ControlResult(request_type, status)))

    def _consent_state(self) -> bytes:
        flags = self.band.consent.flags()
        return encode_control(ConsentState(flags, len(self.band.consent)))

    def _consent_log_page(self, connection: object) -> bytes:
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        first = conn.log_page if conn is not None else 0
        entries = tuple(self.band.consent.log(first, MAX_LOG_PAGE_ENTRIES))
        page = ConsentLogPage(first, len(self.band.consent), entries)
        signature = self.band.identity.sign(unsigned_encoding(page))
        return encode_control(ConsentLogPage(first, page.total, entries, signature))

    def _consent_control(self, conn: _Connection, handle: int, value: bytes) -> None:
        message = self._decode(conn, handle, value)
        if isinstance(message, SelectConsentLogPage):
            conn.log_page = message.first_index
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.OK)
        elif isinstance(message, RequestConsentRecord):
            status = self._sign_consent_record(conn, message)
            self._result(conn, handle, message.MESSAGE_TYPE, status)
        elif isinstance(message, SetConsent):
            if not conn.owner:
                self._indicate(conn, handle, encode_control(ConsentResult(ControlStatus.NOT_OWNER)))
                return
            try:
                entry = self.band.consent.set(
                    message.category,
                    message.granted,
                    message.policy_version,
                    source=ConsentSource.OWNER_CLIENT,
                    tz_offset_min=self.band.firmware.tz_offset_min,
                )
            except KmebandError:
                answer = ConsentResult(ControlStatus.INVALID_REQUEST)
            else:
                answer = ConsentResult(ControlStatus.OK, entry.index)
            self._indicate(conn, handle, encode_control(answer))
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.UNSUPPORTED)

    def _consent_record(self, connection: object) -> bytes:
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        return conn.consent_record if conn is not None else b""

    def _sign_consent_record(
        self, conn: _Connection, request: RequestConsentRecord
    ) -> ControlStatus:
        """Sign the record of the consent governing the requested range (owner only)."""
        if not conn.owner:
            return ControlStatus.NOT_OWNER
        now = int(self.band.clock.now())
        covers_to = min(request.covers_to, now)  # a record never speaks of the future
        if covers_to < request.covers_from:
            return ControlStatus.INVALID_REQUEST
        log = ConsentLog(ConsentChange.from_entry(e) for e in self.band.consent.log())
        try:
            record = ConsentRecord.covering(log, request.covers_from, covers_to, now)
        except ConsentError:
            return ControlStatus.LIMIT_REACHED
        signed = dataclasses.replace(
            record, signature=self.band.identity.sign(record.signed_bytes())
        )
        encoded = signed.encode()
        if len(encoded) > MAX_CONTROL_VALUE:
            return ControlStatus.LIMIT_REACHED
        conn.consent_record = encoded
        return ControlStatus.OK

    def _alarm_list(self) -> AlarmList:
        return AlarmList(
            tuple(
                Alarm(a.id, a.hour, a.minute, a.weekdays, a.smart_window_min, a.enabled)
                for a in self.band.firmware.alarms
                if a.id < MAX_ALARMS
            )
        )

    def _alarm_control(self, conn: _Connection, handle: int, value: bytes) -> None:
        message = self._decode(conn, handle, value)
        now = self.band.clock.now()
        if isinstance(message, ListAlarms):
            self._indicate(conn, handle, encode_control(self._alarm_list()))
        elif isinstance(message, SetAlarm):
            a = message.alarm
            self.band.firmware.set_alarm(
                FirmwareAlarm(
                    a.alarm_id, a.hour, a.minute, a.weekdays, a.smart_window_min, a.enabled
                ),
                now,
            )
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.OK)
        elif isinstance(message, DeleteAlarm):
            known = any(a.id == message.alarm_id for a in self.band.firmware.alarms)
            if known:
                self.band.firmware.remove_alarm(message.alarm_id)
            status = ControlStatus.OK if known else ControlStatus.NOT_FOUND
            self._result(conn, handle, message.MESSAGE_TYPE, status)
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.UNSUPPORTED)

    def _device_control(self, conn: _Connection, handle: int, value: bytes) -> None:
        message = self._decode(conn, handle, value)
        if isinstance(message, SetTimeZone):
            offset = message.utc_offset_min + message.dst_offset_min
            self.band.firmware.set_tz_offset(offset, self.band.clock.now())
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.OK)
        elif isinstance(message, FindBand):
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.OK)
        elif isinstance(message, Reboot):
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.OK)
            asyncio.get_running_loop().call_soon(self.reboot)
        elif isinstance(message, FactoryReset):
            if not conn.owner:
                self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.NOT_OWNER)
                return
            self.band.consent.factory_reset()
            self._owner_key = self._account_tag = None
            self._bonds.clear()
            self._save_owner()
            self._save_bonds()
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.OK)
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.UNSUPPORTED)

    def _activation_control(self, conn: _Connection, handle: int, value: bytes) -> None:
        message = self._decode(conn, handle, value)
        if isinstance(message, ActivationRequest):
            if self.activated:
                result = ActivationResult(ControlStatus.ALREADY_ACTIVATED)
            else:
                band_public = self.band.identity.public_key_bytes
                statement = activation_statement(
                    message.owner_public_key, message.account_tag, message.client_nonce, band_public
                )
                result = ActivationResult(
                    ControlStatus.OK, band_public, self.band.identity.sign(statement)
                )
                self._owner_key = message.owner_public_key
                self._account_tag = message.account_tag
                conn.owner = True
                self._save_owner()
            self._indicate(conn, handle, encode_control(result))
        elif isinstance(message, RequestOwnerChallenge):
            if not self.activated:
                answer = OwnerChallenge(ControlStatus.NOT_ACTIVATED)
            elif not self.owner_limiter.allows(self.band.clock.now()):
                answer = OwnerChallenge(ControlStatus.RATE_LIMITED)
            else:
                conn.nonce = self._random_bytes(16)
                answer = OwnerChallenge(ControlStatus.OK, conn.nonce)
            self._indicate(conn, handle, encode_control(answer))
        elif isinstance(message, OwnerProof):
            nonce, conn.nonce = conn.nonce, None  # single use, whatever the outcome
            self._result(
                conn, handle, message.MESSAGE_TYPE, self._verify_owner_proof(conn, nonce, message)
            )
        elif message is not None:
            self._result(conn, handle, message.MESSAGE_TYPE, ControlStatus.UNSUPPORTED)

    def _verify_owner_proof(
        self, conn: _Connection, nonce: bytes | None, proof: OwnerProof
    ) -> ControlStatus:
        """Check an ownership proof under the back-off; only a checked proof can fail."""
        now = self.band.clock.now()
        conn.owner = False
        if not self.owner_limiter.allows(now):
            return ControlStatus.RATE_LIMITED  # refused unchecked: no failure counted
        if self._owner_key is None or nonce is None:
            return ControlStatus.AUTH_FAILED  # nothing to check against: tests nothing
        key = self.band.identity.public_key_bytes
        if not check_owner_proof(self._owner_key, key, nonce, proof):
            self.owner_limiter.record_failure(now)
            return ControlStatus.AUTH_FAILED
        self.owner_limiter.record_success()
        conn.owner = True
        return ControlStatus.OK

    # -- record sync -----------------------------------------------------------------------
    def _sender(self, conn: _Connection) -> BandSyncSender:
        if conn.sender is None:
            size = max(20, min(conn.server.mtu - 3, MAX_RECORD_CHUNK))
            if self._record_sender is None:
                self._record_sender = BandSyncSender(self.band.flash, size)
            else:
                self._record_sender.payload_size = size
            conn.sender = self._record_sender
        return conn.sender

    def _sync_status(self, connection: object) -> bytes:
        conn = self._connections.get(connection)  # type: ignore[call-overload]
        if conn is None or not conn.owner:
            raise GattRejection(AttErrorCode.INSUFFICIENT_AUTHORIZATION, "owner only")
        return encode_control(self._sender(conn).status())

    def _record_sync_control(self, conn: _Connection, handle: int, value: bytes) -> None:
        if not conn.owner:
            self._result(conn, handle, 0, ControlStatus.NOT_OWNER)
            return
        sender = self._sender(conn)
        sender.receive_control(value)
        self._drain_sender(conn)

    def _drain_sender(self, conn: _Connection) -> None:
        """Handle the sender's events; hand chunk notifications to a pacing task."""
        sender = conn.sender
        assert sender is not None
        data_handle = self.db.value_handle(KME_RECORD_SYNC_DATA)
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
                    conn, self.db.value_handle(KME_RECORD_SYNC_CONTROL_POINT), event.payload
                )
            elif isinstance(event, FreeRecords):
                self.band.flash.free_up_to(event.stream, event.up_to_seq)
            elif isinstance(event, TransferFinished):
                self.band.flash.flush()

    async def _pump(self, conn: _Connection) -> None:
        sender = conn.sender
        assert sender is not None
        data_handle = self.db.value_handle(KME_RECORD_SYNC_DATA)
        cp_handle = self.db.value_handle(KME_RECORD_SYNC_CONTROL_POINT)
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

    # -- persistence -----------------------------------------------------------------------
    def _state_path(self, name: str) -> Path | None:
        state = self.band.config.state_dir
        return None if state is None else state / name

    def _load_persistent(self) -> None:
        owner = self._state_path("owner.bin")
        if owner is not None and owner.exists():
            data = self._load_cbor(owner, _OWNER_MAGIC)
            key, tag = data.get("owner"), data.get("tag")
            if key is not None and not (isinstance(key, bytes) and len(key) == 32):
                raise StateFileCorruptError(owner, "the owner key is not a 32-byte Ed25519 key")
            self._owner_key = key
            self._account_tag = tag if isinstance(tag, bytes) else None
        bonds = self._state_path("bonds.bin")
        if bonds is not None and bonds.exists():
            refuse_if_shared(bonds, "the band's bonds (their long-term keys)")
            for address, raw in self._load_cbor(bonds, _BONDS_MAGIC).items():
                try:
                    self._bonds[str(address)] = Bond.from_bytes(raw)
                except (BondFormatError, TypeError):
                    raise StateFileCorruptError(bonds, "a bond cannot be read") from None

    @staticmethod
    def _load_cbor(path: Path, magic: bytes) -> dict[Any, Any]:
        payload = read_checked(path, magic, 1)
        try:
            data = cbor2.loads(payload)
        except Exception:
            raise StateFileCorruptError(path, "the contents are not the expected CBOR") from None
        if not isinstance(data, dict):
            raise StateFileCorruptError(path, "the contents are not the expected CBOR map")
        return data

    def _save_owner(self) -> None:
        path = self._state_path("owner.bin")
        if path is not None:
            data = cbor2.dumps({"owner": self._owner_key, "tag": self._account_tag})
            write_checked(path, _OWNER_MAGIC, 1, data)

    def _save_bonds(self) -> None:
        path = self._state_path("bonds.bin")
        if path is not None:
            data = cbor2.dumps({a: b.to_bytes() for a, b in sorted(self._bonds.items())})
            write_checked(path, _BONDS_MAGIC, 1, data)


def _read_hook(read: Callable[[Any], bytes]) -> Callable[[int, object], bytes]:
    def hook(handle: int, connection: object) -> bytes:
        return read(connection)

    return hook


def _write_hook(write: Callable[[bytes, object], None]) -> Callable[[int, bytes, object], None]:
    def hook(handle: int, value: bytes, connection: object) -> None:
        write(value, connection)

    return hook
