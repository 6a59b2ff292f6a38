"""Synthetic sensor signals for the firmware tests: known truth, simple shapes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from device_sim.signals import SensorBlock

F64 = npt.NDArray[np.float64]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a Thursday


def gait_acc(
    n: int,
    fs: int,
    cadence_hz: F64 | float,
    walking: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    impact_g: float = 0.4,
) -> F64:
    """Wrist acceleration: gravity, a heel-strike impact per step, arm swing, noise."""
    cadence = np.broadcast_to(np.asarray(cadence_hz, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(np.where(walking, cadence, 0.0)) / fs
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0
    acc[:, 2] += walking * impact_g * np.maximum(np.sin(phase), 0) ** 6
    acc[:, 0] += walking * 0.3 * np.sin(phase / 2)
    acc[:, 1] += walking * 0.1 * np.cos(phase / 2)
    acc += rng.normal(0, 0.01, acc.shape)
    return acc


def desk_acc(n: int, fs: int, rng: np.random.Generator, gestures_per_min: float = 6) -> F64:
    """Typing and reaching: noise plus isolated, irregular wrist movements."""
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0
    acc += rng.normal(0, 0.015, acc.shape)
    n_gestures = int(gestures_per_min * n / fs / 60)
    for start in rng.integers(0, max(1, n - 2 * fs), n_gestures):
        length = int(rng.integers(fs // 2, 2 * fs))
        shape = np.hanning(length) * rng.uniform(0.1, 0.5)
        axis = int(rng.integers(0, 3))
        acc[start : start + length, axis] += shape[: len(acc) - start]
    return acc


def ppg_signal(
    hr_bpm: F64, fs: int, rng: np.random.Generator, noise: float = 0.3, pulse: float = 1.0
) -> F64:
    """Pulse wave (fundamental + harmonic) at the given rate, respiration, noise."""
    n = len(hr_bpm)
    phase = 2 * np.pi * np.cumsum(hr_bpm / 60.0) / fs
    t = np.arange(n) / fs
    wave = pulse * (np.sin(phase) + 0.4 * np.sin(2 * phase + 0.5))
    return wave + 0.5 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0, noise, n)


def notched_ppg(
    hr_bpm: F64,
    fs: int,
    rng: np.random.Generator,
    shares: tuple[float, ...] = (0.15, 0.45, 0.3, 0.1),
    noise: float = 0.1,
) -> F64:
    """A pulse whose dicrotic notch puts most of its power in the harmonics: ``shares`` of
    the pulse's power at the fundamental, 2nd, 3rd... (real wrist PPG: fundamental
    0.14-0.27), with respiration and noise; ``hr_bpm`` per sample."""
    n = len(hr_bpm)
    phase = 2 * np.pi * np.cumsum(hr_bpm / 60.0) / fs
    t = np.arange(n) / fs
    wave = sum(
        np.sqrt(2 * share) * np.sin(k * phase + 0.7 * k) for k, share in enumerate(shares, 1)
    )
    return np.asarray(wave + 0.5 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0, noise, n))


def blocks(
    acc: F64,
    ppg: F64,
    fs: int,
    t0: int = T0,
    block_s: int = 60,
    tz_offset_min: int = 0,
    gnss: F64 | None = None,
) -> list[SensorBlock]:
    """Cut whole-span arrays into sensor blocks."""
    seconds = len(ppg) // fs
    out = []
    for s in range(0, seconds, block_s):
        d = min(block_s, seconds - s)
        sl = slice(s * fs, (s + d) * fs)
        fixes = None
        if gnss is not None:
            sel = (gnss[:, 0] >= t0 + s) & (gnss[:, 0] < t0 + s + d)
            fixes = gnss[sel] if sel.any() else None
        out.append(
            SensorBlock(
                t0=float(t0 + s),
                duration_s=float(d),
                tz_offset_min=tz_offset_min,
                acc_hz=float(fs),
                acc=acc[sl].astype(np.float32),
                ppg_hz=float(fs),
                ppg=ppg[sl].astype(np.float32),
                skin_temp_c=np.full(d, 33.0, np.float32),
                battery_v=3.9,
                gnss=fixes,
            )
        )
    return out


class ListSink:
    """A record sink that keeps everything in a list, numbering each stream from 0."""

    def __init__(self) -> None:
        self.records: list[tuple[object, object]] = []
        self._next: dict[object, int] = {}

    def append(self, stream: object, record: object) -> int:
        seq = self._next.get(stream, 0)
        self._next[stream] = seq + 1
        self.records.append((stream, record))
        return seq

    def of(self, stream: object) -> list:
        return [r for s, r in self.records if s == stream]
