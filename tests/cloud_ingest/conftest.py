"""Fixtures for the ingest tests: an in-process app on loopback, a store, keys."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).parent))


from cloud_ingest.keys import IngestKeys, load_or_create_keys
from cloud_ingest.server import IngestConfig, create_app
from cloud_ingest.store import IngestStore


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> IngestKeys:
    return load_or_create_keys(tmp_path_factory.mktemp("ingest-keys"))


@pytest.fixture
def store(tmp_path: Path) -> AsyncIterator[IngestStore]:
    db = IngestStore(tmp_path / "ingest.sqlite3")
    yield db
    db.close()


class Clock:
    """A monotonic and a wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = 1_760_100_000

    def mono(self) -> float:
        return self.t

    def wall_s(self) -> int:
        return self.wall


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config() -> IngestConfig:
    return IngestConfig(
        max_body_bytes=256 * 1024, rate_per_band=5.0, burst_per_band=50.0, min_policy_version=2
    )


@pytest.fixture
async def client(
    store: IngestStore, keys: IngestKeys, config: IngestConfig, clock: Clock
) -> AsyncIterator[TestClient]:
    app = create_app(store, keys, config, now=clock.mono, wall_clock=clock.wall_s)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client
