"""ATT/GATT hot-path throughput: notifications and read round trips through both machines.

(a) A GattServer builds Handle Value Notifications carrying 244-octet values (ATT_MTU
    247) for a subscribed client and a GattClient decodes each into a Notification event.
(b) A GattClient starts a read, the GattServer answers it, the GattClient completes it:
    one full Read Request/Response round trip through both machines.

Run: ``python bench/att_codec.py [--seconds S]``. The last line is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from protocol.ble.gatt import AttributeDatabase, GattClient, GattServer, Notification, ReadCompleted
from protocol.ble.gatt_model import (
    OPEN_READ,
    CharacteristicDefinition,
    Properties,
    SecurityLevel,
    ServiceDefinition,
)

SERVICE = uuid.UUID("8e5a0001-6b1c-4d2a-9a77-0b5e4e6d0001")
STREAM = uuid.UUID("8e5a0002-6b1c-4d2a-9a77-0b5e4e6d0001")
STATUS = uuid.UUID("8e5a0003-6b1c-4d2a-9a77-0b5e4e6d0001")
MTU = 247
PAYLOAD = 244


def _connected_pair() -> tuple[AttributeDatabase, GattServer, GattClient]:
    db = AttributeDatabase.from_services(
        [
            ServiceDefinition(
                SERVICE,
                "Bench",
                (
                    CharacteristicDefinition(
                        STREAM, "Stream", Properties.NOTIFY, OPEN_READ, "bytes", b""
                    ),
                    CharacteristicDefinition(
                        STATUS, "Status", Properties.READ, OPEN_READ, "bytes", bytes(range(20))
                    ),
                ),
            )
        ]
    )
    server = GattServer(db, rx_mtu=MTU)
    client = GattClient(rx_mtu=MTU)
    # Both procedures are queued at once; the client sends the second when the first ends.
    outgoing = [client.exchange_mtu().pdu, client.subscribe(db.cccd_handle(STREAM)).pdu]
    while outgoing:
        pdu = outgoing.pop(0)
        if pdu is None:
            continue
        response, _ = server.receive(pdu, SecurityLevel.NO_SECURITY)
        assert response is not None
        outgoing.extend(client.receive(response).to_send)
    assert server.mtu == client.mtu == MTU
    return db, server, client


def bench_notifications(seconds: float) -> float:
    db, server, client = _connected_pair()
    handle = db.value_handle(STREAM)
    payloads = [bytes([i]) * PAYLOAD for i in range(16)]
    notify = server.notify
    receive = client.receive
    count = 0
    batch = 2000
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for i in range(batch):
            pdu = notify(handle, payloads[i & 15])
            _, events = receive(pdu)  # type: ignore[arg-type]
        count += batch
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    event = events[0]
    assert isinstance(event, Notification) and len(event.value) == PAYLOAD
    return count / elapsed


def bench_reads(seconds: float) -> float:
    db, server, client = _connected_pair()
    handle = db.value_handle(STATUS)
    read = client.read
    serve = server.receive
    receive = client.receive
    sec = SecurityLevel.NO_SECURITY
    count = 0
    batch = 1000
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(batch):
            start = read(handle)
            response, _ = serve(start.pdu, sec)  # type: ignore[arg-type]
            _, events = receive(response)  # type: ignore[arg-type]
        count += batch
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    event = events[0]
    assert isinstance(event, ReadCompleted) and event.value == bytes(range(20))
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    notify_rate = bench_notifications(args.seconds)
    print(f"notifications: {notify_rate:,.0f} PDUs/s ({PAYLOAD}-octet values, MTU {MTU})")
    read_rate = bench_reads(args.seconds)
    print(f"read round trips: {read_rate:,.0f} /s")
    result = {
        "bench": "att_codec",
        "notify_pdus_per_s": round(notify_rate),
        "read_roundtrips_per_s": round(read_rate),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
