"""Which radio the bleak backend talks to.

In order: a radio set in-process with :func:`use_radio` (pytest fixtures, the demo), else
the hub named by the ``KMEBAND_HUB`` environment variable (``unix:/path`` or
``tcp:127.0.0.1:PORT``, as ``kmeband sim`` prints it). One hub connection is shared per
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Iterator

from device_sim.radio.hub_client import RemoteRadio
from device_sim.radio.medium import CentralPort, RadioError

HUB_ENV = "KMEBAND_HUB"

_in_process: list[CentralPort] = []
_remote: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RemoteRadio] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def use_radio(radio: CentralPort) -> Iterator[CentralPort]:
    """Make the simulated bleak backend use ``radio`` inside this ``with`` block."""
    _in_process.append(radio)
    try:
        yield radio
    finally:
        _in_process.remove(radio)


def set_default_radio(radio: CentralPort | None) -> None:
    """Set (or clear, with None) the in-process radio outside of a ``with`` block."""
    _in_process.clear()
    if radio is not None:
        _in_process.append(radio)


async def current_port() -> CentralPort:
    """The radio to use now, opening the hub connection on first use."""
    if _in_process:
        return _in_process[-1]
    address = os.environ.get(HUB_ENV)
    if not address:
        raise RadioError(
            "no simulated radio: start a hub with 'kmeband sim' and set "
            f"{HUB_ENV} to the address it prints, or call "
            "device_sim.bleak_backend.use_radio(radio) in-process"
        )
    loop = asyncio.get_running_loop()
    remote = _remote.get(loop)
    if remote is None or remote.address != RemoteRadio(address).address:
        remote = RemoteRadio(address)
        await remote.open()
        _remote[loop] = remote
    return remote
