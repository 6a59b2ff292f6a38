"""QA traces: record, replay, determinism, CSV import, and typed errors for bad input."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim.signals import SensorBlock, TruthBlock
from device_sim.trace.format import (
    TraceBlock,
    TraceError,
    TraceFormatError,
    TraceMetadata,
    TraceRateError,
    TraceReader,
    TraceTimestampError,
    TraceTruncatedError,
    TraceValueError,
    TraceVersionError,
    TraceWriter,
)
from device_sim.trace.importer import ImportOptions, import_recording, open_recording
from protocol.errors import UsageError

T0 = 1_767_225_600.0


def sensor_block(
    i: int, seed: int = 0, hz: float = 25.0, seconds: int = 60, gnss: bool = False
) -> SensorBlock:
    rng = np.random.default_rng([seed, i])
    n = int(seconds * hz)
    return SensorBlock(
        t0=T0 + i * seconds,
        duration_s=float(seconds),
        tz_offset_min=60,
        acc_hz=hz,
        acc=rng.normal(0, 0.3, (n, 3)).astype(np.float32),
        ppg_hz=hz,
        ppg=rng.normal(1000, 20, n).astype(np.float32),
        skin_temp_c=np.full(seconds, 33.1, np.float32),
        battery_v=3.87,
        gnss=rng.normal(0, 1, (seconds, 5)) if gnss else None,
    )


def truth_block(i: int, seconds: int = 60) -> TruthBlock:
    rng = np.random.default_rng(i)
    return TruthBlock(
        t0=T0 + i * seconds,
        duration_s=float(seconds),
        activity=rng.integers(0, 6, seconds).astype(np.int8),
        steps=rng.random(seconds).astype(np.float32),
        cadence_spm=rng.random(seconds).astype(np.float32) * 180,
        hr_bpm=rng.random(seconds).astype(np.float32) * 100 + 50,
        sleep_stage=rng.integers(-1, 4, seconds).astype(np.int8),
        worn=rng.random(seconds) > 0.1,
        outdoors=rng.random(seconds) > 0.5,
    )


def meta(**kw: object) -> TraceMetadata:
    fields: dict[str, object] = {
        "acc_hz": 25.0,
        "ppg_hz": 25.0,
        "start_utc": T0,
        "tz_offset_min": 60,
    }
    fields.update(kw)
    return TraceMetadata(**fields)  # type: ignore[arg-type]


def assert_sensor_equal(a: SensorBlock, b: SensorBlock) -> None:
    for f in dataclasses.fields(SensorBlock):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert np.asarray(x).dtype == np.asarray(y).dtype
        else:
            assert x == y, f.name


def assert_truth_equal(a: TruthBlock, b: TruthBlock) -> None:
    for f in dataclasses.fields(TruthBlock):
        x, y = getattr(a, f.name), getattr(b, f.name)
        np.testing.assert_array_equal(x, y)
        assert np.asarray(x).dtype == np.asarray(y).dtype


def write_trace(path: Path, n: int = 3, truth: bool = False, **kw: object) -> list[SensorBlock]:
    blocks = [sensor_block(i, gnss=i == 1) for i in range(n)]
    with TraceWriter(path, meta(has_truth=truth, **kw)) as w:
        for i, b in enumerate(blocks):
            w.write(b, truth_block(i) if truth else None)
    return blocks


# ----------------------------------------------------------------------- round trips


def test_sensor_blocks_round_trip_exactly(tmp_path: Path) -> None:
    path = tmp_path / "day.kmetrace"
    blocks = write_trace(path, n=4, seed=42, scenario="default_day")
    reader = TraceReader(path)
    assert reader.metadata == meta(seed=42, scenario="default_day")
    got = list(reader)
    assert len(got) == 4 and all(b.truth is None for b in got)
    for a, b in zip(blocks, got, strict=True):
        assert_sensor_equal(a, b.sensor)
    assert got[1].sensor.gnss is not None and got[0].sensor.gnss is None
    # iterating again replays from the start
    assert [b.t0 for b in reader.sensor_blocks()] == [b.t0 for b in blocks]


def test_truth_rides_with_its_block(tmp_path: Path) -> None:
    path = tmp_path / "truth.kmetrace"
    write_trace(path, n=3, truth=True)
    got = list(TraceReader(path))
    assert TraceReader(path).metadata.has_truth
    for i, block in enumerate(got):
        assert isinstance(block, TraceBlock) and block.truth is not None
        assert_truth_equal(block.truth, truth_block(i))


def test_same_blocks_give_a_byte_identical_file(tmp_path: Path) -> None:
    write_trace(tmp_path / "a.kmetrace", truth=True, seed=7)
    write_trace(tmp_path / "b.kmetrace", truth=True, seed=7)
    assert (tmp_path / "a.kmetrace").read_bytes() == (tmp_path / "b.kmetrace").read_bytes()


def test_reader_streams_blocks_before_reading_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "long.kmetrace"
    write_trace(path, n=5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the second half is missing
    it = iter(TraceReader(path))
    first = next(it)  # yielded before the damage is reached
    assert first.sensor.t0 == T0
    with pytest.raises(TraceTruncatedError):
        list(it)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seconds=st.lists(st.integers(1, 20), min_size=1, max_size=5),
    hz=st.sampled_from([12.5, 25.0, 50.0, 100.0]),
    gap=st.integers(0, 3),
)
def test_any_block_sequence_round_trips(
    tmp_path_factory: pytest.TempPathFactory, seconds: list[int], hz: float, gap: int
) -> None:
    path = tmp_path_factory.mktemp("t") / "p.kmetrace"
    blocks, t = [], T0
    for i, s in enumerate(seconds):
        b = dataclasses.replace(sensor_block(i, hz=hz, seconds=s), t0=t)
        blocks.append(b)
        t += s + gap
    with TraceWriter(path, meta(acc_hz=hz, ppg_hz=hz)) as w:
        for b in blocks:
            w.write(b)
    for a, got in zip(blocks, TraceReader(path).sensor_blocks(), strict=True):
        assert_sensor_equal(a, got)


# ----------------------------------------------------------------------- writer checks


def test_writer_rejects_blocks_that_do_not_fit_the_trace(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "w.kmetrace", meta()) as w:
        with pytest.raises(TraceRateError, match="differ from the trace's"):
            w.write(sensor_block(0, hz=50.0))
        w.write(sensor_block(1))
        with pytest.raises(TraceTimestampError, match="before the previous one ends"):
            w.write(sensor_block(0))
        bad = sensor_block(2)
        bad.ppg[17] = np.nan
        with pytest.raises(TraceValueError, match="PPG samples contain NaN"):
            w.write(bad)
        with pytest.raises(TraceError, match="no truth"):
            w.write(sensor_block(3), truth_block(3))
    with pytest.raises(TraceError, match="pass each block's TruthBlock"):
        TraceWriter(tmp_path / "x.kmetrace", meta(has_truth=True)).write(sensor_block(0))


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"acc_hz": 0.0}, TraceRateError),
        ({"ppg_hz": float("nan")}, TraceRateError),
        ({"acc_hz": None}, TraceRateError),
        ({"start_utc": float("nan")}, TraceTimestampError),
        ({"tz_offset_min": 5000}, TraceError),
        ({"absent_channels": ("ecg",)}, TraceError),
    ],
)
def test_bad_metadata_is_a_typed_error(kw: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        meta(**kw)
    assert isinstance(info.value, UsageError)


def test_an_aborted_recording_reads_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "abort.kmetrace"
    with pytest.raises(RuntimeError), TraceWriter(path, meta()) as w:
        w.write(sensor_block(0))
        raise RuntimeError("recorder crashed")
    with pytest.raises(TraceTruncatedError, match="without its end marker after 1 block"):
        list(TraceReader(path))


# ----------------------------------------------------------------------- bad files


def test_truncated_and_damaged_files_raise_typed_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.kmetrace"
    write_trace(path)
    data = path.read_bytes()
    path.write_bytes(data[:10])
    with pytest.raises(TraceTruncatedError, match="inside its header"):
        TraceReader(path)
    path.write_bytes(data[:-2])
    with pytest.raises(TraceTruncatedError, match="truncated at byte"):
        list(TraceReader(path))
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(damaged))
    with pytest.raises(TraceFormatError, match="checksum mismatch in the frame"):
        list(TraceReader(path))
    path.write_bytes(b"time,ppg\n1,2\n")
    with pytest.raises(TraceFormatError, match="not a kmeband trace"):
        TraceReader(path)


def _rewrite_header(path: Path, version: int, meta_fields: dict[str, object] | None = None) -> None:
    import cbor2

    data = path.read_bytes()
    _, _, meta_len = struct.unpack_from("<8sHI", data)
    body = data[14 + meta_len + 4 :]
    meta_bytes = data[14 : 14 + meta_len]
    if meta_fields is not None:
        fields = cbor2.loads(meta_bytes)
        fields.update(meta_fields)
        fields = {k: v for k, v in fields.items() if v is not ...}
        meta_bytes = cbor2.dumps(fields, canonical=True)
    head = struct.pack("<8sHI", b"KMETRACE", version, len(meta_bytes)) + meta_bytes
    path.write_bytes(head + struct.pack("<I", zlib.crc32(head)) + body)


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.kmetrace"
    write_trace(path)
    _rewrite_header(path, 9)
    with pytest.raises(TraceVersionError, match="format version 9"):
        TraceReader(path)


def test_missing_or_wrong_rates_in_the_header_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.kmetrace"
    write_trace(path)
    _rewrite_header(path, 1, {"ppg_hz": ...})
    with pytest.raises(TraceRateError, match="no ppg_hz"):
        TraceReader(path)
    write_trace(path)
    _rewrite_header(path, 1, {"acc_hz": -25.0})
    with pytest.raises(TraceRateError, match="accelerometer sample rate"):
        TraceReader(path)
    write_trace(path)
    _rewrite_header(path, 1, {"acc_hz": 50.0})  # blocks still say 25 Hz
    with pytest.raises(TraceRateError, match="block 0"):
        list(TraceReader(path))


# ----------------------------------------------------------------------- CSV import
# The real-file shapes, formats and refusals are in test_trace_import*.py; these keep the
# details of the documented CSV layout.


def _csv(path: Path, header: str, rows: np.ndarray, comments: str = "") -> Path:
    lines = [comments + header] + [",".join(repr(float(v)) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_with_rate_comment_keeps_samples_in_blocks_of_block_s(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    acc = rng.normal(0, 0.1, (130, 3)) + np.array([0.0, 0.0, 1.0])
    rows = np.column_stack([rng.normal(1000, 5, 130), acc])
    path = _csv(
        tmp_path / "rec.csv",
        "ppg,ax,ay,az",
        rows,
        "# sample_rate_hz=25\n# start_utc=2026-01-01T00:00:00Z\n# tz_offset_min=-300\n",
    )
    rec = open_recording(path, ImportOptions(block_s=2))
    md = rec.metadata
    assert (md.acc_hz, md.ppg_hz, md.start_utc, md.tz_offset_min) == (25.0, 25.0, T0, -300)
    assert md.absent_channels == ("battery", "gnss", "skin_temp")
    assert md.source == "CSV rec.csv"
    blocks = list(rec.blocks())
    # 130 rows are 5.2 s: five whole seconds, the partial last one left out and reported
    assert [len(b.ppg) for b in blocks] == [50, 50, 25]
    assert [b.t0 for b in blocks] == [T0, T0 + 2, T0 + 4]
    assert rec.report is not None and rec.report.trimmed_s == pytest.approx(0.2)
    np.testing.assert_allclose(np.concatenate([b.ppg for b in blocks]), rows[:125, 0], rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([b.acc for b in blocks]), rows[:125, 1:], atol=1e-6)


def test_csv_skin_temperature_is_averaged_per_second(tmp_path: Path) -> None:
    n = 75
    t = T0 + np.arange(n) / 25.0
    temp = np.where(np.arange(n) < 25, 32.0, 34.0)
    path = _csv(
        tmp_path / "temp.csv", "timestamp,ppg,skin_temp_c", np.column_stack([t, t % 7, temp])
    )
    rec = open_recording(path)
    (block,) = list(rec.blocks())
    np.testing.assert_allclose(block.skin_temp_c, [32.0, 34.0, 34.0])
    assert "skin_temp" not in rec.metadata.absent_channels


def test_csv_import_leaves_no_partial_trace_on_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    rows = "".join(f"{i % 5}\n" for i in range(100))
    path.write_text("# sample_rate_hz=25\n# start_utc=1767225600\nppg\n" + rows + "abc\n")
    trace = tmp_path / "bad.kmetrace"
    with pytest.raises(TraceFormatError, match="line 104, column ppg: 'abc' is not a number"):
        import_recording(path, trace)
    assert not trace.exists()


def test_traces_without_an_import_report_still_read_and_reports_round_trip(
    tmp_path: Path,
) -> None:
    plain = TraceMetadata(acc_hz=25, ppg_hz=25, start_utc=T0)
    assert b"import" not in plain.to_cbor()  # simulated traces keep their bytes
    md = dataclasses.replace(plain, provenance={"source": "CSV x.csv", "runs": 2})
    path = tmp_path / "p.kmetrace"
    with TraceWriter(path, md) as w:
        w.write(sensor_block(0))
    assert TraceReader(path).metadata == md
    assert len(list(TraceReader(path))) == 1
    with pytest.raises(TraceError, match="must be a map"):
        TraceMetadata(acc_hz=25, ppg_hz=25, start_utc=T0, provenance=[1])  # type: ignore[arg-type]
