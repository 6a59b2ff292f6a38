"""The bumble bridge: simulated peripherals served as real BLE peripherals by Google's bumble.

Bumble's host runs the link: advertising, its own GATT server and LE Secure Connections
pairing. The bridge mirrors a peripheral's attribute table into that GATT server and relays
every read, write and subscription to the peripheral as the ATT requests a central on the
simulated radio would send, so the band's firmware, permission checks and services answer
them unchanged; the band's notifications and indications go out through bumble. Bumble
reaches a real or emulated radio through any of its transports (an HCI controller on USB or
a serial port, the Android emulator's netsim or root-canal, a TCP or WebSocket HCI), or its
in-process virtual link for tests. Needs the ``kmeband[bumble]`` extra; see
docs/real-radio.md.
"""

from device_sim.bumble_bridge.bridge import BridgeError, BumbleBridge, bumble_address
from device_sim.bumble_bridge.pairing import BandPasskeyDisplay, PasskeyDisplay

__all__ = [
    "BandPasskeyDisplay",
    "BridgeError",
    "BumbleBridge",
    "PasskeyDisplay",
    "bumble_address",
]
