"""Pull record streams from a band over the KME Record Sync service, exactly once.

Per stream: ask from the outbox's stored cursor + 1, feed every Data notification and
Control Point indication to a ``protocol.kme.record_sync.ClientSyncReceiver`` (which checks
CRCs, sequence continuity, sizes, duplicates and the end marker's counts), filter the
new records by consent (withheld ones are only counted), seal them into batches, commit
batches and cursor in ONE outbox transaction, and only then acknowledge the range so the
band may free it. With ``keep_on_band`` nothing is acknowledged.

Every wait has a timeout that follows progress (:mod:`sync_client.link_activity`): it fails
only when nothing has moved on the link for ``timeout_s``, so a slow link that keeps
delivering chunks is never cut off however long the transfer takes. A band that sends bad
data stops only that stream, with a :class:`StreamSyncError` in its result; the records
that arrived valid before the fault are stored and acknowledged, nothing after them. A
dropped link ends the pull with :class:`PullLinkLostError`; the next pull resumes from the
stored cursor, so nothing is fetched twice once stored and nothing is lost.

The puller needs only ``write_gatt_char``, ``start_notify``, ``stop_notify`` and
``mtu_size`` of a bleak ``BleakClient``; the session calls :meth:`Puller.connection_lost`
from bleak's ``disconnected_callback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol.errors import KmebandError
from protocol.kme.batch import BatchError
from protocol.kme.chunk_framing import MAX_PAYLOAD_SIZE, MIN_PAYLOAD_SIZE
from protocol.kme.profile import KME_RECORD_SYNC_CONTROL_POINT, KME_RECORD_SYNC_DATA
from protocol.kme.record_sync import (
    ClientSyncReceiver,
    ReceiverState,
    RecordsLostOnBand,
    RecordsReceived,
    SyncError,
    TransferComplete,
)
from protocol.kme.records import StoredRecord, StreamId, record_time
from sync_client.batcher import Batcher
from sync_client.consent import AllowedIntervals, all_may_upload, filter_record
from sync_client.link_activity import LinkActivity
from sync_client.outbox import Outbox

_CONTROL = str(KME_RECORD_SYNC_CONTROL_POINT)
_DATA = str(KME_RECORD_SYNC_DATA)


class PullError(KmebandError):
    """Base of the record-pull errors."""


class PullLinkLostError(PullError):
    """The link to the band dropped mid-pull; sync again to resume where it stopped."""


class StreamSyncError(PullError):
    """One stream's sync stopped on bad input from the band or a timeout."""


