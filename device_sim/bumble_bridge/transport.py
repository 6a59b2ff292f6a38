"""Where a bridge's bumble Device finds its controller.

:func:`open_bridge` opens any bumble transport by its spec (``usb:0``, ``serial:/dev/ttyACM0``,
``android-netsim``, ``tcp-client:127.0.0.1:6402``, ...; bumble's documentation lists them) and
puts a bridge on it. :class:`VirtualAir` is bumble's in-process virtual link: controllers
that hear each other with no radio, for tests.
"""

from __future__ import annotations

from typing import Any

from bumble.controller import Controller
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from device_sim.bumble_bridge.bridge import BridgeError, BumbleBridge
from device_sim.bumble_bridge.pairing import PasskeyDisplay
from device_sim.radio.medium import Peripheral
from protocol.ble.gatt_database import AttributeDatabase


class VirtualAir:
    """Bumble's in-process link: each host made here gets a controller on the same air."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]

    def host(self, name: str) -> Host:
        controller = Controller(name, link=self.link)
        return Host(controller, AsyncPipeSink(controller))


class TransportBridge:
    """A bridge and the transport it owns (closed together)."""

    def __init__(self, bridge: BumbleBridge, transport: Any) -> None:
        self.bridge = bridge
        self._transport = transport

    async def close(self) -> None:
        await self.bridge.close()
        await self._transport.close()


async def open_bridge(
    spec: str,
    peripheral: Peripheral,
    database: AttributeDatabase,
    *,
    passkey_display: PasskeyDisplay | None = None,
) -> TransportBridge:
    """Open the bumble transport ``spec``, serve ``peripheral`` on it and advertise."""
    try:
        transport = await open_transport(spec)
    except Exception as exc:  # bumble raises its own errors, or OSError, per transport
        raise BridgeError(
            f"bumble could not open the transport {spec!r} ({type(exc).__name__}: {exc}); "
            "check the spec (see docs/real-radio.md) and that the controller is attached"
        ) from None
    bridge = BumbleBridge.with_hci(
        peripheral, database, transport.source, transport.sink, passkey_display=passkey_display
    )
    try:
        await bridge.start()
    except Exception as exc:
        await transport.close()
        raise BridgeError(
            f"the controller on {spec!r} did not start ({type(exc).__name__}: {exc}); "
            "is another program using it?"
        ) from None
    return TransportBridge(bridge, transport)
