"""The simulated radio: advertising, scanning, connections and L2CAP frames between a
central (a phone, through the bleak backend) and bands (peripherals).

Two carriers with the same behaviour: :class:`~device_sim.radio.medium.Radio` in-process,
and a hub process (:mod:`device_sim.radio.hub_server`) that programs in other processes
reach over a Unix socket or TCP on 127.0.0.1 through
:class:`~device_sim.radio.hub_client.RemoteRadio`. The frames they exchange (encoding, size
limit, fields, error codes) are defined once, in :mod:`device_sim.radio.hub_wire`.
"""

from device_sim.radio.link_model import LinkModel
from device_sim.radio.medium import (
    ATT_CID,
    SMP_CID,
    AdvertisementReport,
    CentralLink,
    CentralPort,
    DisconnectReason,
    EncryptionRefusedError,
    LinkFault,
    Peripheral,
    PeripheralLink,
    Radio,
    RadioError,
    UnknownAddressError,
    encryption_proof,
)

__all__ = [
    "ATT_CID",
    "SMP_CID",
    "AdvertisementReport",
    "CentralLink",
    "CentralPort",
    "DisconnectReason",
    "EncryptionRefusedError",
    "LinkFault",
    "LinkModel",
    "Peripheral",
    "PeripheralLink",
    "Radio",
    "RadioError",
    "UnknownAddressError",
    "encryption_proof",
]
