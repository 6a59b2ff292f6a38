"""The band's firmware: estimators that see only sensor signals, and the orchestrator.

- :class:`Firmware` (core): SensorBlock in, consent-gated records out to a RecordSink.
- :class:`StepCounter`, :class:`HeartRateEstimator`, :class:`SleepTracker`: the estimators.
- :class:`Alarm`, :class:`AlarmScheduler`: alarm settings and ringing decisions.
"""

from device_sim.band.firmware.activity import ActivityConfig
from device_sim.band.firmware.alarms import Alarm, AlarmError, AlarmScheduler, AlarmTimings
from device_sim.band.firmware.core import (
    ConsentGate,
    Firmware,
    FirmwareConfig,
    RecordSink,
    allow_all,
)
from device_sim.band.firmware.dsp import FirmwareInputError
from device_sim.band.firmware.heart_rate import HeartRateConfig, HeartRateEstimator
from device_sim.band.firmware.sleep import EpochFeatures, SleepConfig, SleepTracker
from device_sim.band.firmware.steps import StepCounter, StepCounterConfig

__all__ = [
    "ActivityConfig",
    "Alarm",
    "AlarmError",
    "AlarmScheduler",
    "AlarmTimings",
    "ConsentGate",
    "EpochFeatures",
    "Firmware",
    "FirmwareConfig",
    "FirmwareInputError",
    "HeartRateConfig",
    "HeartRateEstimator",
    "RecordSink",
    "SleepConfig",
    "SleepTracker",
    "StepCounter",
    "StepCounterConfig",
    "allow_all",
]
