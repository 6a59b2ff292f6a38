"""The fuzz harness: every parser that takes untrusted bytes, fed hostile input.

Each test states the property the parser promises: whatever the bytes, nothing escapes
but the parser's typed error (and the ingest keeps answering, never with a 5xx). Bounded
and derandomised by default; see fuzzing.py for the long run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from ingest_samples import SampleBand, hr

from cloud_ingest.keys import load_or_create_keys
from cloud_ingest.server import create_app
from cloud_ingest.store import IngestStore
from protocol.ble import att, smp_pdu
from protocol.kme.batch import BatchError, decode_body, decode_envelope
from protocol.kme.control.schema import ControlDecodeError, decode_control
from protocol.kme.records import StreamId
from protocol.kme.strict_cbor import StrictCborError, loads_strict
from sync_client.uploader import AnswerKind, classify_answer

# CBOR items of every major type, tags included, nested a few levels.
cbor_leaves = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
)
cbor_items = st.recursive(
    cbor_leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(0, 30) | st.text(max_size=8), inner, max_size=5)
        | st.builds(cbor2.CBORTag, st.sampled_from([2, 3, 4, 5, 24, 30, 258, 1000]), inner)
    ),
    max_leaves=20,
)
cbor_bytes = st.one_of(
    st.binary(max_size=300),
    cbor_items.map(lambda item: cbor2.dumps(item)),
)


def _flip(data: bytes, where: int, value: int) -> bytes:
    if not data:
        return bytes([value])
    i = where % len(data)
    return data[:i] + bytes([value]) + data[i + 1 :]


@fuzz_settings
@given(cbor_bytes)
def test_fuzz_strict_cbor_raises_only_its_error(data: bytes) -> None:
    with contextlib.suppress(StrictCborError):
        loads_strict(data)


@fuzz_settings
@given(st.binary(max_size=300))
def test_fuzz_att_pdus_raise_only_att_decode_error(data: bytes) -> None:
    with contextlib.suppress(att.AttDecodeError):
        att.decode_pdu(data)


@fuzz_settings
@given(st.binary(max_size=80))
def test_fuzz_smp_pdus_raise_only_smp_pdu_error(data: bytes) -> None:
    with contextlib.suppress(smp_pdu.SmpPduError):
        smp_pdu.decode_pdu(data)


@fuzz_settings
@given(cbor_bytes | cbor_items.map(lambda v: cbor2.dumps({0: 1, 1: 0x21, 2: v})))
def test_fuzz_control_point_cbor_raises_only_control_decode_error(data: bytes) -> None:
    with contextlib.suppress(ControlDecodeError):
        decode_control(data)


@pytest.fixture(scope="module")
def valid_envelope(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    keys = load_or_create_keys(tmp_path_factory.mktemp("fuzz-keys"))
    return SampleBand().seal(hr(20), keys.public_key)


@fuzz_settings
@given(data=st.data())
def test_fuzz_batch_envelopes_raise_only_batch_error(
    valid_envelope: bytes, data: st.DataObject
) -> None:
    envelope = data.draw(
        cbor_bytes
        | st.tuples(st.integers(0, 10_000), st.integers(0, 255)).map(
            lambda flip: _flip(valid_envelope, *flip)
        )
        | st.integers(1, len(valid_envelope)).map(lambda n: valid_envelope[:n])
    )
    with contextlib.suppress(BatchError):
        decode_envelope(envelope)


@fuzz_settings
@given(st.binary(max_size=400), st.sampled_from(list(StreamId)), st.integers(1, 30))
def test_fuzz_batch_bodies_raise_only_batch_error(
    plaintext: bytes, stream: StreamId, count: int
) -> None:
    for body in (plaintext, zlib.compress(plaintext)):
        with contextlib.suppress(BatchError):
            decode_body(stream, body, count=count, first_seq=1, last_seq=count)


# -- the ingest's JSON bodies, through the real application ---------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)
json_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "band": st.text(max_size=50) | json_values,
            "public_key": st.text(max_size=50) | json_values,
            "birth_year": st.integers() | json_values,
            "sex": st.text(max_size=10) | json_values,
            "height_cm": st.integers() | json_values,
            "category": st.text(max_size=12) | st.integers() | json_values,
            "erase": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 50_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
)


class _Ingest:
    """One ingest app on loopback with its own loop, for a synchronous hypothesis test."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = IngestStore(tmp / "ingest.sqlite3")
        app = create_app(self.store, load_or_create_keys(tmp / "keys"), wall_clock=lambda: 1)
        self.client = TestClient(TestServer(app, host="127.0.0.1"), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())
        self.auth = self.run(self._registered())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    async def _registered(self) -> dict[str, str]:
        token = (await (await self.client.post("/v1/accounts")).json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        await self.client.post("/v1/bands", json=SampleBand().registration(), headers=auth)
        return auth

    async def status(self, method: str, path: str, body: bytes) -> int:
        response = await self.client.request(method, path, data=body, headers=self.auth)
        await response.read()
        return response.status

    def close(self) -> None:
        self.run(self.client.close())
        self.store.close()
        self.loop.close()


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Ingest]:
    running = _Ingest(tmp_path_factory.mktemp("fuzz-ingest"))
    yield running
    running.close()


ENDPOINTS = [
    ("PUT", "/v1/profile"),
    ("POST", "/v1/bands"),
    ("POST", "/v1/consent/withdrawals"),
    ("POST", "/v1/batches"),
]


@fuzz_settings
@given(st.sampled_from(ENDPOINTS), json_bodies | cbor_bytes)
def test_fuzz_the_ingests_bodies_never_get_a_5xx(
    ingest: _Ingest, endpoint: tuple[str, str], body: bytes
) -> None:
    method, path = endpoint
    assert ingest.run(ingest.status(method, path, body)) < 500
    assert ingest.run(ingest.status("GET", "/v1/profile", b"")) == 200  # still answering


# -- the uploader's reading of the ingest's answers -----------------------------------------

BATCH_ID = bytes(range(16))


@fuzz_settings
@given(
    st.none() | st.integers(100, 599),
    st.none() | st.text(max_size=40),
    json_bodies | st.binary(max_size=100),
)
def test_fuzz_every_ingest_answer_is_classified_and_only_a_named_one_delivers(
    status: int | None, retry_after: str | None, body: bytes
) -> None:
    answer = classify_answer(status, retry_after, body, BATCH_ID, 1_760_000_000.0)
    assert isinstance(answer.kind, AnswerKind)
    if answer.kind is AnswerKind.DELIVERED:
        document = json.loads(body)
        assert document["batch_id"] == BATCH_ID.hex()
    if answer.retry_after is not None:
        assert answer.retry_after >= 0
