"""Recorded sensor traces: the ``.kmetrace`` format, importing external recordings, and the
``record`` / ``replay`` commands. A trace replaces the sensor layer (truth optional).
"""
