"""The phone's pairing agent: who types the passkey when a band asks for one.

On a real phone or PC, bleak has no passkey API: the operating system's pairing agent
(BlueZ's agent on Linux, the system dialog elsewhere) asks the user for the six digits the
band shows. The simulated backend has the same thing, so a bleak program that calls
``pair()`` or passes ``BleakClient(..., pair=True)`` pairs without a line changed:

``ask``
    asks on the terminal (standard input must be a terminal), as a desktop agent would;
``auto``
    reads the passkey off the band's display and types it: the simulated user, for tests,
    CI and demos. It works only on the simulated radio, where the display is readable;
``none``
    refuses, so pairing fails with :class:`~device_sim.bleak_backend.pairing.PasskeyMissingError`;
a callback
    :func:`set_pairing_agent` takes any function (sync or async) that gets a
    :class:`PasskeyRequest` and returns the six digits.

The agent is chosen, in order, by :func:`set_pairing_agent` in-process, then the
``KMEBAND_PAIRING_AGENT`` environment variable, then ``ask`` when standard input is a
terminal. A ``passkey``/``passkey_callback`` given to ``pair()`` or the client, and the
``KMEBAND_PASSKEY`` variable, still come first (see :mod:`device_sim.bleak_backend.pairing`).
Pairing only bonds: it never activates a band or makes the phone its owner.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocol.errors import UsageError

AGENT_ENV = "KMEBAND_PAIRING_AGENT"
AGENT_NAMES = ("ask", "auto", "none")

# How long the simulated user looks at the band for the passkey: the band shows it as soon
# as it has the central's public key, so this only covers a slow hub round trip.
DISPLAY_WAIT_S = 10.0
_DISPLAY_POLL_S = 0.02


class PairingAgentError(UsageError):
    """The pairing agent is misconfigured or cannot ask anyone for the passkey."""


@dataclass(frozen=True)
class PasskeyRequest:
    """What an agent is told when a band asks for its passkey.

    ``read_display`` returns the text the band's display shows now (the simulated radio
    makes it readable; on a real band only the user can see it).
    """

    address: str
    name: str | None
    read_display: Callable[[], Awaitable[str | None]]


PairingAgent = Callable[[PasskeyRequest], "int | str | Awaitable[int | str]"]

_agent: list[PairingAgent] = []


def set_pairing_agent(agent: PairingAgent | str | None) -> None:
    """Use ``agent`` (a callback, or ``"ask"``/``"auto"``/``"none"``) in this process.

    ``None`` goes back to the environment's choice.
    """
    _agent.clear()
    if agent is not None:
        _agent.append(agent_named(agent) if isinstance(agent, str) else agent)


def agent_named(name: str) -> PairingAgent:
    """The built-in agent called ``name``."""
    key = name.strip().lower()
    if key == "auto":
        return auto_agent
    if key == "ask":
        return terminal_agent
    if key == "none":
        return refusing_agent
    raise PairingAgentError(
        f"unknown pairing agent {name!r}: set {AGENT_ENV} to one of {', '.join(AGENT_NAMES)}"
    )


def current_agent() -> PairingAgent | None:
    """The agent to ask now, or None when there is nobody to ask."""
    if _agent:
        return _agent[-1]
    name = os.environ.get(AGENT_ENV, "").strip()
    if name:
        return agent_named(name)
    if sys.stdin is not None and sys.stdin.isatty():
        return terminal_agent
    return None


async def ask_agent(agent: PairingAgent, request: PasskeyRequest) -> int | str:
    """Call a sync or async agent."""
    value = agent(request)
    if inspect.isawaitable(value):
        value = await value
    return value


async def auto_agent(request: PasskeyRequest) -> str:
    """The simulated user: read the six digits off the band's display."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DISPLAY_WAIT_S
    while True:
        text = await request.read_display()
        if text and text.strip().isdigit():
            return text.strip()
        if loop.time() >= deadline:
            raise PairingAgentError(
                "the band shows no passkey to read: the 'auto' pairing agent works only "
                "with simulated bands that display one; set "
                f"{AGENT_ENV}=ask to type it yourself"
            )
        await asyncio.sleep(_DISPLAY_POLL_S)


async def terminal_agent(request: PasskeyRequest) -> str:
    """Ask on the terminal, as a desktop pairing agent does."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise PairingAgentError(
            "the 'ask' pairing agent needs a terminal: run interactively, or set "
            f"{AGENT_ENV}=auto for simulated bands"
        )
    label = request.name or "the band"
    prompt = f"Pairing with {label}: enter the six-digit passkey it shows: "
    return await asyncio.to_thread(input, prompt)


def refusing_agent(request: PasskeyRequest) -> str:
    """Never enters a passkey."""
    raise PairingAgentError(
        f"pairing refused: {AGENT_ENV}=none; choose 'ask' or 'auto', or pass the passkey"
    )
