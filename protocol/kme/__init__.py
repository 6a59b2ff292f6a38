"""The KME band's own protocol: its GATT profile, control messages, record streams and their
codecs, record sync, consent, ownership and the sealed upload batch.

Where things live: ``control/`` holds the CBOR control-message engine (``schema``) and one
message catalogue per service; ``records`` the record types and the one stream -> record
type map; ``record_codec`` the on-air chunk codec, built from ``chunk_framing`` (header,
CRC, fragments), ``activity_code`` and ``column_codec``; ``record_sync`` the sync state
machines.

Built on :mod:`protocol.ble`; pure like the rest of :mod:`protocol`.
"""
