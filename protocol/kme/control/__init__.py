"""KME control messages: the schema engine and one message catalogue per service.

- ``protocol.kme.control.schema``: field types, message base classes, registration with
  its type-block rule, canonical encoding and typed decoding;
- ``protocol.kme.control.common``: :class:`ControlResult` and its status codes;
- ``protocol.kme.control.record_sync``, ``.consent``, ``.alarms``, ``.device_control``,
  ``.activation``: each service's messages (type blocks in ``MESSAGE_TYPE_BLOCKS``).

Import names from the module that defines them. Importing any of them imports every
catalogue below, so :func:`~protocol.kme.control.schema.decode_control` always knows
every message type.
"""

from protocol.kme.control import (  # noqa: F401  (registers every message type)
    activation,
    alarms,
    common,
    consent,
    device_control,
    record_sync,
)
