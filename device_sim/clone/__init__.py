"""Digital twins: a recorded device (``kmeband clone``'s device.json) served on the radio.

:class:`~device_sim.clone.peripheral.ClonePeripheral` serves the recorded GATT table at the
recorded handles with the recorded values, and replays the recorded notifications to
subscribers, looped, with optional seeded jitter (``kmeband sim --clone``).
"""

from device_sim.clone.peripheral import ClonePeripheral, clone_address, load_snapshot

__all__ = ["ClonePeripheral", "clone_address", "load_snapshot"]
