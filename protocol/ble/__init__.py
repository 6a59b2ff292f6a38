"""Bluetooth as the Core Specification and the SIG define it: ATT, GATT, SMP, UUIDs, the SIG
service codecs and btsnoop captures.

Nothing here knows about KME bands; :mod:`protocol.kme` builds the band's protocol on it.
"""