class GattWriter(Protocol):
    """What the puller needs of a bleak ``BleakClient``."""

    @property
    def mtu_size(self) -> int: ...

    async def write_gatt_char(
        self, char_specifier: Any, data: bytes, response: bool = ...
    ) -> None: ...

    async def start_notify(
        self, char_specifier: Any, callback: Callable[..., Any], **kwargs: Any
    ) -> None: ...

    async def stop_notify(self, char_specifier: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress event for user interfaces: counts so far for ``stream`` in this pull."""

    stream: StreamId
    records: int
    bytes: int
    elapsed_s: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class StreamResult:
    """What a pull of one stream did."""

    stream: StreamId
    received: int = 0
    queued: int = 0
    withheld: int = 0
    fields_cleared: int = 0
    batches: int = 0
    air_bytes: int = 0
    lost_on_band: int = 0
    stored_up_to: int = 0
    acked_up_to: int | None = None
    complete: bool = False
    error: str | None = None
    #: The typed error that stopped this stream alone (the other streams and the upload go on).
    failure: StreamSyncError | None = None


@dataclass(slots=True)
class _Pending:
    """Records received but not yet committed, and the last sequence they cover.

    They always fit one batch (``_take`` flushes before a limit would break), so a commit
    seals them as one batch.
    """

    records: list[StoredRecord] = field(default_factory=list)
    first_time: int = 0  # record time of records[0]: the batch's span starts there
    withheld: int = 0
    cleared: int = 0
    handled_up_to: int | None = None


_LINK_LOST = object()


class Puller:
    """Pulls streams from one band into the outbox; one stream at a time."""

    def __init__(
        self,
        client: GattWriter,
        outbox: Outbox,
        band: bytes,
        batcher: Batcher,
        allowed: AllowedIntervals,
        *,
        keep_on_band: bool = False,
        timeout_s: float = 10.0,
        max_records_per_transfer: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        activity: LinkActivity | None = None,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.band = band
        self.batcher = batcher
        self.allowed = allowed
        self.keep_on_band = keep_on_band
        self.timeout_s = timeout_s
        self.max_records_per_transfer = max_records_per_transfer
        self.on_progress = on_progress
        self._clock = clock
        #: progress on the link: every wait here fails only after timeout_s without any
        self.activity = activity if activity is not None else LinkActivity(timeout_s)
        self._inbox: asyncio.Queue[tuple[str, bytes] | object] = asyncio.Queue()
        self._subscribed = False
        self._lost = False

    # -- link plumbing

    def connection_lost(self) -> None:
        """Call from bleak's ``disconnected_callback``: wakes every wait at once."""
        self._lost = True
        self._inbox.put_nowait(_LINK_LOST)

    def _on_data(self, _characteristic: Any, data: bytearray) -> None:
        self.activity.touch()
        self._inbox.put_nowait(("data", bytes(data)))

    def _on_control(self, _characteristic: Any, data: bytearray) -> None:
        self.activity.touch()
        self._inbox.put_nowait(("control", bytes(data)))

    async def _subscribe(self) -> None:
        if not self._subscribed:
            await self._guard(self.client.start_notify(_CONTROL, self._on_control))
            await self._guard(self.client.start_notify(_DATA, self._on_data))
            self._subscribed = True

    async def unsubscribe(self) -> None:
        """Stop notifications (best effort: the link may be gone)."""
        if self._subscribed and not self._lost:
            for uuid in (_DATA, _CONTROL):
                try:
                    await self.activity.wait(self.client.stop_notify(uuid))
                except Exception:  # the link is closing anyway
                    break
        self._subscribed = False

    async def _guard(self, op: Any) -> Any:
        """Run one GATT operation until it completes or the link stops moving for the
        timeout (chunks still arriving ahead of its answer keep it alive); any link
        failure is PullLinkLostError."""
        if self._lost:
            if inspect.iscoroutine(op):
                op.close()  # never started: close it so it is not reported as forgotten
            raise PullLinkLostError("the link to the band dropped; sync again to resume")
        try:
            return await self.activity.wait(op)
        except TimeoutError:
            raise PullLinkLostError(
                "the band did not answer in time; move closer and sync again to resume"
            ) from None
        except PullError:
            raise
        except Exception as exc:  # bleak raises BleakError and OSError subclasses
            self._lost = True
            raise PullLinkLostError(
                f"the link to the band failed ({exc.__class__.__name__}); sync again to resume"
            ) from None

    async def _write(self, payload: bytes) -> None:
        await self._guard(self.client.write_gatt_char(_CONTROL, payload, response=True))

    def _payload_size(self) -> int:
        try:
            mtu = int(self.client.mtu_size)
        except Exception:  # some backends know it only after discovery
            mtu = 23
        return max(MIN_PAYLOAD_SIZE, min(MAX_PAYLOAD_SIZE, mtu - 3))

    # -- pulling

    async def pull_all(self, streams: Iterable[StreamId] = tuple(StreamId)) -> list[StreamResult]:
        """Pull every stream in turn; a stream's bad input does not stop the others.

        Raises :class:`PullLinkLostError` when the link drops (what was stored stays stored).
        """
        results = []
        for stream in streams:
            results.append(await self.pull_stream(stream))
        return results

    async def pull_stream(self, stream: StreamId) -> StreamResult:
        """Pull one stream from the stored cursor + 1 to the band's end."""
        stream = StreamId(stream)
        await self._subscribe()
        self._drain_inbox()
        stored = self.outbox.stored_up_to(self.band, int(stream))
        result = StreamResult(stream, stored_up_to=stored)
        receiver = ClientSyncReceiver(
            stream, stored + 1, self._payload_size(), max_records=self.max_records_per_transfer
        )
        pending = _Pending()
        started = self._clock()
        await self._write(receiver.start_request())
        try:
            while receiver.state is ReceiverState.RECEIVING:
                item = await self._next_item()
                kind, payload = item
                if kind == "data":
                    events = receiver.receive_data(payload)
                else:
                    events = receiver.receive_control(payload)
                for event in events:
                    if isinstance(event, RecordsReceived):
                        result.air_bytes += event.chunk_bytes
                        await self._take(event.records, pending, receiver, result)
                        self._progress(result, started)
                    elif isinstance(event, RecordsLostOnBand):
                        result.lost_on_band += event.count
                    elif isinstance(event, TransferComplete):
                        result.complete = True
                    elif isinstance(event, SyncError):
                        result.error = event.reason
        except TimeoutError:
            result.error = "the band stopped sending mid-transfer; sync again to resume"
        except BatchError as exc:
            # Records that cannot be sealed stop this stream alone: what is not committed is
            # not acknowledged, so the band keeps it for a client that can seal it.
            pending = _Pending()
            self._fail(result, exc)
        except PullLinkLostError:
            # Keep what arrived valid: it is sealed and committed, but nothing is acked.
            self._commit(pending, result)
            raise
        if result.error is not None:
            await self._abort(receiver)
        try:
            await self._flush(pending, receiver, result)
        except BatchError as exc:
            self._fail(result, exc)
        if result.complete and result.acked_up_to is None and stored and not self.keep_on_band:
            # Nothing new, but what an earlier connection stored may never have been
            # acknowledged (its link dropped first): acknowledge it now so the band frees it.
            await self._write(receiver.stored_up_to(stored))
            result.acked_up_to = stored
        return result

    @staticmethod
    def _fail(result: StreamResult, exc: BatchError) -> None:
        result.failure = StreamSyncError(
            f"stream {result.stream.name} stopped: a record could not be sealed ({exc}); "
            "the band keeps it; update the app and sync again"
        )
        result.error = str(result.failure)

    async def _next_item(self) -> tuple[str, bytes]:
        try:
            item = await self.activity.wait(self._inbox.get())
        except TimeoutError:
            if self._lost:
                raise PullLinkLostError("the link to the band dropped; sync again") from None
            raise
        if item is _LINK_LOST:
            raise PullLinkLostError("the link to the band dropped; sync again to resume")
        assert isinstance(item, tuple)
        return item

    def _drain_inbox(self) -> None:
        """Forget stray notifications of an earlier transfer (a new receiver starts clean)."""
        while not self._inbox.empty():
            if self._inbox.get_nowait() is _LINK_LOST:
                self._lost = True

    async def _abort(self, receiver: ClientSyncReceiver) -> None:
        with contextlib.suppress(PullLinkLostError):
            await self._write(receiver.abort())

    async def _take(
        self,
        records: Sequence[StoredRecord],
        pending: _Pending,
        receiver: ClientSyncReceiver,
        result: StreamResult,
    ) -> None:
        """Filter new records into ``pending``; flush whenever a batch is full."""
        stored = result.stored_up_to
        records = [r for r in records if r.seq > stored]  # stored before: never queue twice
        if not records:
            return
        times = [record_time(r.record) for r in records]
        # a chunk is minutes to hours of one stream: usually one consent check covers it
        as_is = all_may_upload(result.stream, min(times), max(times), self.allowed)
        limits = self.batcher.limits
        for record, t in zip(records, times, strict=True):
            result.received += 1
            kept = record if as_is else filter_record(record, self.allowed)
            if kept is None:
                pending.withheld += 1
            else:
                if not limits.admits(len(pending.records), pending.first_time, t):
                    await self._flush(pending, receiver, result)
                if kept is not record:
                    pending.cleared += 1
                if not pending.records:
                    pending.first_time = t
                pending.records.append(kept)
            pending.handled_up_to = record.seq

    def _commit(self, pending: _Pending, result: StreamResult) -> int | None:
        """Seal ``pending`` and commit it with the cursor; return the new cursor."""
        up_to = pending.handled_up_to
        if up_to is None:
            return None
        # a run whose avg_hr needs heart-rate consent also gets a fallback without it
        batches = self.batcher.seal_run(pending.records) if pending.records else []
        self.outbox.commit(self.band, int(result.stream), up_to, batches, pending.withheld)
        result.batches += 1 if batches else 0
        result.queued += len(pending.records)
        result.withheld += pending.withheld
        result.fields_cleared += pending.cleared
        result.stored_up_to = up_to
        pending.records = []
        pending.withheld = 0
        pending.cleared = 0
        pending.handled_up_to = None
        return up_to

    async def _flush(
        self, pending: _Pending, receiver: ClientSyncReceiver, result: StreamResult
    ) -> None:
        """Commit ``pending``, then (only then) acknowledge it to the band."""
        up_to = self._commit(pending, result)
        if up_to is None or self.keep_on_band:
            return
        await self._write(receiver.stored_up_to(up_to))
        result.acked_up_to = up_to

    def _progress(self, result: StreamResult, started: float) -> None:
        if self.on_progress is not None:
            elapsed = self._clock() - started
            self.on_progress(Progress(result.stream, result.received, result.air_bytes, elapsed))


def raise_for_errors(results: Sequence[StreamResult]) -> None:
    """Raise StreamSyncError naming the streams whose sync stopped (after all ran)."""
    failed = [r for r in results if r.error is not None]
    if failed:
        detail = "; ".join(f"{r.stream.name.lower()}: {r.error}" for r in failed)
        raise StreamSyncError(f"some streams stopped: {detail}")


__all__ = [
    "GattWriter",
    "Progress",
    "PullError",
    "PullLinkLostError",
    "Puller",
    "StreamResult",
    "StreamSyncError",
    "raise_for_errors",
]
