"""Current Time Service: the band's wall clock (with its own drift) and time zone."""

from __future__ import annotations

import datetime as dt

from device_sim.band.services.connection import BandConnection, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.ble.att import AttErrorCode
from protocol.ble.gatt import GattRejection
from protocol.ble.sig_codecs import (
    CurrentTime,
    LocalTimeInformation,
    SigCodecError,
    decode_current_time,
    decode_local_time_information,
    encode_current_time,
    encode_local_time_information,
)
from protocol.kme.profile import CURRENT_TIME, LOCAL_TIME_INFORMATION


class TimeService:
    """Reads show the band's clock; writes set its drift and its time zone."""

    def __init__(self, band: SimulatedBand) -> None:
        self.band = band

    def handlers(self) -> Service:
        return Service(
            reads={
                CURRENT_TIME: lambda c: self._current_time(),
                LOCAL_TIME_INFORMATION: lambda c: encode_local_time_information(
                    LocalTimeInformation.from_offsets(self.band.firmware.tz_offset_min, 0)
                ),
            },
            writes={
                CURRENT_TIME: self._write_current_time,
                LOCAL_TIME_INFORMATION: self._write_local_time,
            },
        )

    def _current_time(self) -> bytes:
        band = self.band
        tz = dt.timezone(dt.timedelta(minutes=band.firmware.tz_offset_min))
        now = band.clock.now() + band.clock_offset_s
        local = dt.datetime.fromtimestamp(now, dt.UTC).astimezone(tz)
        return encode_current_time(CurrentTime.from_datetime(local.replace(tzinfo=None)))

    def _write_current_time(self, conn: BandConnection, value: bytes) -> None:
        try:
            ct = decode_current_time(value)
        except SigCodecError:
            raise GattRejection(AttErrorCode.VALUE_NOT_ALLOWED, "bad current time") from None
        tz = dt.timezone(dt.timedelta(minutes=self.band.firmware.tz_offset_min))
        when = ct.to_datetime().replace(tzinfo=tz).timestamp()
        self.band.clock_offset_s = when - self.band.clock.now()

    def _write_local_time(self, conn: BandConnection, value: bytes) -> None:
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
