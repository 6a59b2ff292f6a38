"""The console script assembles every layer's subcommands and reports its version."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kmeband import __version__
from kmeband.cli import main


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kmeband {__version__}"


def test_no_subcommand_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: kmeband" in capsys.readouterr().out


def test_console_script_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kmeband.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "kmeband" in out.stdout
