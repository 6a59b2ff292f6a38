"""A fake band for the puller tests: protocol's band-side sync machine behind a bleak-like client.

Only what the puller uses is implemented (``mtu_size``, ``start_notify``, ``stop_notify``,
``write_gatt_char``). Every write runs the band's :class:`BandSyncSender` and delivers its
notifications and indications synchronously to the subscribed callbacks, so the tests are
pure and fast. ``drop_after`` cuts the link after that many Data notifications of this
connection; ``tamper`` may rewrite the n-th notification to play a faulty band.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519

from cloud_ingest.opening import open_batch
from protocol.kme.batch import decode_batch_plaintext
from protocol.kme.profile import KME_RECORD_SYNC_CONTROL_POINT, KME_RECORD_SYNC_DATA
from protocol.kme.record_sync import BandSyncSender, FreeRecords, IndicateControl, NotifyData
from protocol.kme.records import ActivityClass, ActivityMinute, StoredRecord, StreamId
from sync_client.outbox import Outbox

DATA = str(KME_RECORD_SYNC_DATA)
CONTROL = str(KME_RECORD_SYNC_CONTROL_POINT)
INGEST_KEY = x25519.X25519PrivateKey.from_private_bytes(bytes(range(32)))


class MemoryFlash:
    """A band's streams in memory: contiguous sequences from 1, freed on acknowledgement."""

    def __init__(self, streams: dict[StreamId, Sequence[StoredRecord]]) -> None:
        self.records = {s: list(streams.get(s, ())) for s in StreamId}
        self.freed: dict[StreamId, int] = {}

    def first_seq(self, stream: StreamId) -> int:
        live = self.records[stream]
        return live[0].seq if live else self.next_seq(stream)

    def next_seq(self, stream: StreamId) -> int:
        live = self.records[stream]
        return live[-1].seq + 1 if live else self.freed.get(stream, 0) + 1

    def dropped(self, stream: StreamId) -> int:
        return 0

    def read(self, stream: StreamId, from_seq: int, max_records: int) -> Sequence[StoredRecord]:
        return [r for r in self.records[stream] if r.seq >= from_seq][:max_records]

    def free(self, stream: StreamId, up_to_seq: int) -> None:
        self.freed[stream] = max(self.freed.get(stream, 0), up_to_seq)
        self.records[stream] = [r for r in self.records[stream] if r.seq > up_to_seq]


class FakeBandClient:
    """One connection to the fake band (a new one per reconnect, same sender and flash)."""

    def __init__(
        self,
        sender: BandSyncSender,
        flash: MemoryFlash,
        *,
        mtu: int = 247,
        drop_after: int | None = None,
        tamper: Callable[[int, bytes], bytes] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.sender = sender
        self.flash = flash
        self._mtu = mtu
        self.drop_after = drop_after
        self.tamper = tamper
        self.on_drop = on_drop
        self.callbacks: dict[str, Callable[[Any, bytearray], None]] = {}
        self.notified = 0
        self.connected = True
        self.writes: list[bytes] = []

    @property
    def mtu_size(self) -> int:
        return self._mtu

    async def start_notify(self, uuid: Any, callback: Callable[..., None], **_: Any) -> None:
        self._check()
        self.callbacks[str(uuid)] = callback

    async def stop_notify(self, uuid: Any) -> None:
        self.callbacks.pop(str(uuid), None)

    async def write_gatt_char(self, uuid: Any, data: bytes, response: bool = True) -> None:
        self._check()
        assert str(uuid) == CONTROL
        self.writes.append(bytes(data))
        self.sender.receive_control(bytes(data))
        self._pump()

    def _check(self) -> None:
        if not self.connected:
            raise ConnectionError("not connected")

    def _drop(self) -> None:
        self.connected = False
        self.sender.connection_lost()
        if self.on_drop is not None:
            self.on_drop()

    def _pump(self) -> None:
        while self.connected:
            event = self.sender.next_event()
            if event is None:
                return
            if isinstance(event, NotifyData):
                if self.drop_after is not None and self.notified >= self.drop_after:
                    self._drop()
                    return
                payload = event.payload
                if self.tamper is not None:
                    payload = self.tamper(self.notified, payload)
                self.notified += 1
                self.callbacks[DATA](None, bytearray(payload))
            elif isinstance(event, IndicateControl):
                self.callbacks[CONTROL](None, bytearray(event.payload))
            elif isinstance(event, FreeRecords):
                self.flash.free(event.stream, event.up_to_seq)


def activity_minutes(n: int, start: int = 1_700_000_000, avg_hr: int = 70) -> list[StoredRecord]:
    """``n`` consecutive activity minutes, sequence numbers from 1."""
    base = start - start % 60
    return [
        StoredRecord(
            StreamId.ACTIVITY_MINUTES,
            i + 1,
            ActivityMinute(base + 60 * i, 60, i % 200, ActivityClass.WALK, i % 4, avg_hr, True),
        )
        for i in range(n)
    ]


def queued_records(outbox: Outbox) -> list[StoredRecord]:
    """Open every queued batch with the test ingest key: the records in upload order."""
    out: list[StoredRecord] = []
    for batch in outbox.due(limit=100_000, now=float("inf")):
        header, plaintext = open_batch(batch.envelope, INGEST_KEY)
        out.extend(decode_batch_plaintext(header, plaintext).records())
    return sorted(out, key=lambda r: (r.stream, r.seq))
