"""Shared pieces of the bleak backend tests: the profile peripheral and a HR parser."""

from __future__ import annotations

from device_sim.bleak_backend.profile_peripheral import ProfilePeripheral

GattPeripheral = ProfilePeripheral


def parse_heart_rate(data: bytes | bytearray) -> tuple[int, list[int]]:
    """Heart Rate Measurement (HRS 3.1), parsed by hand as a third-party app would.

    Returns (bpm, RR intervals in 1/1024 s).
    """
    flags = data[0]
    i = 1
    if flags & 0x01:
        bpm = data[i] | data[i + 1] << 8
        i += 2
    else:
        bpm = data[i]
        i += 1
    if flags & 0x08:
        i += 2  # energy expended
    rr = []
    if flags & 0x10:
        while i + 1 < len(data):
            rr.append(data[i] | data[i + 1] << 8)
            i += 2
    return bpm, rr
