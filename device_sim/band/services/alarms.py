"""KME Alarms: list, set and delete the firmware's alarms."""

from __future__ import annotations

from device_sim.band.firmware.alarms import Alarm as FirmwareAlarm
from device_sim.band.services.connection import Answer, BandConnection, Effect, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.kme.control.alarms import (
    MAX_ALARMS,
    Alarm,
    AlarmList,
    DeleteAlarm,
    ListAlarms,
    SetAlarm,
)
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.schema import ControlMessage, encode_control
from protocol.kme.profile import KME_ALARM_CONTROL_POINT, KME_ALARM_LIST


class AlarmService:
    """The Alarm List read and the Alarm Control Point's requests."""

    def __init__(self, band: SimulatedBand) -> None:
        self.band = band

    def handlers(self) -> Service:
        return Service(
            reads={KME_ALARM_LIST: lambda c: encode_control(self._list())},
            requests={KME_ALARM_CONTROL_POINT: self._request},
        )

    def _list(self) -> AlarmList:
        return AlarmList(
            tuple(
                Alarm(a.id, a.hour, a.minute, a.weekdays, a.smart_window_min, a.enabled)
                for a in self.band.firmware.alarms
                if a.id < MAX_ALARMS
            )
        )

    def _request(self, conn: BandConnection, message: ControlMessage, raw: bytes) -> list[Effect]:
        firmware = self.band.firmware
        if isinstance(message, ListAlarms):
            return [Answer(self._list())]
        if isinstance(message, SetAlarm):
            a = message.alarm
            firmware.set_alarm(
                FirmwareAlarm(
                    a.alarm_id, a.hour, a.minute, a.weekdays, a.smart_window_min, a.enabled
                ),
                self.band.clock.now(),
            )
            return [Answer(ControlResult(message.MESSAGE_TYPE, ControlStatus.OK))]
        assert isinstance(message, DeleteAlarm)  # the access table lists these three only
        known = any(a.id == message.alarm_id for a in firmware.alarms)
        if known:
            firmware.remove_alarm(message.alarm_id)
        status = ControlStatus.OK if known else ControlStatus.NOT_FOUND
        return [Answer(ControlResult(message.MESSAGE_TYPE, status))]
