"""The band's services as firmware: called directly, without a radio, they change only the band."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.services import (
    ActivationService,
    AfterAnswer,
    AlarmService,
    Answer,
    BandConnection,
    DeviceControlService,
    UserDataService,
)
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import ManualClock
from protocol.ble.sig_codecs import decode_height, encode_height
from protocol.kme.control.activation import ActivationResult
from protocol.kme.control.alarms import Alarm, AlarmList, ListAlarms, SetAlarm
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.device_control import FactoryReset
from protocol.kme.control.schema import encode_control
from protocol.kme.ownership import activation_request
from protocol.kme.profile import (
    HEIGHT,
    KME_ACTIVATION_CONTROL_POINT,
    KME_ALARM_CONTROL_POINT,
    KME_DEVICE_CONTROL_POINT,
)


def _band(tmp_path: Path | None = None) -> SimulatedBand:
    state = None if tmp_path is None else tmp_path / "band"
    return SimulatedBand(BandConfig(seed=31, fidelity="summary", state_dir=state), ManualClock())


def test_handlers_take_a_connection_and_return_effects_without_a_radio() -> None:
    band = _band()
    conn = BandConnection(handle=1)
    activation = ActivationService(band, lambda n: b"\x00" * n).handlers()
    request = activation_request(Ed25519PrivateKey.generate(), b"\x01" * 16, b"\x02" * 16)
    handle = activation.requests[KME_ACTIVATION_CONTROL_POINT]
    [answer] = handle(conn, request, encode_control(request))
    assert isinstance(answer, Answer) and isinstance(answer.message, ActivationResult)
    assert answer.message.status is ControlStatus.OK and conn.owner and band.activated

    alarms = AlarmService(band).handlers().requests[KME_ALARM_CONTROL_POINT]
    set_alarm = SetAlarm(Alarm(2, 6, 30, 0x1F, 10, True))
    assert alarms(conn, set_alarm, b"") == [Answer(ControlResult(0x32, ControlStatus.OK))]
    [listed] = alarms(conn, ListAlarms(), b"")
    assert isinstance(listed, Answer) and listed.message == AlarmList((set_alarm.alarm,))

    user = UserDataService(band).handlers()
    user.writes[HEIGHT](conn, encode_height(172))
    assert decode_height(user.reads[HEIGHT](conn)) == 172 == band.profile.profile.height_cm

    # a factory reset is answered first and done after the answer: the effect says so
    device = DeviceControlService(band).handlers().requests[KME_DEVICE_CONTROL_POINT]
    ok, after = device(conn, FactoryReset(), b"")
    assert ok == Answer(ControlResult(0x43, ControlStatus.OK))
    assert isinstance(after, AfterAnswer) and band.activated
    after.action()
    assert not band.activated and band.firmware.alarms == []


def test_the_band_state_is_the_bands_not_the_radio_endpoints(tmp_path: Path) -> None:
    band = _band(tmp_path)
    first = BandGattEndpoint(band)
    band.owner.activate(b"\x03" * 32, b"\x04" * 16)
    band.clock_offset_s = 12.0
    # a second radio endpoint over the same band sees the same owner and clock
    second = BandGattEndpoint(band)
    assert first.activated and second.activated
    assert not hasattr(second, "_owner_key") and not hasattr(second, "_bonds")
    assert not hasattr(second, "clock_offset_s")
    band.factory_reset()
    assert not first.activated and not second.activated
    band.close()
