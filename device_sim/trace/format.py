"""QA traces: a band's raw sensor blocks (and optionally truth) in a checksummed file.

:class:`TraceWriter` records :class:`~device_sim.signals.SensorBlock` objects (with their
:class:`~device_sim.signals.TruthBlock` when the trace has truth); :class:`TraceReader`
yields them back in order, one frame at a time, never loading the whole file. The same
blocks always give a byte-identical file. The format is specified in docs/traces.md:

- header: ``b"KMETRACE"``, u16 format version, u32 metadata length, canonical CBOR
  metadata (:class:`TraceMetadata`), u32 CRC-32 of everything before it;
- frames: ``u8 kind | u32 body length | body | u32 CRC-32 of kind, length and body``,
  kind 1 a sensor block, kind 2 the truth for the sensor block just before it, kind 255
  the end marker (the block counts), without which the file is truncated.

Replaying "at any speed" is the caller's business (a Clock); the reader only yields
blocks in order. CSV import for external recordings lives in :mod:`device_sim.trace.csv_import`.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

import cbor2
import numpy as np
import numpy.typing as npt

from device_sim.signals import SensorBlock, TruthBlock
from protocol.errors import UsageError

MAGIC = b"KMETRACE"
FORMAT_VERSION = 1
UNITS: dict[str, str] = {
    "acc": "g",
    "ppg": "au",
    "skin_temp": "degC",
    "battery": "V",
    "gnss": "utc_s,deg,deg,m,m",
}
#: Channel names a trace may flag as absent (filled with placeholder values).
CHANNELS = ("acc", "ppg", "skin_temp", "battery", "gnss")

KIND_SENSOR = 1
KIND_TRUTH = 2
KIND_END = 255

_HEAD = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
_FRAME = struct.Struct("<BI")
_SENSOR = struct.Struct("<ddhdddIIIBI")  # t0, dur, tz, acc_hz, ppg_hz, batt_v, n_acc..n_gnss
_TRUTH = struct.Struct("<ddI")  # t0, duration, n seconds
_END = struct.Struct("<QQ")  # sensor frames, truth frames
_MAX_FRAME = 256 * 1024 * 1024
_MAX_RATE_HZ = 1000.0
_TIME_SLACK_S = 1e-6


# --------------------------------------------------------------------------- errors


class TraceError(UsageError):
    """A trace file or a block to record is unusable; the message says what is wrong."""


class TraceFormatError(TraceError):
    """The file is not a valid trace (wrong magic, bad checksum, malformed frame)."""


class TraceTruncatedError(TraceFormatError):
    """The file ends early: a partial frame or no end marker (the writer never closed)."""


class TraceVersionError(TraceFormatError):
    """The trace was written in a format version this code cannot read."""


class TraceRateError(TraceError):
    """A sample rate is missing, not a positive finite number, or disagrees with the header."""


class TraceValueError(TraceError):
    """Sample values are unusable: NaN or infinite, or arrays of the wrong shape."""


class TraceTimestampError(TraceError):
    """Blocks or samples go back in time or overlap."""


# --------------------------------------------------------------------------- metadata


def check_rate(name: str, hz: object) -> float:
    """``hz`` as a float if it is a usable sample rate, else TraceRateError."""
    if isinstance(hz, bool) or not isinstance(hz, int | float):
        raise TraceRateError(f"the {name} sample rate is missing or not a number")
    if not (math.isfinite(hz) and 0 < hz <= _MAX_RATE_HZ):
        raise TraceRateError(
            f"the {name} sample rate must be a number of Hz above 0 and at most "
            f"{_MAX_RATE_HZ:g}, got {hz!r}"
        )
    return float(hz)


@dataclass(frozen=True)
class TraceMetadata:
    """What a trace holds: rates, start, time zone, provenance and absent channels.

    Units are fixed (:data:`UNITS`) and written into the header for readers of the file.
    ``absent_channels`` lists channels the source did not have; their samples are
    placeholders (see docs/traces.md) that the firmware must not be judged on.
    """

    acc_hz: float
    ppg_hz: float
    start_utc: float  # UTC seconds; no block starts before it
    tz_offset_min: int = 0
    has_truth: bool = False
    seed: int | None = None
    scenario: str | None = None
    source: str = "simulated"  # or "csv", or a recorder's name
    absent_channels: tuple[str, ...] = field(default=())
    #: For an imported recording, the import report (what was detected, resampled, left
    #: out); written as the optional ``import`` key, so simulated traces are unchanged.
    provenance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "acc_hz", check_rate("accelerometer", self.acc_hz))
        object.__setattr__(self, "ppg_hz", check_rate("PPG", self.ppg_hz))
        if isinstance(self.start_utc, bool) or not isinstance(self.start_utc, int | float):
            raise TraceTimestampError("the trace start time must be UTC seconds (a number)")
        if not math.isfinite(self.start_utc) or self.start_utc < 0:
            raise TraceTimestampError("the trace start time must be finite UTC seconds >= 0")
        object.__setattr__(self, "start_utc", float(self.start_utc))
        if not isinstance(self.tz_offset_min, int) or not -1080 <= self.tz_offset_min <= 1080:
            raise TraceError("tz_offset_min must be whole minutes between -1080 and 1080")
        unknown = sorted(set(self.absent_channels) - set(CHANNELS))
        if unknown:
            raise TraceError(
                f"unknown absent channel(s) {unknown}; known channels are {list(CHANNELS)}"
            )
        object.__setattr__(self, "absent_channels", tuple(sorted(set(self.absent_channels))))
        if self.provenance is not None and not isinstance(self.provenance, dict):
            raise TraceError("the import report (provenance) must be a map")

    def to_cbor(self) -> bytes:
        fields: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "acc_hz": self.acc_hz,
            "ppg_hz": self.ppg_hz,
            "start_utc": self.start_utc,
            "tz_offset_min": self.tz_offset_min,
            "has_truth": self.has_truth,
            "seed": self.seed,
            "scenario": self.scenario,
            "source": self.source,
            "absent_channels": list(self.absent_channels),
            "units": UNITS,
        }
        if self.provenance is not None:
            fields["import"] = self.provenance
        return cbor2.dumps(fields, canonical=True)

    @classmethod
    def from_cbor(cls, data: bytes, where: str) -> TraceMetadata:
        try:
            fields = cbor2.loads(data)
        except (cbor2.CBORDecodeError, ValueError) as exc:
            raise TraceFormatError(f"{where}: the metadata is not valid CBOR ({exc})") from None
        if not isinstance(fields, dict):
            raise TraceFormatError(f"{where}: the metadata is not a map")
        if fields.get("units") != UNITS:
            raise TraceFormatError(
                f"{where}: units {fields.get('units')!r} differ from the ones this code "
                f"understands ({UNITS})"
            )
        for rate in ("acc_hz", "ppg_hz"):
            if rate not in fields:
                raise TraceRateError(f"{where}: the metadata has no {rate} sample rate")
        try:
            return cls(
                acc_hz=fields["acc_hz"],
                ppg_hz=fields["ppg_hz"],
                start_utc=fields["start_utc"],
                tz_offset_min=fields.get("tz_offset_min", 0),
                has_truth=bool(fields.get("has_truth", False)),
                seed=fields.get("seed"),
                scenario=fields.get("scenario"),
                source=fields.get("source", "simulated"),
                absent_channels=tuple(fields.get("absent_channels", ())),
                provenance=fields.get("import"),
            )
        except KeyError as exc:
            raise TraceFormatError(f"{where}: the metadata lacks {exc}") from None
        except TraceError as exc:
            raise type(exc)(f"{where}: {exc}") from None


class TraceBlock(NamedTuple):
    """One span of a trace: the sensor block and, in traces with truth, its truth."""

    sensor: SensorBlock
    truth: TruthBlock | None


# --------------------------------------------------------------------------- block codec


def _f32(a: npt.ArrayLike) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def _check_finite(name: str, a: npt.NDArray[Any]) -> None:
    if a.size and not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a.reshape(-1)))[0])
        raise TraceValueError(
            f"the {name} samples contain NaN or infinite values (first at flat index {bad}); "
            "clean or interpolate them before recording"
        )


def _validate_sensor(b: SensorBlock) -> tuple[npt.NDArray[Any], ...]:
    acc = np.asarray(b.acc)
    ppg = np.asarray(b.ppg)
    temp = np.asarray(b.skin_temp_c)
    gnss = None if b.gnss is None else np.asarray(b.gnss)
    if acc.ndim != 2 or acc.shape[1] != 3:
        raise TraceValueError(f"acc must have shape (n, 3), got {acc.shape}")
    if ppg.ndim != 1 or temp.ndim != 1:
        raise TraceValueError("ppg and skin_temp_c must be one-dimensional")
    if gnss is not None and (gnss.ndim != 2 or gnss.shape[1] != 5):
        raise TraceValueError(f"gnss must have shape (n, 5), got {gnss.shape}")
    for name, value in (("t0", b.t0), ("duration_s", b.duration_s), ("battery_v", b.battery_v)):
        if not math.isfinite(value):
            raise TraceValueError(f"the block's {name} is NaN or infinite")
    if b.duration_s <= 0:
        raise TraceTimestampError("a sensor block must have a positive duration")
    _check_finite("accelerometer", acc)
    _check_finite("PPG", ppg)
    _check_finite("skin temperature", temp)
    if gnss is not None:
        _check_finite("GNSS", gnss)
    return acc, ppg, temp, gnss if gnss is not None else np.zeros((0, 5))


def encode_sensor(b: SensorBlock) -> bytes:
    acc, ppg, temp, gnss = _validate_sensor(b)
    head = _SENSOR.pack(
        float(b.t0), float(b.duration_s), int(b.tz_offset_min), float(b.acc_hz),
        float(b.ppg_hz), float(b.battery_v), len(acc), len(ppg), len(temp),
        0 if b.gnss is None else 1, len(gnss),
    )  # fmt: skip
    return b"".join(
        (head, _f32(acc), _f32(ppg), _f32(temp), np.ascontiguousarray(gnss, "<f8").tobytes())
    )


def decode_sensor(body: bytes) -> SensorBlock:
    (t0, dur, tz, acc_hz, ppg_hz, batt, n_acc, n_ppg, n_temp, has_gnss, n_gnss) = (
        _SENSOR.unpack_from(body)
    )
    sizes = (n_acc * 3 * 4, n_ppg * 4, n_temp * 4, n_gnss * 5 * 8)
    if _SENSOR.size + sum(sizes) != len(body):
        raise ValueError("sensor frame length does not match its sample counts")
    pos = _SENSOR.size
    arrays = []
    for size, dtype in zip(sizes, ("<f4", "<f4", "<f4", "<f8"), strict=True):
        arrays.append(np.frombuffer(body, dtype=dtype, count=size // int(dtype[-1]), offset=pos))
        pos += size
    acc, ppg, temp, gnss = arrays
    return SensorBlock(
        t0=t0,
        duration_s=dur,
        tz_offset_min=tz,
        acc_hz=acc_hz,
        acc=acc.reshape(n_acc, 3).astype(np.float32),
        ppg_hz=ppg_hz,
        ppg=ppg.astype(np.float32),
        skin_temp_c=temp.astype(np.float32),
        battery_v=batt,
        gnss=gnss.reshape(n_gnss, 5).astype(np.float64) if has_gnss else None,
    )


_TRUTH_ARRAYS: tuple[tuple[str, str], ...] = (
    ("activity", "i1"),
    ("steps", "<f4"),
    ("cadence_spm", "<f4"),
    ("hr_bpm", "<f4"),
    ("sleep_stage", "i1"),
    ("worn", "u1"),
    ("outdoors", "u1"),
)
_TRUTH_ITEM = {"i1": 1, "u1": 1, "<f4": 4}


def encode_truth(t: TruthBlock) -> bytes:
    n = len(np.asarray(t.activity))
    parts = [_TRUTH.pack(float(t.t0), float(t.duration_s), n)]
    for name, dtype in _TRUTH_ARRAYS:
        a = np.asarray(getattr(t, name))
        if a.shape != (n,):
            raise TraceValueError(f"truth array {name} has shape {a.shape}, expected ({n},)")
        if dtype == "<f4":
            _check_finite(f"truth {name}", a)
        parts.append(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return b"".join(parts)


def decode_truth(body: bytes) -> TruthBlock:
    t0, dur, n = _TRUTH.unpack_from(body)
    if _TRUTH.size + n * sum(_TRUTH_ITEM[d] for _, d in _TRUTH_ARRAYS) != len(body):
        raise ValueError("truth frame length does not match its sample count")
    pos = _TRUTH.size
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype in _TRUTH_ARRAYS:
        a = np.frombuffer(body, dtype=dtype, count=n, offset=pos)
        pos += n * _TRUTH_ITEM[dtype]
        if dtype == "u1":
            arrays[name] = a.astype(np.bool_)
        elif dtype == "<f4":
            arrays[name] = a.astype(np.float32)
        else:
            arrays[name] = a.astype(np.int8)
    return TruthBlock(t0=t0, duration_s=dur, **arrays)


def _frame(kind: int, body: bytes) -> bytes:
    head = _FRAME.pack(kind, len(body))
    return head + body + _CRC.pack(zlib.crc32(body, zlib.crc32(head)))


# --------------------------------------------------------------------------- writer


class TraceWriter:
    """Records sensor blocks (and truth) to a trace file; call :meth:`close` to finish.

    Blocks must match the metadata's rates, start at or after ``start_utc`` and never
    overlap the previous block. The file is written to ``path`` directly: until
    :meth:`close` writes the end marker, readers report it as truncated.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: TraceMetadata) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        meta = metadata.to_cbor()
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(meta)) + meta
        self._file.write(head + _CRC.pack(zlib.crc32(head)))
        self._sensor_frames = 0
        self._truth_frames = 0
        self._end = metadata.start_utc

    def write(self, sensor: SensorBlock, truth: TruthBlock | None = None) -> None:
        """Append one block (with its truth if the trace has truth)."""
        if self._file is None:
            raise TraceError("this trace writer is closed; open a new TraceWriter")
        md = self.metadata
        if not (math.isclose(sensor.acc_hz, md.acc_hz) and math.isclose(sensor.ppg_hz, md.ppg_hz)):
            raise TraceRateError(
                f"block rates acc {sensor.acc_hz} Hz / PPG {sensor.ppg_hz} Hz differ from the "
                f"trace's {md.acc_hz} / {md.ppg_hz} Hz; start a new trace for the new rates"
            )
        if sensor.t0 < self._end - _TIME_SLACK_S:
            raise TraceTimestampError(
                f"block at t0={sensor.t0} starts before the previous one ends ({self._end}); "
                "blocks must be written in time order without overlap"
            )
        if md.has_truth != (truth is not None):
            raise TraceError(
                "this trace has truth: pass each block's TruthBlock"
                if md.has_truth
                else "this trace has no truth; create it with has_truth=True to record truth"
            )
        frames = [_frame(KIND_SENSOR, encode_sensor(sensor))]
        if truth is not None:
            if not math.isclose(truth.t0, sensor.t0, abs_tol=_TIME_SLACK_S):
                raise TraceTimestampError("a truth block must start when its sensor block does")
            frames.append(_frame(KIND_TRUTH, encode_truth(truth)))
        self._file.write(b"".join(frames))
        self._sensor_frames += 1
        self._truth_frames += truth is not None
        self._end = sensor.t0 + sensor.duration_s

    def close(self) -> None:
        """Write the end marker, flush and fsync. Idempotent."""
        if self._file is None:
            return
        try:
            self._file.write(_frame(KIND_END, _END.pack(self._sensor_frames, self._truth_frames)))
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            # an aborted recording stays recognisably unfinished: no end marker
            self._file.close()
            self._file = None


