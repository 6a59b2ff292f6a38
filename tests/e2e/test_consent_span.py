"""The puller's fast consent path agrees with the per-record check it stands in for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme.control.consent import ConsentLogEntry, ConsentSource
from protocol.kme.records import ConsentCategory
from sync_client.consent import allowed_intervals

CATEGORY = ConsentCategory.HEART_RATE

changes = st.lists(st.tuples(st.integers(0, 50), st.booleans(), st.integers(1, 3)), max_size=8)


def entries(steps: list[tuple[int, bool, int]]) -> list[ConsentLogEntry]:
    out, t = [], 0
    for index, (gap, granted, version) in enumerate(steps):
        t += gap  # band log times never decrease
        out.append(
            ConsentLogEntry(
                index=index,
                category=CATEGORY,
                granted=granted,
                policy_version=version,
                time=t,
                tz_offset_min=0,
                source=ConsentSource.BAND,
            )
        )
    return out


@settings(max_examples=300, derandomize=True)
@given(
    steps=changes,
    first=st.integers(-5, 450),
    length=st.integers(0, 60),
    min_version=st.integers(0, 3),
)
def test_a_span_may_upload_exactly_when_every_second_in_it_may(
    steps: list[tuple[int, bool, int]], first: int, length: int, min_version: int
) -> None:
    allowed = allowed_intervals(entries(steps), min_policy_version=min_version)
    last = first + length
    every = all(allowed.may_upload(CATEGORY, t) for t in range(first, last + 1))
    assert allowed.may_upload_span(CATEGORY, first, last) == every
