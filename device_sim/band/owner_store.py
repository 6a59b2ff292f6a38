"""Who the band belongs to and which centrals it trusts: the owner key and the bonds.

The owner's public key and pseudonymous account tag are set once by activation and cleared
only by a factory reset; the bonds (one per central address, from LE Secure Connections
pairing) let a central encrypt again without pairing. Both live in the band's state
directory (``owner.bin``, ``bonds.bin``: checksummed CBOR, see
:mod:`device_sim.band.state_file`) when it has one, in memory otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2

from device_sim.band.state_file import (
    StateFileCorruptError,
    read_checked,
    refuse_if_shared,
    write_checked,
)
from protocol.ble.smp_bond import Bond, BondFormatError

_OWNER_MAGIC = b"KMEOWNER"
_BONDS_MAGIC = b"KMEBONDS"
OWNER_KEY_SIZE = 32


class OwnerStore:
    """The band's owner key, account tag and bonds; persisted when given a state directory."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self._dir = state_dir
        self.key: bytes | None = None
        self.account_tag: bytes | None = None
        self.bonds: dict[str, Bond] = {}
        if state_dir is not None:
            self._load()

    @property
    def activated(self) -> bool:
        return self.key is not None

    def activate(self, owner_public_key: bytes, account_tag: bytes) -> None:
        """Bind the band to an owner (activation); the caller checks it was unowned."""
        self.key, self.account_tag = owner_public_key, account_tag
        self._save_owner()

    def add_bond(self, central_address: str, bond: Bond) -> None:
        self.bonds[central_address] = bond
        self._save_bonds()

    def clear(self) -> None:
        """Forget the owner and every bond (factory reset)."""
        self.key = self.account_tag = None
        self.bonds.clear()
        self._save_owner()
        self._save_bonds()

    # -- files -------------------------------------------------------------------------
    def _path(self, name: str) -> Path | None:
        return None if self._dir is None else self._dir / name

    def _load(self) -> None:
        owner = self._path("owner.bin")
        if owner is not None and owner.exists():
            data = _load_cbor(owner, _OWNER_MAGIC)
            key, tag = data.get("owner"), data.get("tag")
            if key is not None and not (isinstance(key, bytes) and len(key) == OWNER_KEY_SIZE):
                raise StateFileCorruptError(owner, "the owner key is not a 32-byte Ed25519 key")
            self.key = key
            self.account_tag = tag if isinstance(tag, bytes) else None
        bonds = self._path("bonds.bin")
        if bonds is not None and bonds.exists():
            refuse_if_shared(bonds, "the band's bonds (their long-term keys)")
            for address, raw in _load_cbor(bonds, _BONDS_MAGIC).items():
                try:
                    self.bonds[str(address)] = Bond.from_bytes(raw)
                except (BondFormatError, TypeError):
                    raise StateFileCorruptError(bonds, "a bond cannot be read") from None

    def _save_owner(self) -> None:
        path = self._path("owner.bin")
        if path is not None:
            data = cbor2.dumps({"owner": self.key, "tag": self.account_tag})
            write_checked(path, _OWNER_MAGIC, 1, data)

    def _save_bonds(self) -> None:
        path = self._path("bonds.bin")
        if path is not None:
            data = cbor2.dumps({a: b.to_bytes() for a, b in sorted(self.bonds.items())})
            write_checked(path, _BONDS_MAGIC, 1, data)

    def __repr__(self) -> str:
        # keys and addresses identify the owner: keep them out of logs
        return f"<OwnerStore activated={self.activated} bonds={len(self.bonds)}>"


def _load_cbor(path: Path, magic: bytes) -> dict[Any, Any]:
    payload = read_checked(path, magic, 1)
    try:
        data = cbor2.loads(payload)
    except Exception:
        raise StateFileCorruptError(path, "the contents are not the expected CBOR") from None
    if not isinstance(data, dict):
        raise StateFileCorruptError(path, "the contents are not the expected CBOR map")
    return data
