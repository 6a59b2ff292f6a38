"""When each phone of a fleet syncs, and what its wearer does: seeded, on a virtual clock.

A band's day has the wearer opening the phone app at random moments while awake
(``opens_per_day`` on average, uniformly between ``day_start_h`` and ``day_end_h``), and,
on most nights, an overnight sync while the phone charges (between ``night_start_h`` and
``night_end_h``, with probability ``overnight_p``). The fleet ends with one closing sync per
band at the end of the run, so the accounting covers every record the band made. Some
wearers withdraw location consent on the band at a random moment (``withdraw_p``).

Everything is drawn from a generator seeded by (fleet seed, band index): the same seed
gives the same schedule, whichever worker runs the band.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from protocol.errors import UsageError

DAY_S = 86400.0


class EventKind(Enum):
    """What happens at a moment of a band's schedule."""

    SYNC = "sync"
    WITHDRAW_LOCATION = "withdraw_location"


@dataclass(frozen=True, order=True)
class Event:
    """One thing a band's wearer or phone does, ``at`` seconds after the fleet's start."""

    at: float
    kind: EventKind


@dataclass(frozen=True)
class ArrivalPattern:
    """How phones come to sync (see the module docstring)."""

    opens_per_day: float = 4.0
    day_start_h: float = 7.0
    day_end_h: float = 23.0
    overnight_p: float = 0.8
    night_start_h: float = 1.0
    night_end_h: float = 5.0
    withdraw_p: float = 0.1

    def __post_init__(self) -> None:
        if self.opens_per_day < 0:
            raise UsageError("opens per day must be zero or more")
        if not 0 <= self.day_start_h < self.day_end_h <= 24:
            raise UsageError("the app-opening window must lie within 0-24 h, start before end")
        if not 0 <= self.night_start_h < self.night_end_h <= 24:
            raise UsageError("the overnight window must lie within 0-24 h, start before end")
        for name in ("overnight_p", "withdraw_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name.replace('_p', '')} probability must be within 0..1")

    def events(self, seed: int, band_index: int, days: float) -> list[Event]:
        """The band's events over ``days`` days, in time order, ending with the closing
        sync at ``days * 86400``."""
        if days <= 0:
            raise UsageError("the fleet must run for a positive number of days")
        rng = np.random.default_rng([seed, band_index, 0x5EED])
        end = days * DAY_S
        times: list[float] = []
        for day in range(int(np.ceil(days))):
            base = day * DAY_S
            opens = int(rng.poisson(self.opens_per_day))
            lo, hi = self.day_start_h * 3600.0, self.day_end_h * 3600.0
            times.extend(base + float(x) for x in rng.uniform(lo, hi, opens))
            if rng.random() < self.overnight_p:
                n_lo, n_hi = self.night_start_h * 3600.0, self.night_end_h * 3600.0
                times.append(base + float(rng.uniform(n_lo, n_hi)))
        out = [Event(t, EventKind.SYNC) for t in times if 0.0 < t < end]
        if rng.random() < self.withdraw_p:
            out.append(Event(float(rng.uniform(0.0, end)), EventKind.WITHDRAW_LOCATION))
        out.append(Event(end, EventKind.SYNC))
        return sorted(out)


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``office_worker_week=3,athlete_week=1`` -> scenario presets with weights."""
    from device_sim.person.plan import PRESETS

    out: list[tuple[str, float]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in PRESETS:
            raise UsageError(
                f"unknown scenario {name!r} in --scenario-mix; choose from {', '.join(PRESETS)}"
            )
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(f"the weight of {name} in --scenario-mix is not a number") from None
        if w <= 0:
            raise UsageError(f"the weight of {name} in --scenario-mix must be positive")
        out.append((name, w))
    if not out:
        raise UsageError("--scenario-mix names no scenario")
    return tuple(out)


def scenario_for(mix: tuple[tuple[str, float], ...], seed: int, band_index: int) -> str:
    """The seeded scenario of one band, drawn from ``mix`` by weight."""
    rng = np.random.default_rng([seed, band_index, 0x5CE1])
    weights = np.array([w for _, w in mix])
    return mix[int(rng.choice(len(mix), p=weights / weights.sum()))][0]
