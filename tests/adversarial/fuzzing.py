"""How long the fuzz harness runs.

In CI (the default) every fuzz test runs a bounded, derandomised hypothesis search, so the
suite stays fast and deterministic. A long run on demand raises the budget and lets
hypothesis pick fresh random inputs each time:

    KMEBAND_FUZZ_EXAMPLES=200000 python -m pytest -q -p no:cacheprovider tests/adversarial -k fuzz

(docs/ingest.md, "Limits and hostile input", says the same.)
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: Examples per fuzz test; the environment variable turns on the long run.
EXAMPLES = int(os.environ.get("KMEBAND_FUZZ_EXAMPLES", "0")) or 100
LONG_RUN = "KMEBAND_FUZZ_EXAMPLES" in os.environ

fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
