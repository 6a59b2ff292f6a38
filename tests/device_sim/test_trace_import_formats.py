"""Vendor and binary formats: Empatica E4 (folder and zip), ActiGraph raw CSV, EDF/EDF+.

Each test writes a small file in the format's exact layout (and reads the EDF sample that
pyedflib ships), imports it, checks rates, start, units and samples, and replays it
directly and through the trace with the same records.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from device_sim.trace.format import TraceReader
from device_sim.trace.importer import TraceExtraMissingError, open_recording
from kmeband.cli import main

T0 = 1_767_254_400  # 2026-01-01T08:00:00Z


def _acc_g(t: np.ndarray) -> np.ndarray:
    swing = 0.3 * np.sin(2 * np.pi * 1.8 * t)
    return np.column_stack([0.2 + swing, -0.3 + 0.5 * swing, np.full_like(t, 0.933)])


def _ppg(t: np.ndarray) -> np.ndarray:
    return 40 * np.sin(2 * np.pi * 1.2 * t) + 25 * np.sin(2 * np.pi * 2.4 * t + 0.7)


def _replays_the_same(source: Path, tmp_path: Path, *args: str) -> list[dict[str, object]]:
    trace = tmp_path / "imported.kmetrace"
    assert main(["import", str(source), str(trace), *args]) == 0
    direct, via = tmp_path / "direct.json", tmp_path / "via.json"
    assert main(["replay", str(source), *args, "--out", str(direct)]) == 0
    assert main(["replay", str(trace), "--out", str(via)]) == 0
    assert direct.read_bytes() == via.read_bytes()
    records: list[dict[str, object]] = json.loads(direct.read_text())
    return records


# ----------------------------------------------------------------------- Empatica E4


def write_e4(folder: Path, seconds: int = 100) -> Path:
    """An E4 Connect export: ACC 32 Hz in 1/64 g, BVP 64 Hz, TEMP 4 Hz (°C), EDA ignored."""
    folder.mkdir(parents=True)
    t_acc = np.arange((seconds - 1) * 32) / 32  # ACC ends a second before BVP, as it may
    acc = np.round(_acc_g(t_acc) * 64).astype(int)
    (folder / "ACC.csv").write_text(
        f"{T0:.6f}, {T0:.6f}, {T0:.6f}\n32.000000, 32.000000, 32.000000\n"
        + "".join(f"{x},{y},{z}\n" for x, y, z in acc)
    )
    t_bvp = np.arange(seconds * 64) / 64
    (folder / "BVP.csv").write_text(
        f"{T0:.6f}\n64.000000\n" + "".join(f"{v:.2f}\n" for v in _ppg(t_bvp))
    )
    temp = np.where(np.arange(seconds * 4) < 200, 32.0, 34.5)
    (folder / "TEMP.csv").write_text(f"{T0:.6f}\n4.000000\n" + "".join(f"{v:.2f}\n" for v in temp))
    (folder / "EDA.csv").write_text(f"{T0:.6f}\n4.000000\n0.1\n0.2\n")
    return folder


def test_e4_folder_imports_with_native_rates_units_and_temperature(
    tmp_path: Path,
) -> None:
    folder = write_e4(tmp_path / "S1_E4")
    recording = open_recording(folder, None)
    md, report = recording.metadata, recording.report
    assert report is not None and report.source == "Empatica E4 S1_E4"
    assert (md.acc_hz, md.ppg_hz, md.start_utc) == (32.0, 64.0, float(T0))
    assert md.absent_channels == ("battery", "gnss")
    acc = {c.name: c for c in report.channels}["acc"]
    assert (acc.unit, acc.unit_from, acc.gravity) == ("1/64 g", "format", "included")
    assert not acc.resampled and report.seconds == 99
    assert "ppg: 1 s outside the other channel's span left out" in report.notes
    blocks = list(recording.blocks())
    acc_g = np.concatenate([b.acc for b in blocks])
    np.testing.assert_allclose(acc_g, np.round(_acc_g(np.arange(99 * 32) / 32) * 64) / 64)
    np.testing.assert_allclose(
        np.concatenate([b.ppg for b in blocks]), _ppg(np.arange(99 * 64) / 64), atol=0.006
    )
    temp = np.concatenate([b.skin_temp_c for b in blocks])
    assert temp[0] == 32.0 and temp[60] == 34.5
    records = _replays_the_same(folder, tmp_path)
    assert any(r["stream"] == "hr_samples" for r in records)


def test_e4_zip_with_a_folder_inside_reads_like_the_folder(tmp_path: Path) -> None:
    folder = write_e4(tmp_path / "S2_E4_Data")
    archive = tmp_path / "S2_E4_Data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"S2_E4_Data/{f.name}")
    from_zip = list(open_recording(archive).blocks())
    from_folder = list(open_recording(folder).blocks())
    assert len(from_zip) == len(from_folder)
    for a, b in zip(from_zip, from_folder, strict=True):
        np.testing.assert_array_equal(a.acc, b.acc)
        np.testing.assert_array_equal(a.ppg, b.ppg)
    _replays_the_same(archive, tmp_path, "--tz-offset-min", "120")
    assert TraceReader(tmp_path / "imported.kmetrace").metadata.tz_offset_min == 120


def test_e4_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "hello")
    assert main(["import", str(archive), str(tmp_path / "t.kmetrace")]) == 2
    assert "name its format with --format" in capsys.readouterr().err
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "BVP.csv").write_text("1767254400\n64\n")
    assert main(["import", str(folder), str(tmp_path / "t.kmetrace")]) == 2
    assert "is not an E4 file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import", str(empty), str(tmp_path / "t.kmetrace"), "--format", "e4"]) == 2
    assert "has neither ACC.csv nor BVP.csv" in capsys.readouterr().err
    # ACC and BVP that never overlap in time leave nothing to import
    apart = write_e4(tmp_path / "apart", seconds=20)
    acc = (apart / "ACC.csv").read_text().splitlines()
    acc[0] = ", ".join([f"{T0 + 3600:.6f}"] * 3)
    (apart / "ACC.csv").write_text("\n".join(acc) + "\n")
    assert main(["import", str(apart), str(tmp_path / "t.kmetrace")]) == 2
    assert "its channels do not overlap in time" in capsys.readouterr().err


# ----------------------------------------------------------------------- ActiGraph


def write_actigraph(
    path: Path, rate: int, seconds: int, date: str, date_format: str, timestamp: bool = False
) -> Path:
    header = [
        f"------------ Data File Created By ActiGraph GT3X+ ActiLife v6.13.4 Firmware v3.2.1 "
        f"date format {date_format} at {rate} Hz  Filter Normal -----------",
        "Serial Number: MOS2E00000000",
        "Start Time 09:30:00",
        f"Start Date {date}",
        "Epoch Period (hh:mm:ss) 00:00:00",
        "Download Time 10:00:00",
        f"Download Date {date}",
        "Current Memory Address: 0",
        "Current Battery Voltage: 4.18     Mode = 12",
        "--------------------------------------------------",
    ]
    t = np.arange(rate * seconds) / rate
    acc = _acc_g(t)
    columns = "Accelerometer X,Accelerometer Y,Accelerometer Z"
    if timestamp:
        columns = "Timestamp," + columns
        rows = [f"{date} 09:30:{i / rate:06.3f},{x:.3f},{y:.3f},{z:.3f}" for i, (x, y, z) in
                enumerate(acc)]  # fmt: skip
    else:
        rows = [f"{x:.3f},{y:.3f},{z:.3f}" for x, y, z in acc]
    path.write_text("\n".join([*header, columns, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    ("rate", "date", "date_format", "timestamp"),
    [(30, "1/1/2026", "M/d/yyyy", False), (100, "01.01.2026", "dd.MM.yyyy", True)],
)
def test_actigraph_raw_csv_imports_at_its_rate_and_local_start(
    tmp_path: Path, rate: int, date: str, date_format: str, timestamp: bool
) -> None:
    path = write_actigraph(tmp_path / "ag.csv", rate, 40, date, date_format, timestamp)
    args = ["--tz-offset-min", "90"]
    _replays_the_same(path, tmp_path, *args)
    reader = TraceReader(tmp_path / "imported.kmetrace")
    md = reader.metadata
    local = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(minutes=90)))
    assert md.start_utc == local.timestamp() and md.tz_offset_min == 90
    assert (md.acc_hz, md.source) == (rate, "ActiGraph CSV ag.csv")
    assert "ppg" in md.absent_channels
    acc = np.concatenate([b.acc for b in reader.sensor_blocks()])
    np.testing.assert_allclose(acc, _acc_g(np.arange(rate * 40) / rate), atol=6e-4)
    assert "MOS2E" not in (tmp_path / "imported.kmetrace").read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("old", "new", "args", "message"),
    [
        ("(hh:mm:ss) 00:00:00", "(hh:mm:ss) 00:01:00", (), "holds epoch counts, not raw"),
        (" at 30 Hz", "", (), "gives no rate ('at N Hz'); give --rate"),
        ("Start Date 1/1/2026", "Start Date 2026", (), "does not match the header's date"),
        ("Start Time 09:30:00", "Begin 09:30:00", (), "give the start with --start"),
        ("Accelerometer X,", "Acc X,", (), "no Accelerometer X/Y/Z columns"),
    ],
)
def test_actigraph_refusals(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    args: tuple[str, ...],
    message: str,
) -> None:
    path = write_actigraph(tmp_path / "ag.csv", 30, 2, "1/1/2026", "M/d/yyyy")
    path.write_text(path.read_text().replace(old, new))
    assert main(["import", str(path), str(tmp_path / "t.kmetrace"), *args]) == 2
    assert message in capsys.readouterr().err


def test_actigraph_without_start_imports_with_start_and_rate_options(tmp_path: Path) -> None:
    path = write_actigraph(tmp_path / "ag.csv", 30, 5, "1/1/2026", "M/d/yyyy")
    path.write_text(path.read_text().replace("Start Time", "Begin").replace(" at 30 Hz", ""))
    args = ("--start", "2026-01-01T08:00:00Z", "--rate", "30")
    _replays_the_same(path, tmp_path, *args)
    assert TraceReader(tmp_path / "imported.kmetrace").metadata.start_utc == T0


# ----------------------------------------------------------------------- EDF


def write_edf(path: Path, seconds: int = 60) -> Path:
    highlevel = pytest.importorskip("pyedflib.highlevel")
    t32, t64 = np.arange(seconds * 32) / 32, np.arange(seconds * 64) / 64
    acc = _acc_g(t32) * 1000  # mg
    signals = [_ppg(t64), *(np.ascontiguousarray(a) for a in acc.T), np.full(seconds, 33.0)]
    headers = [highlevel.make_signal_header("PPG", "au", 64, -100, 100)]
    headers += [
        highlevel.make_signal_header(f"Accelerometer {a}", "mg", 32, -8000, 8000) for a in "XYZ"
    ]
    headers.append(highlevel.make_signal_header("Temp", "degC", 1, 0, 50))
    header = highlevel.make_header(startdate=dt.datetime(2026, 1, 1, 8, 0, 0))
    highlevel.write_edf(str(path), signals, headers, header)
    return path


def test_edf_imports_each_signal_at_its_rate_with_its_unit(tmp_path: Path) -> None:
    path = write_edf(tmp_path / "rec.edf")
    recording = open_recording(path)
    md, report = recording.metadata, recording.report
    assert report is not None and (md.acc_hz, md.ppg_hz, md.start_utc) == (32, 64, T0)
    acc = {c.name: c for c in report.channels}["acc"]
    assert (acc.unit, acc.unit_from, acc.gravity) == ("mg", "EDF dimension", "included")
    blocks = list(recording.blocks())
    np.testing.assert_allclose(
        np.concatenate([b.acc for b in blocks]), _acc_g(np.arange(60 * 32) / 32), atol=1e-3
    )
    np.testing.assert_allclose(
        np.concatenate([b.ppg for b in blocks]), _ppg(np.arange(60 * 64) / 64), atol=0.01
    )
    assert md.absent_channels == ("battery", "gnss")
    _replays_the_same(path, tmp_path)


def test_the_edf_sample_pyedflib_ships_imports_by_naming_its_signals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pytest.importorskip("pyedflib.data")
    sample = Path(data.get_generator_filename())
    out = tmp_path / "gen.kmetrace"
    assert main(["import", str(sample), str(out)]) == 2
    err = capsys.readouterr().err
    assert "labelled squarewave, ramp, pulse" in err and "--columns" in err
    # its fifth signal is a 1 Hz sine at 200 Hz: stored as PPG at 100 Hz, still 1 Hz
    assert main(["import", str(sample), str(out), "--columns", "_,_,_,_,ppg", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["import"]
    assert report["seconds"] == 600 and report["channels"][0]["stored_hz"] == 100
    assert report["start_utc"] == dt.datetime(2011, 4, 4, 12, 57, 2, tzinfo=dt.UTC).timestamp()
    ppg = np.concatenate([b.ppg for b in TraceReader(out).sensor_blocks()])
    spectrum = np.abs(np.fft.rfft(ppg - ppg.mean()))
    assert np.fft.rfftfreq(len(ppg), 1 / 100)[int(np.argmax(spectrum))] == pytest.approx(1.0)


def test_edf_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    highlevel = pytest.importorskip("pyedflib.highlevel")
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"0       " + b"x" * 300)
    assert main(["import", str(bad), str(tmp_path / "t.kmetrace")]) == 2
    assert "is not a readable EDF/EDF+ file" in capsys.readouterr().err
    mixed = tmp_path / "mixed.edf"
    headers = [
        highlevel.make_signal_header("Acc X", "g", 32, -8, 8),
        highlevel.make_signal_header("Acc Y", "g", 16, -8, 8),
        highlevel.make_signal_header("Acc Z", "g", 32, -8, 8),
    ]
    signals = [np.zeros(320), np.zeros(160), np.ones(320)]
    highlevel.write_edf(str(mixed), signals, headers)
    assert main(["import", str(mixed), str(tmp_path / "t.kmetrace")]) == 2
    assert "the accelerometer axes have different rates" in capsys.readouterr().err


def test_a_missing_edf_reader_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rec.edf"
    path.write_bytes(b"0       " + b" " * 248)
    monkeypatch.setitem(sys.modules, "pyedflib", None)
    with pytest.raises(TraceExtraMissingError, match=r"pip install 'kmeband\[formats\]'"):
        open_recording(path)


# ----------------------------------------------------------------------- ActiGraph .gt3x

_TICKS_AT_EPOCH = 621_355_968_000_000_000  # .NET ticks (100 ns since 0001-01-01) at 1970


def write_gt3x(path: Path, rate: int, seconds: int, local_start: int, zone: str) -> Path:
    """A .gt3x as a wGT3X-BT writes it: info.txt and one Activity2 record (int16 x, y, z
    at 256 counts per g) a second in log.bin, each with its XOR checksum."""
    scale = 256.0
    log = bytearray()
    for second in range(seconds):
        t = second + np.arange(rate) / rate
        counts = np.round(_acc_g(t) * scale).astype("<i2")
        payload = counts.tobytes()
        head = struct.pack("<BBLH", 0x1E, 26, local_start + second, len(payload))
        check = 0
        for b in head[:6] + len(payload).to_bytes(4, "little") + payload:
            check ^= b
        log += head + payload + bytes([~check & 0xFF])
    ticks = _TICKS_AT_EPOCH + local_start * 10_000_000
    end = ticks + seconds * 10_000_000
    info = "\n".join(
        [
            "Serial Number: MOS2E00000000",
            "Device Type: wGT3XBT",
            "Firmware: 1.9.2",
            "Battery Voltage: 4.10",
            f"Sample Rate: {rate}",
            f"Start Date: {ticks}",
            f"Stop Date: {end}",
            f"Last Sample Time: {end}",
            f"TimeZone: {zone}",
            f"Acceleration Scale: {scale}",
            "Acceleration Min: -8.0",
            "Acceleration Max: 8.0",
        ]
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("info.txt", info)
        z.writestr("log.bin", bytes(log))
    return path


def test_gt3x_imports_through_pygt3x_with_its_time_zone(tmp_path: Path) -> None:
    pytest.importorskip("pygt3x")
    local_start = T0 + 3600  # 09:00 local at +01:00 is 08:00 UTC
    path = write_gt3x(tmp_path / "wrist.gt3x", 30, 70, local_start, "01:00:00")
    recording = open_recording(path)
    md, report = recording.metadata, recording.report
    assert report is not None and report.source == "ActiGraph GT3X wrist.gt3x"
    assert (md.acc_hz, md.start_utc, md.tz_offset_min) == (30, T0, 60)
    (acc,) = report.channels
    assert (acc.unit, acc.gravity, acc.timing, acc.resampled) == ("g", "included", "regular", False)
    samples = np.concatenate([b.acc for b in recording.blocks()])
    want = np.round(_acc_g(np.arange(70 * 30) / 30) * 256) / 256
    np.testing.assert_allclose(samples, want, atol=1e-6)
    _replays_the_same(path, tmp_path)
    assert b"MOS2E" not in (tmp_path / "imported.kmetrace").read_bytes()


def test_gt3x_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pygt3x")
    path = tmp_path / "cut.gt3x"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("info.txt", "Sample Rate: 30\n")
        z.writestr("log.bin", b"")
    assert main(["import", str(path), str(tmp_path / "t.kmetrace")]) == 2
    assert "holds no acceleration samples" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pygt3x.reader", None)
    with pytest.raises(TraceExtraMissingError, match=r"needs pygt3x: pip install"):
        open_recording(write_gt3x(tmp_path / "w.gt3x", 30, 2, T0, "00:00:00"))
