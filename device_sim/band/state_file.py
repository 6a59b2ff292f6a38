"""Checksummed, atomically replaced state files for the band (consent, profile, identity).

A state file is a small header (magic, format version, payload length, CRC-32 of the
payload) followed by the payload. It is written to a temporary file in the same
directory, fsynced, then renamed over the old one, so a crash leaves either the old or the
new file, never a mix. A file that fails any check raises :class:`StateFileCorruptError`
and is left untouched: the band never silently loads or overwrites damaged state.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from device_sim.private_files import PrivateFilePermissionError, refuse_if_shared
from protocol.errors import KmebandError

__all__ = [
    "PrivateFilePermissionError",
    "StateFileCorruptError",
    "fsync_directory",
    "read_checked",
    "refuse_if_shared",
    "write_checked",
]

_HEADER = struct.Struct("<8sHHII")  # magic, version, reserved, payload length, payload crc32


class StateFileCorruptError(KmebandError):
    """A band state file is damaged, truncated, or not the kind of file expected."""

    exit_code = 3

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path}: {problem}. The band will not load or overwrite it; move the file "
            "away (keep it if you want to inspect it) and start again to create a fresh one."
        )


class StateFileVersionError(StateFileCorruptError):
    """A band state file was written by a format version this code cannot read."""


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot sync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: write a temporary sibling, fsync, rename, fsync dir."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def write_checked(path: Path, magic: bytes, version: int, payload: bytes) -> None:
    """Atomically write ``payload`` framed with ``magic``, ``version`` and a CRC-32."""
    if len(magic) != 8:
        raise ValueError("state file magic must be 8 bytes")
    header = _HEADER.pack(magic, version, 0, len(payload), zlib.crc32(payload))
    atomic_write(Path(path), header + payload)


def read_checked(path: Path, magic: bytes, version: int) -> bytes:
    """Read and verify a file written by :func:`write_checked`; return its payload."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise StateFileCorruptError(path, f"file is truncated ({len(data)} bytes, no header)")
    got_magic, got_version, _, length, crc = _HEADER.unpack_from(data)
    if got_magic != magic:
        raise StateFileCorruptError(path, "not a file of the expected kind (wrong magic)")
    if got_version != version:
        raise StateFileVersionError(
            path, f"format version {got_version} is not supported (this code reads {version})"
        )
    payload = data[_HEADER.size :]
    if len(payload) != length:
        raise StateFileCorruptError(
            path, f"file is truncated or padded (payload {len(payload)} bytes, header {length})"
        )
    if zlib.crc32(payload) != crc:
        raise StateFileCorruptError(path, "checksum mismatch (the contents are damaged)")
    return payload
