"""The uploader against a scripted loopback ingest: retries, Retry-After, refusals, dedup."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from protocol.errors import UsageError
from sync_client.outbox import Outbox, QueuedBatch
from sync_client.uploader import Uploader, check_ingest_url, retry_after_seconds

BAND = b"\x02" * 32


def queued(n: int) -> QueuedBatch:
    return QueuedBatch(
        n.to_bytes(16, "big"), BAND, 1, 1, n * 10 + 1, n * 10 + 10, 10, b"env%d" % n, float(n)
    )


class ScriptedIngest:
    """Answers each POST with the next scripted status; stores bodies it accepts."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.stored: dict[bytes, int] = {}
        self.auth: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.auth.add(request.headers.get("Authorization", ""))
        status, headers = self.script.pop(0) if self.script else (200, {})
        if status == 200:
            self.stored[body] = self.stored.get(body, 0) + 1
            return web.json_response({"stored": True})
        if status == 599:
            return web.Response(status=502, body=b"<html>garbage</html>")
        code = "unknown_band" if status == 403 else "nope"
        return web.json_response({"error": code, "message": "x"}, status=status, headers=headers)


async def _serve(ingest: ScriptedIngest) -> TestServer:
    app = web.Application()
    app.router.add_post("/v1/batches", ingest.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_retries_until_stored_and_honours_retry_after(tmp_path: Path) -> None:
    ingest = ScriptedIngest([(503, {"Retry-After": "0"}), (599, {}), (429, {"Retry-After": "0"})])
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 10, [queued(1)])
            up = Uploader(
                box, str(server.make_url("/")), "tok", base_backoff_s=0.001, rng=random.Random(1)
            )
            report = await up.drain(wait_for_retries_s=5)
            assert report.delivered_batches == 1 and report.retried == 3
            assert box.pending_count() == 0
            assert ingest.stored == {b"env1": 1}
            assert ingest.auth == {"Bearer tok"}
    finally:
        await server.close()


async def test_refused_batch_is_parked_not_lost(tmp_path: Path) -> None:
    ingest = ScriptedIngest([(422, {})])
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 20, [queued(1), queued(2)])
            report = await Uploader(box, str(server.make_url("/")), "t").drain()
            assert report.rejected == 1 and report.delivered_batches == 1
            assert box.pending_count() == 1  # still there, parked
            assert report.rejections == ["HTTP 422 nope"]
    finally:
        await server.close()


async def test_unreachable_ingest_keeps_everything(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.commit(BAND, 1, 10, [queued(1)])
        up = Uploader(box, "http://127.0.0.1:9", "t", timeout_s=2, rng=random.Random(2))
        report = await up.drain()
        assert report.retried == 1 and box.pending_count() == 1


def test_url_rules_and_backoff_bounds() -> None:
    assert check_ingest_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert check_ingest_url("https://ingest.example/") == "https://ingest.example"
    with pytest.raises(UsageError, match="loopback"):
        check_ingest_url("http://192.0.2.1/")
    with pytest.raises(UsageError, match="https"):
        check_ingest_url("ftp://x")
    assert retry_after_seconds("7", 0) == 7.0
    assert retry_after_seconds("garbage", 0) is None
    up = Uploader.__new__(Uploader)
    up.base_backoff_s, up.max_backoff_s, up._rng = 1.0, 60.0, random.Random(3)
    samples = [up.backoff(a) for a in range(12) for _ in range(20)]
    assert all(0 <= s <= 60.0 for s in samples) and max(samples) > 30


async def test_an_unknown_band_waits_for_its_registration_instead_of_being_parked(
    tmp_path: Path,
) -> None:
    ingest = ScriptedIngest([(403, {})])
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 10, [queued(1)])
            up = Uploader(
                box, str(server.make_url("/")), "t", base_backoff_s=0.001, rng=random.Random(4)
            )
            report = await up.drain(wait_for_retries_s=5)
            assert report.rejected == 0 and report.retried == 1
            assert report.delivered_batches == 1 and box.pending_count() == 0
    finally:
        await server.close()
