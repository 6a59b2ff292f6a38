"""Fixtures for the standing adversarial suite: hostile input against every layer that
takes untrusted bytes. Everything is loopback, seeded and bounded in time."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "cloud_ingest"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "device_sim"))

from cloud_ingest.keys import IngestKeys, load_or_create_keys  # noqa: E402
from cloud_ingest.server import create_app  # noqa: E402
from cloud_ingest.store import IngestStore  # noqa: E402


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> IngestKeys:
    return load_or_create_keys(tmp_path_factory.mktemp("ingest-keys"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IngestStore]:
    db = IngestStore(tmp_path / "ingest.sqlite3")
    yield db
    db.close()


@pytest.fixture
async def client(store: IngestStore, keys: IngestKeys) -> AsyncIterator[TestClient]:
    app = create_app(store, keys, wall_clock=lambda: 1_760_100_000)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client
