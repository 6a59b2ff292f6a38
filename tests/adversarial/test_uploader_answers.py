"""The uploader against every kind of malformed ingest answer: a typed outcome, the batch kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hostile import nested_json

from sync_client.outbox import Outbox, QueuedBatch
from sync_client.uploader import Uploader

BAND = b"\x03" * 32
BATCH = QueuedBatch(b"\x11" * 16, BAND, 1, 1, 1, 10, 10, b"sealed", 1.0)
NAMED = json.dumps({"batch_id": BATCH.batch_id.hex(), "status": "stored"}).encode()

# (status, headers, body) -> what the drain must count: delivered, retried, rejected
CASES = {
    "html_200": ((200, {"Content-Type": "text/html"}, b"<html>welcome</html>"), (0, 1, 0)),
    "empty_200": ((200, {}, b""), (0, 1, 0)),
    "another_batch_200": (
        (200, {}, json.dumps({"batch_id": "00" * 16, "status": "stored"}).encode()),
        (0, 1, 0),
    ),
    "unknown_status_200": (
        (200, {}, json.dumps({"batch_id": BATCH.batch_id.hex(), "status": "maybe"}).encode()),
        (0, 1, 0),
    ),
    "superscript_retry_after": ((503, {"Retry-After": "²"}, b""), (0, 1, 0)),
    "huge_retry_after": ((429, {"Retry-After": "9" * 400}, b""), (0, 1, 0)),
    "date_garbage_retry_after": ((503, {"Retry-After": "Mon, 99 Foo 99999 99:99"}, b""), (0, 1, 0)),
    "deep_json_500": ((500, {}, nested_json()), (0, 1, 0)),
    "deep_json_400": ((400, {}, nested_json()), (0, 0, 1)),
    "huge_body_200": ((200, {}, b"[" * (4 * 1024 * 1024)), (0, 1, 0)),
    "named_200": ((200, {}, NAMED), (1, 0, 0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_answer_gives_a_typed_outcome_and_only_a_named_one_delivers(
    tmp_path: Path, case: str
) -> None:
    (status, headers, body), (delivered, retried, rejected) = CASES[case]

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_post("/v1/batches", answer)
    with Outbox(tmp_path / "o.db") as outbox:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        outbox.commit(BAND, 1, 10, [BATCH])
        uploader = Uploader(
            outbox, str(server.make_url("")), "token", base_backoff_s=0.01, max_backoff_s=60.0
        )
        report = await uploader.drain(BAND)
        counts = (report.delivered_batches, report.retried, report.rejected)
        assert counts == (delivered, retried, rejected)
        assert outbox.pending_count() == (0 if delivered else 1)
        if retried:
            due_at = outbox.next_attempt_at(BAND)
            assert due_at is not None
            assert due_at <= uploader._now() + 60.0  # a retry is never put off for ever
        await server.close()


async def test_an_answer_that_arrives_in_pieces_is_read_whole(tmp_path: Path) -> None:
    """A loaded ingest or network may deliver the answer's body in several reads."""

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(NAMED)
        await response.prepare(request)
        await response.write(NAMED[:10])
        await asyncio.sleep(0.05)
        await response.write(NAMED[10:])
        return response

    app = web.Application()
    app.router.add_post("/v1/batches", answer)
    with Outbox(tmp_path / "o.db") as outbox:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        outbox.commit(BAND, 1, 10, [BATCH])
        report = await Uploader(outbox, str(server.make_url("")), "token").drain(BAND)
        assert (report.delivered_batches, report.retried) == (1, 0)
        assert outbox.pending_count() == 0
        await server.close()
