"""The uploader against a scripted loopback ingest: retries, Retry-After, refusals, dedup."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
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

    def __init__(
        self, script: list[tuple[int, dict[str, str]]], then: tuple[int, dict[str, str]] = (200, {})
    ) -> None:
        self.script = script
        self.then = then  # the answer once the script has run out
        self.stored: dict[bytes, int] = {}
        self.auth: set[str] = set()
        self.posts = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts += 1
        self.auth.add(request.headers.get("Authorization", ""))
        status, headers = self.script.pop(0) if self.script else self.then
        headers = dict(headers)
        if status == 200:
            self.stored[body] = self.stored.get(body, 0) + 1
            # as the ingest answers: naming the batch (queued(n) seals b"env<n>" for id n)
            batch_id = int(body.removeprefix(b"env")).to_bytes(16, "big").hex()
            return web.json_response({"batch_id": batch_id, "status": "stored"})
        if status == 599:
            return web.Response(status=502, body=b"<html>garbage</html>")
        code = headers.pop("X-Code", "unknown_band" if status == 403 else "nope")
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
            report = await up.drain(BAND, wait_for_retries_s=5)
            assert report.delivered_batches == 1 and report.retried == 3
            assert box.pending_count() == 0
            assert ingest.stored == {b"env1": 1}
            assert ingest.auth == {"Bearer tok"}
    finally:
        await server.close()


async def test_progress_is_reported_after_each_delivered_batch_only(tmp_path: Path) -> None:
    ingest = ScriptedIngest([(503, {"Retry-After": "0"}), (422, {})])
    server = await _serve(ingest)
    seen: list[tuple[int, int]] = []
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 30, [queued(1), queued(2), queued(3)])
            up = Uploader(
                box,
                str(server.make_url("/")),
                "t",
                concurrency=1,
                base_backoff_s=0.001,
                rng=random.Random(3),
                on_delivered=lambda r: seen.append((r.delivered_batches, r.delivered_records)),
            )
            report = await up.drain(BAND, wait_for_retries_s=5)
            # one retried, one refused (parked): only the two accepted batches are progress
            assert report.delivered_batches == 2 and report.rejected == 1
            assert seen == [(1, 10), (2, 20)]
    finally:
        await server.close()


async def test_refused_batch_is_parked_not_lost(tmp_path: Path) -> None:
    ingest = ScriptedIngest([(422, {})])
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 20, [queued(1), queued(2)])
            report = await Uploader(box, str(server.make_url("/")), "t").drain(BAND)
            assert report.rejected == 1 and report.delivered_batches == 1
            assert box.pending_count() == 1  # still there, parked
            assert report.rejections == ["HTTP 422 nope"]
    finally:
        await server.close()


async def test_unreachable_ingest_keeps_everything(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.commit(BAND, 1, 10, [queued(1)])
        up = Uploader(box, "http://127.0.0.1:9", "t", timeout_s=2, rng=random.Random(2))
        report = await up.drain(BAND)
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
            report = await up.drain(BAND, wait_for_retries_s=5)
            assert report.rejected == 0 and report.retried == 1
            assert report.delivered_batches == 1 and box.pending_count() == 0
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "code"), [(401, "unauthorized"), (403, "forbidden"), (403, "account_erased")]
)
async def test_a_refused_account_stops_the_drain_and_parks_nothing(
    tmp_path: Path, status: int, code: str
) -> None:
    ingest = ScriptedIngest([(status, {"X-Code": code})])
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 30, [queued(1), queued(2), queued(3)])
            up = Uploader(box, str(server.make_url("/")), "t", concurrency=1)
            report = await up.drain(BAND)
            assert report.account_error is not None and f"HTTP {status}" in report.account_error
            assert "pair with --ingest" in report.account_error
            assert ingest.posts == 1  # stopped at the first refusal
            assert report.rejected == 0 and report.delivered_batches == 0
            assert len(box.due(now=time.time())) == 3  # all still due: nothing parked
            # the account is fixed: the next drain delivers everything
            report = await up.drain(BAND)
            assert report.account_error is None and report.delivered_batches == 3
    finally:
        await server.close()


async def test_retry_after_zero_does_not_spin(tmp_path: Path) -> None:
    ingest = ScriptedIngest([], then=(503, {"Retry-After": "0"}))
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 10, [queued(1)])
            up = Uploader(box, str(server.make_url("/")), "t", base_backoff_s=0.05)
            report = await asyncio.wait_for(up.drain(BAND), 10)
            assert ingest.posts == 1 and report.retried == 1  # no wait asked: one attempt
            report = await asyncio.wait_for(up.drain(BAND, wait_for_retries_s=0.3), 10)
            # every retry waits at least the base backoff (0.05 s) within the 0.3 s asked
            assert 2 <= ingest.posts <= 1 + 0.3 / 0.05 + 1
            assert box.pending_count() == 1 and box.due(now=time.time() + 1.0)
    finally:
        await server.close()


async def test_a_drain_uploads_only_the_band_it_is_given(tmp_path: Path) -> None:
    other = b"\x07" * 32
    ingest = ScriptedIngest([])
    server = await _serve(ingest)
    try:
        with Outbox(tmp_path / "o.db") as box:
            box.commit(BAND, 1, 10, [queued(1)])
            theirs = dataclasses.replace(queued(2), band=other)
            box.commit(other, 1, 20, [theirs])
            report = await Uploader(box, str(server.make_url("/")), "t").drain(BAND)
            assert report.delivered_batches == 1 and ingest.stored == {b"env1": 1}
            assert [b.band for b in box.due(now=1e12)] == [other]
    finally:
        await server.close()
