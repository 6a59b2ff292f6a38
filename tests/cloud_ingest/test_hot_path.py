"""The ingest's fast paths decide exactly what the plain definitions decide.

Column decoding runs in numpy; these tests hold it to a plain-Python reading of the
format (docs/ingest.md, "Body"): the same values, the same bounds, the same refusals.
"""

from __future__ import annotations

import json
from array import array

import cbor2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_samples import SampleBand, hr

from cloud_ingest.keys import IngestKeys
from cloud_ingest.store import IngestStore
from protocol.kme.batch import (
    COLUMNS,
    HEADER_KEYS,
    MAX_SEQ,
    SEQ_COLUMN,
    BatchHeader,
    ColumnSpec,
    MalformedBatchError,
    _unpack,
    decode_header,
    header_aad,
)
from protocol.kme.records import StreamId

_WIDTH = {"q": 8, "i": 4, "h": 2, "B": 1, "b": 1}
_SIGNED = {"q": True, "i": True, "h": True, "B": False, "b": True}
_TYPE_RANGE = {
    "q": (-(2**63), 2**63 - 1),
    "i": (-(2**31), 2**31 - 1),
    "h": (-(2**15), 2**15 - 1),
    "B": (0, 255),
    "b": (-128, 127),
}
SPECS = [SEQ_COLUMN, *{spec for specs in COLUMNS.values() for spec in specs}]


def reference_unpack(spec: ColumnSpec, wire: list[int]) -> tuple[list[int], int, int] | None:
    """The format read one value at a time; None where the batch must be refused."""
    if spec.delta:
        if spec.increasing and any(step < 1 for step in wire[1:]):
            return None
        values, total = [], 0
        for step in wire:
            total += step
            values.append(total)
    else:
        values = list(wire)
    if (spec.low, spec.high) == _TYPE_RANGE[spec.typecode] and not spec.delta:
        return values, spec.low, spec.high
    low, high = min(values), max(values)
    if low < spec.low or high > spec.high:
        return None
    return values, low, high


def encode(spec: ColumnSpec, wire: list[int]) -> bytes:
    width, signed = _WIDTH[spec.typecode], _SIGNED[spec.typecode]
    return b"".join(v.to_bytes(width, "little", signed=signed) for v in wire)


@st.composite
def columns(draw: st.DrawFn) -> tuple[ColumnSpec, list[int]]:
    spec = draw(st.sampled_from(SPECS))
    type_low, type_high = _TYPE_RANGE[spec.typecode]
    span = spec.high - spec.low
    # Values near the column's bounds (and steps near its span) hit every refusal edge;
    # the type's extremes try to wrap the running sum.
    edges = [min(type_high, max(type_low, e)) for e in (spec.low, spec.high, -span, span)]
    near = st.sampled_from([*edges, type_low, type_high]).flatmap(
        lambda edge: st.integers(max(type_low, edge - 2), min(type_high, edge + 2))
    )
    small = st.integers(max(type_low, -3), min(type_high, 3))
    inside = st.integers(max(type_low, spec.low), min(type_high, spec.high))
    value = st.one_of(near, small, inside)
    wire = draw(st.lists(value, min_size=1, max_size=40))
    return spec, wire


@settings(max_examples=400, deadline=None, derandomize=True)
@given(columns())
def test_numpy_column_decoding_matches_the_plain_definition(
    column: tuple[ColumnSpec, list[int]],
) -> None:
    spec, wire = column
    expected = reference_unpack(spec, wire)
    if expected is None:
        with pytest.raises(MalformedBatchError, match=spec.field):
            _unpack(spec, encode(spec, wire), len(wire))
        return
    values, low, high = _unpack(spec, encode(spec, wire), len(wire))
    assert isinstance(values, array)
    assert (values.tolist(), low, high) == expected


@pytest.mark.parametrize("first", [0, 1, 2**40, 2**48 - 600])
def test_contiguous_sequence_numbers_take_the_fast_path_with_the_same_values(first: int) -> None:
    wire = [first] + [1] * 499
    values, low, high = _unpack(SEQ_COLUMN, encode(SEQ_COLUMN, wire), 500, first)
    assert (values.tolist(), low, high) == reference_unpack(SEQ_COLUMN, wire)


def test_steps_that_wrap_int64_are_refused() -> None:
    timestamp = COLUMNS[next(iter(COLUMNS))][0]
    wire = [1, 2**62, 2**62, 2**62, 2**62, 5]  # the int64 sum wraps back to 6
    with pytest.raises(MalformedBatchError, match=timestamp.field):
        _unpack(timestamp, encode(timestamp, wire), len(wire))


async def test_the_batch_answer_is_plain_json(
    client: TestClient[web.Request, web.Application], keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand(serial="KME-TEST-HOTPATH")
    token = (await (await client.post("/v1/accounts")).json())["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/v1/bands", json=band.registration(), headers=auth)).status == 201
    envelope = band.seal(hr(20), keys.public_key)
    response = await client.post("/v1/batches", data=envelope, headers=auth)
    assert response.status == 200
    assert response.content_type == "application/json"
    answer = json.loads(await response.read())
    batch_id = answer.pop("batch_id")
    assert len(bytes.fromhex(batch_id)) == 16
    assert answer == {"status": "stored", "stored": 20, "duplicates": 0}
    assert store.record_count() == 20


@st.composite
def headers(draw: st.DrawFn) -> BatchHeader:
    first = draw(st.integers(0, MAX_SEQ - 20_000))
    count = draw(st.integers(1, 20_000))
    last = first + count - 1 + (draw(st.integers(0, 5)) if count > 1 else 0)
    letters = st.characters(codec="utf-8", categories=("L", "N", "P", "S"))
    text = st.text(letters | st.just(" "), max_size=64).filter(str.isprintable)
    return BatchHeader(
        batch_id=draw(st.binary(min_size=16, max_size=16)),
        band=draw(st.binary(min_size=32, max_size=32)),
        stream=draw(st.sampled_from(list(StreamId))),
        first_seq=first,
        last_seq=last,
        count=count,
        consent_digest=draw(st.binary(min_size=32, max_size=32)),
        firmware_version=draw(text),
        model=draw(text),
        client_os=draw(text),
        client_version=draw(text),
        created=draw(st.integers(0, 2**40)),
    )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(headers())
def test_the_header_encoding_is_cbor2_canonical(header: BatchHeader) -> None:
    as_map = {key: getattr(header, name) for name, key in HEADER_KEYS.items()}
    as_map["stream"] = int(header.stream)
    encoded = header_aad(header)
    assert encoded == cbor2.dumps(as_map, canonical=True)
    assert decode_header(encoded) == header
