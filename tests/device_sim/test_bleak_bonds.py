"""The central's bond store: in memory, or 0600 files under KMEBAND_BOND_DIR."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.bleak_backend.bonds import BondStore, central_address, default_bond_store
from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp import Bond, DeviceAddress

CENTRAL = "C0:FF:EE:00:00:01"
BAND = "C1:00:00:00:00:02"


def _bond(ltk: bytes = bytes(range(16))) -> Bond:
    return Bond(
        peer_address=DeviceAddress.parse(BAND, random=True),
        ltk=ltk,
        security_level=SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS,
    )


@pytest.mark.parametrize("on_disk", [False, True])
def test_bonds_are_kept_per_central_and_band(tmp_path: Path, on_disk: bool) -> None:
    store = BondStore(tmp_path / "bonds" if on_disk else None)
    assert store.get(CENTRAL, BAND) is None
    store.put(CENTRAL, BAND, _bond())
    assert store.get(CENTRAL.lower(), BAND) == _bond()
    assert store.get("C0:FF:EE:00:00:02", BAND) is None
    store.forget(CENTRAL, BAND)
    assert store.get(CENTRAL, BAND) is None
    store.forget(CENTRAL, BAND)  # forgetting twice is fine


def test_bond_files_are_private_and_name_no_address(tmp_path: Path) -> None:
    store = BondStore(tmp_path / "bonds")
    store.put(CENTRAL, BAND, _bond())
    (path,) = (tmp_path / "bonds").iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "bonds").stat().st_mode) == 0o700
    assert BAND.replace(":", "") not in path.name.upper()
    # A fresh store on the same directory sees the bond (it survives the process).
    assert BondStore(tmp_path / "bonds").get(CENTRAL, BAND) == _bond()
    path.write_bytes(b"\xff garbage")
    assert store.get(CENTRAL, BAND) is None  # damaged: as if never paired


def test_default_store_and_central_address_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KMEBAND_BOND_DIR", raising=False)
    monkeypatch.delenv("KMEBAND_CLIENT_DIR", raising=False)
    monkeypatch.delenv("KMEBAND_CENTRAL_ADDRESS", raising=False)
    assert default_bond_store().directory is None
    assert central_address() == CENTRAL
    monkeypatch.setenv("KMEBAND_BOND_DIR", str(tmp_path))
    monkeypatch.setenv("KMEBAND_CENTRAL_ADDRESS", "C0:00:00:00:00:09")
    assert default_bond_store().directory == tmp_path
    assert default_bond_store() is default_bond_store()
    assert central_address() == "C0:00:00:00:00:09"


@given(st.binary(min_size=16, max_size=16))
def test_stored_bonds_round_trip(ltk: bytes) -> None:
    store = BondStore()
    store.put(CENTRAL, BAND, _bond(ltk))
    assert store.get(CENTRAL, BAND) == _bond(ltk)


def test_bonds_sit_beside_the_client_keys_when_only_the_client_dir_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KMEBAND_BOND_DIR", raising=False)
    monkeypatch.setenv("KMEBAND_CLIENT_DIR", str(tmp_path / "client"))
    assert default_bond_store().directory == tmp_path / "client" / "bonds"
