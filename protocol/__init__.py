"""Pure protocol code: codecs, the GATT profile, sans-IO state machines.

Nothing here does I/O, reads a clock or draws random numbers: time and random bytes are
passed in. Every other layer imports this one; it imports none of them.
"""
