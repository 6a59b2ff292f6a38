"""KME Record Sync: the one record-sync sender over the band's flash.

One :class:`~protocol.kme.record_sync.BandSyncSender` lives as long as the firmware runs
(docs/records.md): what was sent stays known across connections, so a client can
acknowledge records it stored on an earlier connection whose link dropped before its
acknowledgement. A power cycle or factory reset forgets it (:meth:`forget`).
"""

from __future__ import annotations

from device_sim.band.services.connection import BandConnection, Effect, PumpRecordSync, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.kme.control.schema import ControlMessage, encode_control
from protocol.kme.profile import (
    KME_RECORD_SYNC_CONTROL_POINT,
    KME_RECORD_SYNC_STATUS,
    MAX_RECORD_CHUNK,
)
from protocol.kme.record_sync import (
    BandSyncSender,
    FreeRecords,
    IndicateControl,
    NotifyData,
    TransferFinished,
)

#: Smallest chunk payload: what the default 23-byte ATT MTU leaves.
MIN_CHUNK = 20


class RecordSyncService:
    """Status reads, control-point requests and the sender's outgoing events."""

    def __init__(self, band: SimulatedBand) -> None:
        self.band = band
        self._sender: BandSyncSender | None = None

    def handlers(self) -> Service:
        return Service(
            reads={KME_RECORD_SYNC_STATUS: self._status},
            requests={KME_RECORD_SYNC_CONTROL_POINT: self._request},
        )

    def sender(self, conn: BandConnection) -> BandSyncSender:
        """The sender, sized for this connection's MTU."""
        size = max(MIN_CHUNK, min(conn.mtu - 3, MAX_RECORD_CHUNK))
        if self._sender is None:
            self._sender = BandSyncSender(self.band.flash, size)
        else:
            self._sender.payload_size = size
        return self._sender

    def _status(self, conn: BandConnection) -> bytes:
        return encode_control(self.sender(conn).status())

    def _request(self, conn: BandConnection, message: ControlMessage, raw: bytes) -> list[Effect]:
        self.sender(conn).receive_control(raw)
        return [PumpRecordSync()]

    def next_out(self, conn: BandConnection) -> NotifyData | IndicateControl | None:
        """The next chunk to notify or answer to indicate; applies frees and flushes."""
        sender = self.sender(conn)
        while True:
            event = sender.next_event()
            if event is None or isinstance(event, NotifyData | IndicateControl):
                return event
            if isinstance(event, FreeRecords):
                self.band.flash.free_up_to(event.stream, event.up_to_seq)
            elif isinstance(event, TransferFinished):
                self.band.flash.flush()

    def connection_lost(self) -> None:
        if self._sender is not None:
            self._sender.connection_lost()

    def forget(self) -> None:
        """RAM state: a power cycle (or reset) forgets what was sent."""
        self._sender = None
