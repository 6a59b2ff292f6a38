"""Small signal-processing building blocks the band's estimators share.

The firmware does not depend on scipy: a band's MCU would run fixed FIR filters, so we
design windowed-sinc FIR filters with numpy and run them block by block with
``np.convolve``, carrying the last ``ntaps - 1`` input samples between blocks so that a
signal split into blocks filters exactly as the whole signal would.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from protocol.errors import UsageError

F64 = npt.NDArray[np.float64]


class FirmwareInputError(UsageError):
    """A sensor block the firmware cannot use (wrong rate, shape, or a time gap backwards)."""


def bandpass_fir(fs: float, low_hz: float, high_hz: float, ntaps: int) -> F64:
    """Linear-phase band-pass taps (Hamming-windowed sinc), unit gain at the band centre."""
    if ntaps % 2 == 0:
        ntaps += 1
    if not 0 < low_hz < high_hz < fs / 2:
        raise FirmwareInputError(
            f"band-pass edges must satisfy 0 < low < high < fs/2; got {low_hz}, {high_hz} at "
            f"{fs} Hz: use a higher sample rate or a narrower band"
        )
    n = np.arange(ntaps) - (ntaps - 1) / 2
    window = np.hamming(ntaps)

    def lowpass(fc: float) -> F64:
        return np.asarray(2 * fc / fs * np.sinc(2 * fc / fs * n) * window, dtype=np.float64)

    taps = lowpass(high_hz) - lowpass(low_hz)
    centre = (low_hz + high_hz) / 2
    gain = abs(np.sum(taps * np.exp(-2j * np.pi * centre / fs * np.arange(ntaps))))
    return np.asarray(taps / gain, dtype=np.float64)


class StreamingFir:
    """A causal FIR filter applied block by block with its history carried over.

    The output has the same length as each input block and a group delay of
    ``delay`` samples, exactly as filtering the concatenated signal would give.
    """

    def __init__(self, taps: F64) -> None:
        self.taps = taps
        self.delay = (len(taps) - 1) // 2
        self._history = np.zeros(len(taps) - 1)
        self._primed = False

    def reset(self) -> None:
        """Forget the history (after a gap in the signal)."""
        self._primed = False

    def apply(self, x: F64) -> F64:
        if not self._primed and len(x):
            # start as if the first value had always been there: no switch-on transient
            self._history[:] = x[0]
            self._primed = True
        joined = np.concatenate((self._history, x))
        out = np.convolve(joined, self.taps, mode="valid")
        keep = len(self.taps) - 1
        self._history = joined[len(joined) - keep :] if keep else joined[:0]
        return out
