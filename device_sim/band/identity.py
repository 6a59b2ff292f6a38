"""Who a band is: serial number, model, revisions, and its own Ed25519 signing key.

A simulated band's identity is derived from a seed (same seed, same serial and key), so a
test or a fleet can recreate a band exactly. The serial and the key are secrets to logs:
they never appear in ``repr``, ``str`` or exception messages. Saved identity files are
mode 0600 and checksummed; loading one that others can read is refused, as ssh does.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from device_sim.band.state_file import StateFileCorruptError, read_checked, write_checked
from protocol.errors import KmebandError, UsageError

DEFAULT_MODEL = "KME Smart Band 7"
DEFAULT_HARDWARE_REVISION = "C"
DEFAULT_FIRMWARE_REVISION = "1.0.0"
DEFAULT_SOFTWARE_REVISION = "1.0.0"

_MAGIC = b"KMEIDENT"
_VERSION = 1
_SERIAL_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: read aloud safely
_SERIAL_DIGITS = 10


class IdentityError(KmebandError):
    """The band identity cannot be created or loaded as asked."""


class IdentityFilePermissionError(IdentityError):
    """The identity file (it holds the band's private key) is readable by others."""


@dataclass(frozen=True)
class _Revisions:
    model: str
    hardware: str
    firmware: str
    software: str


class BandIdentity:
    """A band's serial number, model, revisions and signing key.

    Create one with :meth:`from_seed` (simulated bands), :meth:`generate` (random) or
    :meth:`load`. ``public_key_bytes`` is the raw 32-byte Ed25519 key the cloud verifies
    the band's records with.
    """

    __slots__ = ("_key", "_revisions", "_serial")

    def __init__(
        self,
        serial: str,
        signing_key: Ed25519PrivateKey,
        *,
        model: str = DEFAULT_MODEL,
        hardware_revision: str = DEFAULT_HARDWARE_REVISION,
        firmware_revision: str = DEFAULT_FIRMWARE_REVISION,
        software_revision: str = DEFAULT_SOFTWARE_REVISION,
    ) -> None:
        for name, value in (
            ("serial", serial),
            ("model", model),
            ("hardware_revision", hardware_revision),
            ("firmware_revision", firmware_revision),
            ("software_revision", software_revision),
        ):
            # Device Information strings must fit one ATT read comfortably
            if not isinstance(value, str) or not 0 < len(value.encode()) <= 64:
                raise UsageError(f"band {name} must be a non-empty string of at most 64 bytes")
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise UsageError("a band's signing key must be an Ed25519 private key")
        self._serial = serial
        self._key = signing_key
        self._revisions = _Revisions(model, hardware_revision, firmware_revision, software_revision)

    # ------------------------------------------------------------------ creation

    @classmethod
    def from_seed(
        cls,
        seed: int | bytes | str,
        *,
        model: str = DEFAULT_MODEL,
        hardware_revision: str = DEFAULT_HARDWARE_REVISION,
        firmware_revision: str = DEFAULT_FIRMWARE_REVISION,
        software_revision: str = DEFAULT_SOFTWARE_REVISION,
    ) -> BandIdentity:
        """The identity of the simulated band numbered/named ``seed`` (deterministic)."""
        material = _seed_bytes(seed)
        key_seed = hashlib.sha256(b"kmeband identity key\x00" + material).digest()
        serial_hash = hashlib.sha256(b"kmeband identity serial\x00" + material).digest()
        return cls(
            _serial_from(serial_hash),
            Ed25519PrivateKey.from_private_bytes(key_seed),
            model=model,
            hardware_revision=hardware_revision,
            firmware_revision=firmware_revision,
            software_revision=software_revision,
        )

    @classmethod
    def generate(cls, *, model: str = DEFAULT_MODEL) -> BandIdentity:
        """A fresh random identity (a band off the production line)."""
        return cls.from_seed(secrets.token_bytes(32), model=model)

    # ------------------------------------------------------------------ accessors

    @property
    def serial(self) -> str:
        """The serial number. An identifier: never log it."""
        return self._serial

    @property
    def model(self) -> str:
        return self._revisions.model

    @property
    def hardware_revision(self) -> str:
        return self._revisions.hardware

    @property
    def firmware_revision(self) -> str:
        return self._revisions.firmware

    @property
    def software_revision(self) -> str:
        return self._revisions.software

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message`` by the band's key."""
        return self._key.sign(message)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the identity (including the private key) to ``path`` with mode 0600."""
        raw_key = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        payload = cbor2.dumps(
            {
                "serial": self._serial,
                "model": self.model,
                "hw": self.hardware_revision,
                "fw": self.firmware_revision,
                "sw": self.software_revision,
                "key": raw_key,
            },
            canonical=True,
        )
        write_checked(Path(path), _MAGIC, _VERSION, payload)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BandIdentity:
        """Read an identity saved by :meth:`save`; refuses files others can read."""
        file_path = Path(path)
        try:
            mode = file_path.stat().st_mode
        except FileNotFoundError:
            raise IdentityError(
                f"no band identity file at {file_path}; create one with BandIdentity.save"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityFilePermissionError(
                f"{file_path} holds the band's private key but others can read it; "
                f"run `chmod 600 {file_path}` and try again"
            )
        payload = read_checked(file_path, _MAGIC, _VERSION)
        try:
            fields = cbor2.loads(payload)
            return cls(
                fields["serial"],
                Ed25519PrivateKey.from_private_bytes(fields["key"]),
                model=fields["model"],
                hardware_revision=fields["hw"],
                firmware_revision=fields["fw"],
                software_revision=fields["sw"],
            )
        except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError, UsageError):
            raise StateFileCorruptError(
                file_path, "identity file has a valid checksum but unreadable fields"
            ) from None

    # ------------------------------------------------------------------ hygiene

    def __repr__(self) -> str:
        return f"<BandIdentity model={self.model!r} firmware={self.firmware_revision!r}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BandIdentity):
            return NotImplemented
        return (
            self._serial == other._serial
            and self._revisions == other._revisions
            and self.public_key_bytes == other.public_key_bytes
        )

    def __hash__(self) -> int:
        return hash(self.public_key_bytes)

    def __reduce__(self) -> tuple[object, ...]:
        # pickling would copy the private key into places nobody audits
        raise TypeError("BandIdentity cannot be pickled; save it with BandIdentity.save")


def _seed_bytes(seed: int | bytes | str) -> bytes:
    if isinstance(seed, bool) or not isinstance(seed, int | bytes | str):
        raise UsageError("an identity seed must be an int, bytes or str")
    if isinstance(seed, int):
        if seed < 0:
            raise UsageError("an identity seed must be a non-negative integer")
        return b"i" + seed.to_bytes((seed.bit_length() + 8) // 8, "big")
    if isinstance(seed, str):
        return b"s" + seed.encode()
    return b"b" + seed


def _serial_from(digest: bytes) -> str:
    value = int.from_bytes(digest[:16], "big")
    chars = []
    for _ in range(_SERIAL_DIGITS):
        value, digit = divmod(value, len(_SERIAL_ALPHABET))
        chars.append(_SERIAL_ALPHABET[digit])
    return "KB7" + "".join(chars)
