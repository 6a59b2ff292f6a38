"""The band's GATT services as firmware: handlers that do no I/O.

Each service (:mod:`.user_data`, :mod:`.time`, :mod:`.consent`, :mod:`.alarms`,
:mod:`.device_control`, :mod:`.activation`, :mod:`.record_sync`, and :mod:`.device` for
Device Information, Battery and Heart Rate) reads and changes the state of a
:class:`~device_sim.band.simulated_band.SimulatedBand` and nothing else. A handler takes a
typed :class:`~device_sim.band.services.connection.BandConnection` (what the firmware knows
of one central's connection) and answers with values or with
:mod:`~device_sim.band.services.connection` effects (answer on the control point, drop the
links, pump record-sync chunks); the radio endpoint
(:class:`device_sim.band.gatt_endpoint.BandGattEndpoint`) carries them out. Who may call
which handler is :mod:`protocol.kme.access`, enforced once by the endpoint.
"""

from device_sim.band.services.activation import ActivationService
from device_sim.band.services.alarms import AlarmService
from device_sim.band.services.connection import (
    AfterAnswer,
    Answer,
    AnswerBytes,
    BandConnection,
    DropLinks,
    Effect,
    PumpRecordSync,
    Service,
)
from device_sim.band.services.consent import ConsentService
from device_sim.band.services.device import DeviceService
from device_sim.band.services.device_control import DeviceControlService
from device_sim.band.services.record_sync import RecordSyncService
from device_sim.band.services.time import TimeService
from device_sim.band.services.user_data import UserDataService

__all__ = [
    "ActivationService",
    "AfterAnswer",
    "AlarmService",
    "Answer",
    "AnswerBytes",
    "BandConnection",
    "ConsentService",
    "DeviceControlService",
    "DeviceService",
    "DropLinks",
    "Effect",
    "PumpRecordSync",
    "RecordSyncService",
    "Service",
    "TimeService",
    "UserDataService",
]
