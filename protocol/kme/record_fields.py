"""Bulk access to record fields: columns out of many records, many records out of columns.

The codecs move records by the ten thousand. Two costs dominate when that is done one record
at a time: reading fields through generic code, and building frozen dataclasses through
their generated ``__init__``, which sets each field with a separate ``object.__setattr__``
call. Here a column is read with one C-level ``map`` per field, and records are built by
allocating them all with ``object.__new__`` and then filling one field of every record at a
time through the field's slot descriptor. The objects are the very ones ``__init__`` would
make (equal, same hash and repr); a type whose ``__init__`` does more than assign its
fields (``__post_init__``, ``InitVar``, no slots) simply goes through its constructor.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import attrgetter
from types import MemberDescriptorType
from typing import Any, Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

_R = TypeVar("_R")

_new: Final = object.__new__


def _consume(iterator: Iterable[object]) -> None:
    deque(iterator, maxlen=0)


class RecordBuilder(Generic[_R]):
    """Builds many instances of one dataclass from columns of field values.

    ``build(n, columns)`` takes one iterable per field, in field order, each yielding at
    least ``n`` values (``itertools.repeat`` for a field shared by all), and returns ``n``
    instances equal to ``[record_type(*row) for row in zip(*columns)]``.
    """

    def __init__(self, record_type: type[_R]) -> None:
        self.record_type = record_type
        names = [f.name for f in dataclasses.fields(record_type)]  # type: ignore[arg-type]
        self.field_names: tuple[str, ...] = tuple(names)
        self.fast = _assigns_fields_only(record_type, names)
        self._setters: tuple[Callable[[Any, Any], None], ...] = ()
        if self.fast:
            self._setters = tuple(record_type.__dict__[name].__set__ for name in names)

    def build(self, n: int, columns: Sequence[Iterable[Any]]) -> list[_R]:
        if len(columns) != len(self.field_names):
            raise TypeError(
                f"{self.record_type.__name__} has {len(self.field_names)} fields, "
                f"not {len(columns)}"
            )
        if not self.fast:
            rows = zip(range(n), *columns, strict=False)
            return [self.record_type(*row[1:]) for row in rows]
        objects: list[_R] = list(map(_new, repeat(self.record_type, n)))
        for setter, column in zip(self._setters, columns, strict=True):
            _consume(map(setter, objects, column))
        return objects


def _assigns_fields_only(record_type: type, names: list[str]) -> bool:
    """Whether ``__init__`` of a dataclass does nothing but store each field in its slot."""
    params = getattr(record_type, "__dataclass_params__", None)
    slots = record_type.__dict__.get("__slots__")
    return (
        params is not None
        and slots is not None
        and tuple(slots) == tuple(names)
        and not hasattr(record_type, "__post_init__")
        and all(f.init for f in dataclasses.fields(record_type))
        and all(isinstance(record_type.__dict__.get(name), MemberDescriptorType) for name in names)
    )


def field_columns(records: Sequence[object], names: Sequence[str]) -> list[list[Any]]:
    """One list per field name: that field of every record, in record order."""
    return [list(map(attrgetter(name), records)) for name in names]


def int64_column(values: Sequence[Any]) -> npt.NDArray[np.int64] | None:
    """``values`` as an int64 array when every one is an int (bool and IntEnum included) that
    fits; None otherwise (a float, None, an int past 64 bits), for the caller's slow path."""
    try:
        packed = array("q", values)
    except (TypeError, OverflowError):
        return None
    return np.frombuffer(packed, dtype=np.int64)


__all__ = ["RecordBuilder", "field_columns", "int64_column"]
