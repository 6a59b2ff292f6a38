"""The band on the radio, driven by a bare GATT central: every service, end to end."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from band_central import Central
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.owner_store import OwnerStore
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.band.state_file import StateFileCorruptError
from device_sim.clock import ManualClock
from device_sim.radio import Radio
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt import GattProcedureError
from protocol.ble.sig_codecs import (
    SensorContact,
    decode_age,
    decode_battery_level,
    decode_heart_rate_measurement,
    decode_height,
    decode_utf8s,
    encode_height,
)
from protocol.ble.smp_bond import Bond
from protocol.kme.attestation import (
    SIMULATED_FACTORY_ROOT,
    band_id_from_serial,
    verify_certificate,
)
from protocol.kme.consent import ConsentRecord
from protocol.kme.control.activation import (
    ActivationResult,
    ActivationState,
    OwnerChallenge,
    RequestOwnerChallenge,
)
from protocol.kme.control.alarms import Alarm, DeleteAlarm, ListAlarms, SetAlarm
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import (
    ConsentLogPage,
    ConsentResult,
    ConsentSource,
    RequestConsentRecord,
    SetConsent,
)
from protocol.kme.control.device_control import FactoryReset, Reboot
from protocol.kme.control.record_sync import StartTransfer, StreamList
from protocol.kme.control.schema import decode_as, encode_control
from protocol.kme.ownership import activation_request, prove_ownership, verify_activation
from protocol.kme.profile import (
    AGE,
    BATTERY_LEVEL,
    HEART_RATE_CONTROL_POINT,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    HEIGHT,
    KME_ACTIVATION_CONTROL_POINT,
    KME_ACTIVATION_STATE,
    KME_ALARM_CONTROL_POINT,
    KME_ALARM_LIST,
    KME_BAND_CERTIFICATE,
    KME_CONSENT_CHANGE_LOG,
    KME_CONSENT_CONTROL_POINT,
    KME_CONSENT_RECORD,
    KME_CONSENT_STATE,
    KME_DEVICE_CONTROL_POINT,
    KME_RECORD_SYNC_CONTROL_POINT,
    KME_RECORD_SYNC_DATA,
    KME_RECORD_SYNC_STATUS,
    MANUFACTURER_NAME,
    MAX_RECORD_CHUNK,
    MODEL_NUMBER,
    SERIAL_NUMBER,
    WEIGHT,
)
from protocol.kme.record_sync import ClientSyncReceiver, RecordsReceived, TransferComplete
from protocol.kme.records import ConsentCategory, StreamId


async def _setup(seed: int = 7, hours: float = 2) -> tuple[ManualClock, Radio, BandGattEndpoint]:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=seed, fidelity="summary"), clock)
    band.simulate_until(clock.now() + hours * 3600)
    radio = Radio(clock, seed=seed)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    return clock, radio, endpoint


async def test_open_reads_and_security_errors_before_pairing() -> None:
    _, radio, endpoint = await _setup()
    [report] = await radio.scan()
    assert report.data.local_name == "KME Smart"
    assert str(HEART_RATE_SERVICE) in report.data.service_uuids
    central = await Central(radio, endpoint.address).connect()
    assert central.client.mtu == 517
    assert decode_utf8s(await central.read(MANUFACTURER_NAME)) == "KME Smart"
    assert decode_utf8s(await central.read(MODEL_NUMBER)) == endpoint.band.identity.model
    assert 0 <= decode_battery_level(await central.read(BATTERY_LEVEL)) <= 100
    state = decode_as(await central.read(KME_ACTIVATION_STATE), ActivationState)
    assert not state.activated
    for protected in (SERIAL_NUMBER, KME_CONSENT_STATE, AGE):
        with pytest.raises(GattProcedureError) as info:
            await central.read(protected)
        assert info.value.error_code == AttErrorCode.INSUFFICIENT_ENCRYPTION
    # one connection at a time: the band stops advertising while connected
    assert await radio.scan() == []


async def test_pairing_with_the_displayed_passkey_then_activation_and_record_sync() -> None:
    _, radio, endpoint = await _setup()
    band = endpoint.band
    central = await Central(radio, endpoint.address, seed=1).connect()
    await central.pair(lambda: endpoint.display)
    assert decode_utf8s(await central.read(SERIAL_NUMBER)) == band.identity.serial
    assert decode_age(await central.read(AGE)) == band.profile.profile.age
    await central.write(HEIGHT, encode_height(181))
    assert band.profile.profile.height_cm == 181

    for cp in (
        KME_ACTIVATION_CONTROL_POINT,
        KME_CONSENT_CONTROL_POINT,
        KME_RECORD_SYNC_CONTROL_POINT,
    ):
        await central.subscribe(cp, indicate=True)
    await central.subscribe(KME_RECORD_SYNC_DATA)

    # a never-activated band lists its streams to the paired phone setting it up, but
    # transfers are the owner's: refused with the request's own type
    listed = decode_as(
        await central.control(KME_RECORD_SYNC_CONTROL_POINT, b"\xa2\x00\x01\x01\x10"),
        StreamList,
    )
    assert any(s.stream == StreamId.ACTIVITY_MINUTES for s in listed.streams)
    assert decode_as(await central.read(KME_RECORD_SYNC_STATUS), StreamList) == listed
    refused = decode_as(
        await central.control(
            KME_RECORD_SYNC_CONTROL_POINT,
            encode_control(StartTransfer(StreamId.ACTIVITY_MINUTES, 1)),
        ),
        ControlResult,
    )
    assert (refused.request_type, refused.status) == (0x12, ControlStatus.NOT_OWNER)

    owner = Ed25519PrivateKey.generate()
    request = activation_request(owner, b"\x01" * 16, b"\x02" * 16)
    result = decode_as(
        await central.control(KME_ACTIVATION_CONTROL_POINT, encode_control(request)),
        ActivationResult,
    )
    assert verify_activation(request, result) == band.identity.public_key_bytes

    # withdraw SLEEP from the client: logged on the band with the client as source
    answer = decode_as(
        await central.control(
            KME_CONSENT_CONTROL_POINT,
            encode_control(SetConsent(ConsentCategory.SLEEP, False, 1)),
        ),
        ConsentResult,
    )
    assert answer.status == ControlStatus.OK
    assert not band.consent.is_granted(ConsentCategory.SLEEP)
    page = decode_as(await central.read(KME_CONSENT_CHANGE_LOG), ConsentLogPage)
    assert page.entries[-1].source == ConsentSource.OWNER_CLIENT
    assert page.signature is not None

    # the band signs a consent record for any range up to its now; the cloud can verify it
    request = RequestConsentRecord(page.entries[0].time, 2**40)
    answer_ok = decode_as(
        await central.control(KME_CONSENT_CONTROL_POINT, encode_control(request)),
        ControlResult,
    )
    assert answer_ok.status == ControlStatus.OK
    record = ConsentRecord.decode(await central.read(KME_CONSENT_RECORD))
    record.verify(band.identity.public_key_bytes)
    assert record.covers_to == int(band.clock.now())
    assert not record.log().is_consented(ConsentCategory.SLEEP, record.covers_to)

    # pull the whole activity stream, then acknowledge it so the band frees it
    stream = StreamId.ACTIVITY_MINUTES
    on_band = band.flash.count(stream)
    assert on_band == 120
    status = decode_as(await central.read(KME_RECORD_SYNC_STATUS), StreamList)
    assert any(s.stream == stream for s in status.streams)
    receiver = ClientSyncReceiver(stream, 1, min(central.client.mtu - 3, MAX_RECORD_CHUNK))
    got = []
    done = False
    seen_notes = seen_inds = 0

    def feed() -> None:
        nonlocal done, seen_notes, seen_inds
        while seen_notes < len(central.notifications) or seen_inds < len(central.indications):
            if seen_notes < len(central.notifications):
                events = receiver.receive_data(central.notifications[seen_notes][1])
                seen_notes += 1
            else:
                events = receiver.receive_control(central.indications[seen_inds][1])
                seen_inds += 1
            for e in events:
                if isinstance(e, RecordsReceived):
                    got.extend(e.records)
                elif isinstance(e, TransferComplete):
                    done = True

    seen_inds = len(central.indications)
    await central.write(KME_RECORD_SYNC_CONTROL_POINT, receiver.start_request())
    for _ in range(2000):
        feed()
        if done:
            break
        await asyncio.sleep(0)
    assert done and [r.seq for r in got] == list(range(1, on_band + 1))
    assert [r.record for r in got] == [r.record for r in band.flash.read(stream, 1, 10_000)]
    await central.write(KME_RECORD_SYNC_CONTROL_POINT, receiver.stored_up_to(on_band))
    for _ in range(100):
        if band.flash.count(stream) == 0:
            break
        await asyncio.sleep(0)
    assert band.flash.count(stream) == 0


async def test_a_second_connection_must_prove_ownership_and_bonds_encrypt_again() -> None:
    _, radio, endpoint = await _setup()
    first = await Central(radio, endpoint.address, seed=2).connect()
    bond = await first.pair(lambda: endpoint.display)
    await first.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    owner = Ed25519PrivateKey.generate()
    request = activation_request(owner, b"\x01" * 16, b"\x02" * 16)
    await first.control(KME_ACTIVATION_CONTROL_POINT, encode_control(request))
    await first.link.disconnect()

    second = await Central(radio, endpoint.address, seed=3).connect()
    await second.link.start_encryption(bond.ltk)  # no pairing again
    await second.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    await second.subscribe(KME_CONSENT_CONTROL_POINT, indicate=True)
    set_consent = encode_control(SetConsent(ConsentCategory.LOCATION, False, 1))
    refused = decode_as(await second.control(KME_CONSENT_CONTROL_POINT, set_consent), ConsentResult)
    assert refused.status == ControlStatus.NOT_OWNER
    challenge = decode_as(
        await second.control(KME_ACTIVATION_CONTROL_POINT, encode_control(RequestOwnerChallenge())),
        OwnerChallenge,
    )
    assert challenge.nonce is not None
    wrong = prove_ownership(
        Ed25519PrivateKey.generate(), endpoint.band.identity.public_key_bytes, challenge.nonce
    )
    bad = decode_as(
        await second.control(KME_ACTIVATION_CONTROL_POINT, encode_control(wrong)),
        ControlResult,
    )
    assert bad.status == ControlStatus.AUTH_FAILED
    challenge = decode_as(
        await second.control(KME_ACTIVATION_CONTROL_POINT, encode_control(RequestOwnerChallenge())),
        OwnerChallenge,
    )
    assert challenge.nonce is not None
    proof = prove_ownership(owner, endpoint.band.identity.public_key_bytes, challenge.nonce)
    ok = decode_as(
        await second.control(KME_ACTIVATION_CONTROL_POINT, encode_control(proof)),
        ControlResult,
    )
    assert ok.status == ControlStatus.OK
    accepted = decode_as(
        await second.control(KME_CONSENT_CONTROL_POINT, set_consent), ConsentResult
    )
    assert accepted.status == ControlStatus.OK


async def test_wrong_passkey_fails_and_repeated_failures_are_rate_limited() -> None:
    _, radio, endpoint = await _setup()
    central = await Central(radio, endpoint.address, seed=4).connect()
    with pytest.raises(AssertionError, match="CONFIRM_VALUE_FAILED"):
        await central.pair(lambda: (int(endpoint.display or "0") + 1) % 1_000_000)
    with pytest.raises(AssertionError, match="REPEATED_ATTEMPTS"):
        await central.pair(lambda: endpoint.display)


@pytest.mark.parametrize("fidelity", ["signal", "summary"])
async def test_live_heart_rate_streams_each_second_like_a_band(fidelity: str) -> None:
    _, radio, endpoint = await _setup(hours=0)
    clock = endpoint.band.clock
    band = SimulatedBand(BandConfig(seed=9, fidelity=fidelity), clock)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    band.simulate_until(clock.now() + 600)
    await clock.advance(17.3)  # subscribe at an arbitrary moment, not on a block edge
    endpoint.start()
    try:
        central = await Central(radio, endpoint.address, seed=5).connect()
        await central.pair(lambda: endpoint.display)
        await central.subscribe(HEART_RATE_MEASUREMENT)
        subscribed_at = clock.now()
        handle = central.handle(HEART_RATE_MEASUREMENT)
        arrivals: list[tuple[float, bytes]] = []
        for _ in range(60):
            await clock.advance(1.0)
            arrivals += [(clock.now(), v) for h, v in central.notifications if h == handle]
            central.notifications.clear()
    finally:
        await endpoint.stop()
    assert arrivals[0][0] - subscribed_at <= 2.0
    assert 58 <= len(arrivals) <= 61  # about one a second
    values = [decode_heart_rate_measurement(v) for _t, v in arrivals]
    assert all(v.sensor_contact is SensorContact.DETECTED for v in values)
    assert sum(1 for v in values if v.rr_intervals) >= 0.95 * len(values)
    assert len({v for _t, v in arrivals}) >= 20
    assert any(v.energy_expended_kj is not None for v in values)
    # beat-to-beat intervals agree with the displayed rate
    rr_s = [r / 1024 for v in values for r in v.rr_intervals]
    mean_bpm = sum(v.bpm for v in values) / len(values)
    assert abs(60 / (sum(rr_s) / len(rr_s)) - mean_bpm) < 5


async def test_live_heart_rate_fits_the_smallest_mtu() -> None:
    _, radio, endpoint = await _setup(hours=0)
    clock = endpoint.band.clock
    band = SimulatedBand(BandConfig(seed=9, fidelity="summary"), clock)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    central = await Central(radio, endpoint.address, seed=5, mtu=23).connect()
    await central.pair(lambda: endpoint.display)
    await central.subscribe(HEART_RATE_MEASUREMENT)
    await clock.advance(1.0)
    endpoint.push_live_values()
    handle = central.handle(HEART_RATE_MEASUREMENT)
    values = [v for h, v in central.notifications if h == handle]
    assert values and all(len(v) <= 20 for v in values)


async def test_a_dead_battery_drops_the_link_and_keeps_the_flash() -> None:
    from device_sim.band.battery import BatteryLoad
    from device_sim.radio import DisconnectReason

    clock, radio, endpoint = await _setup(hours=1)
    band = endpoint.band
    central = await Central(radio, endpoint.address, seed=6).connect()
    stored = band.flash.count(StreamId.ACTIVITY_MINUTES)
    endpoint.kill_battery()
    assert central.disconnects == [DisconnectReason.REMOTE_POWER_OFF]
    assert await radio.scan() == []
    band.simulate_until(clock.now() + 3 * 3600)
    assert band.flash.count(StreamId.ACTIVITY_MINUTES) == stored  # nothing new, nothing lost
    band.battery.advance(2 * 3600, BatteryLoad(acc_hz=0, ppg_duty=0, on_charger=True))
    assert band.battery.is_on
    assert [r.address for r in await radio.scan()] == [endpoint.address]


async def test_personal_data_is_the_owners_once_the_band_is_activated() -> None:
    _, radio, endpoint = await _setup(seed=12)
    first = await Central(radio, endpoint.address, seed=7).connect()
    bond = await first.pair(lambda: endpoint.display)
    await first.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    owner = Ed25519PrivateKey.generate()
    request = activation_request(owner, b"\x01" * 16, b"\x02" * 16)
    await first.control(KME_ACTIVATION_CONTROL_POINT, encode_control(request))
    assert decode_age(await first.read(AGE)) > 0  # the owner's connection
    await first.link.disconnect()

    other = await Central(radio, endpoint.address, seed=8).connect()
    await other.link.start_encryption(bond.ltk)  # bonded and encrypted, but not the owner
    for personal in (
        AGE,
        WEIGHT,
        KME_CONSENT_STATE,
        KME_ALARM_LIST,
    ):
        with pytest.raises(GattProcedureError) as info:
            await other.read(personal)
        assert info.value.error_code == AttErrorCode.INSUFFICIENT_AUTHORIZATION
    with pytest.raises(GattProcedureError):
        await other.write(HEIGHT, encode_height(150))
    assert decode_utf8s(await other.read(MANUFACTURER_NAME)) == "KME Smart"
    await other.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    challenge = decode_as(
        await other.control(KME_ACTIVATION_CONTROL_POINT, encode_control(RequestOwnerChallenge())),
        OwnerChallenge,
    )
    assert challenge.nonce is not None
    proof = prove_ownership(owner, endpoint.band.identity.public_key_bytes, challenge.nonce)
    await other.control(KME_ACTIVATION_CONTROL_POINT, encode_control(proof))
    assert decode_age(await other.read(AGE)) > 0


async def test_a_damaged_bond_file_is_reported_not_loaded(tmp_path: Path) -> None:
    clock = ManualClock()
    config = BandConfig(seed=13, fidelity="summary", state_dir=tmp_path / "band")
    band = SimulatedBand(config, clock)
    radio = Radio(clock, seed=13)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    central = await Central(radio, endpoint.address, seed=9).connect()
    await central.pair(lambda: endpoint.display)
    bonds = tmp_path / "band" / "bonds.bin"
    assert stat.S_IMODE(bonds.stat().st_mode) == 0o600
    assert len(OwnerStore(tmp_path / "band").bonds) == 1  # reloads what it wrote
    data = bytearray(bonds.read_bytes())
    data[-1] ^= 0xFF
    bonds.write_bytes(bytes(data))
    with pytest.raises(StateFileCorruptError, match="checksum"):
        OwnerStore(tmp_path / "band")
    band.close()


async def test_the_same_seed_gives_the_same_pairing_keys_on_the_band() -> None:
    class BandSmp:
        """Keeps the SMP PDUs the band sends."""

        def __init__(self) -> None:
            self.pdus: list[bytes] = []

        def connected(self, *args: object) -> None: ...

        def encrypted(self, *args: object) -> None: ...

        def disconnected(self, *args: object) -> None: ...

        def frame(self, t: float, handle: int, from_central: bool, cid: int, data: bytes) -> None:
            if cid == 0x0006 and not from_central:
                self.pdus.append(data)

    async def band_public_key_pdu() -> bytes:
        clock = ManualClock()
        band = SimulatedBand(BandConfig(seed=14, fidelity="summary"), clock)
        capture = BandSmp()
        radio = Radio(clock, seed=14, capture=capture)
        endpoint = BandGattEndpoint(band)
        radio.attach(endpoint)
        central = await Central(radio, endpoint.address, seed=10).connect()
        await central.pair(lambda: endpoint.display)
        return next(p for p in capture.pdus if p[0] == 0x0C)  # Pairing Public Key

    assert await band_public_key_pdu() == await band_public_key_pdu()


async def _paired_owner(
    radio: Radio, endpoint: BandGattEndpoint, seed: int
) -> tuple[Central, Bond]:
    """A central that paired and activated the band (it is the owner's connection)."""
    central = await Central(radio, endpoint.address, seed=seed).connect()
    bond = await central.pair(lambda: endpoint.display)
    await central.subscribe(KME_ACTIVATION_CONTROL_POINT, indicate=True)
    owner = Ed25519PrivateKey.generate()
    request = activation_request(owner, b"\x01" * 16, b"\x02" * 16)
    result = decode_as(
        await central.control(KME_ACTIVATION_CONTROL_POINT, encode_control(request)),
        ActivationResult,
    )
    assert result.status == ControlStatus.OK
    return central, bond


async def test_factory_reset_over_gatt_erases_the_band_and_drops_the_link() -> None:
    _, radio, endpoint = await _setup(seed=21)
    band = endpoint.band
    first, _ = await _paired_owner(radio, endpoint, seed=1)
    await first.write(HEIGHT, encode_height(193))
    await first.subscribe(KME_DEVICE_CONTROL_POINT, indicate=True)
    assert band.flash.count(StreamId.ACTIVITY_MINUTES) > 0
    answer = decode_as(
        await first.control(KME_DEVICE_CONTROL_POINT, encode_control(FactoryReset())),
        ControlResult,
    )
    assert (answer.request_type, answer.status) == (0x43, ControlStatus.OK)
    for _ in range(100):
        if first.disconnects:
            break
        await asyncio.sleep(0)
    assert first.disconnects and not first.link.connected
    assert not endpoint.activated and band.owner.bonds == {}
    assert all(band.flash.count(s) == 0 for s in StreamId) and len(band.consent) == 0
    assert band.profile.profile.height_cm != 193

    # the next user pairs again (the old bond is gone) and activates with a new owner key
    second, _ = await _paired_owner(radio, endpoint, seed=2)
    assert decode_height(await second.read(HEIGHT)) != 193


async def test_a_paired_non_owner_can_neither_read_nor_change_the_alarms() -> None:
    _, radio, endpoint = await _setup(seed=22)
    first, bond = await _paired_owner(radio, endpoint, seed=3)
    await first.subscribe(KME_ALARM_CONTROL_POINT, indicate=True)
    alarm = Alarm(1, 7, 30, 0x1F, 0, True)
    ok = decode_as(
        await first.control(KME_ALARM_CONTROL_POINT, encode_control(SetAlarm(alarm))),
        ControlResult,
    )
    assert ok.status == ControlStatus.OK
    await first.link.disconnect()

    other = await Central(radio, endpoint.address, seed=4).connect()
    await other.link.start_encryption(bond.ltk)  # paired and encrypted, never proved ownership
    await other.subscribe(KME_ALARM_CONTROL_POINT, indicate=True)
    requests = (ListAlarms(), SetAlarm(Alarm(2, 3, 0, 0, 0, True)), DeleteAlarm(1))
    for request in requests:
        answer = decode_as(
            await other.control(KME_ALARM_CONTROL_POINT, encode_control(request)),
            ControlResult,
        )
        assert (answer.request_type, answer.status) == (
            request.MESSAGE_TYPE,
            ControlStatus.NOT_OWNER,
        )
    assert [(a.id, a.hour) for a in endpoint.band.firmware.alarms] == [(1, 7)]
    # an undecodable request is the only one answered with request type 0
    garbage = decode_as(await other.control(KME_ALARM_CONTROL_POINT, b"\xff\x00"), ControlResult)
    assert (garbage.request_type, garbage.status) == (0, ControlStatus.INVALID_REQUEST)
    # a well-formed request on the wrong control point: unsupported, with its own type
    wrong = decode_as(
        await other.control(KME_ALARM_CONTROL_POINT, encode_control(Reboot())),
        ControlResult,
    )
    assert (wrong.request_type, wrong.status) == (0x41, ControlStatus.UNSUPPORTED)


async def test_the_band_shows_its_factory_certificate_to_a_paired_phone() -> None:
    _, radio, endpoint = await _setup(seed=23, hours=0)
    central = await Central(radio, endpoint.address, seed=5).connect()
    with pytest.raises(GattProcedureError) as info:
        await central.read(KME_BAND_CERTIFICATE)  # protected, like Band Identity
    assert info.value.error_code == AttErrorCode.INSUFFICIENT_ENCRYPTION
    await central.pair(lambda: endpoint.display)
    identity = endpoint.band.identity
    certificate = verify_certificate(
        await central.read(KME_BAND_CERTIFICATE),
        SIMULATED_FACTORY_ROOT,
        identity.public_key_bytes,
    )
    assert certificate.band_id == band_id_from_serial(identity.serial)


async def test_heart_rate_control_point_resets_energy_expended() -> None:
    _, radio, endpoint = await _setup(hours=0)
    clock = endpoint.band.clock
    central = await Central(radio, endpoint.address, seed=5).connect()
    await central.pair(lambda: endpoint.display)
    await central.subscribe(HEART_RATE_MEASUREMENT)
    handle = central.handle(HEART_RATE_MEASUREMENT)

    async def energies(seconds: int) -> list[int]:
        central.notifications.clear()
        for _ in range(seconds):
            await clock.advance(1.0)
            endpoint.push_live_values()
        values = [decode_heart_rate_measurement(v) for h, v in central.notifications if h == handle]
        return [v.energy_expended_kj for v in values if v.energy_expended_kj is not None]

    before = await energies(100)
    assert before == sorted(before) and before[-1] > 0
    await central.write(HEART_RATE_CONTROL_POINT, b"\x01")
    after = await energies(10)
    assert after and after[0] < before[-1]


async def test_live_heart_rate_is_measured_only_while_someone_listens() -> None:
    _, radio, endpoint = await _setup(hours=0)
    clock = endpoint.band.clock
    central = await Central(radio, endpoint.address, seed=5).connect()
    await central.pair(lambda: endpoint.display)
    measured: list[float] = []
    original = endpoint.live_hr.measurement
    endpoint.live_hr.measurement = lambda t: measured.append(t) or original(t)  # type: ignore[method-assign]
    await clock.advance(1.0)
    endpoint.push_live_values()
    assert measured == []  # connected but not subscribed: no work per second
    await central.subscribe(HEART_RATE_MEASUREMENT)
    await clock.advance(1.0)
    endpoint.push_live_values()
    assert len(measured) == 1
