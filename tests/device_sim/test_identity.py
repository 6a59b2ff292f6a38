"""Band identity: deterministic from a seed, key usable, secrets kept out of text."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device_sim.band.identity import (
    DEFAULT_MODEL,
    BandIdentity,
    IdentityError,
    IdentityFilePermissionError,
)
from device_sim.band.state_file import StateFileCorruptError
from protocol.errors import UsageError


def test_same_seed_same_serial_and_key() -> None:
    a, b = BandIdentity.from_seed(7), BandIdentity.from_seed(7)
    assert a.serial == b.serial
    assert a.public_key_bytes == b.public_key_bytes
    assert a == b


def test_different_seeds_differ_and_seed_kinds_do_not_collide() -> None:
    ids = [BandIdentity.from_seed(s) for s in (1, 2, b"1", "1", 256)]
    assert len({i.serial for i in ids}) == len(ids)
    assert len({i.public_key_bytes for i in ids}) == len(ids)


def test_serial_format_and_defaults() -> None:
    ident = BandIdentity.from_seed("band-0001")
    assert ident.serial.startswith("KB7") and len(ident.serial) == 13
    assert ident.serial.isalnum() and ident.serial.isupper()
    assert ident.model == DEFAULT_MODEL
    assert ident.firmware_revision and ident.hardware_revision and ident.software_revision


def test_signatures_verify_with_the_raw_public_key() -> None:
    ident = BandIdentity.from_seed(3)
    raw = ident.public_key_bytes
    assert len(raw) == 32
    sig = ident.sign(b"consent record")
    assert len(sig) == 64
    Ed25519PublicKey.from_public_bytes(raw).verify(sig, b"consent record")
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(raw).verify(sig, b"tampered")


def test_repr_and_str_hide_serial_and_key() -> None:
    ident = BandIdentity.from_seed(11)
    for text in (repr(ident), str(ident), f"{ident}"):
        assert ident.serial not in text
        assert ident.public_key_bytes.hex() not in text
        assert "KME Smart Band 7" in text


def test_identity_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(BandIdentity.from_seed(1))


def test_save_is_0600_and_loads_back(tmp_path: Path) -> None:
    ident = BandIdentity.from_seed(5, firmware_revision="2.1.3")
    path = tmp_path / "identity.bin"
    ident.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ident.serial.encode() in path.read_bytes()  # it is stored, just never logged
    loaded = BandIdentity.load(path)
    assert loaded == ident
    assert loaded.firmware_revision == "2.1.3"
    assert loaded.sign(b"x") == ident.sign(b"x")  # Ed25519 is deterministic


def test_load_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "identity.bin"
    BandIdentity.from_seed(5).save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityFilePermissionError, match="chmod 600") as info:
        BandIdentity.load(path)
    assert BandIdentity.from_seed(5).serial not in str(info.value)


def test_load_of_a_damaged_file_is_a_typed_error_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "identity.bin"
    ident = BandIdentity.from_seed(5)
    ident.save(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StateFileCorruptError, match="checksum") as info:
        BandIdentity.load(path)
    assert ident.serial not in str(info.value)


def test_missing_file_and_bad_arguments_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no band identity file"):
        BandIdentity.load(tmp_path / "absent.bin")
    with pytest.raises(UsageError):
        BandIdentity.from_seed(-1)
    with pytest.raises(UsageError):
        BandIdentity.from_seed(1.5)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        BandIdentity.from_seed(1, model="")


def test_generate_gives_distinct_identities() -> None:
    assert BandIdentity.generate().serial != BandIdentity.generate().serial
