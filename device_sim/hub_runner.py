"""Runs simulated bands on a hub: what ``kmeband sim`` does, usable from Python too.

:class:`BandHub` builds N bands (seeds ``seed``, ``seed + 1``, ...), optionally simulates a
backlog for them as fast as the machine allows, puts them on a radio served over a Unix
socket or loopback TCP, keeps them living on an accelerated clock, and on close persists
every band's flash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device_sim.band.flash import DEFAULT_CAPACITY_BYTES
from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import AcceleratedClock, Clock
from device_sim.clone import ClonePeripheral, load_snapshot
from device_sim.radio import LinkModel, Radio
from device_sim.radio.capture import BtsnoopCapture
from device_sim.radio.hub_server import HubServer
from device_sim.radio.hub_wire import HubAddress
from protocol.errors import UsageError

log = logging.getLogger(__name__)


def default_hub_address() -> str:
    """A per-user Unix socket in the temp directory."""
    return f"unix:{Path(tempfile.gettempdir()) / f'kmeband-{os.getuid()}.sock'}"


@dataclass
class HubOptions:
    """What ``kmeband sim`` was asked for."""

    bands: int = 1
    scenario: str = "default_day"
    seed: int = 0
    speed: float = 60.0
    fidelity: str = "signal"
    address: str = field(default_factory=default_hub_address)
    state_dir: Path | None = None
    capture: Path | None = None
    link_model: LinkModel | None = None
    backlog_days: float = 0.0
    start: float | None = None
    flash_capacity: int = DEFAULT_CAPACITY_BYTES
    #: Real seconds a central may hold a band without authenticating (0: no bound). The
    #: bands count it on their accelerated clock, so it is ``speed`` times as many band
    #: seconds: a person typing a passkey gets the same time at any --speed.
    auth_timeout_s: float = 30.0
    clone: Path | None = None  # a device.json to serve beside the bands
    jitter_s: float = 0.0  # the clone's replay jitter

    def __post_init__(self) -> None:
        if not (0 if self.clone else 1) <= self.bands <= 1000:
            raise UsageError("--bands must be 1..1000 (0 only with --clone)")
        if self.jitter_s < 0:
            raise UsageError("--jitter-ms cannot be negative")
        if not self.speed > 0:
            raise UsageError("--speed must be > 0 (1 = real time, 3600 = an hour a second)")
        if self.backlog_days < 0:
            raise UsageError("--backlog-days cannot be negative")
        if self.flash_capacity < 4096:
            raise UsageError("--flash-capacity must be at least 4096 bytes")
        if not self.auth_timeout_s >= 0:
            raise UsageError("--auth-timeout must be 0 (no bound) or more seconds")


class BandHub:
    """Bands, their radio and the hub server, started and stopped together."""

    def __init__(
        self, options: HubOptions, *, on_display: Callable[[str, str], None] | None = None
    ) -> None:
        self.options = options
        self.clock: Clock = AcceleratedClock(options.speed, start=options.start)
        self.capture = BtsnoopCapture(options.capture) if options.capture else None
        self.radio = Radio(
            self.clock, seed=options.seed, link_model=options.link_model, capture=self.capture
        )
        self.endpoints: list[BandGattEndpoint] = []
        self.clone: ClonePeripheral | None = None
        self.server: HubServer | None = None
        self._on_display = on_display

    async def start(self) -> HubAddress:
        o = self.options
        backlog_start = self.clock.now() - o.backlog_days * 86400
        for i in range(o.bands):
            state = o.state_dir / f"band-{o.seed + i}" if o.state_dir else None
            band = SimulatedBand(
                BandConfig(
                    seed=o.seed + i,
                    scenario=o.scenario,
                    fidelity=o.fidelity,
                    state_dir=state,
                    flash_capacity=o.flash_capacity,
                ),
                self.clock,
                start=backlog_start,
            )
            band.simulate_until(self.clock.now())
            auth_timeout = o.auth_timeout_s * o.speed if o.auth_timeout_s > 0 else None
            endpoint = BandGattEndpoint(band, auth_timeout_s=auth_timeout)
            if self._on_display is not None:
                address, notify = band.address, self._on_display
                endpoint.on_display = lambda text, a=address, n=notify: n(a, text)
            self.radio.attach(endpoint)
            band.start()
            endpoint.start()
            self.endpoints.append(endpoint)
        if o.clone is not None:
            snapshot = load_snapshot(o.clone)
            self.clone = ClonePeripheral(snapshot, self.clock, jitter_s=o.jitter_s, seed=o.seed)
            self.radio.attach(self.clone)
            self.clone.start()
        self.server = HubServer(self.radio, HubAddress.parse(o.address))
        return await self.server.start()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self.clone is not None:
            await self.clone.stop()
        for endpoint in self.endpoints:
            await endpoint.stop()
            await endpoint.band.stop()
            endpoint.band.close()
        if self.capture is not None:
            self.capture.close()

    async def serve_until(self, stop: asyncio.Event, duration_s: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
