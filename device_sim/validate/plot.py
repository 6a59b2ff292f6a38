"""The validation figure: heart rate over time and its Bland–Altman plot, steps per
interval, and the two hypnograms. Needs matplotlib (the ``report`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from device_sim.validate.compare import ValidationReport
from device_sim.validate.reference import ValidateError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ValidateError(
            "--png needs matplotlib: pip install 'kmeband[report]' (or leave --png out)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(report: ValidationReport, path: str | Path, title: str = "") -> None:
    """Write the figure for ``report`` as a PNG (deterministic: no dates in the file)."""
    plt = _pyplot()
    rows = [
        name
        for name, part in (
            ("hr", report.heart_rate),
            ("steps", report.steps),
            ("sleep", report.sleep),
        )
        if part is not None
    ]
    if not rows:
        raise ValidateError("nothing to draw: the reference has no heart rate, steps or sleep")
    fig, axes = plt.subplots(
        len(rows), 2, figsize=(12, 3.4 * len(rows)), squeeze=False, constrained_layout=True
    )
    t0 = report.start_utc
    for row, name in zip(axes, rows, strict=True):
        if name == "hr":
            _draw_hr(row, report, t0)
        elif name == "steps":
            _draw_steps(row, report, t0)
        else:
            _draw_sleep(row, report, t0)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _draw_hr(row: Any, report: ValidationReport, t0: float) -> None:
    hr = report.heart_rate
    assert hr is not None
    ax, ba = row
    minutes = (hr.times - t0) / 60
    ax.plot(minutes, hr.reference, "k-", lw=1.2, label="reference")
    ax.plot(minutes, hr.estimate, "o", ms=2.5, color="tab:red", label="firmware")
    ax.set_xlabel("minutes from start")
    ax.set_ylabel("heart rate (bpm)")
    a = hr.agreement
    ax.set_title(f"heart rate: MAE {a.mae:.1f} bpm, {a.within_pct:.0f} % within 5 bpm")
    ax.legend(loc="upper right", fontsize=8)
    mean = (hr.estimate + hr.reference) / 2
    diff = hr.estimate - hr.reference
    ba.plot(mean, diff, "o", ms=2.5, color="tab:blue")
    if a.n > 1:
        for y, style in ((a.bias, "-"), (a.loa_low, "--"), (a.loa_high, "--")):
            ba.axhline(y, color="k", ls=style, lw=1)
        ba.set_title(
            f"Bland–Altman: bias {a.bias:+.1f}, limits {a.loa_low:+.1f} to {a.loa_high:+.1f} bpm"
        )
    ba.set_xlabel("mean of firmware and reference (bpm)")
    ba.set_ylabel("firmware - reference (bpm)")


def _draw_steps(row: Any, report: ValidationReport, t0: float) -> None:
    st = report.steps
    assert st is not None
    ax, ba = row
    x = (st.starts - t0) / 60
    ax.bar(x - 0.2, st.reference, width=0.4, color="0.4", label="reference", align="center")
    ax.bar(x + 0.2, st.estimate, width=0.4, color="tab:red", label="firmware", align="center")
    ax.set_xlabel("interval start (minutes from start)")
    ax.set_ylabel("steps")
    d = st.as_dict()
    err = d["total_error_pct"]
    ax.set_title(
        f"steps: {d['counted_steps']} counted, {d['reference_steps']} reference"
        + (f" ({err:+.1f} %)" if err is not None else "")
    )
    ax.legend(loc="upper right", fontsize=8)
    a = st.agreement
    ba.plot((st.estimate + st.reference) / 2, st.estimate - st.reference, "o", color="tab:blue")
    if a.n > 1:
        for y, style in ((a.bias, "-"), (a.loa_low, "--"), (a.loa_high, "--")):
            ba.axhline(y, color="k", ls=style, lw=1)
    ba.set_xlabel("mean steps per interval")
    ba.set_ylabel("firmware - reference")
    ba.set_title("Bland–Altman of steps per interval")


def _draw_sleep(row: Any, report: ValidationReport, t0: float) -> None:
    sl = report.sleep
    assert sl is not None
    ax, cm = row
    hours = (sl.starts - t0) / 3600
    order = {0: 3, 3: 2, 1: 1, 2: 0, 4: 1}  # wake on top, then REM, light, deep
    ax.step(hours, [order[int(s)] for s in sl.reference], "k-", where="post", label="reference")
    ax.step(
        hours,
        [order[int(s)] + 0.08 for s in sl.estimate],
        "-",
        color="tab:red",
        where="post",
        label="firmware",
    )
    ax.set_yticks([0, 1, 2, 3], ["deep", "light", "REM", "wake"])
    ax.set_xlabel("hours from start")
    sw = sl.sleep_wake
    ax.set_title(f"sleep/wake: accuracy {sw.accuracy:.2f}, kappa {sw.kappa:.2f}")
    ax.legend(loc="upper right", fontsize=8)
    asleep_ref = sl.reference != 0
    asleep_est = sl.estimate != 0
    m = np.array(
        [
            [np.sum(~asleep_ref & ~asleep_est), np.sum(~asleep_ref & asleep_est)],
            [np.sum(asleep_ref & ~asleep_est), np.sum(asleep_ref & asleep_est)],
        ]
    )
    cm.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        cm.text(j, i, str(v), ha="center", va="center")
    cm.set_xticks([0, 1], ["wake", "sleep"])
    cm.set_yticks([0, 1], ["wake", "sleep"])
    cm.set_xlabel("firmware")
    cm.set_ylabel("reference")
    cm.set_title("epochs")
