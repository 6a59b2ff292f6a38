"""Arbitrary request bodies at POST /v1/batches: only 4xx JSON answers, an unchanged store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cbor2
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_samples import SampleBand, hr

from cloud_ingest.keys import IngestKeys
from cloud_ingest.server import IngestConfig, create_app
from cloud_ingest.store import IngestStore


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    items = cbor2.loads(valid)
    flip = st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(
        lambda p: valid[: p[0]] + bytes([valid[p[0]] ^ p[1]]) + valid[p[0] + 1 :]
    )
    cut = st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
    swap = st.tuples(st.integers(0, 4), st.binary(max_size=64) | st.integers() | st.none()).map(
        lambda p: cbor2.dumps([*items[: p[0]], p[1], *items[p[0] + 1 :]])
    )
    return st.binary(max_size=2048) | flip | cut | swap


def test_arbitrary_bodies_get_only_4xx_json_and_change_nothing(
    tmp_path: Path, keys: IngestKeys
) -> None:
    loop = asyncio.new_event_loop()
    store = IngestStore(tmp_path / "ingest.sqlite3")
    app = create_app(store, keys, IngestConfig(rate_per_band=1e6, burst_per_band=1e6))

    async def start() -> TestClient:
        test_client = TestClient(TestServer(app, host="127.0.0.1"))
        await test_client.start_server()
        return test_client

    client = loop.run_until_complete(start())
    band = SampleBand()
    try:

        async def setup() -> dict[str, str]:
            token = (await (await client.post("/v1/accounts")).json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await client.post("/v1/bands", json=band.registration(), headers=auth)
            return auth

        auth = loop.run_until_complete(setup())
        valid = band.seal(hr(20), keys.public_key)
        before = store.snapshot()

        async def send(body: bytes) -> tuple[int, object]:
            response = await client.post("/v1/batches", data=body, headers=auth)
            return response.status, await response.json()

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(_mutations(valid))
        def check(body: bytes) -> None:
            status, answer = loop.run_until_complete(send(body))
            assert 400 <= status < 500, (status, answer)
            assert isinstance(answer, dict) and set(answer) == {"error", "message"}
            assert store.snapshot() == before

        check()
        # The untouched batch still goes in: the store was not left in a bad state.
        status, answer = loop.run_until_complete(send(valid))
        assert status == 200 and answer["stored"] == 20  # type: ignore[index]
    finally:
        loop.run_until_complete(client.close())
        loop.close()
        store.close()
