"""btsnoop captures: exact framing, read-back, and decoding by tshark when it is installed."""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from protocol.ble.btsnoop import (
    ATT_CID,
    BTSNOOP_EPOCH_OFFSET_US,
    SMP_CID,
    BtsnoopFormatError,
    BtsnoopRecord,
    BtsnoopWriter,
    Direction,
    Role,
    acl_packet,
    disconnection_complete_event,
    encryption_change_event,
    file_header,
    le_connection_complete_event,
    parse_acl_packet,
    read_btsnoop,
    timestamp_us,
)
from protocol.ble.smp import PasskeyNeeded, SendPdu, SmpEvent, SmpInitiator, SmpResponder
from protocol.ble.smp_pdu import DeviceAddress
from protocol.errors import UsageError

T0 = timestamp_us(1_700_000_000.0)
HANDLE = 0x0040
BAND = DeviceAddress.parse("C0:00:00:00:B0:01", random=True)
PHONE = DeviceAddress.parse("11:22:33:44:55:66")


def test_file_header_is_btsnoop_version_1_h4() -> None:
    assert file_header() == b"btsnoop\x00" + bytes([0, 0, 0, 1]) + bytes([0, 0, 0x03, 0xEA])


def test_record_layout_and_epoch() -> None:
    record = BtsnoopRecord(
        timestamp_us=0,
        data=b"\x04\x05",
        direction=Direction.RECEIVED,
        command_or_event=True,
        cumulative_drops=3,
    )
    assert record.encode() == (
        struct.pack(">IIII", 2, 2, 0x03, 3) + struct.pack(">q", 0x00DCDDB30F2F8000) + b"\x04\x05"
    )
    sent_data = BtsnoopRecord(timestamp_us=1, data=b"\x02", direction=Direction.SENT)
    assert sent_data.encode()[8:12] == bytes(4)  # flags: sent, data
    assert BTSNOOP_EPOCH_OFFSET_US == 0x00DCDDB30F2F8000


def test_acl_packet_frames_l2cap_on_the_att_channel() -> None:
    pdu = bytes([0x02, 0xF7, 0x00])  # Exchange MTU Request, 247
    packet = acl_packet(0x0040, ATT_CID, pdu)
    # H4 ACL, handle 0x040 with PB=0b10 (0x2040), ACL length 7, L2CAP length 3, CID 4.
    assert packet == bytes([0x02, 0x40, 0x20, 0x07, 0x00, 0x03, 0x00, 0x04, 0x00]) + pdu
    assert parse_acl_packet(packet) == (0x0040, ATT_CID, pdu)
    assert parse_acl_packet(acl_packet(0x0EFF, SMP_CID, b"")) == (0x0EFF, SMP_CID, b"")
    with pytest.raises(UsageError):
        acl_packet(0x0F00, ATT_CID, pdu)
    with pytest.raises(BtsnoopFormatError):
        parse_acl_packet(packet[:-1])


def test_hci_events_have_the_specified_layout() -> None:
    connected = le_connection_complete_event(
        0x0040, Role.CENTRAL, bytes.fromhex("C00000000001"), peer_random=True
    )
    assert connected[:3] == bytes([0x04, 0x3E, 19])
    assert connected[3:8] == bytes([0x01, 0x00, 0x40, 0x00, 0x00])
    assert connected[8:15] == bytes([0x01, 0x01, 0, 0, 0, 0, 0xC0])
    assert disconnection_complete_event(0x0040, 0x13) == bytes([0x04, 0x05, 4, 0, 0x40, 0, 0x13])
    assert encryption_change_event(0x0040) == bytes([0x04, 0x08, 4, 0, 0x40, 0, 1])


records = st.builds(
    BtsnoopRecord,
    timestamp_us=st.integers(-BTSNOOP_EPOCH_OFFSET_US, 2**62),
    data=st.binary(max_size=300),
    direction=st.sampled_from(Direction),
    command_or_event=st.booleans(),
    cumulative_drops=st.integers(0, 2**32 - 1),
)


@given(st.lists(records, max_size=8))
def test_records_round_trip(written: list[BtsnoopRecord]) -> None:
    data = file_header() + b"".join(record.encode() for record in written)
    assert read_btsnoop(data) == written


@given(st.binary(max_size=120))
def test_reader_raises_only_its_typed_error(data: bytes) -> None:
    for candidate in (data, file_header() + data):
        try:
            read_btsnoop(candidate)
        except BtsnoopFormatError:
            continue


def test_truncated_tail_is_an_error_unless_allowed() -> None:
    data = file_header() + BtsnoopRecord(T0, b"\x02abc", Direction.SENT).encode()
    with pytest.raises(BtsnoopFormatError):
        read_btsnoop(data[:-1])
    assert read_btsnoop(data[:-1], allow_truncated_tail=True) == []
    with pytest.raises(BtsnoopFormatError):
        read_btsnoop(b"btsnoop\x00" + bytes([0, 0, 0, 1, 0, 0, 0x03, 0xE9]))


