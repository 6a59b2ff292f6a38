"""``kmeband validate``: the firmware's estimates against a reference, scored.

The recording (a trace, or a CSV recording as ``kmeband replay`` reads it) goes through
the firmware; its heart-rate samples, activity minutes and sleep epochs are compared with
the reference: labels files (``--reference``, docs/validate.md) or, without them, the
ground truth a simulated trace carries. Prints the figures (``--json``: one object) and
draws them (``--png``). Exit codes: 0 scored, 2 usage or a bad file, 3 a file named on the
command line does not exist.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device_sim.signals import SensorBlock, TruthBlock
from device_sim.trace import importer
from device_sim.trace.cli import add_import_options, import_options
from device_sim.trace.format import TraceReader
from device_sim.trace.importer import detect_format
from device_sim.validate.compare import HR_WINDOW_S, ValidationReport, run_firmware, validate
from device_sim.validate.reference import Reference, ValidateError, from_truth, read_labels
from protocol.errors import KmebandError

EXIT_OK, EXIT_USAGE, EXIT_NOT_FOUND = 0, 2, 3


class ValidateInputNotFoundError(KmebandError):
    """The recording named on the command line does not exist."""

    exit_code = EXIT_NOT_FOUND


def open_recording(
    args: argparse.Namespace,
) -> tuple[float, Iterator[tuple[SensorBlock, TruthBlock | None]]]:
    """(start UTC, the recording's blocks with their truth where it has any).

    A trace keeps its ground truth; any other recording is read as ``kmeband import``
    reads it (docs/traces.md) and has none.
    """
    path: Path = args.recording
    if not path.exists():
        raise ValidateInputNotFoundError(f"{path} does not exist; check the recording's path")
    options = import_options(args)
    fmt = options.format if options.format != "auto" else detect_format(path)
    if fmt != "trace":
        recording = importer.open_recording(path, options)
        return recording.metadata.start_utc, ((b, None) for b in recording.blocks())
    reader = TraceReader(path)
    return reader.metadata.start_utc, ((b.sensor, b.truth) for b in reader)


def validate_recording(args: argparse.Namespace) -> ValidationReport:
    """Run the firmware over the recording and score it against its reference."""
    if not args.hr_window_s > 0:
        raise ValidateError("--hr-window-s must be a positive number of seconds (e.g. 8)")
    start, blocks = open_recording(args)
    run = run_firmware(blocks)
    ref = Reference()
    for path in args.reference:
        ref.merge(read_labels(path, start))
    if not args.reference:
        if not run.truth:
            raise ValidateError(
                f"{args.recording} has no ground truth: give its reference with "
                "--reference FILE (formats in docs/validate.md)"
            )
        ref = from_truth(run.truth)
    return validate(run, ref, args.hr_window_s)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as a few readable lines."""
    lines = [f"references: {', '.join(report['references'])}; {report['duration_s']:.0f} s"]
    hr = report["heart_rate"]
    if hr is not None:
        lo, hi = hr["loa_bpm"]
        lines.append(
            f"heart rate: {hr['pairs']} samples ({_fmt(hr['coverage_pct'], ' %')} of the "
            f"reference's), MAE {_fmt(hr['mae_bpm'], ' bpm')}, MAPE {_fmt(hr['mape_pct'], ' %')}, "
            f"bias {_fmt(hr['bias_bpm'], ' bpm')} (limits {_fmt(lo)} to {_fmt(hi)}), "
            f"{_fmt(hr['within5_pct'], ' %')} within 5 bpm, "
            f"{_fmt(hr['harmonic_lock_pct'], ' %')} at 2x/3x"
        )
    st = report["steps"]
    if st is not None:
        lines.append(
            f"steps: {st['counted_steps']} counted, {st['reference_steps']} reference "
            f"({_fmt(st['total_error_pct'], ' %')}); per interval MAE "
            f"{_fmt(st['mae_steps'])}, MAPE {_fmt(st['mape_pct'], ' %')}"
        )
    sl = report["sleep"]
    if sl is not None:
        text = (
            f"sleep: {sl['epochs']} epochs, sleep/wake accuracy {_fmt(sl['sleep_wake_accuracy'])}"
            f", sensitivity {_fmt(sl['sleep_sensitivity'])}, specificity "
            f"{_fmt(sl['wake_specificity'])}, kappa {_fmt(sl['sleep_wake_kappa'])}"
        )
        if "stage_accuracy" in sl:
            text += (
                f"; stages accuracy {_fmt(sl['stage_accuracy'])}, kappa {_fmt(sl['stage_kappa'])}"
            )
        lines.append(text)
    return lines


def run_validate(args: argparse.Namespace) -> int:
    report = validate_recording(args)
    data = report.as_dict()
    if args.png is not None:
        from device_sim.validate.plot import draw

        args.png.parent.mkdir(parents=True, exist_ok=True)
        draw(report, args.png, title=f"{args.recording.parent.name}/{args.recording.name}")
        data["png"] = str(args.png)
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        print("\n".join(summary_lines(data)))
        if args.png is not None:
            print(f"figure: {args.png}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``validate`` to the project's CLI."""
    p = subparsers.add_parser(
        "validate",
        help="score the firmware's estimates against a reference (labels or truth)",
        description=(
            "Replay a recording (a trace, or a CSV recording with --csv) through the firmware "
            "and compare its heart rate, steps and sleep with a reference: labels files "
            "(--reference; RR intervals or heart rate, step counts, sleep stages; formats in "
            "docs/validate.md) or, without them, a simulated trace's ground truth. Reports "
            "MAE, MAPE, bias and Bland-Altman limits of agreement, %% within 5 bpm, harmonic "
            "lock, and epoch-by-epoch accuracy, sensitivity, specificity and Cohen's kappa."
        ),
    )
    p.add_argument("recording", type=Path, help="a trace file, or a CSV recording")
    p.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        help="a labels file (repeat for several kinds); default: the trace's truth",
    )
    p.add_argument(
        "--hr-window-s",
        type=float,
        default=HR_WINDOW_S,
        help="seconds of reference averaged around each heart-rate sample (default 8)",
    )
    p.add_argument("--png", type=Path, help="draw the comparison into this PNG file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_import_options(p)  # the same inputs and options as 'kmeband import' and 'replay'
    p.set_defaults(handler=run_validate)
