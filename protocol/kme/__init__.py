"""The KME band's own protocol: its GATT profile, control messages, record streams and their
codecs, record sync, consent, ownership and the sealed upload batch.

Built on :mod:`protocol.ble`; pure like the rest of :mod:`protocol`.
"""
