"""Fit the sleep stager's emission parameters on training seeds (never the test seeds).

Runs the person, sensor and firmware models (signal fidelity) over the nights of two
days of each preset (from two hours before bed to an hour after rising) for training
seeds 101-110, follows the sleep tracker's own observations (the
heart rate over the night's median, its spread within the epoch, RMSSD over the night's
median, the breathing's spread over the night's median, movement) and sets them against
the true stage of each epoch. It prints the
per-stage means and spreads for both ways the firmware sees a night: the whole night
(:class:`~device_sim.band.firmware.sleep.StageModel`, for the records) and the night so far
(``ONLINE_STAGE_MODEL``, for the smart alarm). The constants in
``device_sim/band/firmware/sleep.py`` come from this script; re-run it after changing the
person, sensor or estimator models, and paste what it prints.

About 5 minutes per training seed on two shared cores (``--jobs 2 --seeds 4`` made
the constants in sleep.py). Last line: one JSON object of the fit.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from device_sim.band.firmware import core, scoring
from device_sim.band.firmware import sleep as S
from device_sim.person.physiology import Person

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
PRESETS = ("default_day", "office_worker_week", "athlete_week", "shift_worker", "insomnia")
TRAINING_SEEDS = range(101, 111)
KEYS = ("hr", "spread", "hrv", "resp")
NIGHT_LEAD_S = 2 * 3600  # each night is simulated from this long before bed...
NIGHT_TAIL_S = 3600  # ...to this long after rising


class _Recording(S.SleepTracker):
    """The firmware's tracker, noting what it observes: per epoch of an open period (the
    online view) and per closed night (the whole-night view)."""

    def __init__(self, config: S.SleepConfig | None = None) -> None:
        super().__init__(config)
        self.online: dict[int, tuple[float, float, float, float, float]] = {}
        self.nights: list[list[S.EpochFeatures]] = []

    def _online_update(self, e: S.EpochFeatures, idx: int) -> None:
        n_hrv = len(self._still_hrv)
        n_resp = len(self._still_resp)
        super()._online_update(e, idx)
        moved = S.epoch_moved(e, self.config)
        rel = self._rels[-1] if self._rels else np.nan
        hrv = np.nan
        if len(self._still_hrv) > n_hrv and len(self._still_hrv) >= 4:
            hrv = self._still_hrv[-1] - float(np.median(self._still_hrv))
        resp = np.nan
        if len(self._still_resp) > n_resp and len(self._still_resp) >= 4:
            resp = self._still_resp[-1] - float(np.median(self._still_resp))
        spread = float(np.log(e.hr_sd + 0.2)) if e.hr > 0 else np.nan
        # a catch-up replay wins
        self.online[e.start] = (rel, spread, hrv, resp, float(moved))

    def _stage(self, epochs: list[S.EpochFeatures]) -> np.ndarray:
        self.nights.append(list(epochs))
        return super()._stage(epochs)


def observe(job: tuple[str, int]) -> dict[str, list[list[float]]]:
    """One training span: rows of (hr, spread, hrv, resp, moved, true stage) for both
    views."""
    preset, seed = job
    tracker = _Recording()
    # the firmware builds its tracker by this name: hand it the recording one
    names = vars(core)
    original = names["SleepTracker"]
    names["SleepTracker"] = lambda config=None: tracker
    person = Person.from_preset(preset, seed=seed, start_utc=T0)
    truth = person.truth(T0, 2 * DAY).sleep_stage
    try:
        # only the nights: from a while before each time in bed to a while after it
        for a, b in _in_bed_spans(truth):
            start = max(0, a - NIGHT_LEAD_S)
            start -= start % 60
            end = min(len(truth), b + NIGHT_TAIL_S)
            scoring.simulate(preset, seed, T0 + start, end - start)
    finally:
        names["SleepTracker"] = original

    def stage_at(start: int) -> int:
        return int(truth[min(start - T0 + 15, len(truth) - 1)])

    online = [[*obs, stage_at(start)] for start, obs in tracker.online.items()]
    online = [row for row in online if row[-1] >= 0]
    whole: list[list[float]] = []
    for epochs in tracker.nights:
        rel, moved = S.night_observations(epochs, tracker.config)
        hr = np.array([e.hr for e in epochs])
        spread = np.where(hr > 0, np.log(np.array([e.hr_sd for e in epochs]) + 0.2), np.nan)
        hrv = S.night_hrv(epochs, moved)
        resp = S.night_resp(epochs, moved)
        for i, e in enumerate(epochs):
            row = [rel[i], spread[i], hrv[i], resp[i], moved[i], max(0, stage_at(e.start))]
            whole.append(row)
    return {"online": online, "whole": whole}


def _in_bed_spans(stage: np.ndarray) -> list[tuple[int, int]]:
    """(first, one past last) second of each time in bed (stage >= 0)."""
    in_bed = np.concatenate(([False], stage >= 0, [False]))
    edges = np.flatnonzero(np.diff(in_bed.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def robust(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the core (within 4 MADs of the median)."""
    v = values[~np.isnan(values)]
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    core = v[np.abs(v - med) < 4 * mad]
    return round(float(core.mean()), 3), round(float(core.std()), 3)


def fit(rows: np.ndarray) -> dict[str, Any]:
    stage = rows[:, 5].astype(int)
    out: dict[str, Any] = {}
    for col, key in enumerate(KEYS):
        fits = [robust(rows[stage == s, col]) for s in range(4)]
        out[f"{key}_mean"] = [m for m, _ in fits]
        out[f"{key}_sd"] = [sd for _, sd in fits]
    out["p_moved"] = [round(float(rows[stage == s, 4].mean()), 3) for s in range(4)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--seeds", type=int, default=len(TRAINING_SEEDS), help="first N training seeds"
    )
    args = parser.parse_args()
    jobs = [(p, s) for s in TRAINING_SEEDS[: args.seeds] for p in PRESETS]
    views: dict[str, list[list[float]]] = {"online": [], "whole": []}
    with ProcessPoolExecutor(args.jobs) as pool:
        for i, got in enumerate(pool.map(observe, jobs), 1):
            for view in views:
                views[view] += got[view]
            print(f"{i}/{len(jobs)} spans", flush=True)
    result = {view: fit(np.array(rows, dtype=np.float64)) for view, rows in views.items()}
    for view, label in (("whole", "StageModel (whole night)"), ("online", "ONLINE_STAGE_MODEL")):
        print(f"{label}:")
        for key, values in result[view].items():
            print(f"  {key} = {tuple(values)}")
    print(json.dumps({"bench": "fit_sleep_model", **result}))


if __name__ == "__main__":
    main()
