"""Device Information, Battery and Heart Rate: what any paired phone may read.

The live heart-rate channel itself (:mod:`device_sim.band.live`) is notified by the radio
endpoint each second; here is its control point (Reset Energy Expended)."""

from __future__ import annotations

from device_sim.band.live import LiveHeartRate
from device_sim.band.services.connection import BandConnection, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.ble.gatt import GattRejection
from protocol.ble.sig_codecs import (
    HR_CONTROL_POINT_NOT_SUPPORTED,
    BodySensorLocation,
    PnpId,
    SigCodecError,
    VendorIdSource,
    decode_heart_rate_control_point,
    encode_appearance,
    encode_battery_level,
    encode_body_sensor_location,
    encode_pnp_id,
    encode_utf8s,
)
from protocol.kme.profile import (
    APPEARANCE,
    BAND_APPEARANCE,
    BATTERY_LEVEL,
    BODY_SENSOR_LOCATION,
    DEVICE_NAME,
    FIRMWARE_REVISION,
    HARDWARE_REVISION,
    HEART_RATE_CONTROL_POINT,
    MANUFACTURER_NAME,
    MODEL_NUMBER,
    PNP_ID,
    SERIAL_NUMBER,
    SOFTWARE_REVISION,
)

#: Company identifier used in the manufacturer data (0xFFFF: reserved for testing).
COMPANY_ID = 0xFFFF


class DeviceService:
    """Static identity values, the battery level and the Heart Rate Control Point."""

    def __init__(self, band: SimulatedBand, live_hr: LiveHeartRate) -> None:
        self.band = band
        self.live_hr = live_hr

    def handlers(self) -> Service:
        band = self.band
        ident = band.identity
        return Service(
            static={
                DEVICE_NAME: encode_utf8s(band.config.name),
                APPEARANCE: encode_appearance(BAND_APPEARANCE),
                MANUFACTURER_NAME: encode_utf8s("KME Smart"),
                MODEL_NUMBER: encode_utf8s(ident.model),
                SERIAL_NUMBER: encode_utf8s(ident.serial),
                HARDWARE_REVISION: encode_utf8s(ident.hardware_revision),
                FIRMWARE_REVISION: encode_utf8s(ident.firmware_revision),
                SOFTWARE_REVISION: encode_utf8s(ident.software_revision),
                PNP_ID: encode_pnp_id(
                    PnpId(VendorIdSource.BLUETOOTH_SIG, COMPANY_ID, 0x0007, 0x0100)
                ),
                BODY_SENSOR_LOCATION: encode_body_sensor_location(BodySensorLocation.WRIST),
            },
            reads={BATTERY_LEVEL: lambda c: encode_battery_level(band.battery.percent)},
            writes={HEART_RATE_CONTROL_POINT: self._write_hr_control},
        )

    def _write_hr_control(self, conn: BandConnection, value: bytes) -> None:
        try:
            decode_heart_rate_control_point(value)
        except SigCodecError:
            raise GattRejection(HR_CONTROL_POINT_NOT_SUPPORTED, "unknown op") from None
        self.live_hr.reset_energy_expended()  # the one op code: Reset Energy Expended


__all__ = ["COMPANY_ID", "DeviceService"]
