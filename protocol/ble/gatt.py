"""GATT for kmeband: the attribute database and the sans-IO server and client machines.

This module is the one to import; the pieces live in their own modules:

* :mod:`protocol.ble.gatt_database`: :class:`AttributeDatabase` built from the profile's
  :class:`~protocol.ble.gatt_model.ServiceDefinition` data, with read/write hooks;
* :mod:`protocol.ble.gatt_server`: :class:`GattServer`, one per connection;
* :mod:`protocol.ble.gatt_client`: :class:`GattClient`, procedures with a request queue.

Both machines speak ATT bytes (:mod:`protocol.ble.att`) and do no I/O, like h11. A typical
in-memory exchange::

    server = GattServer(AttributeDatabase.from_services(services))
    client = GattClient()
    start = client.read(handle)
    response, _ = server.receive(start.pdu, SecurityLevel.NO_SECURITY)
    to_send, events = client.receive(response)   # events[0] is ReadCompleted
"""

from __future__ import annotations

from protocol.ble.gatt_client import (
    CharacteristicsDiscovered,
    ClientEvent,
    ClientResult,
    DescriptorsDiscovered,
    DiscoveredCharacteristic,
    DiscoveredDescriptor,
    DiscoveredService,
    GattClient,
    GattClientClosed,
    GattProcedureError,
    GattProfile,
    Indication,
    MtuExchanged,
    Notification,
    PendingRequest,
    ProcedureCompleted,
    ProcedureFailed,
    ProcedureStart,
    ProfileDiscovered,
    ReadCompleted,
    ServicesDiscovered,
    WriteCompleted,
)
from protocol.ble.gatt_database import (
    Attribute,
    AttributeDatabase,
    AttributeKind,
    CharacteristicEntry,
    GattDefinitionError,
    GattLookupError,
    GattRejection,
    ReadHook,
    ServiceEntry,
    WriteHook,
    required_security_error,
)
from protocol.ble.gatt_server import (
    GattServer,
    GattValueTooLong,
    IndicationConfirmed,
    IndicationPending,
    MtuChanged,
    NotSubscribable,
    ServerEvent,
    ServerResult,
    SubscriptionChanged,
    ValueWritten,
)

__all__ = [
    "Attribute",
    "AttributeDatabase",
    "AttributeKind",
    "CharacteristicEntry",
    "CharacteristicsDiscovered",
    "ClientEvent",
    "ClientResult",
    "DescriptorsDiscovered",
    "DiscoveredCharacteristic",
    "DiscoveredDescriptor",
    "DiscoveredService",
    "GattClient",
    "GattClientClosed",
    "GattDefinitionError",
    "GattLookupError",
    "GattProcedureError",
    "GattProfile",
    "GattRejection",
    "GattServer",
    "GattValueTooLong",
    "Indication",
    "IndicationConfirmed",
    "IndicationPending",
    "MtuChanged",
    "MtuExchanged",
    "NotSubscribable",
    "Notification",
    "PendingRequest",
    "ProcedureCompleted",
    "ProcedureFailed",
    "ProcedureStart",
    "ProfileDiscovered",
    "ReadCompleted",
    "ReadHook",
    "ServerEvent",
    "ServerResult",
    "ServiceEntry",
    "ServicesDiscovered",
    "SubscriptionChanged",
    "ValueWritten",
    "WriteCompleted",
    "WriteHook",
    "required_security_error",
]
