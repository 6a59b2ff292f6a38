"""The ingest's HPKE key pairs: created once, kept in files with mode 0600, published.

One key pair per supported suite: X25519 (the default) and the ML-KEM-768 + X25519
hybrid. A key file that others can read is refused, because a leaked ingest key opens
every batch ever sealed to it.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PrivateKey

from protocol.errors import KmebandError
from protocol.kme.batch import SUITE_MLKEM768_X25519, SUITE_X25519, HpkeSuiteId

X25519_KEY_FILE = "hpke-x25519.key"
HYBRID_KEY_FILE = "hpke-mlkem768x25519.key"
_MLKEM_SEED_LEN = 64
_X25519_LEN = 32

PrivateKey = x25519.X25519PrivateKey | MLKEM768X25519PrivateKey


class KeyFileError(KmebandError):
    """An ingest key file is unsafe (readable by others), damaged, or cannot be written."""


@dataclass(frozen=True)
class IngestKeys:
    """The ingest's private keys per HPKE suite, and their public halves for GET /v1/keys."""

    x25519_key: x25519.X25519PrivateKey
    hybrid_key: MLKEM768X25519PrivateKey
    x25519_public: bytes  # 32 raw bytes
    hybrid_public: bytes  # ML-KEM-768 encapsulation key (1184) || X25519 public key (32)

    def private_key(self, suite: HpkeSuiteId) -> PrivateKey:
        return self.x25519_key if suite == SUITE_X25519 else self.hybrid_key

    @property
    def public_key(self) -> x25519.X25519PublicKey:
        """The default suite's public key, for sealing in-process (tests, demo, bench)."""
        return self.x25519_key.public_key()

    def published(self) -> dict[str, Any]:
        """The JSON document GET /v1/keys answers."""
        return {
            "keys": [
                {
                    "suite": list(SUITE_X25519),
                    "name": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
                    "public_key": _b64(self.x25519_public),
                    "default": True,
                },
                {
                    "suite": list(SUITE_MLKEM768_X25519),
                    "name": "MLKEM768-X25519, HKDF-SHA256, AES-256-GCM",
                    "public_key": _b64(self.hybrid_public),
                    "default": False,
                },
            ]
        }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def load_or_create_keys(key_dir: Path) -> IngestKeys:
    """Load the key pairs from ``key_dir``, creating any that are missing (mode 0600)."""
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    x_raw = _load_or_create(key_dir / X25519_KEY_FILE, _X25519_LEN)
    hybrid_raw = _load_or_create(key_dir / HYBRID_KEY_FILE, _MLKEM_SEED_LEN + _X25519_LEN)
    x_key = x25519.X25519PrivateKey.from_private_bytes(x_raw)
    mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(hybrid_raw[:_MLKEM_SEED_LEN])
    hybrid_x = x25519.X25519PrivateKey.from_private_bytes(hybrid_raw[_MLKEM_SEED_LEN:])
    return IngestKeys(
        x25519_key=x_key,
        hybrid_key=MLKEM768X25519PrivateKey(mlkem_key, hybrid_x),
        x25519_public=x_key.public_key().public_bytes_raw(),
        hybrid_public=mlkem_key.public_key().public_bytes_raw()
        + hybrid_x.public_key().public_bytes_raw(),
    )


def _load_or_create(path: Path, length: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return _create(path, length)
    except OSError as exc:
        raise KeyFileError(f"cannot open ingest key file {path.name}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"ingest key file {path} is accessible by other users (mode "
                f"{stat.S_IMODE(mode):04o}); run 'chmod 600 {path}' and consider the key "
                "leaked: delete it to make a new one"
            )
        raw = handle.read(length + 1)
    if len(raw) != length:
        raise KeyFileError(
            f"ingest key file {path} is damaged (wrong length); restore it from a backup"
        )
    return raw


def _create(path: Path, length: int) -> bytes:
    raw = os.urandom(length)  # any 32 bytes are an X25519 key; any 64 an ML-KEM seed
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # in case a restrictive umask was not in force for O_CREAT
        os.replace(tmp, path)
    except OSError as exc:
        raise KeyFileError(f"cannot write ingest key file {path.name}: {exc.strerror}") from exc
    return raw
