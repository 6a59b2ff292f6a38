"""Uploads sealed batches from the outbox to the ingest, and keeps them until it has them.

- A batch leaves the outbox only when the ingest answers 200/201 (stored, or already
  stored: the ingest deduplicates by batch id, so a retried batch is never stored twice).
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
    """Parse a Retry-After header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


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
        retry_after: float | None = None
        detail = ""
        try:
            async with session.post(self.url, data=batch.envelope) as response:
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), self._now())
                body = await response.read()
                if status in (200, 201):
                    self.outbox.delivered(batch)
                    report.delivered_batches += 1
                    report.delivered_records += batch.records
                    if self.on_delivered is not None:
                        self.on_delivered(report)
                    return
                detail = _error_code(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = exc.__class__.__name__
        # An unknown band is registered by the next sync: wait for it, do not give up.
        pending_registration = status == 403 and detail == "unknown_band"
        if status == 401 or (status == 403 and not pending_registration):
            # The account is refused, not this batch: stop, park nothing, say what to do.
            answer = f"HTTP {status} {detail}".strip()
            report.account_error = (
                f"the ingest refused this account ({answer}): pair with --ingest to renew "
                "the account; queued batches are kept and upload once it is fixed"
            )
            log.warning("ingest refused the account: HTTP %s %s", status, detail)
            return
        if (
            status is not None
            and 400 <= status < 500
            and status not in (408, 429)
            and not pending_registration
        ):
            # The ingest refuses this batch for good; keep it (never silent loss) but park it.
            self.outbox.park(batch.batch_id, self._now() + PARKED_S)
            report.rejected += 1
            report.rejections.append(f"HTTP {status} {detail}".strip())
            log.warning("ingest refused a batch: HTTP %s %s", status, detail)
            return
        # A floor on every delay: Retry-After: 0 must not turn the drain into a busy loop.
        delay = max(
            self.base_backoff_s,
            retry_after if retry_after is not None else self.backoff(batch.attempts),
        )
        self.outbox.retry_later(batch.batch_id, self._now() + delay)
        report.retried += 1
        log.info("upload will be retried in %.1f s (%s)", delay, status or detail)


def _error_code(body: bytes) -> str:
    """The ingest's JSON error code, if the body is one (never echo anything else)."""
    try:
        value = json.loads(body)
    except ValueError:
        return "(not JSON)"
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])[:64]
    return ""
