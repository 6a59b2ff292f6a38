"""Every script in examples/ runs as the docs say (hardware-only ones skip with their reason)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMEBAND_")}
    return env | {"PYTHONPATH": str(REPO)} | extra


def test_the_pytest_fixtures_example_passes_under_pytest(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "--junitxml",
            str(tmp_path / "junit.xml"),
            str(EXAMPLES / "pytest_fixtures_example.py"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout


def test_the_trace_replay_example_matches_the_golden_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load("trace_replay_golden").main([]) == 0
    out = capsys.readouterr().out
    assert "identical to the golden output" in out and "10 activity_minutes" in out


def test_the_trace_replay_example_reports_differences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = json.loads((REPO / "tests" / "golden" / "walk-seed42.records.json").read_text())
    golden[1]["fields"]["steps"] += 1
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(golden))
    assert load("trace_replay_golden").main(["--golden", str(altered)]) == 1
    assert "records differ from the golden output" in capsys.readouterr().out


def test_the_consent_withdrawal_example_is_honoured_end_to_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load("consent_withdrawal").main([]) == 0
    out = capsys.readouterr().out
    assert "heart-rate samples after the withdrawal in the ingest: 0" in out
    assert "consent honoured end to end" in out
    second = out.split("second sync")[1]
    assert "hr_samples             0 queued" in second


def test_the_real_band_example_skips_with_its_reason_without_hardware() -> None:
    example = load("real_band_sync")
    reason = example.adapter_missing()
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "real_band_sync.py"), "C0:11:22:33:44:55"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=60,
    )
    if reason is None:
        pytest.skip("a Bluetooth adapter is present: not syncing a real band from the tests")
    print(out.stdout)
    assert out.returncode == 0
    assert out.stdout.strip() == f"real_band_sync: skipping: {reason}"


def test_the_real_band_example_skips_when_a_simulated_backend_is_set() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "real_band_sync.py")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(KMEBAND_BLEAK_BACKEND="device_sim.bleak_backend"),
        timeout=60,
    )
    assert out.returncode == 0
    assert "skipping: a simulated backend is configured" in out.stdout
