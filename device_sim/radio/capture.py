"""Captures every ATT and SMP PDU a radio carries to a btsnoop file Wireshark can read.

The file is created with mode 0600: it holds health data and the pairing exchange.

The capture is written from the central's side, as a phone's HCI snoop log would be:
frames the central sends are "sent", the band's are "received". Link events appear as
LE Connection Complete, Encryption Change and Disconnection Complete HCI events.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from device_sim.radio.medium import ATT_CID, SMP_CID
from protocol.ble.btsnoop import BtsnoopWriter, Direction, Role, timestamp_us


class BtsnoopCapture:
    """A radio CaptureSink writing a btsnoop file; use as a context manager or close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Captures hold health data and the pairing exchange (enough to recover a passkey):
        # created 0600, never readable by others even for a moment, like every other file.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
            self._file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        self._writer = BtsnoopWriter(self._file)
        self.frames = 0

    def __enter__(self) -> BtsnoopCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def connected(self, timestamp: float, handle: int, peer_address: str) -> None:
        peer = bytes.fromhex(peer_address.replace(":", ""))
        random = peer[0] & 0xC0 == 0xC0
        self._writer.connected(
            timestamp_us(timestamp), handle, Role.CENTRAL, peer, peer_random=random
        )

    def frame(
        self, timestamp: float, handle: int, from_central: bool, cid: int, payload: bytes
    ) -> None:
        direction = Direction.SENT if from_central else Direction.RECEIVED
        t = timestamp_us(timestamp)
        if cid == ATT_CID:
            self._writer.att(t, handle, payload, direction)
        elif cid == SMP_CID:
            self._writer.smp(t, handle, payload, direction)
        else:
            return
        self.frames += 1

    def encrypted(self, timestamp: float, handle: int) -> None:
        self._writer.encrypted(timestamp_us(timestamp), handle)

    def disconnected(self, timestamp: float, handle: int, reason: int) -> None:
        self._writer.disconnected(timestamp_us(timestamp), handle, reason)
        self._file.flush()
