"""The central's bonds with simulated bands: what a completed pairing leaves on the phone.

A bond is keyed by (central address, band address). The store lives in memory unless
``KMEBAND_BOND_DIR`` names a directory (or, failing that, ``KMEBAND_CLIENT_DIR`` does: the
bonds then sit in its ``bonds`` folder, beside the sync client's keys, so ``kmeband pair``
in one process and ``kmeband sync`` in the next share them, as an OS keeps its bonds):
then every bond is a file there with mode 0600 (it holds the LTK), written atomically.
File names are hashes of the key pair, so no address appears in a file name.

The central's own address is ``KMEBAND_CENTRAL_ADDRESS`` or :data:`DEFAULT_CENTRAL_ADDRESS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from device_sim.private_files import refuse_if_shared
from protocol.ble.smp import Bond, BondFormatError
from protocol.errors import KmebandError

BOND_DIR_ENV = "KMEBAND_BOND_DIR"
CENTRAL_ADDRESS_ENV = "KMEBAND_CENTRAL_ADDRESS"
#: The sync client's data directory, when set: bonds are kept beside its keys.
CLIENT_DIR_ENV = "KMEBAND_CLIENT_DIR"
#: A static random address (two top bits set) standing for "this phone".
DEFAULT_CENTRAL_ADDRESS = "C0:FF:EE:00:00:01"


class BondStoreError(KmebandError):
    """The bond directory cannot be used (not a directory, or not writable)."""


def central_address() -> str:
    """This central's address, as bands see it and as bonds are keyed."""
    return os.environ.get(CENTRAL_ADDRESS_ENV) or DEFAULT_CENTRAL_ADDRESS


def _key(central: str, band: str) -> tuple[str, str]:
    return central.upper(), band.upper()


class BondStore:
    """Bonds keyed by (central address, band address); in memory, or files in ``directory``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._memory: dict[tuple[str, str], Bond] = {}
        if directory is not None:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise BondStoreError(
                    f"cannot use the bond directory ({exc.strerror}): set {BOND_DIR_ENV} to "
                    "a writable directory"
                ) from None

    def _path(self, central: str, band: str) -> Path:
        assert self.directory is not None
        digest = hashlib.sha256("|".join(_key(central, band)).encode()).hexdigest()[:32]
        return self.directory / f"{digest}.bond"

    def get(self, central: str, band: str) -> Bond | None:
        """The bond between ``central`` and ``band``, or None (a damaged file counts as
        none). A bond file others can read is refused (PrivateFilePermissionError)."""
        if self.directory is None:
            return self._memory.get(_key(central, band))
        path = self._path(central, band)
        try:
            refuse_if_shared(path, "a bond's long-term key")
            return Bond.from_bytes(path.read_bytes())
        except (FileNotFoundError, BondFormatError):
            return None

    def put(self, central: str, band: str, bond: Bond) -> None:
        """Store (or replace) a bond."""
        if self.directory is None:
            self._memory[_key(central, band)] = bond
            return
        path = self._path(central, band)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
            os.write(fd, bond.to_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def forget(self, central: str, band: str) -> None:
        """Remove a bond, if there is one."""
        if self.directory is None:
            self._memory.pop(_key(central, band), None)
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(central, band).unlink()

    def clear(self) -> None:
        """Forget every bond (in memory) or every bond file (on disk)."""
        self._memory.clear()
        if self.directory is not None:
            for path in self.directory.glob("*.bond"):
                path.unlink(missing_ok=True)


_memory_store = BondStore()
_dir_stores: dict[str, BondStore] = {}


def default_bond_store() -> BondStore:
    """The process's store: on disk under ``KMEBAND_BOND_DIR`` (or ``$KMEBAND_CLIENT_DIR/bonds``)
    when set, else in memory."""
    directory = os.environ.get(BOND_DIR_ENV)
    if not directory and os.environ.get(CLIENT_DIR_ENV):
        directory = str(Path(os.environ[CLIENT_DIR_ENV]) / "bonds")
    if not directory:
        return _memory_store
    store = _dir_stores.get(directory)
    if store is None:
        store = _dir_stores[directory] = BondStore(Path(directory))
    return store