# --------------------------------------------------------------------------- reader


class TraceReader:
    """Reads a trace's metadata on construction; iterating streams its blocks in order.

    Each iteration opens the file afresh and reads one frame at a time, checking every
    CRC, the block order and the rates, so a damaged or truncated file raises a typed
    error at the point of damage (after the good blocks before it have been yielded).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self.metadata = self._read_header(f)
            self._data_start = f.tell()

    def _where(self) -> str:
        return f"trace {self.path}"

    def _read_header(self, f: IO[bytes]) -> TraceMetadata:
        where = self._where()
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            if not MAGIC.startswith(head[:8]) or not head:
                raise TraceFormatError(f"{where} is not a kmeband trace (wrong magic)")
            raise TraceTruncatedError(f"{where} is truncated inside its header")
        magic, version, meta_len = _HEAD.unpack(head)
        if magic != MAGIC:
            raise TraceFormatError(f"{where} is not a kmeband trace (wrong magic)")
        if version != FORMAT_VERSION:
            raise TraceVersionError(
                f"{where} has format version {version}; this code reads version "
                f"{FORMAT_VERSION}. Use the kmeband release that wrote it or re-record it"
            )
        if meta_len > _MAX_FRAME:
            raise TraceFormatError(f"{where}: implausible metadata length {meta_len}")
        meta = f.read(meta_len)
        crc = f.read(_CRC.size)
        if len(meta) < meta_len or len(crc) < _CRC.size:
            raise TraceTruncatedError(f"{where} is truncated inside its header")
        if zlib.crc32(head + meta) != _CRC.unpack(crc)[0]:
            raise TraceFormatError(f"{where}: header checksum mismatch (the file is damaged)")
        return TraceMetadata.from_cbor(meta, where)

    def __iter__(self) -> Iterator[TraceBlock]:
        where = self._where()
        md = self.metadata
        with open(self.path, "rb") as f:
            f.seek(self._data_start)
            end = md.start_utc
            index = 0
            sensors = truths = 0
            pending: SensorBlock | None = None
            while True:
                offset = f.tell()
                head = f.read(_FRAME.size)
                if not head:
                    raise TraceTruncatedError(
                        f"{where} ends without its end marker after {index} block(s): the "
                        "recording was cut short. Re-record it, or use the blocks read so far"
                    )
                if len(head) < _FRAME.size:
                    raise TraceTruncatedError(f"{where} is truncated at byte {offset}")
                kind, length = _FRAME.unpack(head)
                if length > _MAX_FRAME:
                    raise TraceFormatError(f"{where}: implausible frame length at byte {offset}")
                body = f.read(length)
                crc = f.read(_CRC.size)
                if len(body) < length or len(crc) < _CRC.size:
                    raise TraceTruncatedError(f"{where} is truncated at byte {offset}")
                if zlib.crc32(body, zlib.crc32(head)) != _CRC.unpack(crc)[0]:
                    raise TraceFormatError(
                        f"{where}: checksum mismatch in the frame at byte {offset} (damaged)"
                    )
                if pending is not None and kind != KIND_TRUTH:
                    raise TraceFormatError(
                        f"{where}: block {index - 1} has no truth frame, but the header says "
                        "the trace has truth"
                    )
                if kind == KIND_END:
                    if len(body) != _END.size or _END.unpack(body) != (sensors, truths):
                        raise TraceFormatError(f"{where}: the end marker's block counts differ")
                    if f.read(1):
                        raise TraceFormatError(f"{where}: data after the end marker")
                    return
                if kind == KIND_SENSOR:
                    try:
                        block = decode_sensor(body)
                    except (ValueError, struct.error):
                        raise TraceFormatError(
                            f"{where}: malformed sensor frame at byte {offset}"
                        ) from None
                    self._check_block(block, end, index, offset)
                    end = block.t0 + block.duration_s
                    index += 1
                    sensors += 1
                    if md.has_truth:
                        pending = block
                    else:
                        yield TraceBlock(block, None)
                elif kind == KIND_TRUTH:
                    if pending is None:
                        raise TraceFormatError(
                            f"{where}: truth frame at byte {offset} follows no sensor block"
                        )
                    try:
                        truth = decode_truth(body)
                    except (ValueError, struct.error):
                        raise TraceFormatError(
                            f"{where}: malformed truth frame at byte {offset}"
                        ) from None
                    truths += 1
                    yield TraceBlock(pending, truth)
                    pending = None
                else:
                    raise TraceFormatError(f"{where}: unknown frame kind {kind} at byte {offset}")

    def _check_block(self, b: SensorBlock, prev_end: float, index: int, offset: int) -> None:
        where = self._where()
        md = self.metadata
        if not (math.isclose(b.acc_hz, md.acc_hz) and math.isclose(b.ppg_hz, md.ppg_hz)):
            raise TraceRateError(
                f"{where}: block {index} (byte {offset}) has rates acc {b.acc_hz} / PPG "
                f"{b.ppg_hz} Hz, the header says {md.acc_hz} / {md.ppg_hz} Hz"
            )
        if b.t0 < prev_end - _TIME_SLACK_S:
            raise TraceTimestampError(
                f"{where}: block {index} (byte {offset}) starts at {b.t0}, before the previous "
                f"block ends ({prev_end}); timestamps must not go back"
            )
        try:
            _validate_sensor(b)
        except TraceError as exc:
            raise type(exc)(f"{where}: block {index}: {exc}") from None

    def sensor_blocks(self) -> Iterator[SensorBlock]:
        """Just the sensor blocks, in order (what the firmware replays)."""
        for block in self:
            yield block.sensor
