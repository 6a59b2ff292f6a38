"""Importing real-file shapes: each imports, replays unchanged, and keeps its signal.

Every case writes a file in a shape real devices and studies produce, from a known signal,
then checks (1) ``kmeband import`` writes a trace whose samples are that signal on the
whole-second grid, (2) ``kmeband replay`` of the file and of the trace give the same
records, and (3) the import report says what was detected and done.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from device_sim.trace.format import TraceError, TraceReader
from device_sim.trace.importer import ImportOptions, import_recording, open_recording
from kmeband.cli import main

T0 = 1_767_254_400.0  # 2026-01-01T08:00:00Z
G = 9.80665
GRAVITY_DIR = np.array([0.2, -0.3, 0.933])  # a tilted wrist, |g| = 1


def ppg_signal(t: np.ndarray) -> np.ndarray:
    """A pulse at 72 bpm with a strong second harmonic (a dicrotic notch), on a baseline."""
    s = t - T0
    return 2000 + 40 * np.sin(2 * np.pi * 1.2 * s) + 25 * np.sin(2 * np.pi * 2.4 * s + 0.7)


def acc_signal(t: np.ndarray) -> np.ndarray:
    """Gravity plus an arm swing at 1.8 Hz on x, in g."""
    s = t - T0
    swing = 0.3 * np.sin(2 * np.pi * 1.8 * s)
    return GRAVITY_DIR + np.column_stack([swing, 0.5 * swing, np.zeros_like(s)])


@dataclass
class Shape:
    """One real-file shape: how to write it, the options it needs, what the import reports."""

    rate: float
    seconds: float = 90.0
    layout: str = "header"  # header | noheader
    delimiter: str = ","
    time: str | None = "s"  # None (stated rate), s, ms, iso, rel
    ppg: bool = True
    acc: bool = True
    acc_unit: str = "g"
    gravity: bool = True
    header_unit: bool = False  # the unit in the column names, as "acc_x [m/s^2]"
    jitter_s: float = 0.0
    tick_s: float = 0.0
    gap: tuple[float, float] | None = None  # (at, length) seconds
    extra: bool = False
    args: tuple[str, ...] = ()
    stored_hz: int | None = None
    timing: str = "regular"
    report_unit: str = "g"
    report_gravity: str = "included"
    tolerance: float = 0.02  # relative to the AC amplitude
    shift_s: float = 0.0  # a constant time offset the timestamps leave unknowable
    offset_s: float = 0.0  # the first sample this long after a whole second
    edge_tolerance: float = 0.2  # within half a second of a run's ends
    sorted_times: bool = True  # jitter never steps back
    expect: dict[str, object] = field(default_factory=dict)


SHAPES: dict[str, Shape] = {
    "header-stated-25": Shape(25, time=None, timing="stated"),
    "noheader-time-s-32": Shape(32, layout="noheader"),
    "tsv-ms-50": Shape(50, delimiter="\t", time="ms"),
    "iso-time-64": Shape(64, time="iso"),
    # local wall-clock times without a zone, "2026-01-01 09:00:00.000000" at UTC+01:00
    "iso-local-time-25": Shape(25, time="iso-local", args=("--tz-offset-min", "60")),
    "semicolon-51.2": Shape(51.2, delimiter=";", stored_hz=51),
    "rel-time-100": Shape(100, time="rel"),
    "128": Shape(128),
    "250": Shape(250, stored_hz=125, seconds=60),
    "1000": Shape(1000, stored_hz=125, seconds=30),
    # at 8 Hz a run's last grid sample lies 85 ms past its last sample: extrapolated
    "8-up": Shape(8, stored_hz=25, tolerance=0.03, edge_tolerance=1.0),
    "12.5-up": Shape(12.5, time=None, stored_hz=25, timing="stated", tolerance=0.03),
    "jitter-50": Shape(50, jitter_s=0.003, timing="retimed"),
    # host timestamps whose jitter sometimes steps back by less than a sample
    "jitter-unsorted-50": Shape(50, jitter_s=0.006, timing="retimed", sorted_times=False),
    # a clock that floors to 16 ms ticks reads 8 ms early on average: the data cannot say
    "tick16ms-50": Shape(50, tick_s=0.016, timing="retimed", shift_s=0.008),
    "tick16ms-100": Shape(100, tick_s=0.016, timing="retimed", shift_s=0.008),
    "gap-25": Shape(25, gap=(40.0, 30.0), seconds=120, expect={"runs": 2, "gaps_s": 30.0}),
    "partial-last-second": Shape(25, seconds=75.4, expect={"seconds": 75, "trimmed_s": 0.4}),
    "extra-string-columns": Shape(25, extra=True),
    "start-mid-second": Shape(64, offset_s=0.37, expect={"start_utc": T0 + 1, "seconds": 89}),
    "mg-gravity": Shape(50, acc_unit="mg", report_unit="mg"),
    "ms2-gravity": Shape(50, acc_unit="m/s2", report_unit="m/s2"),
    "mg-no-gravity": Shape(
        50,
        acc_unit="mg",
        gravity=False,
        args=("--acc-unit", "mg"),
        report_unit="mg",
        report_gravity="removed",
    ),
    "ms2-no-gravity-header-unit": Shape(
        50,
        acc_unit="m/s2",
        gravity=False,
        header_unit=True,
        report_unit="m/s2",
        report_gravity="removed",
    ),
    "ppg-only": Shape(64, acc=False),
    "acc-only": Shape(30, ppg=False, stored_hz=30),
}


def _times(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """The true sample times, and the times the file states (jittered, ticked)."""
    n = round(shape.seconds * shape.rate)
    true = T0 + shape.offset_s + np.arange(n) / shape.rate
    if shape.gap is not None:
        at, length = shape.gap
        true = np.where(true - T0 >= at, true + length, true)
    stated = true.copy()
    if shape.jitter_s:
        stated = stated + np.random.default_rng(1).normal(0, shape.jitter_s, n)
        if shape.sorted_times:
            stated = np.maximum.accumulate(stated)
    if shape.tick_s:
        stated = np.floor((stated - T0) / shape.tick_s) * shape.tick_s + T0
    return true, stated


def write_shape(path: Path, shape: Shape) -> Path:
    true, stated = _times(shape)
    columns: list[tuple[str, list[str]]] = []
    if shape.time == "s":
        columns.append(("timestamp", [f"{v:.6f}" for v in stated]))
    elif shape.time == "ms":
        columns.append(("time_ms", [f"{v * 1000:.3f}" for v in stated]))
    elif shape.time == "rel":
        columns.append(("time_s", [f"{v - T0:.6f}" for v in stated]))
    elif shape.time == "iso":
        iso = [
            dt.datetime.fromtimestamp(v, dt.UTC).isoformat(timespec="microseconds") for v in stated
        ]
        columns.append(("datetime", [s.replace("+00:00", "Z") for s in iso]))
    elif shape.time == "iso-local":
        local = [dt.datetime.fromtimestamp(v + 3600, dt.UTC).replace(tzinfo=None) for v in stated]
        columns.append(
            ("Timestamp", [w.isoformat(sep=" ", timespec="microseconds") for w in local])
        )
    if shape.ppg:
        columns.append(("PPG", [f"{v:.4f}" for v in ppg_signal(true)]))
    if shape.extra:
        columns.append(("activity", ["walk" if i % 2 else "sit, idle" for i in range(len(true))]))
    if shape.acc:
        acc = acc_signal(true)
        if not shape.gravity:
            acc = acc - GRAVITY_DIR
        acc = acc * {"g": 1.0, "mg": 1000.0, "m/s2": G}[shape.acc_unit]
        unit = {"g": "g", "mg": "mg", "m/s2": "m/s^2"}[shape.acc_unit]
        for axis in range(3):
            name = f"acc_{'xyz'[axis]}" + (f" [{unit}]" if shape.header_unit else "")
            columns.append((name, [f"{v:.6f}" for v in acc[:, axis]]))
    if shape.extra:
        columns.append(("device", ["watch-7"] * len(true)))
    d = shape.delimiter
    lines = []
    if shape.time is None:
        lines += [f"# sample_rate_hz={shape.rate}", "# start_utc=2026-01-01T08:00:00Z"]
    if shape.layout == "header":
        lines.append(d.join(name for name, _ in columns))
    for row in zip(*(values for _, values in columns), strict=True):
        fields = [f'"{v}"' if d in v or "," in v else v for v in row]
        lines.append(d.join(fields).replace(".", ",") if d == ";" else d.join(fields))
    path.write_text("\n".join(lines) + "\n")
    return path


def _shape_args(shape: Shape) -> list[str]:
    args = list(shape.args)
    if shape.time == "rel":
        args += ["--start", "2026-01-01T08:00:00Z"]
    return args


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_real_file_shape_imports_and_replays_unchanged(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shape = SHAPES[name]
    source = write_shape(tmp_path / "rec.csv", shape)
    trace = tmp_path / "rec.kmetrace"
    args = _shape_args(shape)
    assert main(["import", str(source), str(trace), *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["import"]

    reader = TraceReader(trace)
    md = reader.metadata
    stored = shape.stored_hz or int(shape.rate)
    assert md.provenance == report
    channels = {c["name"]: c for c in report["channels"]}
    assert set(channels) == {n for n, on in (("acc", shape.acc), ("ppg", shape.ppg)) if on}
    for c in channels.values():
        assert c["stored_hz"] == stored
        assert c["timing"] == shape.timing
        assert c["native_hz"] == pytest.approx(shape.rate, rel=1e-3)
    if shape.acc:
        assert channels["acc"]["unit"] == shape.report_unit
        assert channels["acc"]["gravity"].startswith(shape.report_gravity)
    for key, value in shape.expect.items():
        assert report[key] == pytest.approx(value), key
    expected_absent = {"battery", "gnss", "skin_temp"} | {
        n for n, on in (("acc", shape.acc), ("ppg", shape.ppg)) if not on
    }
    assert set(md.absent_channels) == expected_absent

    # the samples are the signal, on whole seconds at a whole-Hz rate
    blocks = list(reader.sensor_blocks())
    assert all(b.t0 == int(b.t0) and b.duration_s == int(b.duration_s) for b in blocks)
    assert md.start_utc == T0 + math.ceil(shape.offset_s)
    t = np.concatenate([b.t0 + np.arange(round(b.duration_s * stored)) / stored for b in blocks])
    t_true = t + shape.shift_s
    # a resampling filter has no samples beyond a run's ends: judge the first and last half
    # second of each run loosely, the rest tightly
    starts = np.concatenate(([0], np.flatnonzero(np.diff(t) > 1.5 / stored) + 1))
    ends = np.concatenate((starts[1:], [len(t)]))
    edge = np.zeros(len(t), dtype=bool)
    for a, z in zip(starts, ends, strict=True):
        edge[a : a + stored // 2] = edge[z - stored // 2 : z] = True
    errors = []
    if shape.ppg:
        errors.append(np.abs(np.concatenate([b.ppg for b in blocks]) - ppg_signal(t_true)) / 65)
    if shape.acc:
        want = acc_signal(t_true) - (0 if shape.gravity else GRAVITY_DIR - [0, 0, 1])
        errors.append(np.abs(np.concatenate([b.acc for b in blocks]) - want).max(axis=1) / 0.3)
    for err in errors:
        assert float(np.max(err[~edge])) < shape.tolerance, (name, float(np.max(err[~edge])))
        assert float(np.max(err[edge])) < shape.edge_tolerance, (name, float(np.max(err[edge])))

    # replaying the file and replaying the trace give the same records
    direct, via_trace = tmp_path / "direct.json", tmp_path / "trace.json"
    assert main(["replay", str(source), *args, "--out", str(direct)]) == 0
    assert main(["replay", str(trace), "--out", str(via_trace)]) == 0
    assert direct.read_bytes() == via_trace.read_bytes()
    records = json.loads(direct.read_text())
    assert any(r["stream"] == "activity_minutes" for r in records)


def test_import_is_deterministic_and_the_python_api_matches_the_cli(tmp_path: Path) -> None:
    source = write_shape(tmp_path / "rec.csv", SHAPES["jitter-50"])
    md, report = import_recording(source, tmp_path / "a.kmetrace")
    import_recording(source, tmp_path / "b.kmetrace", ImportOptions())
    assert (tmp_path / "a.kmetrace").read_bytes() == (tmp_path / "b.kmetrace").read_bytes()
    assert main(["import", str(source), str(tmp_path / "c.kmetrace")]) == 0
    assert (tmp_path / "c.kmetrace").read_bytes() == (tmp_path / "a.kmetrace").read_bytes()
    assert report is not None and md.provenance == report.to_dict()
    assert "retimed" in "\n".join(report.lines())
    # a trace is an input too: opening one gives its own blocks, with no import report
    recording = open_recording(tmp_path / "a.kmetrace")
    assert recording.report is None and recording.metadata == md


def test_import_prints_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_shape(tmp_path / "rec.csv", SHAPES["gap-25"])
    assert main(["import", str(source), str(tmp_path / "t.kmetrace")]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    assert "2 run(s), 30 s of gaps kept as gaps" in captured.err
    assert "unit g (detected), gravity included (detected)" in captured.err


def test_missing_samples_inside_a_run_are_interpolated_not_stitched(tmp_path: Path) -> None:
    # a 25 Hz file with a stated rate and five empty PPG cells: the row still holds its time
    n = 25 * 70
    t = T0 + np.arange(n) / 25
    ppg = [f"{v:.4f}" for v in ppg_signal(t)]
    for i in range(500, 505):
        ppg[i] = ""
    path = tmp_path / "holes.csv"
    path.write_text(
        "# sample_rate_hz=25\n# start_utc=1767254400\nppg,ax,ay,az\n"
        + "\n".join(f"{p},0.2,-0.3,0.933" for p in ppg)
        + "\n"
    )
    recording = open_recording(path)
    assert recording.report is not None
    (ppg_report,) = [c for c in recording.report.channels if c.name == "ppg"]
    assert ppg_report.samples_dropped == 5 and ppg_report.timing == "interpolated"
    samples = np.concatenate([b.ppg for b in recording.blocks()])
    assert len(samples) == n
    # the samples around the hole are where they were: no shift after it
    np.testing.assert_allclose(samples[600:], ppg_signal(t[600:]), atol=0.05)


# ----------------------------------------------------------------------- refusals

_PPG_ROWS = "\n".join(f"{2000 + 40 * np.sin(i / 3):.3f}" for i in range(200)) + "\n"
_TIMED = "".join(f"{T0 + i / 25:.3f},{i % 7}\n" for i in range(200))


def _stepped(step: float) -> str:
    return "time,ppg\n" + "".join(f"{i * step:.3f},{i % 7}\n" for i in range(100))


REFUSALS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # name: (file text, extra arguments, what the message must say)
    "no rate, no times": ("ppg\n" + _PPG_ROWS, ("--start", "0"), "with --rate"),
    "no start": ("# sample_rate_hz=25\nppg\n" + _PPG_ROWS, (), "with --start"),
    "relative times, no start": (_stepped(0.04), (), "with --start"),
    "rate comment not a number": (
        "# sample_rate_hz=fast\n# start_utc=0\nppg\n" + _PPG_ROWS,
        (),
        "fix it or give --rate",
    ),
    "rate comment out of range": (
        "# sample_rate_hz=4000\n# start_utc=0\nppg\n" + _PPG_ROWS,
        (),
        "Fix it or give --rate",
    ),
    "rate disagrees with times": ("timestamp,ppg\n" + _TIMED, ("--rate", "50"), "drop --rate"),
    "time goes back": (
        "timestamp,ppg\n" + _TIMED.replace(f"{T0 + 4:.3f}", f"{T0:.3f}"),
        (),
        "time goes back at line 102 (ppg); sort the rows by time",
    ),
    "time never advances": (
        "datetime,ppg\n" + "".join(f"2026-01-01,{i % 7}\n" for i in range(50)),
        (),
        "the time column never advances (ppg)",
    ),
    "time unit unknown": (_stepped(0.4), ("--start", "0"), "give its unit with --time-unit"),
    "rate below 8 Hz": (
        _stepped(0.2),
        ("--start", "0", "--time-unit", "s"),
        "sampled at 5 Hz; kmeband imports 8 Hz to 1000 Hz. If the times are in another unit",
    ),
    "start not a time": ("ppg\n" + _PPG_ROWS, ("--rate", "25", "--start", "soon"), "--start"),
    "headerless layout": ("1,2,3,4,5,6,7\n" * 30, ("--rate", "25", "--start", "0"), "--columns"),
    "no sensor columns": ("time,temp\n1,2\n", (), "name them with --columns"),
    "two axes": ("time,ppg,ax,ay\n" + _TIMED, (), "three axes, found only ax, ay"),
    "text in a sensor column": (
        "timestamp,ppg\n" + _TIMED + f"{T0 + 9:.3f},high\n",
        (),
        "line 202, column ppg: 'high' is not a number",
    ),
    "--columns without sensors": (_stepped(0.04), ("--columns", "time,x"), "--columns names no"),
    "acc unit unknown": (
        "timestamp,ax,ay,az\n" + "".join(f"{T0 + i / 25},{i % 3 / 10},0,0\n" for i in range(100)),
        (),
        "with --acc-unit g|mg|m/s2",
    ),
    "acc neither 1 g nor 0 g": (
        "timestamp,ax,ay,az\n" + "".join(f"{T0 + i / 25},0,0,3\n" for i in range(100)),
        ("--acc-unit", "g"),
        "--gravity included|removed",
    ),
    "every sample a gap": (_stepped(2.0), ("--start", "0", "--time-unit", "s"), "widen --gap-s"),
    "shorter than a second": (
        "timestamp,ppg\n" + _TIMED[:200],
        (),
        "no run of one whole second or more",
    ),
    "bad --gap-s": (_stepped(0.04), ("--start", "0", "--gap-s", "0"), "--gap-s must be"),
    "bad --resample-hz": (_stepped(0.04), ("--start", "0", "--resample-hz", "2"), "--resample-hz"),
    "bad --rate": (_stepped(0.04), ("--start", "0", "--rate", "5"), "--rate must be a number"),
    "bad --block-s": (_stepped(0.04), ("--start", "0", "--block-s", "0"), "--block-s must be"),
    "bad --tz-offset-min": (
        _stepped(0.04),
        ("--start", "0", "--tz-offset-min", "5000"),
        "--tz-offset-min must be whole minutes",
    ),
    "one data row": ("# sample_rate_hz=25\n# start_utc=0\nppg\n5\n", (), "fewer than two samples"),
    "sensor columns all empty": (
        "timestamp,ppg\n" + "".join(f"{T0 + i / 25},\n" for i in range(50)),
        (),
        "no accelerometer or PPG channel found; name the columns with --columns",
    ),
    "bad tz comment": (
        "# tz_offset_min=east\n# start_utc=0\n# sample_rate_hz=25\nppg\n" + _PPG_ROWS,
        (),
        "--tz-offset-min",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_each_refusal_names_the_option_that_fixes_it(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, args, message = REFUSALS[name]
    source = tmp_path / "bad.csv"
    source.write_text(text)
    out = tmp_path / "bad.kmetrace"
    assert main(["import", str(source), str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "start_utc" not in err and "sample_rate_hz=" not in err.replace("# sample", "")
    assert not out.exists()
    # replay reads the same inputs the same way, so it refuses with the same message
    assert main(["replay", str(source), *args]) == 2
    assert message in capsys.readouterr().err


def test_refusals_of_files_that_are_not_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(tmp_path / "none.csv"), str(tmp_path / "t.kmetrace")]) == 3
    assert "does not exist" in capsys.readouterr().err
    binary = tmp_path / "dump.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["import", str(binary), str(tmp_path / "t.kmetrace")]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text" in err and "--format" in err
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["replay", str(folder)]) == 2
    assert "see --format" in capsys.readouterr().err
    source = write_shape(tmp_path / "rec.csv", SHAPES["header-stated-25"])
    assert main(["import", str(source), str(source)]) == 2
    assert "must not be the input" in capsys.readouterr().err


def test_import_copies_a_trace_and_reports_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_shape(tmp_path / "rec.csv", SHAPES["header-stated-25"])
    first, copy = tmp_path / "first.kmetrace", tmp_path / "copy.kmetrace"
    assert main(["import", str(source), str(first)]) == 0
    capsys.readouterr()
    assert main(["import", str(first), str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["import"] is None
    assert copy.read_bytes() == first.read_bytes()


def test_options_outside_the_command_line_are_refused_with_the_option_name() -> None:
    for kwargs, message in (
        ({"format": "cwa"}, "--format must be one of"),
        ({"time_unit": "min"}, "--time-unit must be one of"),
        ({"acc_unit": "furlongs"}, "--acc-unit must be one of"),
        ({"gravity": "some"}, "--gravity must be one of"),
    ):
        with pytest.raises(TraceError, match=message):
            ImportOptions(**kwargs)  # type: ignore[arg-type]