def pairing_pdus() -> list[tuple[Direction, bytes]]:
    """A whole passkey pairing as the phone's HCI sees it."""
    rng = random.Random(5)
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    keys = [ec.derive_private_key(rng.randrange(1, order), ec.SECP256R1()) for _ in range(2)]
    phone = SmpInitiator(
        local_address=PHONE, peer_address=BAND, private_key=keys[0], random_bytes=rng.randbytes
    )
    band = SmpResponder(
        local_address=BAND,
        peer_address=PHONE,
        private_key=keys[1],
        random_bytes=rng.randbytes,
        passkey=246810,
    )
    seen: list[tuple[Direction, bytes]] = []
    queue: list[tuple[str, SmpEvent]] = [("phone", e) for e in phone.start()]
    while queue:
        side, event = queue.pop(0)
        if isinstance(event, PasskeyNeeded):
            queue += [("phone", e) for e in phone.supply_passkey(246810)]
        elif isinstance(event, SendPdu):
            if side == "phone":
                seen.append((Direction.SENT, event.data))
                queue += [("band", e) for e in band.receive(event.data)]
            else:
                seen.append((Direction.RECEIVED, event.data))
                queue += [("phone", e) for e in phone.receive(event.data)]
    return seen


def write_session(sink: io.BytesIO) -> int:
    """Connect, exchange MTU, discover, pair, notify, disconnect; returns the record count."""
    writer = BtsnoopWriter(sink)
    step = iter(range(T0, T0 + 10_000_000, 1250))
    writer.connected(next(step), HANDLE, Role.CENTRAL, BAND.address, peer_random=True)
    att = [
        (Direction.SENT, bytes([0x02]) + struct.pack("<H", 247)),
        (Direction.RECEIVED, bytes([0x03]) + struct.pack("<H", 247)),
        (Direction.SENT, bytes([0x10]) + struct.pack("<HHH", 0x0001, 0xFFFF, 0x2800)),
        (
            Direction.RECEIVED,
            bytes([0x11, 6])
            + struct.pack("<HHHHHH", 0x0001, 0x0005, 0x1800, 0x0006, 0x000B, 0x180D),
        ),
    ]
    for direction, pdu in att:
        writer.att(next(step), HANDLE, pdu, direction)
    smp = pairing_pdus()
    for direction, pdu in smp:
        writer.smp(next(step), HANDLE, pdu, direction)
    writer.encrypted(next(step), HANDLE)
    notification = bytes([0x1B]) + struct.pack("<H", 0x0008) + bytes([0x00, 72])
    writer.att(next(step), HANDLE, notification, Direction.RECEIVED)
    writer.disconnected(next(step), HANDLE, 0x13)
    return 1 + len(att) + len(smp) + 1 + 1 + 1


def test_session_reads_back_with_its_framing() -> None:
    sink = io.BytesIO()
    count = write_session(sink)
    captured = read_btsnoop(sink.getvalue())
    assert len(captured) == count
    assert [r.timestamp_us for r in captured] == sorted(r.timestamp_us for r in captured)
    channels = [parse_acl_packet(r.data)[1] for r in captured if not r.command_or_event]
    assert channels[:4] == [ATT_CID] * 4
    assert channels[4:-1] == [SMP_CID] * (count - 8)


def test_tshark_decodes_the_capture_without_malformed_packets(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        reason = "tshark is not installed (Debian package 'tshark'): capture decoding not checked"
        print(reason)
        pytest.skip(reason)
    sink = io.BytesIO()
    count = write_session(sink)
    capture = tmp_path / "session.btsnoop"
    capture.write_bytes(sink.getvalue())
    result = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(capture),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.number",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.col.Info",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split("|", 3) for line in result.stdout.splitlines() if line]
    assert len(rows) == count
    assert all(malformed == "" for _, _, malformed, _ in rows), result.stdout
    protocols = [protocol for _, protocol, _, _ in rows]
    assert protocols[0] == "HCI_EVT" and protocols[-1] == "HCI_EVT"
    assert protocols[1:5] == ["ATT"] * 4
    assert protocols[5 : count - 3] == ["SMP"] * (count - 8)
    assert protocols[-2] == "ATT"
    infos = [info for _, _, _, info in rows]
    assert "Exchange MTU Request" in infos[1]
    assert "Read By Group Type Response" in infos[4]
    assert "Pairing Request" in infos[5]
    assert "Pairing Public Key" in infos[7]
    assert "Pairing DHKey Check" in infos[count - 4]
    assert "Handle Value Notification" in infos[-2]
    assert "Disconnect Complete" in infos[-1]
