"""Build the real recordings under tests/data/ and their references, once.

Two steps, both deterministic:

``extract SRC_ROOT`` cuts each recording's excerpt out of its published source (a package
or a public repository unpacked under ``SRC_ROOT``; where each lives is in ``SOURCES``)
and stores it, as the source had it apart from the cut and the rounding listed in its
SOURCE.md, as ``<name>/source.csv.gz``. Run it only to change an excerpt.

``prepare`` (the default) reads those excerpts and writes, per recording:

- ``recording.csv``: the importer's CSV (docs/traces.md): a whole-Hz rate, a start on a
  whole UTC second and a whole number of seconds. Sources with irregular clocks are put
  on a uniform grid here (how, per recording, below and in SOURCE.md).
- ``reference_rr.csv`` or ``reference_steps.csv``: the reference (docs/validate.md):
  RR intervals from an ECG (Pan & Tompkins 1985, as implemented by NeuroKit2) or from
  the PPG itself by HeartPy (van Gent et al. 2019), or the step counts of the dataset's
  ground-truth counter.
- ``manifest.json``: what ``bench/real_recordings.py`` needs (import options, reference
  files, the recording's activity).

Needs the ``realdata`` extra (``pip install -e '.[realdata]'``: HeartPy, NeuroKit2, scipy),
which only this script uses. The references are committed; nothing at test time runs it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
import json
import sys
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STANDARD_GRAVITY = 9.80665
TARGET_HZ = 100

_OXFORD = "Oxford-step-counter-DataSet/validation"
_OXFORD_OPT = "Oxford-step-counter-DataSet/optimisation/data"
# where each excerpt comes from, relative to SRC_ROOT for ``extract``
SOURCES = {
    "neurokit_rest_ppg_ecg": "NeuroKit/data/bio_resting_5min_100hz.csv",
    "heartpy_ppg_117hz": "heartpy/data/data2.csv",
    "heartpy_ppg_coarse_clock": "heartpy/data/data3.csv",
    "systole_finger_ppg_75hz": "systole/datasets/ppg.npy",
    "oxford_steps_hand_user1": f"{_OXFORD}/user1_hand_1506421989895.csv",
    "oxford_steps_hand_user2": f"{_OXFORD}/user2_hand_1506421987098.csv",
    "oxford_steps_swinging_arm_1": f"{_OXFORD_OPT}/Pixel_Jamie_Hard_SwingingArm_1",
    "oxford_steps_swinging_arm_2": f"{_OXFORD_OPT}/Pixel_Jamie_Hard_SwingingArm_2",
}
SWINGING_ARM = ("oxford_steps_swinging_arm_1", "oxford_steps_swinging_arm_2")
COARSE_CLOCK_EXCERPT_S = 300.0


def _sig(x: float) -> str:
    return f"{x:.6g}"


def _write_gz(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    # mtime=0: the same excerpt gives byte-identical files
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(buf.getvalue().encode())


def _read_gz(path: Path) -> tuple[list[str], list[list[str]]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# --------------------------------------------------------------------------- extract


def extract(src_root: Path) -> None:
    out = {name: HERE / name for name in SOURCES}
    for d in out.values():
        d.mkdir(exist_ok=True)
    src = {name: src_root / rel for name, rel in SOURCES.items()}

    with open(src["neurokit_rest_ppg_ecg"], newline="") as f:
        rows = list(csv.DictReader(f))
    _write_gz(
        out["neurokit_rest_ppg_ecg"] / "source.csv.gz",
        ["ecg", "ppg"],
        [[_sig(float(r["ECG"])), _sig(float(r["PPG"]))] for r in rows],
    )

    with open(src["heartpy_ppg_117hz"], newline="") as f:
        rows = list(csv.reader(f))
    _write_gz(out["heartpy_ppg_117hz"] / "source.csv.gz", rows[0], rows[1:])

    with open(src["heartpy_ppg_coarse_clock"], newline="") as f:
        rows = list(csv.reader(f))
    t0 = dt.datetime.fromisoformat(rows[1][0])
    keep = [
        r
        for r in rows[1:]
        if (dt.datetime.fromisoformat(r[0]) - t0).total_seconds() < COARSE_CLOCK_EXCERPT_S
    ]
    _write_gz(out["heartpy_ppg_coarse_clock"] / "source.csv.gz", rows[0], keep)

    ppg = np.load(src["systole_finger_ppg_75hz"])
    _write_gz(
        out["systole_finger_ppg_75hz"] / "source.csv.gz", ["ppg"], [[str(int(v))] for v in ppg]
    )

    for name in ("oxford_steps_hand_user1", "oxford_steps_hand_user2"):
        with open(src[name], newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        header = ["timestamp_ns", "accx", "accy", "accz", "steps_algo", "steps_truth", "steps_hw"]
        _write_gz(out[name] / "source.csv.gz", header, rows)

    for name in SWINGING_ARM:
        extract_swinging_arm(src[name], out[name])


def extract_swinging_arm(src: Path, out: Path) -> None:
    """The phone's accelerometer events and the foot switches' states, whole."""
    with open(src / "accelerometer.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    header = ["timestamp_ns", "sensor_type", "accx", "accy", "accz"]
    _write_gz(out / "source.csv.gz", header, rows)
    with open(src / "stepcounter.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    _write_gz(out / "source_steps.csv.gz", ["timestamp_ns", "foot1", "foot2"], rows)


# --------------------------------------------------------------------------- prepare


def _resample(x: np.ndarray, fs_in: float, fs_out: int) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR (a rational approximation of
    the ratio within 1e-4)."""
    from scipy.signal import resample_poly

    if abs(fs_in - fs_out) < 1e-9:
        return x
    ratio = Fraction(fs_out / fs_in).limit_denominator(2000)
    return np.asarray(resample_poly(x, ratio.numerator, ratio.denominator, axis=0))


