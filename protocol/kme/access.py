"""Who may do what on the band: one rule per (service, operation), shared by every handler.

The GATT table's permissions (docs/protocol.md, "Security") decide which *link* an
operation needs: open, or authenticated LE Secure Connections. Above the link, this table
decides which *connection* may do it:

- :attr:`Access.LINK`: any connection whose link satisfies the GATT permission.
- :attr:`Access.OWNER_ONCE_ACTIVATED`: any such connection while the band is unowned (the
  user is setting it up on a link they confirmed with the passkey); once the band is
  activated, only a connection that proved ownership (owner challenge).
- :attr:`Access.OWNER`: only a connection that proved ownership; an unowned band has no
  owner, so it refuses these.

Characteristic reads and writes are keyed by characteristic UUID; control-point requests
by control point and message class (the control point's other writes are not requests).
A refused read or write gets the ATT error Insufficient Authorization (0x08); a refused
request gets its usual answer with status ``NOT_OWNER`` and the request's own type
(:func:`refusal`). docs/protocol.md's "Access rules" table is generated from
:func:`rules`, and a test checks it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from protocol.kme import profile as kme_profile
from protocol.kme.control.activation import ActivationRequest, OwnerProof, RequestOwnerChallenge
from protocol.kme.control.alarms import DeleteAlarm, ListAlarms, SetAlarm
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import (
    ConsentResult,
    RequestConsentRecord,
    SelectConsentLogPage,
    SetConsent,
)
from protocol.kme.control.device_control import FactoryReset, FindBand, Reboot, SetTimeZone
from protocol.kme.control.record_sync import AbortTransfer, AckRecords, ListStreams, StartTransfer
from protocol.kme.control.schema import ControlMessage


class Access(enum.Enum):
    """Which connection may perform an operation (see the module doc)."""

    LINK = "link"
    OWNER_ONCE_ACTIVATED = "owner once activated"
    OWNER = "owner"

    def allows(self, *, activated: bool, owner: bool) -> bool:
        """Whether a connection (``owner``: it proved ownership) may act on the band."""
        if self is Access.LINK:
            return True
        if self is Access.OWNER_ONCE_ACTIVATED:
            return owner or not activated
        return owner


_LINK, _OWNER_ONCE, _OWNER = Access.LINK, Access.OWNER_ONCE_ACTIVATED, Access.OWNER

#: Characteristic reads above the link. The wearer's data is the owner's once there is one.
READ_ACCESS: Final[Mapping[uuid.UUID, Access]] = {
    kme_profile.DEVICE_NAME: _LINK,
    kme_profile.APPEARANCE: _LINK,
    kme_profile.MANUFACTURER_NAME: _LINK,
    kme_profile.MODEL_NUMBER: _LINK,
    kme_profile.SERIAL_NUMBER: _LINK,
    kme_profile.HARDWARE_REVISION: _LINK,
    kme_profile.FIRMWARE_REVISION: _LINK,
    kme_profile.SOFTWARE_REVISION: _LINK,
    kme_profile.PNP_ID: _LINK,
    kme_profile.BATTERY_LEVEL: _LINK,
    kme_profile.BODY_SENSOR_LOCATION: _LINK,
    kme_profile.AGE: _OWNER_ONCE,
    kme_profile.DATE_OF_BIRTH: _OWNER_ONCE,
    kme_profile.GENDER: _OWNER_ONCE,
    kme_profile.HEIGHT: _OWNER_ONCE,
    kme_profile.WEIGHT: _OWNER_ONCE,
    kme_profile.DATABASE_CHANGE_INCREMENT: _OWNER_ONCE,
    kme_profile.USER_INDEX: _OWNER_ONCE,
    kme_profile.CURRENT_TIME: _LINK,
    kme_profile.LOCAL_TIME_INFORMATION: _LINK,
    kme_profile.KME_RECORD_SYNC_STATUS: _OWNER_ONCE,
    kme_profile.KME_CONSENT_STATE: _OWNER_ONCE,
    kme_profile.KME_CONSENT_CHANGE_LOG: _OWNER_ONCE,
    kme_profile.KME_CONSENT_RECORD: _OWNER_ONCE,
    kme_profile.KME_ALARM_LIST: _OWNER_ONCE,
    kme_profile.KME_ACTIVATION_STATE: _LINK,
    kme_profile.KME_BAND_IDENTITY: _LINK,
    kme_profile.KME_BAND_CERTIFICATE: _LINK,
}

#: Characteristic writes that are not control-point requests. The band's clock and time
#: zone are not the wearer's data (records carry UTC from the band's own timer), so any
#: paired phone may set them, as with any Current Time Service.
WRITE_ACCESS: Final[Mapping[uuid.UUID, Access]] = {
    kme_profile.HEART_RATE_CONTROL_POINT: _LINK,
    kme_profile.AGE: _OWNER_ONCE,
    kme_profile.DATE_OF_BIRTH: _OWNER_ONCE,
    kme_profile.GENDER: _OWNER_ONCE,
    kme_profile.HEIGHT: _OWNER_ONCE,
    kme_profile.WEIGHT: _OWNER_ONCE,
    kme_profile.DATABASE_CHANGE_INCREMENT: _OWNER_ONCE,
    kme_profile.CURRENT_TIME: _LINK,
    kme_profile.LOCAL_TIME_INFORMATION: _LINK,
    kme_profile.USER_CONTROL_POINT: _LINK,  # registers no users: every op "not supported"
}

#: The requests each KME control point takes, and who may make them.
REQUEST_ACCESS: Final[Mapping[uuid.UUID, Mapping[type[ControlMessage], Access]]] = {
    kme_profile.KME_RECORD_SYNC_CONTROL_POINT: {
        ListStreams: _OWNER_ONCE,
        StartTransfer: _OWNER,
        AckRecords: _OWNER,
        AbortTransfer: _OWNER,
    },
    kme_profile.KME_CONSENT_CONTROL_POINT: {
        SelectConsentLogPage: _OWNER_ONCE,
        SetConsent: _OWNER,
        RequestConsentRecord: _OWNER,
    },
    kme_profile.KME_ALARM_CONTROL_POINT: {
        ListAlarms: _OWNER_ONCE,
        SetAlarm: _OWNER_ONCE,
        DeleteAlarm: _OWNER_ONCE,
    },
    kme_profile.KME_DEVICE_CONTROL_POINT: {
        SetTimeZone: _LINK,
        FindBand: _LINK,
        Reboot: _OWNER_ONCE,
        FactoryReset: _OWNER,
    },
    kme_profile.KME_ACTIVATION_CONTROL_POINT: {
        ActivationRequest: _LINK,
        RequestOwnerChallenge: _LINK,
        OwnerProof: _LINK,
    },
}


def request_access(control_point: uuid.UUID, message: type[ControlMessage]) -> Access | None:
    """The rule for ``message`` written to ``control_point``; None if it takes no such request."""
    return REQUEST_ACCESS.get(control_point, {}).get(message)


def refusal(message: ControlMessage, status: ControlStatus) -> ControlMessage:
    """The band's answer refusing a well-formed request: its usual answer, the request's type."""
    if isinstance(message, SetConsent):
        return ConsentResult(status)
    return ControlResult(message.MESSAGE_TYPE, status)


@dataclass(frozen=True)
class Rule:
    """One row of the access table, as docs/protocol.md shows it."""

    service: str
    operation: str
    access: Access


def rules() -> list[Rule]:
    """Every rule, in the profile's handle order (reads, writes, then requests)."""
    out: list[Rule] = []
    for service in kme_profile.BAND_PROFILE:
        for char in service.characteristics:
            if char.uuid in READ_ACCESS:
                out.append(Rule(service.name, f"read {char.name}", READ_ACCESS[char.uuid]))
            if char.uuid in WRITE_ACCESS:
                out.append(Rule(service.name, f"write {char.name}", WRITE_ACCESS[char.uuid]))
            for message, access in REQUEST_ACCESS.get(char.uuid, {}).items():
                name = f"{message.__name__} (0x{message.MESSAGE_TYPE:02X})"
                out.append(Rule(service.name, name, access))
    return out


__all__ = [
    "READ_ACCESS",
    "REQUEST_ACCESS",
    "WRITE_ACCESS",
    "Access",
    "Rule",
    "refusal",
    "request_access",
    "rules",
]
