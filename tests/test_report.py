"""PNG reports drawn from records (matplotlib is an optional extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from device_sim.band.simulated_band import BandConfig, SimulatedBand
from device_sim.clock import ManualClock
from kmeband.report import ReportUnavailable, band_label, draw_reports
from protocol.kme.records import StreamId


def _records() -> list[tuple[bytes, object]]:
    clock = ManualClock()
    band = SimulatedBand(BandConfig(seed=5, fidelity="summary"), clock)
    band.simulate_until(clock.now() + 36 * 3600)
    return [(b"\x01" * 32, r) for s in StreamId for r in band.flash.read(s, 1, 100_000)]


def test_one_png_per_band_named_without_identifiers(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        reason = "matplotlib is not installed (pip install 'kmeband[report]'): report not drawn"
        print(reason)
        pytest.skip(reason)
    [path] = draw_reports(_records(), tmp_path)  # type: ignore[arg-type]
    assert path.name == band_label(b"\x01" * 32) + ".png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_missing_matplotlib_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ReportUnavailable, match=r"kmeband\[report\]"):
        draw_reports([], tmp_path)
