"""What flows between the person model, the sensors (or a replayed trace) and the firmware.

The sensor layer produces :class:`SensorBlock` objects, a fixed span of raw signals at a
time (60 s by default), as numpy arrays: never one Python object per sample. The
firmware consumes them and never sees truth. :class:`TruthBlock` carries the person
model's ground truth for the same span, for QA comparisons only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int16]


@dataclass(frozen=True)
class SensorBlock:
    """Raw sensor signals over ``[t0, t0 + duration_s)``.

    - ``acc``: shape (n_acc, 3), acceleration in g (±8 g range, quantised to 12 bits),
      sampled at ``acc_hz`` starting at ``t0``.
    - ``ppg``: shape (n_ppg,), photoplethysmogram in arbitrary units (higher = more
      light absorbed), sampled at ``ppg_hz``. All zeros-with-noise when off the wrist.
    - ``skin_temp_c``: one value per second, degrees Celsius.
    - ``battery_v``: the cell voltage at the start of the block.
    - ``gnss``: None, or an array (n, 5) of [utc_s, lat_deg, lon_deg, alt_m, accuracy_m]
      fixes at 1 Hz, present only outdoors and only when location consent allows GNSS.
    """

    t0: float  # UTC seconds
    duration_s: float
    tz_offset_min: int
    acc_hz: float
    acc: FloatArray
    ppg_hz: float
    ppg: FloatArray
    skin_temp_c: FloatArray
    battery_v: float
    gnss: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True)
class TruthBlock:
    """Ground truth per second over the same span as a SensorBlock (for QA only).

    Arrays have one entry per second. ``activity`` holds ActivityClass values,
    ``sleep_stage`` SleepStage values (-1 when awake and not in bed), ``steps`` the
    true steps taken in each second, ``hr_bpm`` the true heart rate, ``worn`` 0/1,
    ``outdoors`` 0/1.
    """

    t0: float
    duration_s: float
    activity: npt.NDArray[np.int8]
    steps: npt.NDArray[np.float32]
    cadence_spm: npt.NDArray[np.float32]
    hr_bpm: npt.NDArray[np.float32]
    sleep_stage: npt.NDArray[np.int8]
    worn: npt.NDArray[np.bool_]
    outdoors: npt.NDArray[np.bool_]