def _uniform_from_times(t: np.ndarray, x: np.ndarray, fs_out: int) -> np.ndarray:
    """Samples with accurate but jittered timestamps onto a uniform grid: the band-limited
    signal is interpolated linearly at ``fs_out`` (the source rate is about the same, and
    wrist signals carry next to nothing above 20 Hz, so linear interpolation loses little)."""
    grid = np.arange(0.0, t[-1] - t[0], 1.0 / fs_out)
    cols = x if x.ndim == 2 else x[:, None]
    out = np.stack([np.interp(grid, t - t[0], cols[:, i]) for i in range(cols.shape[1])], axis=1)
    return out if x.ndim == 2 else out[:, 0]


def _whole_seconds(x: np.ndarray, fs: int) -> np.ndarray:
    return x[: (len(x) // fs) * fs]


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_recording(
    d: Path, start_utc: float, fs: int, columns: list[str], data: np.ndarray, fmt: str
) -> None:
    with open(d / "recording.csv", "w", encoding="utf-8", newline="") as f:
        f.write(f"# sample_rate_hz={fs}\n# start_utc={_iso(start_utc)}\n# tz_offset_min=0\n")
        f.write(",".join(columns) + "\n")
        for row in data if data.ndim == 2 else data[:, None]:
            f.write(",".join(fmt % v for v in row) + "\n")


def _write_rr(d: Path, beats_s: np.ndarray, valid: np.ndarray, method: str) -> None:
    """RR intervals: each row is the interval ending at ``t_s`` (seconds from the
    recording's first sample). Intervals the method rejected are left out, and so is an
    interval off the median of its 11 neighbours by more than 25 % (a missed or an extra
    beat: the usual artefact rule of HRV analysis)."""
    rr = np.diff(beats_s)
    med = np.array([np.median(rr[max(0, i - 5) : i + 6]) for i in range(len(rr))])
    plausible = np.abs(rr - med) <= 0.25 * med
    with open(d / "reference_rr.csv", "w", encoding="utf-8", newline="") as f:
        f.write(f"# reference: {method}\nt_s,rr_ms\n")
        for i in range(1, len(beats_s)):
            if valid[i] and valid[i - 1] and plausible[i - 1]:
                f.write(f"{beats_s[i]:.3f},{rr[i - 1] * 1000:.1f}\n")


def _manifest(d: Path, **fields: object) -> None:
    (d / "manifest.json").write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


def _heartpy_beats(ppg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    import heartpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wd, _ = heartpy.process(ppg.astype(np.float64), fs)
    peaks = np.asarray(wd["peaklist"], dtype=np.float64)
    return peaks / fs, np.asarray(wd["binary_peaklist"], dtype=bool)


HEARTPY = "HeartPy 1.2 process() peaks and rejected beats (van Gent et al. 2019)"


def prepare_neurokit() -> None:
    import neurokit2 as nk

    d = HERE / "neurokit_rest_ppg_ecg"
    header, rows = _read_gz(d / "source.csv.gz")
    data = np.array(rows, dtype=np.float64)
    ecg, ppg = data[:, header.index("ecg")], data[:, header.index("ppg")]
    fs = 100
    _, info = nk.ecg_peaks(ecg, sampling_rate=fs, method="pantompkins1985")
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.float64)
    beats = peaks / fs
    valid = np.ones(len(beats), dtype=bool)
    _write_rr(d, beats, valid, "ECG R peaks, Pan & Tompkins 1985 (NeuroKit2 ecg_peaks)")
    _write_recording(d, 1_584_694_800.0, fs, ["ppg", "ecg"], np.stack([ppg, ecg], axis=1), "%.6g")
    _manifest(
        d,
        kind="ppg",
        activity="rest",
        import_options={},
        reference={"rr": "reference_rr.csv"},
        reference_method="ecg",
    )


def prepare_heartpy_117() -> None:
    d = HERE / "heartpy_ppg_117hz"
    _, rows = _read_gz(d / "source.csv.gz")
    data = np.array(rows, dtype=np.float64)
    t_ms, ppg = data[:, 0], data[:, 1]
    fs_in = (len(t_ms) - 1) / ((t_ms[-1] - t_ms[0]) / 1000.0)
    beats, valid = _heartpy_beats(ppg, fs_in)
    _write_rr(d, beats, valid, HEARTPY)
    out = _whole_seconds(_resample(ppg, fs_in, TARGET_HZ), TARGET_HZ)
    _write_recording(d, 1_577_869_200.0, TARGET_HZ, ["ppg"], out, "%.2f")
    _manifest(
        d,
        kind="ppg",
        activity="rest",
        import_options={},
        reference={"rr": "reference_rr.csv"},
        reference_method="heartpy",
        source_rate_hz=round(fs_in, 4),
    )


def prepare_heartpy_coarse() -> None:
    d = HERE / "heartpy_ppg_coarse_clock"
    _, rows = _read_gz(d / "source.csv.gz")
    # the source's times carry no zone: read as UTC
    t = np.array([dt.datetime.fromisoformat(r[0]).replace(tzinfo=dt.UTC).timestamp() for r in rows])
    ppg = np.array([float(r[1]) for r in rows])
    # the clock ticks every 15.6 ms while samples arrive steadily: the rate is the sample
    # count over the span, and sample i sits at i / rate (the ticks only quantise it)
    fs_in = (len(t) - 1) / (t[-1] - t[0])
    beats, valid = _heartpy_beats(ppg, fs_in)
    _write_rr(d, beats, valid, HEARTPY)
    out = _whole_seconds(_resample(ppg, fs_in, TARGET_HZ), TARGET_HZ)
    start = float(np.floor(t[0]))
    _write_recording(d, start, TARGET_HZ, ["ppg"], out, "%.2f")
    _manifest(
        d,
        kind="ppg",
        activity="rest",
        import_options={},
        reference={"rr": "reference_rr.csv"},
        reference_method="heartpy",
        source_rate_hz=round(fs_in, 4),
    )


def prepare_systole() -> None:
    d = HERE / "systole_finger_ppg_75hz"
    _, rows = _read_gz(d / "source.csv.gz")
    ppg = np.array([float(r[0]) for r in rows])
    fs = 75
    beats, valid = _heartpy_beats(ppg, fs)
    _write_rr(d, beats, valid, HEARTPY)
    _write_recording(d, 1_577_872_800.0, fs, ["ppg"], _whole_seconds(ppg, fs), "%d")
    _manifest(
        d,
        kind="ppg",
        activity="rest",
        import_options={},
        reference={"rr": "reference_rr.csv"},
        reference_method="heartpy",
    )


def prepare_oxford(name: str) -> None:
    d = HERE / name
    _, rows = _read_gz(d / "source.csv.gz")
    data = np.array(rows, dtype=np.float64)
    # the first row is the app's all-zero placeholder before the sensor's first event
    data = data[np.any(data[:, 1:4] != 0, axis=1)]
    t = (data[:, 0] - data[0, 0]) / 1e9
    acc_g = _uniform_from_times(t, data[:, 1:4] / STANDARD_GRAVITY, TARGET_HZ)
    acc_g = _whole_seconds(acc_g, TARGET_HZ)
    duration = len(acc_g) // TARGET_HZ
    truth = data[:, 5]  # cumulative steps of the ground-truth counter
    # the trace starts on a whole minute so that its minutes are the firmware's minutes
    start = float(_OXFORD_START[name])
    with open(d / "reference_steps.csv", "w", encoding="utf-8", newline="") as f:
        f.write("# reference: the dataset's ground-truth step counter (steps_truth column)\n")
        f.write("start_s,end_s,steps\n")
        for a in range(0, duration, 60):
            b = min(a + 60, duration)
            n = np.interp(b, t, truth) - np.interp(a, t, truth)
            f.write(f"{a},{b},{round(float(n))}\n")
    _write_recording(d, start, TARGET_HZ, ["ax", "ay", "az"], acc_g, "%.4f")
    _manifest(
        d,
        kind="acc",
        activity="walk",
        import_options={},
        reference={"steps": "reference_steps.csv"},
        reference_method="step counter",
    )


def _write_steps_per_minute(d: Path, step_s: np.ndarray, duration: int, method: str) -> None:
    with open(d / "reference_steps.csv", "w", encoding="utf-8", newline="") as f:
        f.write(f"# reference: {method}\n")
        f.write("start_s,end_s,steps\n")
        for a in range(0, duration, 60):
            b = min(a + 60, duration)
            f.write(f"{a},{b},{int(np.sum((step_s >= a) & (step_s < b)))}\n")


SWINGING_ARM_HZ = 400  # the uniform grid the ~405 Hz sensor events are put on first
SWINGING_ARM_START = 1_506_000_000  # the source has time since boot only: a fixed whole minute


def prepare_swinging_arm(name: str) -> None:
    d = HERE / name
    _, rows = _read_gz(d / "source.csv.gz")
    data = np.array(rows, dtype=np.float64)
    t0 = data[0, 0]
    t = (data[:, 0] - t0) / 1e9
    # the sensor events arrive every 2.47 ms (about 405 Hz) with little jitter: onto a
    # uniform 400 Hz grid by linear interpolation, then down to 100 Hz with an
    # anti-aliasing polyphase filter (arm swing carries energy well above 10 Hz at
    # heel strike, which a plain 100 Hz interpolation would alias)
    fine = _uniform_from_times(t, data[:, 2:5] / STANDARD_GRAVITY, SWINGING_ARM_HZ)
    acc_g = _whole_seconds(_resample(fine, SWINGING_ARM_HZ, TARGET_HZ), TARGET_HZ)
    duration = len(acc_g) // TARGET_HZ
    _, srows = _read_gz(d / "source_steps.csv.gz")
    feet = np.array(srows, dtype=np.float64)
    ts = (feet[:, 0] - t0) / 1e9
    # a step is a foot switch closing (0 -> 1), as the dataset's own stats.js counts them
    steps = np.concatenate([ts[1:][np.diff(feet[:, col]) == 1] for col in (1, 2)])
    _write_steps_per_minute(
        d, np.sort(steps), duration, "the dataset's foot switches (a 0 -> 1 change of either foot)"
    )
    _write_recording(d, float(SWINGING_ARM_START), TARGET_HZ, ["ax", "ay", "az"], acc_g, "%.4f")
    _manifest(
        d,
        kind="acc",
        activity="walk",
        import_options={},
        reference={"steps": "reference_steps.csv"},
        reference_method="foot switches",
        source_rate_hz=round((len(t) - 1) / t[-1], 2),
    )


# each source file's name carries its start (Unix ms, e.g. 1506421989895): floored to the minute
_OXFORD_START = {
    "oxford_steps_hand_user1": 1_506_421_980,
    "oxford_steps_hand_user2": 1_506_421_980,
}

PREPARE: dict[str, Callable[[], None]] = {
    "neurokit_rest_ppg_ecg": prepare_neurokit,
    "heartpy_ppg_117hz": prepare_heartpy_117,
    "heartpy_ppg_coarse_clock": prepare_heartpy_coarse,
    "systole_finger_ppg_75hz": prepare_systole,
    "oxford_steps_hand_user1": lambda: prepare_oxford("oxford_steps_hand_user1"),
    "oxford_steps_hand_user2": lambda: prepare_oxford("oxford_steps_hand_user2"),
    "oxford_steps_swinging_arm_1": lambda: prepare_swinging_arm("oxford_steps_swinging_arm_1"),
    "oxford_steps_swinging_arm_2": lambda: prepare_swinging_arm("oxford_steps_swinging_arm_2"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step")
    ex = sub.add_parser("extract", help="cut the excerpts out of their sources")
    ex.add_argument("src_root", type=Path)
    sub.add_parser("prepare", help="write recording.csv and the references (default)")
    args = parser.parse_args(argv)
    if args.step == "extract":
        extract(args.src_root)
    for name, prepare in PREPARE.items():
        prepare()
        print(f"prepared {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
