"""Files that hold secrets (bond keys), shared by the band and the phone side of the radio.

docs/privacy.md promises that secrets live in files only their owner can read (mode 0600);
a file others may read is refused, never loaded.
"""

from __future__ import annotations

from pathlib import Path

from protocol.errors import KmebandError


class PrivateFilePermissionError(KmebandError):
    """A file holding secrets (bond keys) is readable or writable by others: refused."""


def refuse_if_shared(path: Path, holds: str) -> None:
    """Refuse a secret-holding file that group or others may access, as key files are.

    Loading it would use keys others may have read (docs/privacy.md: secrets live in
    files with mode 0600); the message says how to fix the mode and what to assume.
    """
    if path.stat().st_mode & 0o077:
        raise PrivateFilePermissionError(
            f"{path} holds {holds} but others can read it; run `chmod 600 {path}` and "
            "consider those keys exposed (pair again to replace them)"
        )
