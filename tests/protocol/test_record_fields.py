"""Bulk record building and column reading: the same objects as the constructors make."""

from __future__ import annotations

import dataclasses
from itertools import repeat
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kme.record_fields import RecordBuilder, field_columns, int64_column
from protocol.kme.records import (
    STREAM_RECORD_TYPE,
    ActivityClass,
    HeartRateSample,
    SleepStage,
    StoredRecord,
    StreamId,
)


@pytest.mark.parametrize("record_type", [*STREAM_RECORD_TYPE.values(), StoredRecord])
def test_every_record_type_is_built_through_its_slots(record_type: type) -> None:
    assert RecordBuilder(record_type).fast


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(), st.integers(0, 255), st.integers(0, 3)), max_size=50))
def test_built_records_equal_constructed_ones(rows: list[tuple[int, int, int]]) -> None:
    columns = [[r[0] for r in rows], repeat(60), [r[1] for r in rows], [r[2] for r in rows]]
    built = RecordBuilder(HeartRateSample).build(len(rows), columns)
    expected = [HeartRateSample(t, 60, bpm, c) for t, bpm, c in rows]
    assert built == expected
    assert [hash(r) for r in built] == [hash(r) for r in expected]
    assert [repr(r) for r in built] == [repr(r) for r in expected]
    stored = RecordBuilder(StoredRecord).build(
        len(built), [repeat(StreamId.HR_SAMPLES), range(len(built)), built]
    )
    assert stored == [StoredRecord(StreamId.HR_SAMPLES, i, r) for i, r in enumerate(expected)]


def test_built_records_stay_frozen() -> None:
    (record,) = RecordBuilder(HeartRateSample).build(1, [[1], [0], [70], [3]])
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.bpm = 71  # type: ignore[misc]


def test_a_type_with_post_init_goes_through_its_constructor() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    builder = RecordBuilder(Checked)
    assert not builder.fast
    assert builder.build(2, [[1, 2]]) == [Checked(1), Checked(2)]
    with pytest.raises(ValueError, match="negative"):
        builder.build(1, [[-1]])


def test_wrong_number_of_columns_is_refused() -> None:
    with pytest.raises(TypeError):
        RecordBuilder(HeartRateSample).build(1, [[1], [0], [70]])


def test_field_columns_read_each_field_in_order() -> None:
    records = [HeartRateSample(10 * i, 60, 70 + i, i % 4) for i in range(5)]
    assert field_columns(records, ["bpm", "timestamp"]) == [
        [70, 71, 72, 73, 74],
        [0, 10, 20, 30, 40],
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, -2, 2**63 - 1], [1, -2, 2**63 - 1]),
        ([True, False], [1, 0]),
        ([SleepStage.REM, ActivityClass.RUN], [3, 4]),
        ([], []),
    ],
)
def test_int64_column_takes_ints(values: list[Any], expected: list[int]) -> None:
    column = int64_column(values)
    assert column is not None and column.tolist() == expected


@pytest.mark.parametrize("values", [[1, 2.0], [None], [2**63], [-(2**63) - 1], ["1"]])
def test_int64_column_leaves_anything_else_to_the_caller(values: list[Any]) -> None:
    assert int64_column(values) is None
