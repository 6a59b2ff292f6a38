"""KME Device Control: time zone, find-band, reboot and factory reset."""

from __future__ import annotations

from device_sim.band.services.connection import (
    AfterAnswer,
    Answer,
    BandConnection,
    DropLinks,
    Effect,
    Service,
)
from device_sim.band.simulated_band import SimulatedBand
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.device_control import FactoryReset, FindBand, Reboot, SetTimeZone
from protocol.kme.control.schema import ControlMessage
from protocol.kme.profile import KME_DEVICE_CONTROL_POINT


class DeviceControlService:
    """The Device Control Point's requests; each is answered before it takes effect."""

    def __init__(self, band: SimulatedBand) -> None:
        self.band = band

    def handlers(self) -> Service:
        return Service(requests={KME_DEVICE_CONTROL_POINT: self._request})

    def _request(self, conn: BandConnection, message: ControlMessage, raw: bytes) -> list[Effect]:
        ok = Answer(ControlResult(message.MESSAGE_TYPE, ControlStatus.OK))
        if isinstance(message, SetTimeZone):
            offset = message.utc_offset_min + message.dst_offset_min
            self.band.firmware.set_tz_offset(offset, self.band.clock.now())
            return [ok]
        if isinstance(message, FindBand):
            return [ok]
        if isinstance(message, Reboot):
            return [ok, DropLinks()]
        assert isinstance(message, FactoryReset)  # the access table lists these four only
        # reset once the client confirmed the answer: the reset drops every link
        return [ok, AfterAnswer(self.band.factory_reset)]
