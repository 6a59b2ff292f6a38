"""How long an L2CAP frame takes on the air, for the optional link model.

The model follows the LE link layer (Core Specification Vol 6, Part B): a connection event
every ``conn_interval_ms``; in each event up to ``packets_per_event`` data packets, each
carrying at most ``data_length`` bytes of L2CAP payload (27 by default, up to 251 with Data
Length Extension). A packet on the air costs its bits at the PHY rate plus the empty
acknowledgement from the peer and two inter-frame spaces:

    t_packet = (preamble + access address + header + payload + MIC + CRC) * 8 / rate
               + T_IFS + t_empty_ack + T_IFS

with a 1-byte preamble on 1M and 2 bytes on 2M, a 4-byte access address, a 2-byte header,
a 4-byte MIC on an encrypted link and a 3-byte CRC; T_IFS = 150 us. The packets that fit
in one event are ``min(packets_per_event, floor(event_window / t_packet))``, where the
event window is the connection interval. The model's capacity in L2CAP payload bytes per
second is therefore

    capacity = packets_that_fit * data_length / conn_interval

An L2CAP frame of ``n`` bytes (4-byte basic header included) needs
``ceil(n / data_length)`` packets, and frames queue behind one another in event order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.errors import UsageError

T_IFS_S = 150e-6


@dataclass(frozen=True)
class LinkModel:
    """Parameters of an LE connection: PHY, connection interval, data length, packets/event."""

    phy: str = "2M"
    conn_interval_ms: float = 15.0
    data_length: int = 251
    packets_per_event: int = 6
    encrypted: bool = True

    def __post_init__(self) -> None:
        if self.phy not in ("1M", "2M"):
            raise UsageError(f"PHY must be '1M' or '2M', got {self.phy!r}")
        if not 7.5 <= self.conn_interval_ms <= 4000:
            raise UsageError("connection interval must be 7.5..4000 ms (Core Spec Vol 6 B 4.5.1)")
        if not 27 <= self.data_length <= 251:
            raise UsageError("data length must be 27..251 bytes")
        if self.packets_per_event < 1:
            raise UsageError("packets per event must be at least 1")

    @property
    def rate_bps(self) -> float:
        return 2e6 if self.phy == "2M" else 1e6

    def packet_time_s(self, payload: int) -> float:
        preamble = 2 if self.phy == "2M" else 1
        mic = 4 if self.encrypted else 0
        data_bits = (preamble + 4 + 2 + payload + mic + 3) * 8
        empty_bits = (preamble + 4 + 2 + 3) * 8
        return data_bits / self.rate_bps + T_IFS_S + empty_bits / self.rate_bps + T_IFS_S

    @property
    def packets_per_interval(self) -> int:
        window = self.conn_interval_ms / 1000.0
        fit = math.floor(window / self.packet_time_s(self.data_length))
        return max(1, min(self.packets_per_event, fit))

    @property
    def capacity_bytes_per_s(self) -> float:
        """L2CAP payload bytes per second the link carries when saturated."""
        return self.packets_per_interval * self.data_length / (self.conn_interval_ms / 1000.0)

    def packets_for(self, l2cap_frame_len: int) -> int:
        return max(1, math.ceil(l2cap_frame_len / self.data_length))
