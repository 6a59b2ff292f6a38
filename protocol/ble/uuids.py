"""Bluetooth UUIDs: 16-bit SIG aliases, 128-bit vendor UUIDs, and their ATT byte forms.

A UUID is always held as a :class:`uuid.UUID`; 16-bit SIG numbers are expanded over the
Bluetooth Base UUID (Core Specification Vol 3, Part B, 2.5.1). On the wire ATT carries a
16-bit alias as 2 little-endian bytes and anything else as 16 little-endian bytes.
"""

from __future__ import annotations

import uuid

from protocol.errors import KmebandError

BASE_UUID = uuid.UUID("00000000-0000-1000-8000-00805f9b34fb")
_BASE_INT = BASE_UUID.int
_ALIAS_MASK = ((1 << 128) - 1) ^ (0xFFFFFFFF << 96)


class UUIDError(KmebandError, ValueError):
    """A value is not a Bluetooth UUID in any form this library understands."""


def uuid16(alias: int) -> uuid.UUID:
    """The full UUID of a 16-bit SIG-assigned number, e.g. ``uuid16(0x180D)``."""
    if not 0 <= alias <= 0xFFFF:
        raise UUIDError(f"a 16-bit UUID alias must be 0..0xFFFF, got {alias!r}")
    return uuid.UUID(int=_BASE_INT | (alias << 96))


def alias16(value: uuid.UUID) -> int | None:
    """The 16-bit alias of a UUID built on the Base UUID, or None for a vendor UUID."""
    n = value.int
    if n & _ALIAS_MASK != _BASE_INT or (n >> 96) > 0xFFFF:
        return None
    return n >> 96


def parse_uuid(value: str | int | uuid.UUID) -> uuid.UUID:
    """Accept ``0x180D``, ``"180d"``, ``"0000180d-0000-1000-8000-00805f9b34fb"`` or a UUID."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, int):
        return uuid16(value)
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    try:
        if len(text) == 4:
            return uuid16(int(text, 16))
        if len(text) == 8:
            return uuid.UUID(int=_BASE_INT | (int(text, 16) << 96))
        return uuid.UUID(text)
    except ValueError:
        raise UUIDError(
            f"{value!r} is not a Bluetooth UUID: give 4 hex digits (a SIG alias such as "
            "'180d') or a full 128-bit UUID"
        ) from None


def uuid_to_att(value: uuid.UUID) -> bytes:
    """The ATT wire form: 2 bytes little-endian for a SIG alias, else 16 bytes little-endian."""
    alias = alias16(value)
    if alias is not None:
        return alias.to_bytes(2, "little")
    return value.bytes[::-1]


def uuid_to_att128(value: uuid.UUID) -> bytes:
    """The 16-byte little-endian form, used where ATT always carries 128 bits."""
    return value.bytes[::-1]


def uuid_from_att(data: bytes) -> uuid.UUID:
    """Decode a 2- or 16-byte little-endian ATT UUID."""
    if len(data) == 2:
        return uuid16(int.from_bytes(data, "little"))
    if len(data) == 16:
        return uuid.UUID(bytes=bytes(data[::-1]))
    raise UUIDError(f"an ATT UUID is 2 or 16 bytes long, got {len(data)}")


def short_name(value: uuid.UUID) -> str:
    """``0x180D`` for SIG aliases, the full string otherwise (for messages and docs)."""
    alias = alias16(value)
    return f"0x{alias:04X}" if alias is not None else str(value)
