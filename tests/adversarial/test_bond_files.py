"""Bond files others can read are refused, as key files are (docs/privacy.md)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from band_central import Central

from device_sim.band.gatt_endpoint import BandGattEndpoint
from device_sim.band.owner_store import OwnerStore
from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.bleak_backend.bonds import BondStore
from device_sim.clock import ManualClock
from device_sim.private_files import PrivateFilePermissionError
from device_sim.radio import Radio
from protocol.ble.gatt_model import SecurityLevel
from protocol.ble.smp import Bond, DeviceAddress

CENTRAL = "C0:FF:EE:00:00:01"
BAND = "C1:00:00:00:00:02"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_the_phones_bond_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    store = BondStore(tmp_path / "bonds")
    bond = Bond(
        peer_address=DeviceAddress.parse(BAND, random=True),
        ltk=bytes(range(16)),
        security_level=SecurityLevel.AUTHENTICATED_SECURE_CONNECTIONS,
    )
    store.put(CENTRAL, BAND, bond)
    (path,) = (tmp_path / "bonds").iterdir()
    path.chmod(mode)
    with pytest.raises(PrivateFilePermissionError, match="chmod 600"):
        store.get(CENTRAL, BAND)
    path.chmod(0o600)
    assert store.get(CENTRAL, BAND) == bond


async def test_the_bands_bonds_bin_readable_by_others_is_refused(tmp_path: Path) -> None:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=13, fidelity="summary", state_dir=tmp_path / "b"), clock)
    radio = Radio(clock, seed=13)
    endpoint = BandGattEndpoint(band)
    radio.attach(endpoint)
    central = await Central(radio, endpoint.address, seed=9).connect()
    await central.pair(lambda: endpoint.display)
    bonds = tmp_path / "b" / "bonds.bin"
    bonds.chmod(0o644)
    # the band's bonds are the band's state: its owner store reads them
    with pytest.raises(PrivateFilePermissionError, match="chmod 600"):
        OwnerStore(tmp_path / "b")
    bonds.chmod(0o600)
    assert len(OwnerStore(tmp_path / "b").bonds) == 1
    assert stat.S_IMODE(bonds.stat().st_mode) == 0o600
    band.close()
