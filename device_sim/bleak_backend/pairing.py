"""The central's side of LE Secure Connections passkey entry, over one simulated link.

Where the passkey comes from, in order: the ``passkey`` argument, a ``passkey_callback``
(sync or async, called once the band displays its passkey, returning the six digits as an
int or a string), the ``KMEBAND_PASSKEY`` environment variable, then the phone's pairing
agent (:mod:`device_sim.bleak_backend.agent`), which unchanged bleak programs rely on. The
Security Manager's 30-second timer bounds it, restarted by every SMP PDU sent or received
(Vol 3 Part H 3.4), so a slow link is not cut off while the pairing moves.

The addresses enter the f5/f6 key derivation, so both ends must type them alike: the
central's (:func:`~device_sim.bleak_backend.bonds.central_address`) counts as public, the
band's as static random when its two top bits are set (as simulated bands' are), else
public (:func:`band_device_address`).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable

from bleak.exc import BleakError
from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.bleak_backend.agent import (
    AGENT_ENV,
    PairingAgentError,
    PasskeyRequest,
    ask_agent,
    current_agent,
)
from protocol.ble.smp import (
    SMP_TIMEOUT_S,
    Bond,
    DeviceAddress,
    PairingAborted,
    PairingComplete,
    PairingFailedReason,
    PasskeyNeeded,
    SendPdu,
    SmpEvent,
    SmpInitiator,
)
from protocol.errors import KmebandError, UsageError

PASSKEY_ENV = "KMEBAND_PASSKEY"

PasskeyCallback = Callable[[], int | str | Awaitable[int | str]]


class PairingFailedError(BleakError, KmebandError):
    """Pairing with the band failed; ``reason`` is the SMP Pairing Failed reason."""

    def __init__(self, message: str, reason: PairingFailedReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class PasskeyMissingError(BleakError, UsageError):
    """Pairing needs the passkey the band shows, and nothing supplied it."""


_ADVICE = {
    PairingFailedReason.CONFIRM_VALUE_FAILED: (
        "the passkey was wrong: enter the six digits the band shows now and pair again"
    ),
    PairingFailedReason.REPEATED_ATTEMPTS: (
        "too many failed attempts: wait before pairing again (the band backs off)"
    ),
    PairingFailedReason.PASSKEY_ENTRY_FAILED: "the passkey entry was cancelled: pair again",
}


def band_device_address(address: str) -> DeviceAddress:
    """A band's address with its type: static random when the two top bits are set."""
    parsed = DeviceAddress.parse(address)
    return DeviceAddress(parsed.address, random=parsed.address[0] & 0xC0 == 0xC0)


def parse_passkey(value: int | str) -> int:
    """A passkey as an int 0..999999 from an int or a string of up to six digits."""
    if isinstance(value, bool):
        raise PasskeyMissingError("the passkey is six digits, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isdigit() and len(text) <= 6):
            raise PasskeyMissingError("the passkey is the six digits the band shows, e.g. 012345")
        return int(text)
    if isinstance(value, int) and 0 <= value <= 999_999:
        return value
    raise PasskeyMissingError("the passkey is the six digits the band shows (0..999999)")


class PairingSession:
    """One pairing attempt: feed it the link's SMP frames, await :meth:`run`."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        *,
        central: str,
        band: str,
    ) -> None:
        self._send = send
        self._machine = SmpInitiator(
            local_address=DeviceAddress.parse(central),
            peer_address=band_device_address(band),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            random_bytes=os.urandom,
        )
        self._passkey_needed = asyncio.Event()
        self._result: asyncio.Future[Bond] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.Timeout | None = None

    def feed(self, pdu: bytes) -> None:
        """One SMP PDU from the band."""
        self._restart_timer()
        self._handle(self._machine.receive(pdu))

    def _restart_timer(self) -> None:
        """SMP's timer restarts with every PDU (3.4): it bounds silence, not the pairing."""
        timer = self._timer
        if timer is not None and not timer.expired():
            timer.reschedule(asyncio.get_running_loop().time() + SMP_TIMEOUT_S)

    def link_lost(self) -> None:
        if not self._result.done():
            self._result.set_exception(
                PairingFailedError("the link dropped during pairing: reconnect and pair again")
            )

    def _handle(self, events: list[SmpEvent]) -> None:
        for event in events:
            if isinstance(event, SendPdu):
                self._restart_timer()
                try:
                    self._send(event.data)
                except KmebandError:
                    self.link_lost()
            elif isinstance(event, PasskeyNeeded):
                self._passkey_needed.set()
            elif isinstance(event, PairingComplete):
                if not self._result.done():
                    self._result.set_result(event.bond)
            elif isinstance(event, PairingAborted) and not self._result.done():
                advice = _ADVICE.get(event.reason, "pair again")
                who = "the band refused" if event.by_peer else "pairing failed"
                if event.timed_out:
                    who, advice = "pairing timed out", "pair again within 30 s"
                self._result.set_exception(
                    PairingFailedError(f"{who} ({event.reason.name}): {advice}", event.reason)
                )

    async def run(
        self,
        passkey: int | str | None,
        passkey_callback: PasskeyCallback | None,
        request: PasskeyRequest | None = None,
    ) -> Bond:
        """Pair; returns the bond, or raises PairingFailedError / PasskeyMissingError."""
        try:
            async with asyncio.timeout(SMP_TIMEOUT_S) as timer:
                self._timer = timer
                self._handle(self._machine.start())
                waiter = asyncio.ensure_future(self._passkey_needed.wait())
                try:
                    await asyncio.wait((waiter, self._result), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if not self._result.done() and self._machine.awaiting_passkey:
                    try:
                        key = await _obtain_passkey(passkey, passkey_callback, request)
                    except PasskeyMissingError:
                        self._handle(self._machine.cancel_passkey())
                        if self._result.done():
                            self._result.exception()  # reported as PasskeyMissingError instead
                        raise
                    self._handle(self._machine.supply_passkey(key))
                return await self._result
        except TimeoutError:
            self._handle(self._machine.timeout())
            raise PairingFailedError(
                f"pairing stalled for {SMP_TIMEOUT_S:g} s (no SMP PDU, or no passkey typed): "
                "pair again"
            ) from None
        finally:
            self._timer = None


async def _obtain_passkey(
    passkey: int | str | None,
    callback: PasskeyCallback | None,
    request: PasskeyRequest | None,
) -> int:
    if passkey is not None:
        return parse_passkey(passkey)
    if callback is not None:
        value = callback()
        if inspect.isawaitable(value):
            value = await value
        return parse_passkey(value)
    env = os.environ.get(PASSKEY_ENV)
    if env:
        return parse_passkey(env)
    try:
        agent = current_agent()
        if agent is not None and request is not None:
            return parse_passkey(await ask_agent(agent, request))
    except PairingAgentError as exc:
        raise PasskeyMissingError(str(exc)) from None
    raise PasskeyMissingError(
        "pairing needs the passkey the band displays: set the pairing agent "
        f"({AGENT_ENV}=auto reads it off a simulated band, {AGENT_ENV}=ask asks on the "
        "terminal), pass pair(passkey=...) or passkey_callback=..., or set "
        f"{PASSKEY_ENV}=<six digits>"
    )
