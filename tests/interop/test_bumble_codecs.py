"""Interop of kmeband's SIG codecs with bumble's own parsers and encoders, both ways."""

from __future__ import annotations

import pytest

from protocol.ble.sig_codecs import (
    HeartRateMeasurement,
    SensorContact,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
)

pytest.importorskip("bumble", reason="the interop suite needs the kmeband[bumble] extra")

from bumble.profiles.heart_rate_service import HeartRateService
from hypothesis import given
from hypothesis import strategies as st

_HRM = HeartRateService.HeartRateMeasurement


@given(
    bpm=st.integers(0, 0xFFFF),
    contact=st.sampled_from(list(SensorContact)),
    energy=st.none() | st.integers(0, 0xFFFF),
    rr=st.lists(st.integers(0, 0xFFFF), max_size=7).map(tuple),
)
def test_bumble_parses_our_heart_rate_measurements(
    bpm: int, contact: SensorContact, energy: int | None, rr: tuple[int, ...]
) -> None:
    ours = HeartRateMeasurement(
        bpm=bpm, sensor_contact=contact, energy_expended_kj=energy, rr_intervals=rr
    )
    theirs = _HRM.from_bytes(encode_heart_rate_measurement(ours))
    assert theirs.heart_rate == bpm
    expected_contact = {
        SensorContact.NOT_SUPPORTED: None,
        SensorContact.NOT_DETECTED: False,
        SensorContact.DETECTED: True,
    }[contact]
    assert theirs.sensor_contact_detected is expected_contact
    assert theirs.energy_expended == energy
    assert [round(x * 1024) for x in theirs.rr_intervals or []] == list(rr)


@given(
    bpm=st.integers(0, 0xFFFF),
    contact=st.none() | st.booleans(),
    energy=st.none() | st.integers(0, 0xFFFF),
    rr=st.lists(st.integers(0, 0xFFFF), max_size=7),
)
def test_we_parse_bumbles_heart_rate_measurements(
    bpm: int, contact: bool | None, energy: int | None, rr: list[int]
) -> None:
    theirs = _HRM(bpm, contact, energy, [x / 1024 for x in rr] or None)
    ours = decode_heart_rate_measurement(bytes(theirs))
    assert ours.bpm == bpm
    assert ours.energy_expended_kj == energy
    assert list(ours.rr_intervals) == rr
    expected = {
        None: SensorContact.NOT_SUPPORTED,
        False: SensorContact.NOT_DETECTED,
        True: SensorContact.DETECTED,
    }[contact]
    assert ours.sensor_contact == expected
