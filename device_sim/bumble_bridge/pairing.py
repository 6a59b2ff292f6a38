"""Pairing through bumble's host with the passkey on the simulated band's display.

Bumble's SMP runs LE Secure Connections; its pairing delegate asks a
:class:`PasskeyDisplay` for the passkey and shows it there. For a band,
:class:`BandPasskeyDisplay` draws a fresh passkey per attempt from a generator seeded by the
band's seed (same seed, same passkeys), puts it on the band's screen (``display`` and
``on_display``, as the band's own pairing does) and applies the band's pairing rate limiter:
after failed attempts the band refuses to pair for a growing while (Vol 3 Part H 2.3.6).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from bumble.pairing import PairingConfig, PairingDelegate

from protocol.ble.smp import passkey_from_bytes


class PasskeyDisplay(Protocol):
    """Where a bridged peripheral shows the passkeys bumble's SMP pairs with."""

    def allows_pairing(self) -> bool:
        """False while repeated failures make the peripheral refuse to pair."""

    def new_passkey(self) -> int:
        """A fresh passkey (0..999999) for one pairing attempt."""

    def show(self, digits: str) -> None:
        """Put the six digits on the screen."""

    def finished(self, success: bool) -> None:
        """The attempt ended; the screen clears."""


class BandPasskeyDisplay:
    """A simulated band's screen and pairing limiter, for pairing done by bumble."""

    def __init__(self, endpoint: Any) -> None:
        # ``endpoint`` is a BandGattEndpoint; only its public display, limiter and band are
        # used (the bridge package does not import device_sim.band).
        self._endpoint = endpoint
        self._rng = np.random.default_rng([int(endpoint.band.config.seed), 0x5350])

    def _now(self) -> float:
        return float(self._endpoint.band.clock.now())

    def allows_pairing(self) -> bool:
        return bool(self._endpoint.limiter.allows(self._now()))

    def new_passkey(self) -> int:
        return passkey_from_bytes(self._rng.bytes(8))

    def show(self, digits: str) -> None:
        self._endpoint.display = digits
        if self._endpoint.on_display is not None:
            self._endpoint.on_display(digits)

    def finished(self, success: bool) -> None:
        self._endpoint.display = None
        if success:
            self._endpoint.limiter.record_success()
        else:
            self._endpoint.limiter.record_failure(self._now())


class _DisplayDelegate(PairingDelegate):
    """Bumble's pairing delegate for a peripheral with a display and no input."""

    def __init__(self, display: PasskeyDisplay | None) -> None:
        super().__init__(
            io_capability=(
                PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY
                if display is not None
                else PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
            )
        )
        self._display = display

    async def accept(self) -> bool:
        return self._display is not None and self._display.allows_pairing()

    async def generate_passkey(self) -> int:
        assert self._display is not None
        return self._display.new_passkey()

    async def display_number(self, number: int, digits: int) -> None:
        if self._display is not None:
            self._display.show(f"{number:0{digits}d}")


def pairing_config(display: PasskeyDisplay | None) -> PairingConfig:
    """LE Secure Connections with MITM protection and bonding; no display, no pairing."""
    return PairingConfig(sc=True, mitm=True, bonding=True, delegate=_DisplayDelegate(display))
