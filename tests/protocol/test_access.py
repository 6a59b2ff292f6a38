"""The access rule table covers every operation of the band's profile, and means one thing."""

from __future__ import annotations

import pytest

from protocol.ble.gatt_model import CharacteristicDefinition, Permissions, Properties
from protocol.kme import access
from protocol.kme import profile as kme_profile
from protocol.kme.access import Access
from protocol.kme.control.alarms import DeleteAlarm
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import ConsentResult, SetConsent
from protocol.kme.control.device_control import FindBand
from protocol.kme.control.record_sync import ListStreams, StartTransfer
from protocol.kme.records import ConsentCategory


def _characteristics() -> list[tuple[str, CharacteristicDefinition]]:
    return [(s.name, c) for s in kme_profile.BAND_PROFILE for c in s.characteristics]


def test_every_readable_and_writable_characteristic_has_exactly_one_rule() -> None:
    for _service, char in _characteristics():
        readable = bool(char.permissions & Permissions.READABLE)
        writable = bool(char.properties & (Properties.WRITE | Properties.WRITE_WITHOUT_RESPONSE))
        assert readable == (char.uuid in access.READ_ACCESS), char.name
        if char.uuid in access.REQUEST_ACCESS:  # a control point: its requests have rules
            assert char.uuid not in access.WRITE_ACCESS, char.name
        else:
            assert writable == (char.uuid in access.WRITE_ACCESS), char.name


def test_every_kme_control_point_lists_its_requests() -> None:
    both = Properties.INDICATE | Properties.WRITE
    control_points = {
        c.uuid
        for name, c in _characteristics()
        if name.startswith("KME") and c.properties & both == both
    }
    assert control_points == set(access.REQUEST_ACCESS)
    every = [m for requests in access.REQUEST_ACCESS.values() for m in requests]
    assert len(every) == len(set(every)), "a request belongs to one control point"


@pytest.mark.parametrize(
    ("rule", "activated", "owner", "allowed"),
    [
        (Access.LINK, True, False, True),
        (Access.OWNER_ONCE_ACTIVATED, False, False, True),
        (Access.OWNER_ONCE_ACTIVATED, True, False, False),
        (Access.OWNER_ONCE_ACTIVATED, True, True, True),
        (Access.OWNER, False, False, False),
        (Access.OWNER, True, False, False),
        (Access.OWNER, True, True, True),
    ],
)
def test_rules_mean_what_the_docs_say(
    rule: Access, activated: bool, owner: bool, allowed: bool
) -> None:
    assert rule.allows(activated=activated, owner=owner) is allowed


def test_the_wearers_data_and_the_alarms_are_the_owners() -> None:
    alarms = access.REQUEST_ACCESS[kme_profile.KME_ALARM_CONTROL_POINT]
    assert set(alarms.values()) == {Access.OWNER_ONCE_ACTIVATED}
    assert access.READ_ACCESS[kme_profile.KME_RECORD_SYNC_STATUS] is Access.OWNER_ONCE_ACTIVATED
    sync = kme_profile.KME_RECORD_SYNC_CONTROL_POINT
    assert access.request_access(sync, ListStreams) is Access.OWNER_ONCE_ACTIVATED
    assert access.request_access(sync, StartTransfer) is Access.OWNER
    assert access.request_access(sync, FindBand) is None


def test_a_refusal_names_the_request() -> None:
    refused = access.refusal(DeleteAlarm(3), ControlStatus.NOT_OWNER)
    assert refused == ControlResult(0x33, ControlStatus.NOT_OWNER)
    consent = access.refusal(
        SetConsent(ConsentCategory.SLEEP, True, 1),
        ControlStatus.NOT_OWNER,
    )
    assert consent == ConsentResult(ControlStatus.NOT_OWNER)
