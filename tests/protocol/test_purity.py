"""protocol/ reads no clock and draws no randomness: beyond the import contracts, no call
that would do it through a module it may import (datetime, uuid, numpy)."""

from __future__ import annotations

import re
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
FORBIDDEN = re.compile(
    r"\.now\(|\.utcnow\(|\.today\(|uuid[14]\(|urandom|default_rng\(|np\.random|getrandbits"
)


def test_protocol_code_reads_no_clock_and_draws_no_randomness() -> None:
    offenders = []
    for path in sorted(PROTOCOL.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []
