"""Uploads sealed batches from the outbox to the ingest, and keeps them until it has them.

- A batch leaves the outbox only when the ingest's answer names it: 200/201 with a JSON
  object whose ``batch_id`` is this batch's and whose ``status`` is ``stored`` or
  ``duplicate`` (the ingest deduplicates by batch id, so a retried batch is never stored
  twice). Any other 200 (an HTML page from a proxy, an empty body, another batch's id) is
  no proof of delivery: the batch stays queued and is retried.
- Every answer, however malformed (a ``Retry-After: ²``, a JSON error nested 100,000 deep,
  a body of any size), is classified by :func:`classify_answer` into an
  :class:`IngestAnswer`; nothing it holds escapes as an exception.
- 429 and 503 honour ``Retry-After``; other 5xx, timeouts, connection errors and garbage
  answers back off exponentially with full jitter; the batch stays queued.
- 401, and 403 other than ``unknown_band``, refuse the account, not the batch (a revoked
  token, an erased account): the drain stops at once, nothing is parked, and
  ``UploadReport.account_error`` says what to do. The batches stay due for the next drain.
- Other 4xx except 408/429 (the ingest refuses the batch: e.g. no consent covers it) are
  permanent for that batch: it is parked (``Outbox.park``) and counted as rejected, never
  dropped silently; each session unparks them once (``Outbox.unpark``) in case what was
  wrong has been fixed. 403 ``unknown_band`` is not a refusal: the band's registration is
  still to come (the next sync makes it), so the batch backs off and stays due.
- Every retry waits at least ``base_backoff_s`` (a ``Retry-After: 0`` included), and a
  drain never re-offers a batch after its ``wait_for_retries_s`` has run out.
- Concurrency is bounded; TLS verification is on for https; plain http is refused for
  anything but a loopback host.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from protocol.errors import KmebandError, UsageError
from sync_client.outbox import Outbox, QueuedBatch

log = logging.getLogger(__name__)

#: A refused batch is parked this long before it is offered again (it needs a human).
PARKED_S = 365 * 24 * 3600.0
#: The most of an answer's body the uploader reads: the ingest's answers are tiny.
MAX_ANSWER_BYTES = 64 * 1024


class UploadError(KmebandError):
    """The upload could not run at all (bad URL, no network)."""


@dataclass
class UploadReport:
    """What one drain of the outbox achieved."""

    delivered_batches: int = 0
    delivered_records: int = 0
    retried: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)
    #: Set when the ingest refused the account itself (401/403): the drain stopped there.
    account_error: str | None = None


def check_ingest_url(url: str) -> str:
    """Allow https anywhere, and plain http only to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return url.rstrip("/")
    if parts.scheme != "http":
        raise UsageError(f"the ingest URL must start with https:// (got {parts.scheme!r})")
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageError(
            "plain http is only allowed to a loopback ingest (127.0.0.1, ::1, localhost); "
            "use https:// for any other host"
        )
    return url.rstrip("/")


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Parse a Retry-After header: delta seconds or an HTTP date; None when it is neither.

    Only ASCII digits count as seconds (``"²".isdigit()`` is true, ``float("²")`` fails).
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 12 else float("inf")
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class AnswerKind(enum.Enum):
    """What an ingest answer means for the batch it answers."""

    DELIVERED = "delivered"  # the answer names this batch as stored or duplicate
    RETRY = "retry"  # not delivered for now: keep it, try again after a delay
    REJECTED = "rejected"  # the ingest refuses this batch for good: park it
    ACCOUNT_REFUSED = "account_refused"  # the account is refused: stop the drain


@dataclass(frozen=True)
class IngestAnswer:
    """One answer of the ingest to one batch, classified.

    ``detail`` is the ingest's error code or a short description of what came back
    (never anything echoed from the body but a well-formed error code).
    """

    kind: AnswerKind
    status: int | None
    detail: str = ""
    retry_after: float | None = None


def classify_answer(
    status: int | None,
    retry_after: str | None,
    body: bytes,
    batch_id: bytes,
    now: float,
    *,
    failure: str = "",
) -> IngestAnswer:
    """What the ingest's answer (``status``, its Retry-After, ``body``) means for the batch
    ``batch_id``; ``status`` None is no answer at all (``failure`` says why). Never raises.
    """
    if status is None:
        return IngestAnswer(AnswerKind.RETRY, None, failure or "no answer")
    document = _json_object(body)
    if status in (200, 201):
        if (
            document is not None
            and document.get("batch_id") == batch_id.hex()
            and document.get("status") in ("stored", "duplicate")
        ):
            return IngestAnswer(AnswerKind.DELIVERED, status, str(document["status"]))
        return IngestAnswer(AnswerKind.RETRY, status, "an answer that does not name the batch")
    code = _error_code(document)
    if status == 401 or (status == 403 and code != "unknown_band"):
        return IngestAnswer(AnswerKind.ACCOUNT_REFUSED, status, code)
    # 403 unknown_band: the band's registration is still to come; wait for it.
    if 400 <= status < 500 and status not in (403, 408, 429):
        return IngestAnswer(AnswerKind.REJECTED, status, code)
    return IngestAnswer(AnswerKind.RETRY, status, code, retry_after_seconds(retry_after, now))


class Uploader:
    """Drains an :class:`Outbox` into the ingest over HTTP."""

    def __init__(
        self,
        outbox: Outbox,
        ingest_url: str,
        token: str,
        *,
        concurrency: int = 4,
        timeout_s: float = 15.0,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 300.0,
        rng: random.Random | None = None,
        now: Callable[[], float] = time.time,
        on_delivered: Callable[[UploadReport], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise UsageError("upload concurrency must be at least 1")
        self.outbox = outbox
        self.url = check_ingest_url(ingest_url) + "/v1/batches"
        self._token = token
        self.concurrency = concurrency
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._now = now
        #: Called after each delivered batch with the drain's report so far (for progress).
        self.on_delivered = on_delivered

    def backoff(self, attempts: int) -> float:
        """Full jitter: uniform in [base, min(max, base * 2**attempts)]."""
        ceiling = min(self.max_backoff_s, self.base_backoff_s * (2 ** min(attempts, 30)))
        return self._rng.uniform(self.base_backoff_s, max(self.base_backoff_s, ceiling))

    async def drain(self, band: bytes | None, *, wait_for_retries_s: float = 0.0) -> UploadReport:
        """Upload every due batch of ``band``; then, for up to ``wait_for_retries_s``, retries.

        ``band`` is the band whose consent was just read: only its batches are known to be
        still consented (None drains every band: only for an explicit "upload now").
        Returns when nothing of it is queued, nothing more is due within the wait, or the
        ingest refused the account (``account_error``).
        """
        report = UploadReport()
        deadline = self._now() + wait_for_retries_s
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/octet-stream",
        }
        async with aiohttp.ClientSession(timeout=self.timeout, headers=headers) as session:
            while report.account_error is None:
                # Past the deadline only batches due by then are offered: a retried batch
                # is due later than its attempt, so the drain ends.
                now = min(self._now(), deadline)
                due = self.outbox.due(limit=self.concurrency * 8, now=now, band=band)
                if due:
                    await self._upload_all(session, due, report)
                    continue
                nxt = self.outbox.next_attempt_at(band)
                if nxt is None or nxt > deadline:
                    break
                await asyncio.sleep(max(0.0, nxt - self._now()))
        return report

    async def _upload_all(
        self, session: aiohttp.ClientSession, due: list[QueuedBatch], report: UploadReport
    ) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(batch: QueuedBatch) -> None:
            async with gate:
                if report.account_error is None:
                    await self._upload(session, batch, report)

        await asyncio.gather(*(one(b) for b in due))

    async def _upload(
        self, session: aiohttp.ClientSession, batch: QueuedBatch, report: UploadReport
    ) -> None:
        status: int | None = None
        retry_after: str | None = None
        body = b""
        failure = ""
        try:
            async with session.post(self.url, data=batch.envelope) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await _read_answer(response)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failure = exc.__class__.__name__
        answer = classify_answer(
            status, retry_after, body, batch.batch_id, self._now(), failure=failure
        )
        self._apply(answer, batch, report)

    def _apply(self, answer: IngestAnswer, batch: QueuedBatch, report: UploadReport) -> None:
        status, detail = answer.status, answer.detail
        if answer.kind is AnswerKind.DELIVERED:
            self.outbox.delivered(batch)
            report.delivered_batches += 1
            report.delivered_records += batch.records
            if self.on_delivered is not None:
                self.on_delivered(report)
            return
        if answer.kind is AnswerKind.ACCOUNT_REFUSED:
            # The account is refused, not this batch: stop, park nothing, say what to do.
            text = f"HTTP {status} {detail}".strip()
            report.account_error = (
                f"the ingest refused this account ({text}): pair with --ingest to renew "
                "the account; queued batches are kept and upload once it is fixed"
            )
            log.warning("ingest refused the account: HTTP %s %s", status, detail)
            return
        if answer.kind is AnswerKind.REJECTED:
            # The ingest refuses this batch for good; keep it (never silent loss) but park it.
            self.outbox.park(batch.batch_id, self._now() + PARKED_S)
            report.rejected += 1
            report.rejections.append(f"HTTP {status} {detail}".strip())
            log.warning("ingest refused a batch: HTTP %s %s", status, detail)
            return
        # A floor on every delay (Retry-After: 0 must not turn the drain into a busy loop),
        # and a ceiling (Retry-After: 10**30 must not park the batch for ever).
        wanted = answer.retry_after
        if wanted is None:
            wanted = self.backoff(batch.attempts)
        delay = min(self.max_backoff_s, max(self.base_backoff_s, wanted))
        self.outbox.retry_later(batch.batch_id, self._now() + delay)
        report.retried += 1
        log.info("upload will be retried in %.1f s (%s)", delay, status or detail)


async def _read_answer(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body up to MAX_ANSWER_BYTES (a longer one is cut there: no answer of
    the ingest is that long, and a cut body reads as malformed). ``read(n)`` returns what
    has arrived so far, so read until the end or the limit."""
    body = b""
    while len(body) < MAX_ANSWER_BYTES:
        piece = await response.content.read(MAX_ANSWER_BYTES - len(body))
        if not piece:
            break
        body += piece
    return body


def _json_object(body: bytes) -> dict[str, object] | None:
    """The body as a JSON object, or None: malformed, nested too deep, or not an object."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _error_code(document: dict[str, object] | None) -> str:
    """The ingest's JSON error code, if the body is one (never echo anything else)."""
    if document is None:
        return "(not a JSON error)"
    code = document.get("error")
    if isinstance(code, str) and code.isascii() and code.isprintable():
        return code[:64]
    return ""
