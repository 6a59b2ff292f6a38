"""What a completed pairing leaves behind: the bond, serialisable for the caller to store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import cbor2

from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp_pdu import (
    MAX_ENCRYPTION_KEY_SIZE,
    MIN_ENCRYPTION_KEY_SIZE,
    DeviceAddress,
    SmpError,
)
from protocol.errors import UsageError

BOND_FORMAT_VERSION = 1

_T = TypeVar("_T")


class BondFormatError(SmpError):
    """Stored bond bytes cannot be read back."""


@dataclass(frozen=True)
class Bond:
    """The keys and security of a pairing with one peer.

    For LE Secure Connections EDIV and Rand are zero (the LTK is derived by both sides,
    never distributed). The LTK and IRK are left out of ``repr`` so a bond can never leak
    into a log line by accident.
    """

    peer_address: DeviceAddress
    ltk: bytes = field(repr=False)
    security_level: SecurityLevel
    key_size: int = MAX_ENCRYPTION_KEY_SIZE
    ediv: int = 0
    rand: int = 0
    secure_connections: bool = True
    peer_irk: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.ltk) != 16:
            raise UsageError("a bond's LTK is 16 octets")
        if not MIN_ENCRYPTION_KEY_SIZE <= self.key_size <= MAX_ENCRYPTION_KEY_SIZE:
            raise UsageError("a bond's key size is 7..16 octets")
        if not 0 <= self.ediv <= 0xFFFF or not 0 <= self.rand < 1 << 64:
            raise UsageError("EDIV is 16 bits and Rand 64 bits")
        if self.peer_irk is not None and len(self.peer_irk) != 16:
            raise UsageError("an IRK is 16 octets")

    def to_bytes(self) -> bytes:
        """CBOR encoding for storage (the caller keeps it secret: it holds the LTK)."""
        return cbor2.dumps(
            {
                "v": BOND_FORMAT_VERSION,
                "addr": self.peer_address.address,
                "random": self.peer_address.random,
                "ltk": self.ltk,
                "level": int(self.security_level),
                "key_size": self.key_size,
                "ediv": self.ediv,
                "rand": self.rand,
                "sc": self.secure_connections,
                "irk": self.peer_irk,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Bond:
        """Read a bond written by :meth:`to_bytes`; raises :class:`BondFormatError`."""
        try:
            raw: Any = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises several types on corrupt input
            raise BondFormatError("stored bond is not valid CBOR: pair the device again") from exc
        if not isinstance(raw, dict) or raw.get("v") != BOND_FORMAT_VERSION:
            raise BondFormatError("stored bond has an unknown format: pair the device again")
        try:
            return cls(
                peer_address=DeviceAddress(_typed(raw, "addr", bytes), _typed(raw, "random", bool)),
                ltk=_typed(raw, "ltk", bytes),
                security_level=SecurityLevel(_typed(raw, "level", int)),
                key_size=_typed(raw, "key_size", int),
                ediv=_typed(raw, "ediv", int),
                rand=_typed(raw, "rand", int),
                secure_connections=_typed(raw, "sc", bool),
                peer_irk=None if raw.get("irk") is None else _typed(raw, "irk", bytes),
            )
        except (UsageError, ValueError, KeyError, TypeError) as exc:
            raise BondFormatError("stored bond is damaged: pair the device again") from exc


def _typed(raw: dict[Any, Any], key: str, kind: type[_T]) -> _T:
    value = raw[key]
    # bool is an int subclass: keep the two apart so a flag never becomes a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(key)
    return value
