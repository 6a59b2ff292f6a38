"""A bleak backend over the simulated radio: scan, connect, pair and sync simulated bands.

Three ways to use it:

* explicitly: ``BleakScanner(backend=SimBleakScanner)`` and
  ``BleakClient(device, backend=SimBleakClient)``;
* for a whole program, without editing it: :func:`install` (or run it with
  ``python -m device_sim.bleak_backend program.py``) makes bleak pick these backends
  wherever it would pick the operating system's;
* in tests: :func:`use_radio` points the backend at an in-process
  :class:`~device_sim.radio.medium.Radio` (the pytest plugin's fixtures do it for you).

Without an in-process radio the backend reaches the hub named by ``KMEBAND_HUB``.
See docs/bleak-backend.md.
"""

from __future__ import annotations

from typing import Any

from device_sim.bleak_backend.agent import (
    AGENT_ENV,
    PairingAgentError,
    PasskeyRequest,
    set_pairing_agent,
)
from device_sim.bleak_backend.att_bearer import SimLinkLostError
from device_sim.bleak_backend.bonds import BondStore, central_address, default_bond_store
from device_sim.bleak_backend.client import BandUnreachableError, SimBleakClient
from device_sim.bleak_backend.pairing import PairingFailedError, PasskeyMissingError
from device_sim.bleak_backend.port import HUB_ENV, current_port, set_default_radio, use_radio
from device_sim.bleak_backend.scanner import SimBleakScanner

__all__ = [
    "AGENT_ENV",
    "HUB_ENV",
    "BandUnreachableError",
    "BondStore",
    "PairingAgentError",
    "PairingFailedError",
    "PasskeyMissingError",
    "PasskeyRequest",
    "SimBleakClient",
    "SimBleakScanner",
    "SimLinkLostError",
    "central_address",
    "current_port",
    "default_bond_store",
    "install",
    "installed",
    "set_default_radio",
    "set_pairing_agent",
    "uninstall",
    "use_radio",
]

_originals: dict[str, Any] = {}


def _client_backend() -> tuple[type[SimBleakClient], str]:
    return SimBleakClient, SimBleakClient.__name__


def _scanner_backend() -> tuple[type[SimBleakScanner], str]:
    return SimBleakScanner, SimBleakScanner.__name__


def install() -> None:
    """Make bleak use the simulated backends wherever it would pick the OS's own.

    Patches ``bleak.get_platform_client_backend_type`` and
    ``bleak.get_platform_scanner_backend_type`` (the names ``BleakClient`` and
    ``BleakScanner`` look up when no ``backend=`` is given). Idempotent; undo with
    :func:`uninstall`.
    """
    import bleak

    if _originals:
        return
    _originals["client"] = bleak.get_platform_client_backend_type  # type: ignore[attr-defined]
    _originals["scanner"] = bleak.get_platform_scanner_backend_type  # type: ignore[attr-defined]
    bleak.get_platform_client_backend_type = _client_backend  # type: ignore[attr-defined,assignment]
    bleak.get_platform_scanner_backend_type = _scanner_backend  # type: ignore[attr-defined,assignment]


def uninstall() -> None:
    """Give bleak its own backend selection back."""
    import bleak

    if not _originals:
        return
    bleak.get_platform_client_backend_type = _originals.pop("client")  # type: ignore[attr-defined]
    bleak.get_platform_scanner_backend_type = _originals.pop("scanner")  # type: ignore[attr-defined]


def installed() -> bool:
    """True while :func:`install` is in effect."""
    return bool(_originals)
