"""Firmware accuracy against the person model's truth, on seeded scenarios.

Runs seeded persons through the sensor models and the firmware (signal fidelity) and
scores the records: steps over whole days with walking and running, false steps at a
desk, heart-rate error at rest/walking and running (also with the sensors at 64 and
100 Hz, over every run of the scenarios), sleep/wake and four-stage epoch agreement over
whole nights, and the share of smart alarms that rang in light sleep or awake. Seeds
here are test seeds: the sleep model was fitted on other seeds (101-110, see fit_sleep_model.py;
``--training`` scores those instead).

Last line: one JSON object with the figures (see the issue for the keys).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from device_sim.band.firmware import scoring
from protocol.kme.records import ActivityClass, SleepStage

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
WINDOW_MIN = 30
# the running heart rate is also scored at these sensor rates (the main scenarios: 25 Hz)
EXTRA_RATES_HZ = (64, 100)
RUN_LEAD_S = 600  # each run is simulated from this long before it (acquisition at rest)
RUN_TAIL_S = 300
# alarms set this long before each night's true final wake: windows at several sleep phases
ALARM_LEADS_MIN = (5, 25, 45, 65)

# (preset, seed, days): each span starts at local midnight, so it holds whole nights
SCENARIOS = [
    ("default_day", 1, 2),
    ("office_worker_week", 2, 2),
    ("athlete_week", 3, 2),
    ("shift_worker", 4, 2),
    ("insomnia", 5, 2),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=None, help="override days per scenario")
    parser.add_argument(
        "--training",
        action="store_true",
        help="score the training seeds 101-110 of every preset instead (what the models "
        "were fitted on: for diagnosis, not for the targets)",
    )
    args = parser.parse_args()
    scenarios = SCENARIOS
    if args.training:
        presets = [preset for preset, _, _ in SCENARIOS]
        scenarios = [(p, seed, 2) for seed in range(101, 111) for p in presets]
    counted = true = desk_steps = desk_h = 0.0
    rest_walk: list[np.ndarray] = []
    run_err: list[np.ndarray] = []
    truth_st: list[np.ndarray] = []
    est_st: list[np.ndarray] = []
    alarms: list[scoring.AlarmOutcome] = []
    runs_at: dict[int, list[np.ndarray]] = {hz: [] for hz in EXTRA_RATES_HZ}
    started = time.perf_counter()
    for preset, seed, days in scenarios:
        seconds = (args.days or days) * DAY
        set_times = [
            t
            for lead_min in ALARM_LEADS_MIN
            for t in scoring.smart_alarm_times(preset, seed, T0, seconds, lead_min * 60)
        ]
        run = scoring.simulate(
            preset, seed, T0, seconds, [(i, t, WINDOW_MIN) for i, t in enumerate(set_times)]
        )
        c, t = scoring.step_totals(run)
        counted, true = counted + c, true + t
        ds, dh = scoring.desk_false_steps(run)
        desk_steps, desk_h = desk_steps + ds, desk_h + dh
        errs = scoring.hr_errors(run)
        rest_walk.append(errs["rest_walk"])
        run_err.append(errs["run"])
        ts, es = scoring.sleep_epochs(run)
        truth_st.append(ts)
        est_st.append(es)
        outcomes = scoring.alarm_outcomes(run, WINDOW_MIN)
        alarms += outcomes
        rate_errs = {hz: _run_errors_at(preset, seed, run, hz) for hz in EXTRA_RATES_HZ}
        for hz, e in rate_errs.items():
            runs_at[hz].append(e)
        print(
            f"{preset:20s} seed {seed}: steps {c:.0f}/{t:.0f}, desk false {ds:.0f} in {dh:.1f} h,"
            f" HR MAE rest/walk {errs['rest_walk'].mean():.2f} run "
            f"{errs['run'].mean() if len(errs['run']) else float('nan'):.2f} (coverage "
            f"{errs['coverage'][0]:.3f}), sleep w/s {np.mean((ts > 0) == (es > 0)):.3f} "
            f"stages {np.mean(ts == es):.3f}, smart alarms ok {sum(o.ok for o in outcomes)}"
            f"/{len(outcomes)}"
            + "".join(
                f", run HR MAE at {hz} Hz {e.mean():.2f}" for hz, e in rate_errs.items() if len(e)
            ),
            flush=True,
        )
    truth_all = np.concatenate(truth_st)
    est_all = np.concatenate(est_st)
    print(f"simulated in {time.perf_counter() - started:.1f} s")
    with_light = [o for o in alarms if o.light_in_window]
    in_light = sum(o.stage_at_fire == SleepStage.LIGHT for o in with_light)
    in_wake = sum(o.stage_at_fire == SleepStage.WAKE for o in with_light)
    n_ok = sum(o.ok for o in alarms)
    run_mae = {25: float(np.concatenate(run_err).mean())}
    for hz in EXTRA_RATES_HZ:
        run_mae[hz] = float(np.concatenate(runs_at[hz]).mean())
    print(
        f"smart alarms: {len(alarms)}, in time {sum(o.in_time for o in alarms)}; "
        f"{len(with_light)} with light sleep in the window: rang in light {in_light}, "
        f"truly awake {in_wake}; ok {n_ok}"
    )
    result = {
        "bench": "accuracy",
        "steps_err_pct": round(100 * abs(counted - true) / true, 2),
        "desk_false_steps_per_h": round(desk_steps / max(desk_h, 1e-9), 2),
        "hr_mae_rest_walk_bpm": round(float(np.concatenate(rest_walk).mean()), 2),
        "hr_mae_run_bpm": round(max(run_mae.values()), 2),
        **{f"hr_mae_run_bpm_{hz}hz": round(mae, 2) for hz, mae in sorted(run_mae.items())},
        "sleep_wake_agreement": round(float(np.mean((truth_all > 0) == (est_all > 0))), 4),
        "sleep_stage_agreement": round(float(np.mean(truth_all == est_all)), 4),
        "smart_alarm_rate": round(n_ok / max(1, len(alarms)), 4),
    }
    print(json.dumps(result))


def _run_errors_at(preset: str, seed: int, run: scoring.Run, hz: int) -> np.ndarray:
    """Running heart-rate errors with the sensors at ``hz``: every run of the span,
    simulated from a few minutes before it to a few after."""
    running = np.concatenate(([False], run.activity == ActivityClass.RUN, [False]))
    edges = np.flatnonzero(np.diff(running.astype(np.int8)))
    errs = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        start = max(0, int(a) - RUN_LEAD_S)
        start -= start % 60
        end = min(run.seconds, int(b) + RUN_TAIL_S)
        span = scoring.simulate(preset, seed, run.t0 + start, end - start, hz=hz)
        errs.append(scoring.hr_errors(span)["run"])
    return np.concatenate(errs) if errs else np.zeros(0)


if __name__ == "__main__":
    main()
